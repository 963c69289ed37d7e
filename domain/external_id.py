"""A clinic's external patient ids (the practice-management ids on worklists and DICOM) are
unique: one claim per (clinic, external id), held by one patient.

The claim's id is derived from the clinic and the external id, so two registrations racing
for the same external id both try to create the same aggregate at version 1 and the event
store lets exactly one of them commit, with no read model involved. A claim whose patient
was destroyed can be taken over (an appended event, again guarded by the stream version).

Claims hold only ids, so their events are stored in the clear and outlive a destroyed
patient. The external id is folded into the claim's id by an HMAC under a key the
application derives from its master key (``external_id_key``): with a public namespace,
anyone holding a dump of the event table could hash every likely chart number and read
which patient holds it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event

from domain.errors import Conflict, Gone
from domain.events import PhiFree
from domain.values import Actor

TAKEN = "external_id_taken"


def claim_id(key: bytes, clinic_id: str, external_id: str) -> UUID:
    """The claim's stream id: keyed, so it cannot be computed from a guessed external id."""
    digest = hmac.new(key, f"{clinic_id}\x1f{external_id.strip()}".encode(),
                      hashlib.sha256).digest()
    return UUID(bytes=digest[:16], version=5)


class ExternalIdClaim(Aggregate):
    class Claimed(PhiFree, Aggregate.Created):
        clinic_id: str
        patient_id: UUID
        actor: Actor

    @event(Claimed)
    def __init__(self, *, clinic_id: str, patient_id: UUID, actor: Actor) -> None:
        self.clinic_id = clinic_id
        self.patient_id = patient_id

    class TakenOver(PhiFree, Aggregate.Event):
        patient_id: UUID
        actor: Actor

    @event(TakenOver)
    def take_over(self, *, patient_id: UUID, actor: Actor) -> None:
        self.patient_id = patient_id


def taken(holder: object) -> Conflict:
    return Conflict(TAKEN, f"externalId is already used by patient {holder}")


class ExternalIdClaims:
    """Mixed into Imaging: claiming an external id together with the patient's registration."""

    if TYPE_CHECKING:  # Imaging provides them
        repository: Any
        external_id_key: bytes

    def _claim(self, clinic_id: str, external_id: str) -> ExternalIdClaim | None:
        try:
            claim = self.repository.get(claim_id(self.external_id_key, clinic_id, external_id))
        except AggregateNotFoundError:
            return None
        return claim if isinstance(claim, ExternalIdClaim) else None

    def _holds(self, claim: ExternalIdClaim) -> bool:
        """Whether the claim's patient still exists (a destroyed one frees its id)."""
        try:
            self.repository.get(claim.patient_id)
        except (AggregateNotFoundError, Gone):
            return False
        return True

    def claim_external_id(self, actor: Actor, external_id: str,
                          patient_id: UUID) -> ExternalIdClaim:
        """The claim to save with the patient's registration; Conflict if it is held.

        Saving it in the same transaction as the patient makes a lost race an
        IntegrityError, which ``claim_lost`` turns into the same Conflict.
        """
        claim = self._claim(actor.clinic_id, external_id)
        if claim is None:
            return ExternalIdClaim._create(  # the derived id, not a random one
                ExternalIdClaim.Claimed,
                id=claim_id(self.external_id_key, actor.clinic_id, external_id),
                clinic_id=actor.clinic_id, patient_id=patient_id, actor=actor)
        if self._holds(claim):
            raise taken(claim.patient_id)
        claim.take_over(patient_id=patient_id, actor=actor)
        return claim

    def claim_lost(self, actor: Actor, external_id: str) -> Conflict:
        claim = self._claim(actor.clinic_id, external_id)
        return taken(claim.patient_id if claim is not None else "registered meanwhile")

    def patient_by_external_id(self, actor: Actor, external_id: str) -> UUID | None:
        """The patient holding ``external_id`` in the actor's clinic, if any."""
        claim = self._claim(actor.clinic_id, external_id)
        if claim is None or not self._holds(claim):
            return None
        return claim.patient_id
