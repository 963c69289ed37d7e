"""The imaging application service: every command the product accepts, as methods.

Commands check tenancy (another clinic's subject is NotFound), permissions (the table in
``domain.permissions``) and business rules (consent), then save events. Each returns the
log position of its write, so callers can wait for read models to catch up.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder

from domain.access import AccessKind, AccessRecord
from domain.annotation_commands import AnnotationCommands
from domain.capture import CaptureSession
from domain.capture_commands import CaptureCommands
from domain.cbct import CbctCommands
from domain.comparison import ComparisonCommands
from domain.consent_rules import ConsentCommands, grantor
from domain.deletion_requests import DeletionRequestCommands
from domain.destruction_certificate import certify
from domain.errors import Conflict, Gone, InvalidInput, NotFound, PermissionDenied
from domain.external_id import ExternalIdClaims
from domain.image import Image, ImageCategory, ImageStatus
from domain.image_edit_commands import ImageEditCommands
from domain.organisation_commands import OrganisationCommands
from domain.patient import ConsentScope, Patient, Sex
from domain.patient_sync import PatientSyncCommands
from domain.permissions import Grant, Permission, require
from domain.reconciliation import ReconciliationCommands
from domain.report_commands import ReportCommands
from domain.retention import RetentionCommands
from domain.simulation_commands import SimulationCommands
from domain.values import TRANSCODINGS, Actor, BlobRef, Guardian
from domain.view_state import ViewStateCommands

MAX_TAG_LENGTH = 64
CONFLICT_RETRIES = 8
Command = TypeVar("Command", bound=Callable[..., Any])


def retry_on_conflict(command: Command) -> Command:
    """Re-run a command whose save lost an optimistic-concurrency race.

    A worker recording derivatives and a clinician tagging the same image both append to
    the image's stream; the loser reloads and applies its change to the newer state.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(CONFLICT_RETRIES - 1):
            try:
                return command(*args, **kwargs)
            except IntegrityError:
                # Back off a random, growing while: retrying at once lets a busy writer win
                # every round (seen with two clinicians filling one album).
                time.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311 - jitter only
        try:
            return command(*args, **kwargs)
        except IntegrityError:
            raise Conflict("concurrent_update", "the subject changed meanwhile; retry") from None

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class Written:
    """The id a command touched and the notification-log position of its last event."""

    id: UUID
    position: int


@dataclass(frozen=True)
class NewImage:
    """What the upload path hands over once the original blob is safely stored."""

    image_id: UUID
    patient_id: UUID
    original: BlobRef
    width: int
    height: int
    category: ImageCategory
    view: str | None
    captured_at: datetime
    tags: list[str]
    filename: str
    category_source: str = "user"
    metadata: dict[str, dict[str, Any]] | None = None
    session_id: UUID | None = None


@dataclass(frozen=True)
class TilePyramid:
    """A stored DeepZoom pyramid: its manifest blob and the full-resolution size."""

    manifest: BlobRef
    width: int
    height: int
    tile_count: int


@dataclass(frozen=True)
class PhotoProcessing:
    """What the photo worker found: derivatives, quality, and a category suggestion."""

    derivatives: dict[str, BlobRef]
    quality: dict[str, Any] | None
    category: ImageCategory | None = None
    view: str | None = None
    confidence: float | None = None


def normalise_tag(tag: str) -> str:
    cleaned = " ".join(tag.split()).lower()
    if not cleaned:
        raise InvalidInput("invalid_tag", "a tag must not be empty")
    if len(cleaned) > MAX_TAG_LENGTH or any(not ch.isprintable() for ch in cleaned):
        raise InvalidInput(
            "invalid_tag", f"a tag is at most {MAX_TAG_LENGTH} printable characters"
        )
    return cleaned


