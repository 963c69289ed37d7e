"""Inbound ``booking.appointments``: an imaging appointment opens its capture session.

Expected CloudEvent (binary mode, see adapters/cloudevents.py for the envelope):
type ``booking.appointment.scheduled.v1``, data ``{"appointment_id", "clinic_id",
"patient_id", "scheduled_at" (ISO 8601), "chair"?, "imaging": true, "milestone"?,
"protocol_id"?}``. Other types and non-imaging appointments are acknowledged and ignored.

Exactly one session per appointment: the session id derives from (clinic, appointment id),
so a redelivered or replayed event finds the session it opened before. An appointment that
cannot open a session (unknown patient, bad data) is logged with its code and skipped: a
booking error must not block every later appointment on the partition.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import structlog

from adapters.cloudevents import CloudEvent
from domain.capture import STANDARD_PROTOCOL_ID
from domain.errors import OrthovaultError
from domain.imaging import Imaging
from domain.values import Actor

log = structlog.get_logger("orthovault.booking")

TOPIC = "booking.appointments"
NAME = "booking_appointments_v1"
SCHEDULED = "booking.appointment.scheduled.v1"


def open_session_for(app: Imaging, event: CloudEvent) -> UUID | None:
    if event.type != SCHEDULED or not event.data.get("imaging"):
        return None
    data: dict[str, Any] = event.data
    try:
        actor = Actor("system:booking", "clinical_staff", str(data["clinic_id"]),
                      request_id=event.id)
        session_id, _position = app.open_capture_session(
            actor, UUID(str(data["patient_id"])),
            protocol_id=UUID(str(data["protocol_id"])) if data.get("protocol_id")
            else STANDARD_PROTOCOL_ID,
            milestone=str(data.get("milestone") or "progress"),
            appointment_id=str(data["appointment_id"]),
            chair=str(data["chair"]) if data.get("chair") else None,
            scheduled_at=datetime.fromisoformat(str(data["scheduled_at"])),
        )
    except OrthovaultError as error:
        log.warning("booking_skipped", code=error.code, ce_id=event.id)
        return None
    except (KeyError, ValueError, TypeError) as error:
        log.warning("booking_skipped", code="invalid_booking_event",
                    error=type(error).__name__, ce_id=event.id)
        return None
    return session_id


def handler(app: Imaging) -> Any:
    """The IdempotentConsumer handler (the effect is an event-store write, idempotent by
    the appointment-derived session id)."""

    def handle(event: CloudEvent, _conn: Any) -> None:
        open_session_for(app, event)

    return handle
