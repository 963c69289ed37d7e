"""Inbound ``treatment.milestones``: the treatment module's milestones become phases.

Expected CloudEvent (binary mode, see adapters/cloudevents.py for the envelope):
type ``treatment.milestone.reached.v1``, data ``{"milestone_id", "clinic_id",
"patient_id", "kind" (initial_records | progress | debond | retention), "occurred_on"
(ISO date, or an ISO timestamp whose date is taken), "label"?}``. Other types are
acknowledged and ignored. The payload carries ids and a kind, no PHI.

Idempotent twice over: the IdempotentConsumer drops a redelivered ``ce_id``, and the
treatment plan records a milestone id only once (the same milestone with a new date is
recorded as a correction). A milestone that cannot be recorded (unknown patient, bad
data) is logged with its code and skipped: one bad event must not block the partition.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

import structlog

from adapters.cloudevents import CloudEvent
from domain.errors import OrthovaultError
from domain.imaging import Imaging
from domain.values import Actor

log = structlog.get_logger("orthovault.treatment")

TOPIC = "treatment.milestones"
NAME = "treatment_milestones_v1"
REACHED = "treatment.milestone.reached.v1"


def _day(value: Any) -> date:
    text = str(value)
    try:
        return date.fromisoformat(text)
    except ValueError:
        return datetime.fromisoformat(text).date()


def record_milestone_from(app: Imaging, event: CloudEvent) -> int:
    """Records the milestone; returns its log position (0 when nothing was recorded)."""
    if event.type != REACHED:
        return 0
    data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
    try:
        actor = Actor("system:treatment", "clinical_staff", str(data["clinic_id"]),
                      request_id=event.id)
        written = app.record_milestone(
            actor, UUID(str(data["patient_id"])), kind=str(data["kind"]),
            occurred_on=_day(data["occurred_on"]), milestone_id=str(data["milestone_id"]),
            label=str(data.get("label") or ""), source="treatment",
        )
    except OrthovaultError as error:
        log.warning("milestone_skipped", code=error.code, ce_id=event.id)
        return 0
    except (KeyError, ValueError, TypeError) as error:
        log.warning("milestone_skipped", code="invalid_milestone_event",
                    error=type(error).__name__, ce_id=event.id)
        return 0
    return written.position


def handler(app: Imaging) -> Any:
    def handle(event: CloudEvent, _conn: Any) -> None:
        record_milestone_from(app, event)

    return handle
