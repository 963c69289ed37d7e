"""Retention: how long a clinic keeps images, the soft-delete recovery window, legal holds.

Policy as data (:class:`RetentionPolicy`), one per clinic (:class:`ClinicRetentionPolicy`,
defaults in :data:`DEFAULT_POLICY` until a clinic sets its own):

* An image is kept ``years_by_category[category]`` years after the patient's **last
  activity** (the latest capture of any of the patient's images: the last visit that
  produced a record).
* If the patient was a minor (under ``age_of_majority``) when the image was taken, it is
  also kept until ``years_after_majority`` years after the patient came of age, whichever
  is later.
* A soft-deleted image may be restored for ``recovery_days``; after that it is destroyed.

The defaults follow the UK Records Management Code of Practice for dental records
(adults: 11 years after the last treatment; children: until their 25th birthday, or 11
years, whichever is longer), documents 8 years. ``docs/compliance.md`` lists them.

A :class:`LegalHold` on a patient or an image blocks its destruction (by retention or by a
person) until it is released. All decisions are pure functions of the policy, dates and
holds (:func:`decide`); the retention job (``api/retention_job.py``) applies them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event

from domain.errors import Conflict, InvalidInput, NotFound
from domain.events import PhiFree
from domain.image import Image, ImageCategory
from domain.patient import Patient
from domain.permissions import Permission, require
from domain.values import Actor

_NAMESPACE = uuid5(NAMESPACE_URL, "https://orthovault/retention")
MAX_YEARS = 100
MAX_RECOVERY_DAYS = 3650
MAX_REASON = 500


def add_years(day: date, years: int) -> date:
    """Same month and day ``years`` later; 29 February becomes 28 February."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _default_years() -> dict[str, int]:
    return {c.value: (8 if c is ImageCategory.DOCUMENT else 11) for c in ImageCategory}


@dataclass(frozen=True)
class RetentionPolicy:
    years_by_category: dict[str, int] = field(default_factory=_default_years)
    age_of_majority: int = 18
    years_after_majority: int = 7
    recovery_days: int = 30

    def __post_init__(self) -> None:
        unknown = set(self.years_by_category) - {c.value for c in ImageCategory}
        if unknown:
            raise InvalidInput("invalid_policy", f"unknown image categories: {sorted(unknown)}")
        numbers = [*self.years_by_category.values(), self.years_after_majority]
        if any(not 0 <= n <= MAX_YEARS for n in numbers):
            raise InvalidInput("invalid_policy", f"years must lie between 0 and {MAX_YEARS}")
        if not 0 <= self.age_of_majority <= 30:
            raise InvalidInput("invalid_policy", "ageOfMajority must lie between 0 and 30")
        if not 0 <= self.recovery_days <= MAX_RECOVERY_DAYS:
            raise InvalidInput("invalid_policy",
                               f"recoveryDays must lie between 0 and {MAX_RECOVERY_DAYS}")

    def years_for(self, category: str) -> int:
        defaults = _default_years()
        return self.years_by_category.get(category, defaults.get(category, 11))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RetentionPolicy:
        years = {**_default_years(), **{str(k): int(v) for k, v in
                                        values.get("years_by_category", {}).items()}}
        return cls(years_by_category=years,
                   age_of_majority=int(values.get("age_of_majority", 18)),
                   years_after_majority=int(values.get("years_after_majority", 7)),
                   recovery_days=int(values.get("recovery_days", 30)))


DEFAULT_POLICY = RetentionPolicy()


def retain_until(policy: RetentionPolicy, *, category: str, captured_on: date,
                 last_activity: date, birth_date: date) -> date:
    """The first day on which the image may be destroyed."""
    until = add_years(max(captured_on, last_activity), policy.years_for(category))
    came_of_age = add_years(birth_date, policy.age_of_majority)
    if captured_on < came_of_age:
        until = max(until, add_years(came_of_age, policy.years_after_majority))
    return until


def recovery_ends(policy: RetentionPolicy, deleted_at: datetime) -> datetime:
    return deleted_at + timedelta(days=policy.recovery_days)