class Imaging(AnnotationCommands, ImageEditCommands, ViewStateCommands, ComparisonCommands,
              OrganisationCommands, ReportCommands, ConsentCommands, DeletionRequestCommands,
              RetentionCommands, ReconciliationCommands, CaptureCommands,
              SimulationCommands, CbctCommands, PatientSyncCommands, ExternalIdClaims,
              Application[UUID]):
    name = "imaging"
    # Keys external-id claim ids (domain/external_id.py); PostgresImaging derives it from the
    # master key. This default serves in-memory applications (tests) only.
    external_id_key = b"orthovault in-memory external-id claims"

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        for transcoding in TRANSCODINGS:
            transcoder.register(transcoding)

    # ---- reading aggregates with tenancy -------------------------------------------------

    def _get(self, aggregate_id: UUID, kind: type[Aggregate], actor: Actor) -> Any:
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(
                f"{kind.__name__.lower()}_not_found", f"no such {kind.__name__.lower()}"
            ) from None
        except Gone:
            # Destroyed: only its own clinic may learn that (410); to others it never was.
            if self._clinic_of_shredded(aggregate_id) != actor.clinic_id:
                raise NotFound(f"{kind.__name__.lower()}_not_found",
                               f"no such {kind.__name__.lower()}") from None
            raise
        if not isinstance(aggregate, kind) or aggregate.clinic_id != actor.clinic_id:
            # Another clinic's subject is indistinguishable from one that does not exist.
            raise NotFound(f"{kind.__name__.lower()}_not_found", f"no such {kind.__name__.lower()}")
        return aggregate

    def _clinic_of_shredded(self, aggregate_id: UUID) -> str | None:
        """Whose a crypto-shredded subject was, from its first event's clear envelope."""
        for event in self.events.get(aggregate_id, limit=1):
            header = getattr(event, "header", None)
            if isinstance(header, dict):  # a ShreddedEvent: only the envelope is left
                return header.get("clinic_id") or header.get("actor", {}).get("clinic_id")
            return getattr(event, "clinic_id", None)
        return None

    def destroyed_among(self, subject_ids: list[UUID]) -> set[UUID]:
        """Subjects destroyed by any process; the store-bound application knows."""
        return set()

    def get_patient(self, patient_id: UUID, actor: Actor) -> Patient:
        return self._get(patient_id, Patient, actor)

    def get_image(self, image_id: UUID, actor: Actor, *, destroyed: bool = False) -> Image:
        """The image; a destroyed one is not found (its tombstone is read fresh from the
        store on every call, so a destruction committed by any process counts at once),
        unless ``destroyed`` asks for it (finishing a destruction)."""
        try:
            image: Image = self._get(image_id, Image, actor)
        except Gone:
            raise NotFound("image_not_found", "no such image") from None
        if image.status == ImageStatus.DESTROYED.value and not destroyed:
            raise NotFound("image_not_found", "no such image")
        return image

    def as_of(self, actor: Actor, aggregate_id: UUID, kind: type[Aggregate],
              moment: datetime) -> Any:
        """The aggregate as it stood at ``moment``, rebuilt from its events (time travel)."""
        current = self._get(aggregate_id, kind, actor)  # tenancy first
        versions = [e.originator_version for e in self.events.get(aggregate_id)
                    if e.timestamp is not None and e.timestamp <= moment]
        if not versions:
            raise NotFound(f"{kind.__name__.lower()}_not_found",
                           f"the {kind.__name__.lower()} did not exist yet at that moment")
        if max(versions) == current.version:
            return current
        return self.repository.get(aggregate_id, version=max(versions))

    def history(self, actor: Actor, aggregate_id: UUID, kind: type[Aggregate]) -> list[Any]:
        """Every event of one aggregate, oldest first (shredded ones as placeholders)."""
        self._get(aggregate_id, kind, actor)
        return list(self.events.get(aggregate_id))

    def _save(self, *aggregates: Aggregate) -> int:
        recordings = self.save(*aggregates)
        return recordings[-1].notification.id if recordings else 0

    # ---- patients ----------------------------------------------------------------------

    def register_patient(
        self,
        actor: Actor,
        *,
        external_id: str,
        given_name: str,
        family_name: str,
        birth_date: date,
        sex: str,
        guardian: Guardian | None = None,
    ) -> Written:
        # Front desk registers patients and collects consent forms: the limited grade will do.
        require(actor, Permission.CAPTURE, Grant.DOCUMENTS)
        for field, value in (("externalId", external_id), ("givenName", given_name),
                             ("familyName", family_name)):
            # Printable only: a NUL or a bidi override would poison every read model's row.
            if not value.strip() or len(value) > 200 or not value.strip().isprintable():
                raise InvalidInput("invalid_field",
                                   f"{field} must be 1-200 printable characters")
        if birth_date > datetime.now(UTC).date():
            raise InvalidInput("invalid_birth_date", "birthDate lies in the future")
        if guardian is not None and (not guardian.name.strip() or any(
                len(text) > 200 or not text.isprintable()
                for text in (guardian.name, guardian.relationship, guardian.phone))):
            raise InvalidInput("invalid_guardian",
                               "a guardian needs a name; fields are 1-200 printable characters")
        try:
            sex = Sex(sex.lower()).value
        except ValueError:
            raise InvalidInput(
                "invalid_sex", "sex must be female, male, other or unknown"
            ) from None
        patient = Patient(
            clinic_id=actor.clinic_id,
            external_id=external_id.strip(),
            given_name=given_name.strip(),
            family_name=family_name.strip(),
            birth_date=birth_date,
            sex=sex,
            guardian=guardian,
            actor=actor,
        )
        # One patient per external id and clinic, decided by the event store (race-safe).
        claim = self.claim_external_id(actor, patient.external_id, patient.id)
        try:
            recordings = self.save(patient, claim)  # one transaction
            # The patient's event is the position callers wait for (read models follow it).
            return Written(patient.id, recordings[0].notification.id)
        except IntegrityError:
            raise self.claim_lost(actor, patient.external_id) from None

    @retry_on_conflict
    def grant_consent(
        self,
        actor: Actor,
        patient_id: UUID,
        scope: ConsentScope,
        *,
        granted_by: str | None = None,
        expires_at: datetime | None = None,
    ) -> Written:
        require(actor, Permission.CAPTURE, Grant.DOCUMENTS)
        patient = self.get_patient(patient_id, actor)
        # None: the patient's own for an adult, the guardian's for a minor.
        granted_by = grantor(patient.birth_date, granted_by, datetime.now(UTC).date())
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise InvalidInput("consent_already_expired", "expiresAt lies in the past")
        patient.grant_consent(
            scope=scope.value, granted_by=granted_by, granted_at=datetime.now(UTC),
            expires_at=expires_at, actor=actor,
        )
        return Written(patient.id, self._save(patient))

    @retry_on_conflict
    def revoke_consent(self, actor: Actor, patient_id: UUID, scope: ConsentScope) -> Written:
        require(actor, Permission.CAPTURE, Grant.DOCUMENTS)
        patient = self.get_patient(patient_id, actor)
        patient.revoke_consent(scope=scope.value, actor=actor)
        return Written(patient.id, self._save(patient))

    # ---- images ------------------------------------------------------------------------

    def check_capture(
        self, actor: Actor, patient_id: UUID, category: ImageCategory,
        session_id: UUID | None = None, view: str | None = None,
    ) -> CaptureSession | None:
        """Everything that must hold before an upload's bytes are kept.

        Returns the capture session the upload fills, if it names one.
        """
        held = require(actor, Permission.CAPTURE, Grant.DOCUMENTS)
        session = self._session_for_upload(actor, patient_id, session_id, view)
        # Front desk: documents, or photos into an open session; never radiographs.
        limited_ok = category is ImageCategory.DOCUMENT or (
            session is not None and category.is_photograph)
        if held is Grant.DOCUMENTS and not limited_ok:
            raise_limited_capture()
        self.check_photograph_consent(actor, self.get_patient(patient_id, actor), category)
        return session

    def _session_for_upload(self, actor: Actor, patient_id: UUID, session_id: UUID | None,
                            view: str | None) -> CaptureSession | None:
        if session_id is None:
            return None
        session = self.capture_session(actor, session_id)
        session.check_open()
        if session.patient_id != patient_id:
            raise Conflict("session_patient_mismatch",
                           "the capture session belongs to another patient")
        if view is None:
            raise InvalidInput("slot_required", "name the slot (view) this upload fills")
        session.slot(view)
        return session

    def capture_image(self, actor: Actor, new: NewImage) -> Written:
        session = self.check_capture(actor, new.patient_id, new.category, new.session_id,
                                     new.view)
        image = Image(
            image_id=new.image_id,
            clinic_id=actor.clinic_id,
            patient_id=new.patient_id,
            original=new.original,
            width=new.width,
            height=new.height,
            category=new.category.value,
            view=new.view,
            captured_at=new.captured_at,
            tags=[normalise_tag(t) for t in new.tags],
            filename=new.filename,
            actor=actor,
            category_source=new.category_source,
        )
        for source, values in (new.metadata or {}).items():
            image.record_metadata(source=source, metadata=values, actor=actor)
        if session is not None and new.view is not None:
            # One transaction: the image and the slot it fills are recorded together.
            session.fill(code=new.view, image_id=image.id, actor=actor)
            return Written(image.id, self._save(image, session))
        return Written(image.id, self._save(image))

    def exists(self, aggregate_id: UUID) -> bool:
        """Whether anything was ever recorded under this id (a destroyed subject counts)."""
        try:
            self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return False
        except Gone:
            return True
        return True

    def _active_image(self, actor: Actor, image_id: UUID) -> Image:
        image = self.get_image(image_id, actor)
        if image.is_deleted:
            raise Conflict("image_deleted", "the image is deleted; restore it first")
        return image

    @retry_on_conflict
    def tag_image(self, actor: Actor, image_id: UUID, tag: str) -> Written:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        image = self._active_image(actor, image_id)
        image.tag(tag=self.canonical_tag(actor, normalise_tag(tag)), actor=actor)
        return Written(image.id, self._save(image))

    @retry_on_conflict
    def untag_image(self, actor: Actor, image_id: UUID, tag: str) -> Written:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        image = self._active_image(actor, image_id)
        image.untag(tag=normalise_tag(tag), actor=actor)
        return Written(image.id, self._save(image))

    @retry_on_conflict
    def delete_image(self, actor: Actor, image_id: UUID, reason: str = "") -> Written:
        image = self.get_image(image_id, actor)
        require(actor, Permission.DELETE)
        if image.is_deleted:
            raise Conflict("image_deleted", "the image is already deleted")
        image.soft_delete(reason=reason[:500], actor=actor)
        return Written(image.id, self._save(image))

    @retry_on_conflict
    def restore_image(self, actor: Actor, image_id: UUID) -> Written:
        image = self.get_image(image_id, actor)
        require(actor, Permission.DELETE)
        if not image.is_deleted:
            raise Conflict("image_not_deleted", "the image is not deleted")
        self.check_restore_window(image, datetime.now(UTC))
        image.restore(actor=actor)
        return Written(image.id, self._save(image))

    @retry_on_conflict
    def record_derivatives(
        self, actor: Actor, image_id: UUID, derivatives: dict[str, BlobRef]
    ) -> Written:
        image = self.repository.get(image_id)
        image.record_derivatives(derivatives=derivatives, actor=actor)
        return Written(image.id, self._save(image))

    @retry_on_conflict
    def record_photo_processing(
        self, actor: Actor, image_id: UUID, result: PhotoProcessing
    ) -> Written:
        """All of one processing pass in one transaction."""
        image = self.repository.get(image_id)
        if image.derivatives or image.processing_failure:
            # Recorded meanwhile: another runner of the pass during a lease hand-over (this
            # retry lost the race to it). Recording again would apply the pass twice.
            return Written(image.id, 0)
        if result.quality is not None:
            image.record_quality(report=result.quality, actor=actor)
        if result.category is not None and image.category_source != "user":
            image.categorise(category=result.category.value, view=result.view, source="auto",
                             actor=actor, confidence=result.confidence)
        image.record_derivatives(derivatives=result.derivatives, actor=actor)
        return Written(image.id, self._save(image))

    @retry_on_conflict
    def record_tiles(self, actor: Actor, image_id: UUID, tiles: TilePyramid) -> Written:
        image = self.repository.get(image_id)
        if image.tiles is not None or image.tiling_failure is not None:
            return Written(image.id, 0)  # recorded meanwhile (see record_photo_processing)
        image.record_tiles(manifest=tiles.manifest, width=tiles.width, height=tiles.height,
                           tile_count=tiles.tile_count, actor=actor)
        return Written(image.id, self._save(image))

    @retry_on_conflict
    def record_tiling_failure(self, actor: Actor, image_id: UUID, code: str) -> Written:
        image = self.repository.get(image_id)
        image.record_tiling_failure(code=code, actor=actor)
        return Written(image.id, self._save(image))

    @retry_on_conflict
    def categorise_image(
        self, actor: Actor, image_id: UUID, category: ImageCategory, view: str | None
    ) -> Written:
        """A clinician's choice of category and view; it always wins over the automatic one."""
        require(actor, Permission.ANNOTATE, Grant.OWN)
        image = self._active_image(actor, image_id)
        # A document (or radiograph…) turned into a photograph is a photograph captured now.
        self.check_photograph_consent(actor, self.get_patient(image.patient_id, actor),
                                      category)
        image.categorise(category=category.value, view=view, source="user", confidence=None,
                         actor=actor)
        return Written(image.id, self._save(image))

    @retry_on_conflict
    def record_metadata(
        self, actor: Actor, image_id: UUID, source: str, metadata: dict[str, Any]
    ) -> Written:
        image = self.repository.get(image_id)
        image.record_metadata(source=source, metadata=metadata, actor=actor)
        return Written(image.id, self._save(image))

    @retry_on_conflict
    def record_processing_failure(
        self, actor: Actor, image_id: UUID, stage: str, code: str
    ) -> Written:
        image = self.repository.get(image_id)
        image.record_processing_failure(stage=stage, code=code, actor=actor)
        return Written(image.id, self._save(image))

    @retry_on_conflict
    def destroy_image(self, actor: Actor, image_id: UUID, reason: str,
                      **certificate: Any) -> Written:
        """Append the tombstone and its destruction certificate (``certificate``: basis,
        policy, due; see ``domain.destruction_certificate.certify``). The caller shreds the
        key and blobs right after."""
        image = self.get_image(image_id, actor, destroyed=True)
        require(actor, Permission.DELETE)
        if image.status == ImageStatus.DESTROYED.value:
            return Written(image.id, 0)  # already tombstoned and certified: exactly once
        self.check_not_on_hold(image)
        issued = certify(image, actor, **certificate)
        image.destroy(
            clinic_id=image.clinic_id, patient_id=image.patient_id, reason=reason, actor=actor
        )
        return Written(image.id, self._save(image, issued))

    # ---- access records ----------------------------------------------------------------

    def record_access(
        self, actor: Actor, images: Sequence[tuple[UUID, UUID]], kind: AccessKind
    ) -> int:
        """One record per (image id, patient id), all in one transaction; none for an
        image destroyed meanwhile (a read model may still list it for a moment)."""
        destroyed = self.destroyed_among([image_id for image_id, _ in images])
        records = [
            AccessRecord(
                clinic_id=actor.clinic_id,
                image_id=image_id,
                patient_id=patient_id,
                kind=kind.value,
                actor=actor,
            )
            for image_id, patient_id in images if image_id not in destroyed
        ]
        return self._save(*records) if records else 0


def raise_limited_capture() -> None:
    raise PermissionDenied(
        "capture_limited",
        "this role may upload documents only (no photographs outside a session, no radiographs)",
    )
