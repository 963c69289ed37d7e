"""The Image aggregate: one captured image, its derivatives, tags, and life cycle."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.events import PhiFree
from domain.values import Actor, BlobRef


class ImageCategory(StrEnum):
    PHOTO = "photo"
    EXTRAORAL = "extraoral"
    INTRAORAL = "intraoral"
    RADIOGRAPH = "radiograph"
    DOCUMENT = "document"
    SCAN = "scan"
    OTHER = "other"

    @property
    def is_photograph(self) -> bool:
        return self in (ImageCategory.PHOTO, ImageCategory.EXTRAORAL, ImageCategory.INTRAORAL)

    @property
    def hidden_from_thumbnail_grade(self) -> bool:
        """Front desk's view grade sees no X-ray: radiographs and scans alike (a CBCT
        volume is an X-ray; 3D models need ``imaging:3d_view``, which front desk lacks),
        on every path: REST, the gallery, albums, search and DICOMweb."""
        return self in (ImageCategory.RADIOGRAPH, ImageCategory.SCAN)


class ImageStatus(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"
    DESTROYED = "destroyed"


class Image(Aggregate):
    @staticmethod
    def create_id(image_id: UUID) -> UUID:
        # Chosen by the caller: a keyed upload derives it from its Idempotency-Key.
        return image_id

    @event("Captured")
    def __init__(
        self,
        *,
        image_id: UUID,
        clinic_id: str,
        patient_id: UUID,
        original: BlobRef,
        width: int,
        height: int,
        category: str,
        view: str | None,
        captured_at: datetime,
        tags: list[str],
        filename: str,
        actor: Actor,
        category_source: str,
    ) -> None:
        self.clinic_id = clinic_id
        self.patient_id = patient_id
        self.original = original
        self.width = width
        self.height = height
        self.category = category
        self.view = view
        self.captured_at = captured_at
        self.tags: list[str] = list(dict.fromkeys(tags))
        self.filename = filename
        self.status = ImageStatus.ACTIVE.value
        self.derivatives: dict[str, BlobRef] = {}
        self.processing_failure: str | None = None
        self.metadata: dict[str, dict[str, Any]] = {}
        # "user" when the uploader chose the category; "default" lets categorisation decide.
        self.category_source = category_source
        self.quality: dict[str, Any] | None = None
        self.tiles: dict[str, Any] | None = None
        self.tiling_failure: str | None = None
        self.notes: list[dict[str, Any]] = []

    def tag(self, *, tag: str, actor: Actor) -> None:
        """Adding a tag the image already has records nothing."""
        if tag not in self.tags:
            self._tag(tag=tag, actor=actor)

    @event("Tagged")
    def _tag(self, *, tag: str, actor: Actor) -> None:
        self.tags.append(tag)

    def untag(self, *, tag: str, actor: Actor) -> None:
        if tag in self.tags:
            self._untag(tag=tag, actor=actor)

    @event("Untagged")
    def _untag(self, *, tag: str, actor: Actor) -> None:
        self.tags.remove(tag)

    @event("NoteAdded")
    def add_note(self, *, note_id: UUID, text: str, actor: Actor) -> None:
        """A clinician's free-text note (PHI: sealed with the image like everything else)."""
        self.notes.append({"id": note_id, "text": text, "by": actor.user_id})

    @event("Categorised")
    def categorise(
        self, *, category: str, view: str | None, source: str, confidence: float | None,
        actor: Actor,
    ) -> None:
        """``source`` "user" is a human choice; "auto" a suggestion that never overrides one."""
        self.category = category
        self.view = view
        self.category_source = source

    @event("QualityAssessed")
    def record_quality(self, *, report: dict[str, Any], actor: Actor) -> None:
        self.quality = dict(report)

    @event("MetadataExtracted")
    def record_metadata(self, *, source: str, metadata: dict[str, Any], actor: Actor) -> None:
        """What was read out of the file (EXIF, DICOM attributes…), by source."""
        self.metadata[source] = dict(metadata)

    @event("TilesGenerated")
    def record_tiles(self, *, manifest: BlobRef, width: int, height: int, tile_count: int,
                     actor: Actor) -> None:
        """A DeepZoom pyramid; ``manifest`` locates every tile (see adapters/deepzoom.py)."""
        self.tiles = {"manifest": manifest, "width": width, "height": height,
                      "tile_count": tile_count}

    @event("TilingFailed")
    def record_tiling_failure(self, *, code: str, actor: Actor) -> None:
        """The pyramid could not be made; the image itself stays usable (preview, original)."""
        self.tiling_failure = code

    @event("DerivativesGenerated")
    def record_derivatives(self, *, derivatives: dict[str, BlobRef], actor: Actor) -> None:
        self.derivatives = dict(derivatives)

    @event("ProcessingFailed")
    def record_processing_failure(self, *, stage: str, code: str, actor: Actor) -> None:
        self.processing_failure = f"{stage}:{code}"

    @event("SoftDeleted")
    def soft_delete(self, *, reason: str, actor: Actor) -> None:
        self.status = ImageStatus.DELETED.value

    @event("Restored")
    def restore(self, *, actor: Actor) -> None:
        self.status = ImageStatus.ACTIVE.value

    class Destroyed(PhiFree, Aggregate.Event):
        """Tombstone: stored in the clear; says what was destroyed and why, nothing more."""

        clinic_id: str
        patient_id: UUID
        reason: str
        actor: Actor

    @event(Destroyed)
    def destroy(self, *, clinic_id: str, patient_id: UUID, reason: str, actor: Actor) -> None:
        self.status = ImageStatus.DESTROYED.value
        self.derivatives = {}

    @property
    def is_deleted(self) -> bool:
        return self.status != ImageStatus.ACTIVE.value
