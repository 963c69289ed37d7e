"""Commands for photo protocols and capture sessions (mixed into the imaging service)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.capture import (
    STANDARD_PROTOCOL_ID,
    STANDARD_SERIES,
    CaptureSession,
    Milestone,
    PhotoProtocol,
    Slot,
    session_id_for,
    slots_payload,
    validate_slots,
)
from domain.errors import Conflict, InvalidInput, NotFound
from domain.permissions import Grant, Permission, require
from domain.values import Actor

MAX_NAME = 120


class ProtocolView:
    """A protocol as callers see it, built-in or the clinic's own."""

    def __init__(self, protocol_id: UUID, name: str, slots: list[Slot], builtin: bool,
                 retired: bool = False):
        self.id = protocol_id
        self.name = name
        self.slots = slots
        self.builtin = builtin
        self.retired = retired


STANDARD = ProtocolView(STANDARD_PROTOCOL_ID, "Standard orthodontic series (ABO/ADA-1100)",
                        list(STANDARD_SERIES), builtin=True)


class CaptureCommands:
    """Uses ``repository``, ``_save`` and ``get_patient`` of the application it is mixed into."""

    repository: Any
    _save: Any
    get_patient: Any
    exists: Any

    # ---- protocols -----------------------------------------------------------------------

    def define_protocol(self, actor: Actor, name: str, slots: list[Slot]) -> tuple[UUID, int]:
        require(actor, Permission.ADMIN)
        protocol = PhotoProtocol(clinic_id=actor.clinic_id, name=_name(name),
                                 slots=slots_payload(validate_slots(slots)), actor=actor)
        return protocol.id, self._save(protocol)

    def revise_protocol(self, actor: Actor, protocol_id: UUID, name: str,
                        slots: list[Slot]) -> tuple[UUID, int]:
        require(actor, Permission.ADMIN)
        protocol = self._own_protocol(actor, protocol_id)
        protocol.revise(name=_name(name), slots=slots_payload(validate_slots(slots)),
                        actor=actor)
        return protocol.id, self._save(protocol)

    def retire_protocol(self, actor: Actor, protocol_id: UUID) -> tuple[UUID, int]:
        require(actor, Permission.ADMIN)
        protocol = self._own_protocol(actor, protocol_id)
        if not protocol.retired:
            protocol.retire(actor=actor)
        return protocol.id, self._save(protocol)

    def protocol(self, actor: Actor, protocol_id: UUID) -> ProtocolView:
        if protocol_id == STANDARD_PROTOCOL_ID:
            return STANDARD
        protocol = self._own_protocol(actor, protocol_id)
        return ProtocolView(protocol.id, protocol.name, protocol.slots, builtin=False,
                            retired=protocol.retired)

    def _own_protocol(self, actor: Actor, protocol_id: UUID) -> PhotoProtocol:
        if protocol_id == STANDARD_PROTOCOL_ID:
            raise Conflict("protocol_builtin", "the standard series cannot be changed")
        try:
            protocol = self.repository.get(protocol_id)
        except AggregateNotFoundError:
            raise NotFound("protocol_not_found", "no such protocol") from None
        if not isinstance(protocol, PhotoProtocol) or protocol.clinic_id != actor.clinic_id:
            raise NotFound("protocol_not_found", "no such protocol")
        return protocol

    # ---- sessions ------------------------------------------------------------------------

    def open_capture_session(
        self, actor: Actor, patient_id: UUID, *, protocol_id: UUID = STANDARD_PROTOCOL_ID,
        milestone: str = Milestone.PROGRESS.value, appointment_id: str | None = None,
        chair: str | None = None, scheduled_at: datetime | None = None,
    ) -> tuple[UUID, int]:
        require(actor, Permission.CAPTURE, Grant.DOCUMENTS)
        self.get_patient(patient_id, actor)
        protocol = self.protocol(actor, protocol_id)
        if protocol.retired:
            raise Conflict("protocol_retired", "the protocol is retired")
        try:
            milestone = Milestone(milestone).value
        except ValueError:
            allowed = ", ".join(m.value for m in Milestone)
            raise InvalidInput("invalid_milestone", f"milestone is one of {allowed}") from None
        for label, value in (("appointmentId", appointment_id), ("chair", chair)):
            if value is not None and (not value.strip() or len(value) > 100):
                raise InvalidInput("invalid_field", f"{label} must be 1-100 characters")
        session_id = session_id_for(actor.clinic_id, appointment_id)
        if appointment_id is not None and self.exists(session_id):
            # One session per appointment: a repeated booking answers with the first one.
            return session_id, 0
        session = CaptureSession(
            session_id=session_id, clinic_id=actor.clinic_id, patient_id=patient_id,
            protocol_id=protocol.id,
            protocol_name=protocol.name, slots=slots_payload(protocol.slots),
            appointment_id=appointment_id, chair=chair, scheduled_at=scheduled_at,
            milestone=milestone, actor=actor,
        )
        return session.id, self._save(session)

    def capture_session(self, actor: Actor, session_id: UUID) -> CaptureSession:
        try:
            session = self.repository.get(session_id)
        except AggregateNotFoundError:
            raise NotFound("session_not_found", "no such capture session") from None
        if not isinstance(session, CaptureSession) or session.clinic_id != actor.clinic_id:
            raise NotFound("session_not_found", "no such capture session")
        return session

    def close_capture_session(self, actor: Actor, session_id: UUID) -> tuple[UUID, int]:
        require(actor, Permission.CAPTURE, Grant.DOCUMENTS)
        session = self.capture_session(actor, session_id)
        session.check_open()
        session.close(actor=actor)
        return session.id, self._save(session)


def _name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_NAME:
        raise InvalidInput("invalid_name", f"a name is 1-{MAX_NAME} characters")
    return cleaned
