"""The Patient aggregate: registration, demographics and consents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from eventsourcing.domain import Aggregate, event

from domain.values import Actor, Guardian


class ConsentScope(StrEnum):
    CLINICAL_PHOTOGRAPHY = "clinical_photography"
    MARKETING = "marketing"
    EDUCATIONAL = "educational"


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Consent:
    scope: ConsentScope
    granted_at: datetime
    granted_by: str  # "patient" or "guardian"
    expires_at: datetime | None

    def active_at(self, moment: datetime) -> bool:
        return self.expires_at is None or moment < self.expires_at


class Patient(Aggregate):
    @event("Registered")
    def __init__(
        self,
        *,
        clinic_id: str,
        external_id: str,
        given_name: str,
        family_name: str,
        birth_date: date,
        sex: str,
        guardian: Guardian | None,
        actor: Actor,
    ) -> None:
        self.clinic_id = clinic_id
        self.external_id = external_id
        self.given_name = given_name
        self.family_name = family_name
        self.birth_date = birth_date
        self.sex = sex
        self.guardian = guardian
        self.consents: dict[str, Consent] = {}

    @event("ConsentGranted")
    def grant_consent(
        self, *, scope: str, granted_by: str, granted_at: datetime, expires_at: datetime | None,
        actor: Actor,
    ) -> None:
        self.consents[scope] = Consent(
            scope=ConsentScope(scope),
            granted_at=granted_at,
            granted_by=granted_by,
            expires_at=expires_at,
        )

    @event("ConsentRevoked")
    def revoke_consent(self, *, scope: str, actor: Actor) -> None:
        self.consents.pop(scope, None)

    @event("DemographicsUpdated")
    def update_demographics(
        self, *, external_id: str, given_name: str, family_name: str, birth_date: date,
        sex: str, guardian: Guardian | None, actor: Actor,
    ) -> None:
        """The practice's CRM corrected the patient's record (domain/patient_sync.py)."""
        self.external_id = external_id
        self.given_name = given_name
        self.family_name = family_name
        self.birth_date = birth_date
        self.sex = sex
        self.guardian = guardian

    def has_consent(self, scope: ConsentScope, moment: datetime) -> bool:
        consent = self.consents.get(scope.value)
        return consent is not None and consent.active_at(moment)

    def age_on(self, day: date) -> int:
        before_birthday = (day.month, day.day) < (self.birth_date.month, self.birth_date.day)
        return day.year - self.birth_date.year - int(before_birthday)