class Basis(StrEnum):
    """Why the retention job destroys an image (the destruction certificate's *why*)."""

    RETENTION_PERIOD_ENDED = "retention_period_ended"
    RECOVERY_WINDOW_ENDED = "recovery_window_ended"


@dataclass(frozen=True)
class ImageFacts:
    """What a retention decision needs to know about one image."""

    image_id: UUID
    clinic_id: str
    patient_id: UUID
    category: str
    captured_on: date
    last_activity: date
    birth_date: date
    deleted_at: datetime | None  # soft-deleted since
    on_hold: bool


@dataclass(frozen=True)
class Decision:
    destroy: bool
    basis: Basis | None
    due: datetime | date | None
    why: str  # human summary for --dry-run (ids and dates only)


def decide(policy: RetentionPolicy, facts: ImageFacts, now: datetime) -> Decision:
    if facts.deleted_at is not None:
        ends = recovery_ends(policy, facts.deleted_at)
        if now >= ends:
            return _held_or(facts, Decision(True, Basis.RECOVERY_WINDOW_ENDED, ends,
                                            f"soft-deleted, recovery window ended {ends:%Y-%m-%d}"))
    until = retain_until(policy, category=facts.category, captured_on=facts.captured_on,
                         last_activity=facts.last_activity, birth_date=facts.birth_date)
    if now.date() >= until:
        return _held_or(facts, Decision(True, Basis.RETENTION_PERIOD_ENDED, until,
                                        f"{facts.category} kept until {until:%Y-%m-%d}"))
    return Decision(False, None, until, f"kept until {until:%Y-%m-%d}")


def _held_or(facts: ImageFacts, decision: Decision) -> Decision:
    if facts.on_hold:
        return Decision(False, decision.basis, decision.due, decision.why + "; on legal hold")
    return decision


# ---- aggregates ------------------------------------------------------------------------


def policy_id_for(clinic_id: str) -> UUID:
    return uuid5(_NAMESPACE, f"policy:{clinic_id}")


def hold_id_for(subject_id: UUID) -> UUID:
    return uuid5(_NAMESPACE, f"hold:{subject_id}")


class ClinicRetentionPolicy(Aggregate):
    """A clinic's own retention policy (numbers only, so stored in the clear)."""

    @staticmethod
    def create_id(clinic_id: str) -> UUID:
        return policy_id_for(clinic_id)

    class Defined(PhiFree, Aggregate.Created):
        clinic_id: str
        policy: dict[str, Any]
        actor: Actor

    class Revised(PhiFree, Aggregate.Event):
        clinic_id: str
        policy: dict[str, Any]
        actor: Actor

    @event(Defined)
    def __init__(self, *, clinic_id: str, policy: dict[str, Any], actor: Actor) -> None:
        self.clinic_id = clinic_id
        self.policy = policy

    @event(Revised)
    def revise(self, *, clinic_id: str, policy: dict[str, Any], actor: Actor) -> None:
        self.policy = policy


class LegalHold(Aggregate):
    """The legal hold of one subject (a patient or an image), placed and released in turn."""

    @staticmethod
    def create_id(subject_id: UUID) -> UUID:
        return hold_id_for(subject_id)

    @event("Opened")
    def __init__(self, *, subject_id: UUID, subject_kind: str, clinic_id: str,
                 patient_id: UUID, actor: Actor) -> None:
        self.subject_id = subject_id
        self.subject_kind = subject_kind
        self.clinic_id = clinic_id
        self.patient_id = patient_id
        self.active = False
        self.reason = ""

    @event("Placed")
    def place(self, *, clinic_id: str, patient_id: UUID, reason: str, actor: Actor) -> None:
        self.active = True
        self.reason = reason

    @event("Released")
    def release(self, *, clinic_id: str, patient_id: UUID, note: str, actor: Actor) -> None:
        self.active = False


