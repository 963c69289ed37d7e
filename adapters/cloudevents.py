"""Thin, PHI-free CloudEvents for Kafka (CloudEvents 1.0, Kafka protocol binding, binary mode).

What goes out is an allowlist, never a copy of the event: ids, the clinic, the patient id
(pseudonymous), validated codes (category, ADA view code, consent scope, access kind,
processing stage/error code, derivative kinds), counts (tags), the resulting status and the
aggregate version. Names, birth dates, external ids, file names, tag text, reasons and any
other free text never leave. An event type this module does not know yet is still published
under a derived type with the envelope fields only, so adding a domain event cannot leak PHI.

A :class:`ShreddedEvent` (its subject's key is gone) keeps its original type but carries only
what its clear header holds, marked ``"redacted": true``.

Record layout: key = the aggregate id (so one aggregate's events stay in order on one
partition), value = the JSON data, headers ``content-type`` and ``ce_specversion``, ``ce_id``,
``ce_source``, ``ce_type``, ``ce_time``, ``ce_subject`` plus the extension ``ce_position``
(the notification-log position, for diagnostics; consumers dedupe on ``ce_id``).
``ce_id`` is ``"{aggregate id}:{version}"``: the same event gets the same id however often a
relay restart sends it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from domain.access import AccessKind
from domain.events import ShreddedEvent
from domain.image import ImageCategory, ImageStatus
from domain.patient import ConsentScope
from domain.values import Actor
from domain.views import VIEWS

SPEC_VERSION = "1.0"
SOURCE = "orthovault/imaging"
CONTENT_TYPE = "application/json"
TYPE_PREFIX = "orthovault"
TYPE_VERSION = "v1"

# Aggregate class name -> the short name used in topics and event types.
AGGREGATES: dict[str, str] = {"Image": "image", "Patient": "patient", "AccessRecord": "access"}
TOPICS: dict[str, str] = {short: f"imaging.{short}.v1" for short in AGGREGATES.values()}

_REQUIRED = ("specversion", "id", "source", "type")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
_STATUS_AFTER = {
    "captured": ImageStatus.ACTIVE,
    "soft_deleted": ImageStatus.DELETED,
    "restored": ImageStatus.ACTIVE,
    "destroyed": ImageStatus.DESTROYED,
}


class InvalidCloudEvent(ValueError):
    """A Kafka record that is not a binary-mode CloudEvent we can read."""


@dataclass(frozen=True)
class Owner:
    """Who an aggregate belongs to, for events that do not carry it themselves."""

    clinic_id: str | None = None
    patient_id: str | None = None


@dataclass(frozen=True)
class CloudEvent:
    id: str
    type: str
    subject: str
    time: str | None
    data: dict[str, Any]
    source: str = SOURCE
    specversion: str = SPEC_VERSION
    datacontenttype: str = CONTENT_TYPE
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def _split_topic(topic: str) -> tuple[str, str] | None:
    """``"domain.image:Image.Tagged"`` -> ``("image", "tagged")``; None if not ours."""
    _, _, qualname = topic.partition(":")
    aggregate, _, event_name = qualname.rpartition(".")
    short = AGGREGATES.get(aggregate.rsplit(".", 1)[-1])
    if short is None or not event_name:
        return None
    return short, re.sub(r"(?<!^)(?=[A-Z])", "_", event_name).lower()


def _rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _id_text(value: Any) -> str | None:
    """Ids only: a UUID, or a short code-like string (clinic ids). Anything else is dropped."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str) and _CODE.match(value):
        return value
    return None


def _one_of(value: Any, allowed: Iterable[str]) -> str | None:
    return value if isinstance(value, str) and value in set(allowed) else None


def _actor(value: Any) -> dict[str, str] | None:
    """Staff ids and role only (the same fields the event store keeps in the clear)."""
    if isinstance(value, Actor):
        user, role = value.user_id, value.role
    elif isinstance(value, Mapping):
        user, role = value.get("user_id"), value.get("role")
    else:
        return None
    actor = {"user_id": _id_text(user), "role": _id_text(role)}
    return {k: v for k, v in actor.items() if v is not None} or None


