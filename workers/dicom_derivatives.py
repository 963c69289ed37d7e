"""DICOM rendering worker: a preview and a thumbnail for every captured DICOM object.

Rendering follows the display pipeline in ``adapters/dicom_codec.render_dicom`` (modality
LUT, VOI LUT or window, MONOCHROME1 inverted). A multi-frame volume (CBCT) is shown by its
middle frame. Idempotent and failure-tolerant through ``workers/image_job.process_image``:
an object that cannot be rendered is recorded as ``ProcessingFailed`` with the codec's code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic
from PIL import Image as PILImage

from adapters.blob_store import BlobCorrupted, EncryptedBlobStore
from adapters.dicom_codec import read_dicom
from adapters.image_codec import derivatives_from
from adapters.isolated_decoding import render_dicom_isolated
from domain.errors import OrthovaultError
from domain.image import Image
from domain.imaging import Imaging
from domain.values import Actor, BlobRef
from workers.image_job import process_image

NAME = "dicom_derivatives_v1"
TOPICS = (get_topic(Image.Captured),)
STAGE = "dicom_render"
DICOM_MEDIA_TYPE = "application/dicom"
WORKER_ACTOR = Actor(user_id="system:dicom-derivatives", role="system", clinic_id="*")


def render_derivatives(data: bytes) -> dict[str, bytes]:
    """{"preview": JPEG ≤1600 px, "thumbnail": JPEG ≤256 px} of the representative frame."""
    frames = read_dicom(data).number_of_frames
    pixels = render_dicom_isolated(data, frames // 2 if frames > 1 else 0)
    return derivatives_from(PILImage.fromarray(np.ascontiguousarray(pixels)))


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
        process_image(
            self.app, image_id, worker=WORKER_ACTOR.user_id, stage=STAGE,
            wanted=lambda _image: True, compute=self._render,
            record=self.app.record_derivatives, failure_code=failure_code,
        )

    def _render(self, image: Image) -> dict[str, BlobRef]:
        outputs = render_derivatives(self.blobs.read(image.id, image.original))
        return {
            kind: self.blobs.put_bytes(image.id, f"{kind}.jpg", data, "image/jpeg",
                                       owner_id=image.patient_id)
            for kind, data in outputs.items()
        }


def failure_code(error: Exception) -> str:
    """Whatever one object does to the decoder is recorded with a code, never raised."""
    if isinstance(error, OrthovaultError):
        return error.code
    if isinstance(error, BlobCorrupted | OSError):
        return "blob_unreadable"
    return "dicom_render_error"
