"""Consent rules as data: which use of a patient's images needs which consent scope, who
may give it, and a record of every check that refuses.

* Clinical photography consent: :meth:`ConsentCommands.check_photograph_consent` is the one
  rule, called wherever an image becomes or is used as a clinical photograph: every capture
  path (``Imaging.check_capture``: upload, batch and zip import, the watch folder, DICOM
  photographs, capture sessions, reconciliation), ``categoriseImage`` into a photograph
  category, a report whose layout shows photographs and a simulation on a photograph.
* Marketing and educational use (collages, presentations, sharing outside the clinic) each
  need their own scope, checked by :meth:`ConsentCommands.check_use_consent` at export or
  sharing time.
* A minor's consent comes from a guardian: a grant for a patient under
  :data:`AGE_OF_MAJORITY` that says ``granted_by="patient"`` is refused; a grant that does
  not say who gave it is recorded as the guardian's for a minor and the patient's otherwise.
* Every refusal is an event (:class:`ConsentRefusal`), so the audit shows it. It holds ids,
  the scope and the purpose only (no PHI), and is stored in the clear so it outlives
  crypto-shredding like access records do.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import Conflict, InvalidInput
from domain.events import PhiFree
from domain.image import ImageCategory
from domain.patient import ConsentScope, Patient
from domain.permissions import Permission, require
from domain.values import Actor

AGE_OF_MAJORITY = 18
GRANTORS = ("patient", "guardian")


class Purpose(StrEnum):
    """What an image is used for; each maps to the consent scope it needs."""

    CAPTURE = "capture"
    MARKETING = "marketing"
    EDUCATIONAL = "educational"


SCOPE_FOR_PURPOSE: dict[Purpose, ConsentScope] = {
    Purpose.CAPTURE: ConsentScope.CLINICAL_PHOTOGRAPHY,
    Purpose.MARKETING: ConsentScope.MARKETING,
    Purpose.EDUCATIONAL: ConsentScope.EDUCATIONAL,
}


class ConsentStatus(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    MISSING = "missing"  # never granted, or revoked


def is_minor(birth_date: date, on: date) -> bool:
    before_birthday = (on.month, on.day) < (birth_date.month, birth_date.day)
    return on.year - birth_date.year - int(before_birthday) < AGE_OF_MAJORITY


def grantor(birth_date: date, granted_by: str | None, today: date) -> str:
    """Who gave the consent: validated, and a guardian for a minor."""
    minor = is_minor(birth_date, today)
    if granted_by is None:
        return "guardian" if minor else "patient"
    if granted_by not in GRANTORS:
        raise InvalidInput("invalid_granted_by", "grantedBy must be patient or guardian")
    if minor and granted_by != "guardian":
        raise Conflict("guardian_consent_required",
                       f"the patient is under {AGE_OF_MAJORITY}: consent must come from a "
                       "guardian")
    return granted_by


def consent_status(patient: Patient, scope: ConsentScope, moment: datetime) -> ConsentStatus:
    consent = patient.consents.get(scope.value)
    if consent is None:
        return ConsentStatus.MISSING
    return ConsentStatus.ACTIVE if consent.active_at(moment) else ConsentStatus.EXPIRED


class ConsentRefusal(Aggregate):
    """One refused consent check, one aggregate (like an access record)."""

    class Recorded(PhiFree, Aggregate.Created):
        clinic_id: str
        patient_id: UUID
        scope: str
        purpose: str
        status: str
        actor: Actor

    @event(Recorded)
    def __init__(self, *, clinic_id: str, patient_id: UUID, scope: str, purpose: str,
                 status: str, actor: Actor) -> None:
        self.clinic_id = clinic_id
        self.patient_id = patient_id
        self.scope = scope
        self.purpose = purpose
        self.status = status


class ConsentCommands:
    """Mixed into ``Imaging``: consent checks for every use of a patient's images."""

    def refuse_consent(self: Any, actor: Actor, patient: Patient, purpose: Purpose,
                       status: ConsentStatus) -> None:
        """Record the refusal, then raise 409 ``consent_required``."""
        scope = SCOPE_FOR_PURPOSE[purpose]
        self._save(ConsentRefusal(clinic_id=patient.clinic_id, patient_id=patient.id,
                                  scope=scope.value, purpose=purpose.value,
                                  status=status.value, actor=actor))
        raise Conflict("consent_required",
                       f"the patient has no active consent for {scope.value.replace('_', ' ')}"
                       f" ({status.value})")

    def check_consent(self: Any, actor: Actor, patient: Patient, purpose: Purpose,
                      moment: datetime) -> None:
        status = consent_status(patient, SCOPE_FOR_PURPOSE[purpose], moment)
        if status is not ConsentStatus.ACTIVE:
            self.refuse_consent(actor, patient, purpose, status)

    def check_photograph_consent(self: Any, actor: Actor, patient: Patient,
                                 category: ImageCategory = ImageCategory.PHOTO) -> None:
        """THE clinical-photography rule: an image that becomes (or is used as) a clinical
        photograph needs the patient's active clinical photography consent now. Other
        categories (radiographs, documents, scans) need none."""
        if category.is_photograph:
            self.check_consent(actor, patient, Purpose.CAPTURE, datetime.now(UTC))

    def check_use_consent(self: Any, actor: Actor, patient_id: UUID, purpose: Purpose,
                          moment: datetime) -> Patient:
        """For export and sharing: the patient's consent for ``purpose`` must be active.

        Tenancy first (another clinic's patient is NotFound); exporting needs
        ``imaging:export``.
        """
        require(actor, Permission.EXPORT)
        patient = self.get_patient(patient_id, actor)
        self.check_consent(actor, patient, purpose, moment)
        return patient
