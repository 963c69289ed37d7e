"""Treatment phases: a patient's milestones, and which phase each image belongs to.

A milestone (initial records, progress N, debond, retention) starts a phase that lasts
until the next one. Milestones come from the treatment module over Kafka, or are recorded
by hand. An image belongs to a phase, in order of precedence:

1. a clinician's explicit link (``ImageLinked``);
2. its capture session: a session is opened for a milestone kind, so its images belong to
   the patient's milestone of that kind nearest to the session's date;
3. its capture date: the latest milestone on or before the day it was captured.

Images older than the first milestone have no phase. The plan is one aggregate per
patient (id derived from clinic and patient), sealed with the patient's key.
"""

from __future__ import annotations

import bisect
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.capture import Milestone
from domain.errors import InvalidInput, NotFound
from domain.values import Actor

PLAN_NAMESPACE = uuid.UUID("9c3f3f4e-2b7a-4c55-8a4e-0d6f7a1b2c3d")
MAX_MILESTONE_ID = 100
MAX_LABEL = 120


def plan_id(clinic_id: str, patient_id: UUID) -> UUID:
    return uuid.uuid5(PLAN_NAMESPACE, f"{clinic_id}\x1f{patient_id}")


def milestone_kind(kind: str) -> str:
    try:
        return Milestone(kind.strip().lower()).value
    except ValueError:
        allowed = ", ".join(m.value for m in Milestone)
        raise InvalidInput("invalid_milestone", f"milestone is one of {allowed}") from None


def milestone_ref(value: str) -> str:
    cleaned = value.strip()
    if not cleaned or len(cleaned) > MAX_MILESTONE_ID or not cleaned.isprintable():
        raise InvalidInput("invalid_milestone_id",
                           f"a milestone id is 1-{MAX_MILESTONE_ID} printable characters")
    return cleaned


@dataclass(frozen=True)
class MilestoneEntry:
    milestone_id: str
    kind: str
    label: str
    occurred_on: date
    source: str  # "manual" or "treatment"


class TreatmentPlan(Aggregate):
    @staticmethod
    def create_id(clinic_id: str, patient_id: UUID) -> UUID:
        return plan_id(clinic_id, patient_id)

    @event("Started")
    def __init__(self, *, clinic_id: str, patient_id: UUID, actor: Actor) -> None:
        self.clinic_id = clinic_id
        self.patient_id = patient_id
        self.milestones: dict[str, MilestoneEntry] = {}
        self.links: dict[UUID, str] = {}

    def record(self, *, milestone_id: str, kind: str, label: str, occurred_on: date,
               source: str, actor: Actor) -> bool:
        """Recording the same milestone again records nothing (redelivery is harmless);
        a changed date or label is recorded as a correction."""
        entry = MilestoneEntry(milestone_id, kind, label, occurred_on, source)
        if self.milestones.get(milestone_id) == entry:
            return False
        self._record(milestone_id=milestone_id, kind=kind, label=label,
                     occurred_on=occurred_on, source=source, patient_id=self.patient_id,
                     clinic_id=self.clinic_id, actor=actor)
        return True

    @event("MilestoneRecorded")
    def _record(self, *, milestone_id: str, kind: str, label: str, occurred_on: date,
                source: str, patient_id: UUID, clinic_id: str, actor: Actor) -> None:
        self.milestones[milestone_id] = MilestoneEntry(milestone_id, kind, label, occurred_on,
                                                       source)

    def link(self, *, image_id: UUID, milestone_id: str, actor: Actor) -> bool:
        if milestone_id not in self.milestones:
            raise NotFound("milestone_not_found", "no such milestone for this patient")
        if self.links.get(image_id) == milestone_id:
            return False
        self._link(image_id=image_id, milestone_id=milestone_id, patient_id=self.patient_id,
                   clinic_id=self.clinic_id, actor=actor)
        return True

    @event("ImageLinked")
    def _link(self, *, image_id: UUID, milestone_id: str, patient_id: UUID, clinic_id: str,
              actor: Actor) -> None:
        self.links[image_id] = milestone_id

    def unlink(self, *, image_id: UUID, actor: Actor) -> bool:
        if image_id not in self.links:
            return False
        self._unlink(image_id=image_id, patient_id=self.patient_id, clinic_id=self.clinic_id,
                     actor=actor)
        return True

    @event("ImageUnlinked")
    def _unlink(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
                actor: Actor) -> None:
        self.links.pop(image_id, None)


# ---- phase assignment (pure; the read model feeds it) -----------------------------------

@dataclass(frozen=True)
class PhaseMilestone:
    milestone_id: str
    kind: str
    occurred_on: date


@dataclass(frozen=True)
class PhaseImage:
    image_id: UUID
    captured_at: datetime
    session_kind: str | None = None  # the milestone kind of the capture session it filled
    session_on: date | None = None


def ordered(milestones: list[PhaseMilestone]) -> list[PhaseMilestone]:
    return sorted(milestones, key=lambda m: (m.occurred_on, m.milestone_id))


def assign_phases(milestones: list[PhaseMilestone], images: list[PhaseImage],
                  links: dict[UUID, str]) -> dict[UUID, tuple[str | None, str]]:
    """image id → (milestone id or None, how: "link" | "session" | "date" | "none")."""
    timeline = ordered(milestones)
    known = {m.milestone_id for m in timeline}
    days = [m.occurred_on for m in timeline]
    result: dict[UUID, tuple[str | None, str]] = {}
    for image in images:
        linked = links.get(image.image_id)
        if linked in known:
            result[image.image_id] = (linked, "link")
            continue
        if image.session_kind is not None:
            same_kind = [m for m in timeline if m.kind == image.session_kind]
            if same_kind:
                anchor = image.session_on or image.captured_at.date()
                nearest = min(same_kind, key=lambda m: abs((m.occurred_on - anchor).days))
                result[image.image_id] = (nearest.milestone_id, "session")
                continue
        index = bisect.bisect_right(days, image.captured_at.date()) - 1
        if index >= 0:
            result[image.image_id] = (timeline[index].milestone_id, "date")
        else:
            result[image.image_id] = (None, "none")
    return result


def labels(milestones: list[PhaseMilestone]) -> dict[str, str]:
    """Default labels: "Initial records", "Progress 1", "Progress 2", "Debond"…"""
    counter = 0
    names: dict[str, str] = {}
    for milestone in ordered(milestones):
        if milestone.kind == Milestone.PROGRESS.value:
            counter += 1
            names[milestone.milestone_id] = f"Progress {counter}"
        else:
            names[milestone.milestone_id] = milestone.kind.replace("_", " ").capitalize()
    return names
