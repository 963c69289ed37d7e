"""Photo protocols and capture sessions: the standard series, filled slot by slot.

A protocol is the list of views a milestone needs (the built-in ABO/ADA-1100 standard
series, or a clinic's own). A capture session ties one protocol to one patient, an
appointment, a chair and a treatment milestone; each upload fills a slot; the session
knows what is still missing.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import Conflict, InvalidInput
from domain.values import Actor
from domain.views import VIEWS

MAX_SLOTS = 24


class Milestone(StrEnum):
    INITIAL_RECORDS = "initial_records"
    PROGRESS = "progress"
    DEBOND = "debond"
    RETENTION = "retention"


@dataclass(frozen=True)
class Slot:
    code: str  # ADA-1100 view code
    label: str
    required: bool = True
    min_short_side: int = 0  # pixels; 0 = no minimum beyond the quality defaults


def slot_from_dict(values: dict[str, Any]) -> Slot:
    return Slot(code=str(values["code"]), label=str(values["label"]),
                required=bool(values.get("required", True)),
                min_short_side=int(values.get("min_short_side", 0)))


def validate_slots(slots: list[Slot]) -> list[Slot]:
    if not slots:
        raise InvalidInput("empty_protocol", "a protocol needs at least one slot")
    if len(slots) > MAX_SLOTS:
        raise InvalidInput("too_many_slots", f"a protocol has at most {MAX_SLOTS} slots")
    codes = [s.code for s in slots]
    unknown = sorted({c for c in codes if c not in VIEWS})
    if unknown:
        raise InvalidInput("unknown_view", f"unknown view codes: {', '.join(unknown)}")
    if len(set(codes)) != len(codes):
        raise InvalidInput("duplicate_slot", "each view appears once in a protocol")
    if any(s.min_short_side < 0 or not s.label.strip() for s in slots):
        raise InvalidInput("invalid_slot", "slots need a label and a non-negative minimum")
    return slots


STANDARD_PROTOCOL_ID = uuid.UUID("00000000-0000-4000-8000-00000000ab01")
STANDARD_SERIES: tuple[Slot, ...] = (
    Slot("EV15", "Frontal at rest", min_short_side=1200),
    Slot("EV19", "Frontal smile", min_short_side=1200),
    Slot("EV01", "Right profile", min_short_side=1200),
    Slot("EV08", "Three-quarter smile", required=False, min_short_side=1200),
    Slot("EV38", "Close-up smile", required=False, min_short_side=1200),
    Slot("IV07", "Frontal in occlusion", min_short_side=1200),
    Slot("IV01", "Right buccal", min_short_side=1200),
    Slot("IV18", "Left buccal", min_short_side=1200),
    Slot("IV24", "Upper occlusal (mirror)", min_short_side=1200),
    Slot("IV26", "Lower occlusal (mirror)", min_short_side=1200),
    Slot("IV11", "Overjet", required=False, min_short_side=1200),
)


class PhotoProtocol(Aggregate):
    """A clinic's own protocol; the standard series is built in and needs no events."""

    @event("Defined")
    def __init__(self, *, clinic_id: str, name: str, slots: list[dict[str, Any]],
                 actor: Actor) -> None:
        self.clinic_id = clinic_id
        self.name = name
        self.slots = [slot_from_dict(s) for s in slots]
        self.retired = False

    @event("Revised")
    def revise(self, *, name: str, slots: list[dict[str, Any]], actor: Actor) -> None:
        self.name = name
        self.slots = [slot_from_dict(s) for s in slots]

    @event("Retired")
    def retire(self, *, actor: Actor) -> None:
        self.retired = True


class SessionStatus(StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    COMPLETE = "complete"
    CLOSED = "closed"


@dataclass(frozen=True)
class Completeness:
    filled: int
    required: int
    missing_required: list[str]
    missing_optional: list[str]

    @property
    def complete(self) -> bool:
        return not self.missing_required


class CaptureSession(Aggregate):
    @staticmethod
    def create_id(session_id: UUID) -> UUID:
        # Chosen by the caller: a booked appointment derives it from the appointment id,
        # so a redelivered booking event cannot open a second session.
        return session_id

    @event("Opened")
    def __init__(
        self, *, session_id: UUID, clinic_id: str, patient_id: UUID, protocol_id: UUID,
        protocol_name: str,
        slots: list[dict[str, Any]], appointment_id: str | None, chair: str | None,
        scheduled_at: datetime | None, milestone: str, actor: Actor,
    ) -> None:
        self.clinic_id = clinic_id
        self.patient_id = patient_id
        self.protocol_id = protocol_id
        self.protocol_name = protocol_name
        self.slots = [slot_from_dict(s) for s in slots]
        self.appointment_id = appointment_id
        self.chair = chair
        self.scheduled_at = scheduled_at
        self.milestone = milestone
        self.filled: dict[str, UUID] = {}
        self.closed = False

    def slot(self, code: str) -> Slot:
        for slot in self.slots:
            if slot.code == code:
                return slot
        raise InvalidInput("unknown_slot", f"{code[:16]!r} is not a slot of this session")

    def check_open(self) -> None:
        if self.closed:
            raise Conflict("session_closed", "the capture session is closed")

    @event("SlotFilled")
    def fill(self, *, code: str, image_id: UUID, actor: Actor) -> None:
        """A retake replaces the slot's image; the earlier one stays in the gallery."""
        self.filled[code] = image_id

    @event("Closed")
    def close(self, *, actor: Actor) -> None:
        self.closed = True

    def completeness(self) -> Completeness:
        return completeness(self.slots, set(self.filled))

    @property
    def status(self) -> SessionStatus:
        if self.closed:
            return SessionStatus.CLOSED
        if self.completeness().complete:
            return SessionStatus.COMPLETE
        return SessionStatus.OPEN if self.filled else SessionStatus.SCHEDULED


def session_id_for(clinic_id: str, appointment_id: str | None) -> UUID:
    if appointment_id is None:
        return uuid.uuid4()
    return uuid.uuid5(SESSION_NAMESPACE, f"{clinic_id}\x1f{appointment_id}")


SESSION_NAMESPACE = uuid.UUID("0b5e4f0a-8c6a-4d4f-9d51-6f1f2a3c7e11")


def completeness(slots: list[Slot], filled: set[str]) -> Completeness:
    required = [s.code for s in slots if s.required]
    return Completeness(
        filled=len(filled & {s.code for s in slots}),
        required=len(required),
        missing_required=[c for c in required if c not in filled],
        missing_optional=[s.code for s in slots if not s.required and s.code not in filled],
    )


def slots_payload(slots: list[Slot] | tuple[Slot, ...]) -> list[dict[str, Any]]:
    return [asdict(s) for s in slots]