def _specific(short: str, name: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """The allowlisted, event-specific fields. Only validated codes and counts."""
    data: dict[str, Any] = {}
    if short == "image":
        if name in ("captured", "categorised"):
            data["category"] = _one_of(state.get("category"), ImageCategory)
            data["view"] = _one_of(state.get("view"), VIEWS)
        if name == "categorised":
            data["source"] = _one_of(state.get("source"), ("user", "auto", "default"))
            confidence = state.get("confidence")
            if isinstance(confidence, int | float) and not isinstance(confidence, bool):
                data["confidence"] = round(float(confidence), 3)
        if name == "captured":
            tags = state.get("tags")
            data["tag_count"] = len(tags) if isinstance(tags, list | tuple) else None
        if name == "derivatives_generated":
            kinds = state.get("derivatives")
            data["derivatives"] = sorted(k for k in (kinds or {}) if _CODE.match(str(k)))
        if name == "processing_failed":
            data["stage"] = _id_text(state.get("stage"))
            data["code"] = _id_text(state.get("code"))
        if name in _STATUS_AFTER:
            data["status"] = _STATUS_AFTER[name].value
    elif short == "patient" and name in ("consent_granted", "consent_revoked"):
        data["scope"] = _one_of(state.get("scope"), ConsentScope)
        if name == "consent_granted":
            data["granted_by"] = _one_of(state.get("granted_by"), ("patient", "guardian"))
    elif short == "access" and name == "recorded":
        data["image_id"] = _id_text(state.get("image_id"))
        data["kind"] = _one_of(state.get("kind"), AccessKind)
    return data


def _uuid_text(value: Any) -> str | None:
    try:
        return str(UUID(str(value))) if value is not None else None
    except ValueError:
        return None


def _clinic(state: Mapping[str, Any], owner: Owner) -> str | None:
    actor = state.get("actor")
    actor_clinic = actor.get("clinic_id") if isinstance(actor, Mapping) else None
    if isinstance(actor, Actor):
        actor_clinic = actor.clinic_id
    for candidate in (state.get("clinic_id"), owner.clinic_id, actor_clinic):
        text = _id_text(candidate)
        if text and text != "*":  # "*" is a system actor's wildcard, not a clinic
            return text
    return None


def to_cloudevent(event: Any, position: int, owner: Owner | None = None) -> CloudEvent | None:
    """The thin CloudEvent of a domain event, or None when its aggregate is not published.

    ``position`` is the event's notification id. ``owner`` fills ``clinic_id``/``patient_id``
    for events that do not carry them (an image's ``Tagged`` names neither).
    """
    shredded = isinstance(event, ShreddedEvent)
    split = _split_topic(event.topic if shredded else get_topic(type(event)))
    if split is None:
        return None
    short, name = split
    aggregate_id = UUID(str(event.originator_id))
    version = int(event.originator_version)
    state: Mapping[str, Any] = event.header if shredded else vars(event)
    owner = owner or Owner()
    patient = aggregate_id if short == "patient" else state.get("patient_id", owner.patient_id)
    data: dict[str, Any] = {
        f"{short}_id": str(aggregate_id),
        "clinic_id": _clinic(state, owner),
        "patient_id": _uuid_text(patient),
        "version": version,
        "actor": _actor(state.get("actor")),
    }
    if shredded:
        data["redacted"] = True
    else:
        data.update(_specific(short, name, state))
    timestamp = event.timestamp if shredded else state.get("timestamp")
    return CloudEvent(
        id=f"{aggregate_id}:{version}",
        type=f"{TYPE_PREFIX}.{short}.{name}.{TYPE_VERSION}",
        subject=str(aggregate_id),
        time=_rfc3339(timestamp if isinstance(timestamp, datetime) else None),
        data={k: v for k, v in data.items() if v is not None},
        extensions={"position": str(position)},
    )


def topic_for(cloud_event: CloudEvent) -> str:
    short = cloud_event.type.split(".")[1]
    return TOPICS[short]


def to_record(cloud_event: CloudEvent) -> KafkaRecord:
    """Binary mode: attributes in ``ce_`` headers, the data alone in the value."""
    attributes = {
        "specversion": cloud_event.specversion,
        "id": cloud_event.id,
        "source": cloud_event.source,
        "type": cloud_event.type,
        "time": cloud_event.time,
        "subject": cloud_event.subject,
        **cloud_event.extensions,
    }
    headers = [("content-type", cloud_event.datacontenttype.encode())]
    headers += [(f"ce_{k}", v.encode()) for k, v in attributes.items() if v is not None]
    return KafkaRecord(
        topic=topic_for(cloud_event),
        key=cloud_event.subject.encode(),
        value=json.dumps(cloud_event.data, separators=(",", ":"), sort_keys=True).encode(),
        headers=headers,
    )


def encode(event: Any, position: int, owner: Owner | None = None) -> KafkaRecord | None:
    cloud_event = to_cloudevent(event, position, owner)
    return to_record(cloud_event) if cloud_event is not None else None


def parse_record(
    headers: Iterable[tuple[str, bytes | None]] | None, value: bytes | None
) -> CloudEvent:
    """The CloudEvent of a binary-mode Kafka record (what consumers call)."""
    attributes: dict[str, str] = {}
    content_type = CONTENT_TYPE
    for name, raw in headers or ():
        text = (raw or b"").decode("utf-8", errors="strict")
        if name.lower() == "content-type":
            content_type = text
        elif name.startswith("ce_"):
            attributes[name[3:]] = text
    missing = [name for name in _REQUIRED if not attributes.get(name)]
    if missing:
        raise InvalidCloudEvent(f"record lacks CloudEvent attributes: {', '.join(missing)}")
    if attributes["specversion"] != SPEC_VERSION:
        raise InvalidCloudEvent(f"unsupported specversion {attributes['specversion']!r}")
    try:
        data = json.loads(value) if value else {}
    except ValueError as error:
        raise InvalidCloudEvent(f"data is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidCloudEvent("data is not a JSON object")
    known = {"specversion", "id", "source", "type", "time", "subject"}
    return CloudEvent(
        id=attributes["id"],
        type=attributes["type"],
        subject=attributes.get("subject", ""),
        time=attributes.get("time"),
        data=data,
        source=attributes["source"],
        specversion=attributes["specversion"],
        datacontenttype=content_type,
        extensions={k: v for k, v in attributes.items() if k not in known},
    )
