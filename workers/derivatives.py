"""Photo processing worker: one decode per captured raster image gives its preview and
thumbnail, its quality report and a category suggestion, recorded in one transaction.
The tile pyramid of a large image is the tiles worker's job (``workers/tiles.py``), so a
photo shows in the gallery without waiting for its full-resolution decode.

Idempotent and failure-tolerant through ``workers/image_job.process_image``; blob names
are fixed per image, so a redone pass overwrites rather than adds.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from adapters.blob_store import BlobCorrupted, EncryptedBlobStore
from adapters.image_codec import (
    PREVIEW_PX,
    RASTER_TYPES,
    decode_at_least,
    derivatives_from,
    flip,
    working_pixels,
)
from domain.categorisation import Categorisation, Kind, PhotoClass, categorise
from domain.image import Image, ImageCategory
from domain.imaging import Imaging, PhotoProcessing
from domain.photo_quality import QualityReport, assess
from domain.values import Actor
from domain.views import mirror_axis
from workers.image_job import process_image

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
        process_image(
            self.app, image_id, worker=WORKER_ACTOR.user_id, stage="derivatives",
            wanted=lambda image: image.original.media_type in RASTER_TYPES,
            compute=self._analyse, record=self.app.record_photo_processing,
            failure_code=lambda error: type(error).__name__,
            failures=(BlobCorrupted, OSError, ValueError, SyntaxError),
        )

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
        return PhotoProcessing(derivatives=refs, quality=quality_payload(report),
                               category=category, view=view, confidence=found.confidence)