class RetentionCommands:
    """Mixed into ``Imaging``: policies, legal holds, and the checks destruction asks."""

    def retention_policy(self: Any, clinic_id: str) -> RetentionPolicy:
        try:
            stored = self.repository.get(policy_id_for(clinic_id))
        except AggregateNotFoundError:
            return DEFAULT_POLICY
        return RetentionPolicy.from_dict(stored.policy)

    def set_retention_policy(self: Any, actor: Actor, policy: RetentionPolicy) -> Any:
        from domain.imaging import Written

        require(actor, Permission.ADMIN)
        try:
            stored = self.repository.get(policy_id_for(actor.clinic_id))
            stored.revise(clinic_id=actor.clinic_id, policy=policy.as_dict(), actor=actor)
        except AggregateNotFoundError:
            stored = ClinicRetentionPolicy(clinic_id=actor.clinic_id, policy=policy.as_dict(),
                                           actor=actor)
        return Written(stored.id, self._save(stored))

    def _hold_subject(self: Any, actor: Actor, subject_id: UUID) -> tuple[str, UUID]:
        """(kind, patient id) of a patient or image of the actor's clinic."""
        try:
            image = self.get_image(subject_id, actor)
            return "image", image.patient_id
        except NotFound:
            pass
        try:
            patient = self._get(subject_id, Patient, actor)
        except NotFound:
            raise NotFound("subject_not_found", "no such patient or image") from None
        return "patient", patient.id

    def _hold(self: Any, subject_id: UUID) -> LegalHold | None:
        try:
            return self.repository.get(hold_id_for(subject_id))
        except AggregateNotFoundError:
            return None

    def place_legal_hold(self: Any, actor: Actor, subject_id: UUID, reason: str) -> Any:
        from domain.imaging import Written

        require(actor, Permission.ADMIN)
        kind, patient_id = self._hold_subject(actor, subject_id)
        reason = " ".join(reason.split())[:MAX_REASON]
        if not reason:
            raise InvalidInput("reason_required", "say why the hold is placed")
        hold = self._hold(subject_id) or LegalHold(
            subject_id=subject_id, subject_kind=kind, clinic_id=actor.clinic_id,
            patient_id=patient_id, actor=actor)
        if hold.active:
            raise Conflict("legal_hold_active", "a legal hold is already in place")
        hold.place(clinic_id=actor.clinic_id, patient_id=patient_id, reason=reason, actor=actor)
        return Written(hold.id, self._save(hold))

    def release_legal_hold(self: Any, actor: Actor, subject_id: UUID, note: str) -> Any:
        from domain.imaging import Written

        require(actor, Permission.ADMIN)
        _kind, patient_id = self._hold_subject(actor, subject_id)
        hold = self._hold(subject_id)
        if hold is None or not hold.active:
            raise Conflict("no_legal_hold", "no legal hold is in place")
        hold.release(clinic_id=actor.clinic_id, patient_id=patient_id,
                     note=" ".join(note.split())[:MAX_REASON], actor=actor)
        return Written(hold.id, self._save(hold))

    def legal_hold_active(self: Any, actor: Actor, subject_id: UUID) -> bool:
        """Whether a hold is placed on this patient or image (another clinic's: NotFound)."""
        require(actor, Permission.ADMIN)
        self._hold_subject(actor, subject_id)
        hold = self._hold(subject_id)
        return hold is not None and hold.active

    def on_legal_hold(self: Any, image_id: UUID, patient_id: UUID) -> bool:
        return any((hold := self._hold(s)) is not None and hold.active
                   for s in (image_id, patient_id))

    def check_not_on_hold(self: Any, image: Image) -> None:
        if self.on_legal_hold(image.id, image.patient_id):
            raise Conflict("legal_hold", "a legal hold blocks destroying this image")

    def soft_deleted_at(self: Any, image_id: UUID) -> datetime | None:
        """When the image's current soft delete happened (None if it is not deleted)."""
        deleted_at = None
        for stored in self.events.get(image_id):
            if isinstance(stored, Image.SoftDeleted):
                deleted_at = stored.timestamp
            elif isinstance(stored, Image.Restored):
                deleted_at = None
        return deleted_at

    def check_restore_window(self: Any, image: Image, now: datetime) -> None:
        deleted_at = self.soft_deleted_at(image.id)
        if deleted_at is None:
            return
        ends = recovery_ends(self.retention_policy(image.clinic_id), deleted_at)
        if now >= ends:
            raise Conflict("recovery_window_passed",
                           f"the recovery window ended {ends.isoformat()}; the image can no "
                           "longer be restored")
