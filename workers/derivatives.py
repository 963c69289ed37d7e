"""Photo processing worker: one decode per captured raster image gives its preview and
thumbnail, its quality report and a category suggestion, recorded in one transaction.

Idempotent by construction: before working it checks the image's own state, and blob
names are fixed per image, so replaying an event after a crash redoes nothing that was
recorded and never records twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from adapters.blob_store import BlobCorrupted, EncryptedBlobStore
from adapters.deepzoom import make_pyramid, wants_tiles
from adapters.image_codec import (
    PREVIEW_PX,
    RASTER_TYPES,
    decode_at_least,
    derivatives_from,
    flip,
    working_pixels,
)
from domain.categorisation import Categorisation, Kind, PhotoClass, categorise
from domain.errors import Gone
from domain.image import Image, ImageCategory, ImageStatus
from domain.imaging import Imaging, PhotoProcessing
from domain.photo_quality import QualityReport, assess
from domain.values import Actor, BlobRef
from domain.views import mirror_axis

log = structlog.get_logger("orthovault.derivatives")

NAME = "derivatives_v1"
TOPICS = (get_topic(Image.Captured),)
WORKER_ACTOR = Actor(user_id="system:derivatives", role="system", clinic_id="*")
VIEW_CONFIDENCE = 0.5


def quality_payload(report: QualityReport) -> dict[str, Any]:
    return {
        "status": str(report.status),
        "hints": list(report.hints),
        "tilt_degrees": report.tilt_degrees,
        "checks": [
            {k: (str(v) if k == "status" else v) for k, v in asdict(check).items()}
            for check in report.checks
        ],
    }


def suggested_category(result: Categorisation) -> tuple[ImageCategory | None, str | None]:
    if result.kind is Kind.RADIOGRAPH:
        category = ImageCategory.RADIOGRAPH
    elif result.kind is Kind.DOCUMENT:
        category = ImageCategory.DOCUMENT
    elif result.kind is Kind.PHOTOGRAPH:
        category = {PhotoClass.EXTRAORAL: ImageCategory.EXTRAORAL,
                    PhotoClass.INTRAORAL: ImageCategory.INTRAORAL}.get(
            result.photo_class, ImageCategory.PHOTO)  # type: ignore[arg-type]
    else:
        return None, None
    view = result.view_code if result.view_code_confidence >= VIEW_CONFIDENCE else None
    return category, view


class DerivativesWorker:
    def __init__(self, app: Imaging, blobs: EncryptedBlobStore, tracking: TrackingRecorder):
        self.app = app
        self.blobs = blobs
        self.tracking = tracking

    def __call__(self, event: Any, tracking: Tracking) -> None:
        if isinstance(event, Image.Captured):
            self._process(event.originator_id)
        self.tracking.insert_tracking(tracking)

    def _process(self, image_id: Any) -> None:
        for _attempt in range(3):
            try:
                image: Image = self.app.repository.get(image_id)
            except Gone:
                return  # destroyed before we got to it
            if image.status == ImageStatus.DESTROYED.value or image.derivatives:
                return
            if image.processing_failure or image.original.media_type not in RASTER_TYPES:
                return
            actor = Actor(WORKER_ACTOR.user_id, WORKER_ACTOR.role, image.clinic_id)
            try:
                result = self._analyse(image)
            except Gone:
                return
            except (BlobCorrupted, OSError, ValueError, SyntaxError) as error:
                log.warning("derivatives_failed", image_id=str(image.id),
                            error=type(error).__name__)
                try:
                    self.app.record_processing_failure(
                        actor, image.id, "derivatives", type(error).__name__
                    )
                except IntegrityError:
                    continue
                return
            try:
                self.app.record_photo_processing(actor, image.id, result)
            except IntegrityError:
                continue  # the image changed meanwhile; look again
            return

    def _analyse(self, image: Image) -> PhotoProcessing:
        decoded = decode_at_least(self.blobs.read(image.id, image.original), PREVIEW_PX)
        decoded = flip(decoded, mirror_axis(image.view))
        outputs = derivatives_from(decoded)
        refs = {
            kind: self.blobs.put_bytes(
                image.id, f"{kind}.jpg", data, "image/jpeg", owner_id=image.patient_id
            )
            for kind, data in outputs.items()
        }
        pixels = working_pixels(decoded)
        report = assess(pixels, original_size=(image.width, image.height), view_code=image.view)
        found = categorise(pixels, width=image.width, height=image.height)
        category, view = suggested_category(found)
        tiles = self._tiles(image) if wants_tiles(image.width, image.height) else None
        return PhotoProcessing(derivatives=refs, quality=quality_payload(report),
                               category=category, view=view, confidence=found.confidence,
                               tiles=tiles)

    def _tiles(self, image: Image) -> tuple[BlobRef, int, int, int]:
        pyramid = make_pyramid(self.blobs.read(image.id, image.original),
                               mirror_axis(image.view))
        manifest: dict[str, dict[str, object]] = {}
        for name, data in pyramid.tiles:
            ref = self.blobs.put_bytes(image.id, f"tiles/{name}", data, "image/jpeg",
                                       owner_id=image.patient_id)
            manifest[name] = {"sha256": ref.sha256, "size": ref.size}
        manifest_ref = self.blobs.put_bytes(
            image.id, "tiles/manifest.json", json.dumps(manifest).encode(), "application/json",
            owner_id=image.patient_id)
        return manifest_ref, pyramid.width, pyramid.height, len(manifest)
