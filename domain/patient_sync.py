"""Patients kept in step with the practice's CRM, which owns demographics (mixed into Imaging).

The suite shares patient ids: the CRM issues them and every module (booking, treatment,
imaging) uses the same UUID. So a CRM record is *upserted* by its id: unknown -> registered
with that id, known -> its demographics updated when they differ, identical -> nothing is
written. Redelivering an event therefore changes nothing, and an update that arrives for a
patient whose registration was missed registers it.

A CRM record never moves a patient to another clinic: a known id in another clinic is
NotFound, as for any other caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.errors import Conflict, InvalidInput, NotFound
from domain.patient import Patient, Sex
from domain.permissions import Grant, Permission, require
from domain.values import Actor, Guardian

MAX_FIELD = 200


@dataclass(frozen=True)
class Demographics:
    external_id: str
    given_name: str
    family_name: str
    birth_date: date
    sex: str
    guardian: Guardian | None

    @classmethod
    def checked(cls, *, external_id: str, given_name: str, family_name: str,
                birth_date: date, sex: str, guardian: Guardian | None) -> Demographics:
        """The same rules as registering through the API, with the values normalised."""
        for field, value in (("externalId", external_id), ("givenName", given_name),
                             ("familyName", family_name)):
            # Printable only, as in register_patient: a NUL would stall every read model.
            if not value.strip() or len(value) > MAX_FIELD or not value.strip().isprintable():
                raise InvalidInput("invalid_field",
                                   f"{field} must be 1-{MAX_FIELD} printable characters")
        if birth_date > datetime.now(UTC).date():
            raise InvalidInput("invalid_birth_date", "birthDate lies in the future")
        if guardian is not None and not guardian.name.strip():
            raise InvalidInput("invalid_guardian", "a guardian needs a name")
        try:
            normalised_sex = Sex(sex.lower()).value
        except ValueError:
            raise InvalidInput(
                "invalid_sex", "sex must be female, male, other or unknown") from None
        return cls(external_id.strip(), given_name.strip(), family_name.strip(), birth_date,
                   normalised_sex, guardian)

    def differs_from(self, patient: Patient) -> bool:
        return (self.external_id, self.given_name, self.family_name, self.birth_date,
                self.sex, self.guardian) != (
            patient.external_id, patient.given_name, patient.family_name,
            patient.birth_date, patient.sex, patient.guardian)


@dataclass(frozen=True)
class Upserted:
    patient_id: UUID
    position: int  # 0 when nothing had to be written
    created: bool


class PatientSyncCommands:
    if TYPE_CHECKING:  # Imaging provides these
        repository: Any

        def _save(self, *aggregates: Any) -> int: ...

        def claim_external_id(self, actor: Actor, external_id: str,
                              patient_id: UUID) -> Any: ...

    def upsert_patient(self, actor: Actor, patient_id: UUID,
                       demographics: Demographics) -> Upserted:
        require(actor, Permission.CAPTURE, Grant.DOCUMENTS)
        try:
            patient = self.repository.get(patient_id)
        except AggregateNotFoundError:
            patient = None
        if patient is None:
            created = Patient._create(  # the CRM's id, not a new one
                Patient.Registered, id=patient_id, clinic_id=actor.clinic_id,
                external_id=demographics.external_id, given_name=demographics.given_name,
                family_name=demographics.family_name, birth_date=demographics.birth_date,
                sex=demographics.sex, guardian=demographics.guardian, actor=actor,
            )
            try:
                claims = [self.claim_external_id(actor, demographics.external_id, patient_id)]
            except Conflict:
                claims = []  # the CRM owns its records: its duplicate is its to resolve
            return Upserted(patient_id, self._save(*claims, created), created=True)
        if not isinstance(patient, Patient) or patient.clinic_id != actor.clinic_id:
            raise NotFound("patient_not_found", "no such patient")
        if not demographics.differs_from(patient):
            return Upserted(patient_id, 0, created=False)
        patient.update_demographics(
            external_id=demographics.external_id, given_name=demographics.given_name,
            family_name=demographics.family_name, birth_date=demographics.birth_date,
            sex=demographics.sex, guardian=demographics.guardian, actor=actor,
        )
        return Upserted(patient_id, self._save(patient), created=False)
