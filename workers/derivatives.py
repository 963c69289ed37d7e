"""Derivatives worker: a preview and a thumbnail for every captured raster image.

Idempotent by construction: before working it checks the image's own state, and blob
names are fixed per image, so replaying an event after a crash redoes nothing that was
recorded and never records twice.
"""

from __future__ import annotations

from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from adapters.blob_store import BlobCorrupted, EncryptedBlobStore
from adapters.image_codec import RASTER_TYPES, make_derivatives
from domain.errors import Gone
from domain.image import Image, ImageStatus
from domain.imaging import Imaging
from domain.values import Actor

log = structlog.get_logger("orthovault.derivatives")

NAME = "derivatives_v1"
TOPICS = (get_topic(Image.Captured),)
WORKER_ACTOR = Actor(user_id="system:derivatives", role="system", clinic_id="*")


class DerivativesWorker:
    def __init__(self, app: Imaging, blobs: EncryptedBlobStore, tracking: TrackingRecorder):
        self.app = app
        self.blobs = blobs
        self.tracking = tracking

    def __call__(self, event: Any, tracking: Tracking) -> None:
        if isinstance(event, Image.Captured):
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
            if image.processing_failure or image.original.media_type not in RASTER_TYPES:
                return
            actor = Actor(WORKER_ACTOR.user_id, WORKER_ACTOR.role, image.clinic_id)
            try:
                outputs = make_derivatives(self.blobs.read(image.id, image.original))
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
