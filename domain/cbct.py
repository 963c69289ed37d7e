"""CBCT volumes: one gallery item for a series of CT slices.

A classic CT series arrives as one DICOM object per slice, each filed as its own image (so
DICOMweb and DIMSE serve every instance as sent). Once the series is complete the assembly
worker records the volume as one more image, category ``scan``: its original is a manifest
naming the slices in order (with their SHA-256), its metadata (source ``volume``) the
dimensions, spacing and the slice image ids, its derivatives the multi-planar previews. The
gallery shows the volume and hides the slices it names.

A series that cannot be assembled (a missing slice, mixed geometry) still gets its volume
image, recorded with ``ProcessingFailed`` (stage ``cbct_assembly``) and the codec's code, so
the practice sees that the scan arrived broken instead of seeing nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.errors import InvalidInput
from domain.image import Image, ImageCategory
from domain.values import Actor, BlobRef

if TYPE_CHECKING:
    from eventsourcing.domain import Aggregate

    from domain.imaging import Written

VOLUME_SOURCE = "volume"
VOLUME_MEDIA_TYPE = "application/vnd.orthovault.volume+json"
ASSEMBLY_STAGE = "cbct_assembly"
VOLUME_NAMESPACE = uuid.UUID("5d0c7c44-6a0e-4f4b-9a55-3b8e2e1f0c77")
# Multi-planar previews a volume carries (besides "preview" and "thumbnail").
VOLUME_VIEWS = ("axial", "coronal", "sagittal", "mip_coronal", "mip_sagittal")


def volume_id_for(clinic_id: str, series_uid: str) -> UUID:
    """One volume per series and clinic: two workers racing record it once."""
    return uuid.uuid5(VOLUME_NAMESPACE, f"{clinic_id}\x1f{series_uid}")


@dataclass(frozen=True)
class NewVolume:
    volume_id: UUID
    patient_id: UUID
    manifest: BlobRef
    width: int
    height: int
    captured_at: datetime
    filename: str
    slice_ids: list[UUID]
    metadata: dict[str, Any]  # dimensions, spacing, UIDs: JSON-safe
    derivatives: dict[str, BlobRef] | None  # None when assembly failed
    failure: str | None = None


class CbctCommands:
    """Recording assembled volumes; mixed into ``Imaging``."""

    if TYPE_CHECKING:
        def _save(self, *aggregates: Aggregate) -> int: ...

    def record_cbct_volume(self, actor: Actor, new: NewVolume) -> Written:
        """The volume image, its metadata and its previews (or its failure) in one commit."""
        from domain.imaging import Written

        if (new.derivatives is None) == (new.failure is None):
            raise InvalidInput("cbct_volume_invalid", "a volume has previews or a failure")
        if not new.slice_ids:
            raise InvalidInput("cbct_volume_invalid", "a volume names its slices")
        image = Image(
            image_id=new.volume_id, clinic_id=actor.clinic_id, patient_id=new.patient_id,
            original=new.manifest, width=new.width, height=new.height,
            category=ImageCategory.SCAN.value, view=None, captured_at=new.captured_at,
            tags=[], filename=new.filename, actor=actor, category_source="dicom",
        )
        image.record_metadata(
            source=VOLUME_SOURCE,
            metadata={**new.metadata, "slice_image_ids": [str(i) for i in new.slice_ids]},
            actor=actor,
        )
        if new.derivatives is not None:
            image.record_derivatives(derivatives=new.derivatives, actor=actor)
        else:
            image.record_processing_failure(stage=ASSEMBLY_STAGE, code=str(new.failure),
                                            actor=actor)
        return Written(image.id, self._save(image))
