"""Delete with approval: a doctor's delete is a request a clinic admin approves or declines.

The practice's permission table gives doctors ``imaging:delete`` only WITH_APPROVAL. Such a
delete becomes a :class:`DeletionRequest` (one per image, reused round after round); an
actor holding the full grant of both ``imaging:delete`` and ``imaging:admin`` (a clinic
admin) approves it, which soft-deletes the image in the same transaction, or declines it.
Two-person rule: nobody approves their own request.

Events: ``DeletionRequest.Opened`` (first request for an image), ``Requested``,
``Approved``, ``Declined``. Reasons are free text (they may name the patient), so these
events are sealed with the request's own key like any other PHI-bearing event.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event

from domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from domain.image import Image
from domain.permissions import Grant, Permission, grant, require
from domain.values import Actor

MAX_REASON = 500
_NAMESPACE = uuid5(NAMESPACE_URL, "https://orthovault/deletion-request")


class RequestStatus(StrEnum):
    NONE = "none"  # opened, no round yet (never seen outside a transaction)
    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"


def request_id_for(image_id: UUID) -> UUID:
    return uuid5(_NAMESPACE, str(image_id))


class DeletionRequest(Aggregate):
    @staticmethod
    def create_id(image_id: UUID) -> UUID:
        return request_id_for(image_id)

    @event("Opened")
    def __init__(self, *, image_id: UUID, clinic_id: str, patient_id: UUID,
                 actor: Actor) -> None:
        self.image_id = image_id
        self.clinic_id = clinic_id
        self.patient_id = patient_id
        self.status = RequestStatus.NONE.value
        self.requested_by: Actor | None = None
        self.reason = ""
        self.decided_by: Actor | None = None
        self.decision_note = ""
        self.round = 0

    @event("Requested")
    def request(self, *, clinic_id: str, patient_id: UUID, reason: str, actor: Actor) -> None:
        self.status = RequestStatus.PENDING.value
        self.requested_by = actor
        self.reason = reason
        self.decided_by = None
        self.decision_note = ""
        self.round += 1

    @event("Approved")
    def approve(self, *, clinic_id: str, patient_id: UUID, actor: Actor) -> None:
        self.status = RequestStatus.APPROVED.value
        self.decided_by = actor

    @event("Declined")
    def decline(self, *, clinic_id: str, patient_id: UUID, note: str, actor: Actor) -> None:
        self.status = RequestStatus.DECLINED.value
        self.decided_by = actor
        self.decision_note = note

    @property
    def is_pending(self) -> bool:
        return self.status == RequestStatus.PENDING.value


def _retrying(command: Callable[..., Any]) -> Callable[..., Any]:
    """``retry_on_conflict`` (defined beside ``Imaging``, which imports this module)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from domain.imaging import retry_on_conflict

        return retry_on_conflict(command)(*args, **kwargs)

    return wrapper


def _reason(text: str) -> str:
    cleaned = " ".join(text.split())
    if not cleaned:
        raise InvalidInput("reason_required", "say why the image should be deleted")
    return cleaned[:MAX_REASON]


class DeletionRequestCommands:
    """Mixed into ``Imaging``."""

    def deletion_request(self: Any, actor: Actor, image_id: UUID) -> DeletionRequest:
        """The image's deletion request (tenancy through the image)."""
        image = self.get_image(image_id, actor)
        try:
            found = self.repository.get(request_id_for(image.id))
        except AggregateNotFoundError:
            raise NotFound("deletion_request_not_found", "no deletion request") from None
        return found

    @_retrying
    def request_image_deletion(self: Any, actor: Actor, image_id: UUID, reason: str) -> Any:
        from domain.imaging import Written

        held = grant(actor.role, Permission.DELETE)
        if held not in (Grant.FULL, Grant.WITH_APPROVAL):
            raise PermissionDenied("permission_denied",
                                   f"missing permission {Permission.DELETE.value}")
        image = self.get_image(image_id, actor)
        if image.is_deleted:
            raise Conflict("image_deleted", "the image is already deleted")
        reason = _reason(reason)
        try:
            request = self.repository.get(request_id_for(image.id))
        except AggregateNotFoundError:
            request = DeletionRequest(image_id=image.id, clinic_id=image.clinic_id,
                                      patient_id=image.patient_id, actor=actor)
        if request.is_pending:
            raise Conflict("deletion_already_requested",
                           "a deletion request for this image is already pending")
        request.request(clinic_id=image.clinic_id, patient_id=image.patient_id, reason=reason,
                        actor=actor)
        return Written(request.id, self._save(request))

    def _decidable(self: Any, actor: Actor, image_id: UUID) -> tuple[DeletionRequest, Image]:
        require(actor, Permission.ADMIN)  # a clinic admin decides
        require(actor, Permission.DELETE)
        request = self.deletion_request(actor, image_id)
        if not request.is_pending:
            raise Conflict("deletion_request_not_pending",
                           f"the deletion request is {request.status}, not pending")
        if request.requested_by is not None and request.requested_by.user_id == actor.user_id:
            raise PermissionDenied("own_request",
                                   "a deletion request needs a second person's approval")
        return request, self.get_image(image_id, actor)

    @_retrying
    def approve_image_deletion(self: Any, actor: Actor, image_id: UUID) -> Any:
        """Approve and soft-delete in one transaction (the image keeps its recovery window)."""
        from domain.imaging import Written

        request, image = self._decidable(actor, image_id)
        if image.is_deleted:
            raise Conflict("image_deleted", "the image is already deleted; decline the request")
        request.approve(clinic_id=image.clinic_id, patient_id=image.patient_id, actor=actor)
        image.soft_delete(reason=request.reason, actor=actor)
        return Written(image.id, self._save(request, image))

    @_retrying
    def decline_image_deletion(self: Any, actor: Actor, image_id: UUID, note: str) -> Any:
        from domain.imaging import Written

        request, image = self._decidable(actor, image_id)
        request.decline(clinic_id=image.clinic_id, patient_id=image.patient_id,
                        note=" ".join(note.split())[:MAX_REASON], actor=actor)
        return Written(request.id, self._save(request))
