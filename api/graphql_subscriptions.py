"""GraphQL subscriptions over websockets (graphql-transport-ws): live image events.

``imageEvents(patientId, kinds)`` streams what happens to a patient's images: captured,
processed (``derivatives_generated``), failed, tagged, categorised, deleted, restored…

* **Authorised like queries**: the bearer token travels in the ``connection_init`` payload
  (``{"Authorization": "Bearer …"}``; browsers cannot set headers on a websocket) or in the
  upgrade request's header. The caller needs ``imaging:view``; another clinic's patient is
  ``patient_not_found``, exactly as for the ``patient`` query; an image the caller may not
  see (radiographs for front desk) is never announced.
* **Read-your-writes**: an event is sent only once the gallery has applied it, so a client
  that re-queries on an event sees the change.
* Works across API replicas: it follows the event log and the gallery's tracking position
  in PostgreSQL, not anything in the process that handled the write.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import AsyncGenerator
from uuid import UUID

import strawberry
from eventsourcing.utils import get_topic
from strawberry.types import Info

from api.auth import bearer_token, verify_token
from api.graphql_context import Context, actor_of, blocking, parse_id
from api.graphql_gallery import ImageNode, _load_image
from api.services import Services
from domain.errors import InvalidInput, NotFound
from domain.image import Image
from domain.permissions import Grant, Permission, require
from domain.values import Actor

POLL_SECONDS = 0.2
BATCH = 500
_KNOWN_IMAGES = 10_000


def kind_of(topic: str) -> str:
    """``domain.image:Image.DerivativesGenerated`` -> ``derivatives_generated``."""
    name = topic.rsplit(".", 1)[-1]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_IMAGE_EVENTS = [cls for cls in vars(Image).values()
                 if isinstance(cls, type) and issubclass(cls, Image.Event)
                 and cls.__name__ not in ("Event", "Created")]  # the library's bases
TOPICS = sorted({get_topic(cls) for cls in _IMAGE_EVENTS})
KINDS = frozenset(kind_of(topic) for topic in TOPICS)


@strawberry.type
class ImageEvent:
    kind: str
    image_id: strawberry.ID
    patient_id: strawberry.ID
    position: int = strawberry.field(description="The event's position in the log.")
    image: ImageNode = strawberry.field(description="The image as the gallery shows it now.")


def _subscriber(info: Info) -> Actor:
    context: Context = info.context
    if context.actor is not None:
        return context.actor
    params = getattr(context, "connection_params", None)
    params = params if isinstance(params, dict) else {}
    upgrade = getattr(context, "request", None)
    header = (params.get("Authorization") or params.get("authorization")
              or (upgrade.headers.get("authorization") if upgrade is not None else None))
    if header:
        context.actor = verify_token(context.services.tokens, bearer_token(str(header)), "")
    return actor_of(info)


class _Owners:
    """Which patient each image belongs to, learnt from Captured events and the gallery."""

    def __init__(self, services: Services, actor: Actor):
        self._services = services
        self._actor = actor
        self._known: OrderedDict[UUID, UUID | None] = OrderedDict()

    def learn(self, image_id: UUID, patient_id: UUID) -> None:
        self._known[image_id] = patient_id
        self._trim()

    def patient_of(self, image_id: UUID) -> UUID | None:
        if image_id not in self._known:
            found = self._services.gallery.image(self._actor.clinic_id, image_id)
            self._known[image_id] = found.patient_id if found is not None else None
            self._trim()
        return self._known[image_id]

    def _trim(self) -> None:
        while len(self._known) > _KNOWN_IMAGES:
            self._known.popitem(last=False)


def _matching(services: Services, owners: _Owners, patient_id: UUID, kinds: frozenset[str],
              start: int, head: int) -> tuple[list[tuple[str, UUID, int]], int]:
    """This patient's image events in (start, head]; returns them and the position reached."""
    notifications = services.app.recorder.select_notifications(
        start=start, limit=BATCH, stop=head, topics=TOPICS, inclusive_of_start=False)
    found: list[tuple[str, UUID, int]] = []
    for notification in notifications:
        kind = kind_of(notification.topic)
        image_id = UUID(str(notification.originator_id))
        if kind == "captured":
            event = services.app.mapper.to_domain_event(notification)
            owner = getattr(event, "patient_id", None)
            if owner is not None:
                owners.learn(image_id, UUID(str(owner)))
        if kind in kinds and owners.patient_of(image_id) == patient_id:
            found.append((kind, image_id, notification.id))
    reached = notifications[-1].id if len(notifications) == BATCH else head
    return found, reached


@strawberry.type
class ImageSubscription:
    @strawberry.subscription
    async def image_events(
        self, info: Info, patient_id: strawberry.ID, kinds: list[str] | None = None,
    ) -> AsyncGenerator[ImageEvent, None]:
        """Events of this patient's images from now on (all kinds, or those named)."""
        actor = _subscriber(info)
        require(actor, Permission.VIEW, Grant.THUMBNAILS, Grant.METADATA)
        services: Services = info.context.services
        patient = parse_id(patient_id, "patientId")
        wanted = frozenset(kinds) if kinds else KINDS
        if not wanted <= KINDS:
            raise InvalidInput("invalid_kind",
                               f"kinds are among {', '.join(sorted(KINDS))}")
        await blocking(services.app.get_patient, patient, actor)  # tenancy: NotFound
        owners = _Owners(services, actor)
        position = await blocking(services.app.recorder.max_notification_id) or 0
        while True:
            head = await blocking(services.gallery.max_tracking_id, services.app.name) or 0
            if head > position:
                found, position = await blocking(_matching, services, owners, patient,
                                                  wanted, position, head)
                for kind, image_id, at in found:
                    try:
                        node = await _load_image(services, actor, image_id)
                    except NotFound:
                        continue  # destroyed since, or not for this caller's eyes
                    yield ImageEvent(kind=kind, image_id=strawberry.ID(str(image_id)),
                                     patient_id=strawberry.ID(str(patient)), position=at,
                                     image=node)
            else:
                await asyncio.sleep(POLL_SECONDS)
