"""Inbound ``crm.patients``: the CRM's patient registrations and demographic corrections.

Expected CloudEvents (binary mode, see adapters/cloudevents.py for the envelope), key = the
patient id so one patient's records stay in order:

* ``crm.patient.registered.v1`` and ``crm.patient.updated.v1``, data
  ``{"patient_id" (UUID, shared by the suite), "clinic_id", "external_id" (chart number),
  "given_name", "family_name", "birth_date" (ISO date), "sex" (female|male|other|unknown),
  "guardian"?: {"name", "relationship", "phone"?}}``. Both upsert (domain/patient_sync.py):
  the first registers the patient under the CRM's id, later ones update what changed, a
  repeat writes nothing. Other types are acknowledged and ignored.

Exactly-once effect: the idempotent consumer dedupes on ``ce_id``, and the upsert is itself
idempotent, so a redelivery after a crash between the write and the commit changes nothing.

A record that cannot be applied (bad data, another clinic's patient) is logged with its
error code and ``ce_id`` only, never its data (names and birth dates are PHI), and skipped: a
bad CRM record must not block every later one on its partition.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any
from uuid import UUID

import structlog

from adapters.cloudevents import CloudEvent
from domain.errors import OrthovaultError
from domain.imaging import Imaging
from domain.patient_sync import Demographics, Upserted
from domain.values import Actor, Guardian

log = structlog.get_logger("orthovault.crm")

TOPIC = "crm.patients"
NAME = "crm_patients_v1"
TYPES = frozenset({"crm.patient.registered.v1", "crm.patient.updated.v1"})
ACTOR_USER = "system:crm"


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise TypeError(name)
    return value


def _guardian(value: Any) -> Guardian | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError("guardian")
    return Guardian(name=_text(value, "name"), relationship=_text(value, "relationship"),
                    phone=str(value.get("phone") or ""))


def apply(app: Imaging, event: CloudEvent) -> Upserted | None:
    """Upserts the patient of one CRM event; None when ignored or skipped."""
    if event.type not in TYPES:
        return None
    data = event.data
    try:
        actor = Actor(ACTOR_USER, "clinical_staff", _text(data, "clinic_id"),
                      request_id=event.id)
        demographics = Demographics.checked(
            external_id=_text(data, "external_id"), given_name=_text(data, "given_name"),
            family_name=_text(data, "family_name"),
            birth_date=date.fromisoformat(_text(data, "birth_date")),
            sex=_text(data, "sex"), guardian=_guardian(data.get("guardian")),
        )
        result = app.upsert_patient(actor, UUID(_text(data, "patient_id")), demographics)
    except OrthovaultError as error:
        log.warning("crm_patient_skipped", code=error.code, ce_id=event.id, ce_type=event.type)
        return None
    except (KeyError, ValueError, TypeError) as error:
        log.warning("crm_patient_skipped", code="invalid_crm_event",
                    error=type(error).__name__, ce_id=event.id, ce_type=event.type)
        return None
    log.info("crm_patient_applied", ce_id=event.id, patient_id=str(result.patient_id),
             created=result.created, written=result.position > 0)
    return result


def handler(app: Imaging) -> Any:
    def handle(event: CloudEvent, _conn: Any) -> None:
        apply(app, event)

    return handle
