"""DICOM rendering worker: a preview and a thumbnail for every captured DICOM object.

Rendering follows the display pipeline in ``adapters/dicom_codec.render_dicom`` (modality
LUT, VOI LUT or window, MONOCHROME1 inverted). A multi-frame volume (CBCT) is shown by its
middle frame. Idempotent like ``workers/derivatives.py``: the image's own state says whether
there is anything left to do, so a replayed event records nothing twice. An object that
cannot be rendered is recorded as ``ProcessingFailed`` with the codec's error code; the
runner never stops on one bad file.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import structlog
from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.utils import get_topic
from PIL import Image as PILImage

from adapters.blob_store import BlobCorrupted, EncryptedBlobStore
from adapters.dicom_codec import read_dicom, render_dicom
from adapters.image_codec import JPEG_QUALITY, PREVIEW_PX, THUMBNAIL_PX
from domain.errors import Gone, OrthovaultError
from domain.image import Image, ImageStatus
from domain.imaging import Imaging
from domain.values import Actor

log = structlog.get_logger("orthovault.dicom_derivatives")

NAME = "dicom_derivatives_v1"
TOPICS = (get_topic(Image.Captured),)
STAGE = "dicom_render"
DICOM_MEDIA_TYPE = "application/dicom"
WORKER_ACTOR = Actor(user_id="system:dicom-derivatives", role="system", clinic_id="*")


def _jpeg(image: PILImage.Image, longest: int) -> bytes:
    if max(image.size) > longest:
        image = image.copy()
        image.thumbnail((longest, longest), PILImage.Resampling.LANCZOS, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return out.getvalue()


def render_derivatives(data: bytes) -> dict[str, bytes]:
    """{"preview": JPEG ≤1600 px, "thumbnail": JPEG ≤256 px} of the representative frame."""
    frames = read_dicom(data).number_of_frames
    pixels = render_dicom(data, frames // 2 if frames > 1 else 0)
    image = PILImage.fromarray(np.ascontiguousarray(pixels))
    return {"preview": _jpeg(image, PREVIEW_PX), "thumbnail": _jpeg(image, THUMBNAIL_PX)}


class DicomDerivativesWorker:
    def __init__(self, app: Imaging, blobs: EncryptedBlobStore, tracking: TrackingRecorder):
        self.app = app
        self.blobs = blobs
        self.tracking = tracking

    def __call__(self, event: Any, tracking: Tracking) -> None:
        if isinstance(event, Image.Captured) and event.original.media_type == DICOM_MEDIA_TYPE:
            self._derive(event.originator_id)
        self.tracking.insert_tracking(tracking)

    def _derive(self, image_id: Any) -> None:
        for _attempt in range(3):
            try:
                image: Image = self.app.repository.get(image_id)
            except Gone:
                return  # destroyed before we got to it
            if image.status == ImageStatus.DESTROYED.value or image.derivatives:
                return
            if image.processing_failure:
                return
            actor = Actor(WORKER_ACTOR.user_id, WORKER_ACTOR.role, image.clinic_id)
            try:
                outputs = render_derivatives(self.blobs.read(image.id, image.original))
            except Gone:
                return
            except Exception as error:
                # Whatever one object does to the decoder, the worker records it and moves on.
                if not self._record_failure(actor, image, error):
                    continue
                return
            refs = {
                kind: self.blobs.put_bytes(
                    image.id, f"{kind}.jpg", data, "image/jpeg", owner_id=image.patient_id
                )
                for kind, data in outputs.items()
            }
            try:
                self.app.record_derivatives(actor, image.id, refs)
            except IntegrityError:
                continue  # the image changed meanwhile; look again
            return

    def _record_failure(self, actor: Actor, image: Image, error: Exception) -> bool:
        if isinstance(error, OrthovaultError):
            code = error.code
        elif isinstance(error, BlobCorrupted | OSError):
            code = "blob_unreadable"
        else:
            code = "dicom_render_error"
        log.warning("dicom_render_failed", image_id=str(image.id), code=code,
                    error=type(error).__name__)
        try:
            self.app.record_processing_failure(actor, image.id, STAGE, code)
        except IntegrityError:
            return False
        return True
