"""The destruction certificate: what was destroyed, why, when, and by which policy or person.

Issued in the same transaction as the image's tombstone, so there is never one without the
other. It is stored in the clear (no PHI: ids, the image category, a reason category, the
policy's numbers) and so outlives the subject's key; the audit read model keeps an entry for
it like for every event (``destruction_certificate.issued``). Its id is derived from the
subject's, so a subject is certified at most once.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.events import PhiFree
from domain.image import Image
from domain.values import Actor

_NAMESPACE = uuid5(NAMESPACE_URL, "https://orthovault/destruction-certificate")

BY_PERSON = "person"  # a person destroyed it (the actor says who); else a retention basis


def shredded_with(image_id: UUID) -> list[UUID]:
    """The image and the subjects whose ids follow from it and exist only for it (its
    deletion request, legal hold, calibration and edit list): they may hold PHI (free-text
    reasons, measurements), so their keys go with the image's. Annotations and tracings have
    ids of their own; ``api/destruction.py`` adds them from the annotations read model."""
    from domain.deletion_requests import request_id_for
    from domain.image_calibration import calibration_id
    from domain.image_edits import edits_id
    from domain.retention import hold_id_for

    return [image_id, request_id_for(image_id), hold_id_for(image_id),
            calibration_id(image_id), edits_id(image_id)]


def certificate_id_for(subject_id: UUID) -> UUID:
    return uuid5(_NAMESPACE, str(subject_id))


class DestructionCertificate(Aggregate):
    @staticmethod
    def create_id(subject_id: UUID) -> UUID:
        return certificate_id_for(subject_id)

    class Issued(PhiFree, Aggregate.Created):
        subject_id: UUID
        subject_kind: str  # "image"
        clinic_id: str
        patient_id: UUID
        category: str
        basis: str  # BY_PERSON, or a domain.retention.Basis value
        policy: dict[str, Any] | None  # the clinic policy applied (retention only)
        due: str | None  # ISO date/time the retention or recovery period ended
        blob_count: int  # original + derivatives deleted with the key
        actor: Actor

    @event(Issued)
    def __init__(self, *, subject_id: UUID, subject_kind: str, clinic_id: str,
                 patient_id: UUID, category: str, basis: str,
                 policy: dict[str, Any] | None, due: str | None, blob_count: int,
                 actor: Actor) -> None:
        self.subject_id = subject_id
        self.subject_kind = subject_kind
        self.clinic_id = clinic_id
        self.patient_id = patient_id
        self.category = category
        self.basis = basis
        self.policy = policy
        self.due = due
        self.blob_count = blob_count


def certify(image: Image, actor: Actor, *, basis: str = BY_PERSON,
            policy: dict[str, Any] | None = None, due: str | None = None
            ) -> DestructionCertificate:
    """The certificate for destroying ``image`` (call before its tombstone is applied)."""
    # The original, each derivative, and a tile pyramid's pack and manifest.
    blob_count = 1 + len(image.derivatives) + (2 if image.tiles else 0)
    return DestructionCertificate(
        subject_id=image.id, subject_kind="image", clinic_id=image.clinic_id,
        patient_id=image.patient_id, category=image.category, basis=basis, policy=policy,
        due=due, blob_count=blob_count, actor=actor)
