"""Tiles worker: a DeepZoom pyramid for every raster image over 4 megapixels.

It runs beside the photo worker rather than inside it: the pyramid needs a full-resolution
decode and ~500 tile encodes (about three times the cost of everything else a photo needs),
so previews, quality and categorisation reach the gallery first and the viewer's tiles
follow. The pyramid is stored as one packed blob plus a manifest (tile → offset, length),
recorded as ``Image.TilesGenerated``; a file libvips cannot tile is ``Image.TilingFailed``.
Idempotent like every per-image job: an image that has tiles (or a tiling failure) is
skipped on replay, and blob names are fixed per image, so a redone pass overwrites.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from typing import Any

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from adapters.blob_store import BlobCorrupted, EncryptedBlobStore
from adapters.deepzoom import PACK_FORMAT, make_pyramid, wants_tiles
from adapters.image_codec import RASTER_TYPES
from domain.image import Image
from domain.imaging import Imaging, TilePyramid
from domain.views import mirror_axis
from workers.image_job import process_image

NAME = "tiles_v1"
NICENESS = 10  # below uploads, previews and the API: tiles are wanted, just not first
TOPICS = (get_topic(Image.Captured),)
WORKER = "system:tiles"


def wants_pyramid(image: Image) -> bool:
    return image.original.media_type in RASTER_TYPES and wants_tiles(image.width, image.height)


def has_pyramid(image: Image) -> bool:
    return image.tiles is not None or image.tiling_failure is not None


class TilesWorker:
    def __init__(self, app: Imaging, blobs: EncryptedBlobStore, tracking: TrackingRecorder):
        self.app = app
        self.blobs = blobs
        self.tracking = tracking
        self._yielding: set[int] = set()

    def __call__(self, event: Any, tracking: Tracking) -> None:
        self._yield_cpu()
        if isinstance(event, Image.Captured):
            process_image(
                self.app, event.originator_id, worker=WORKER, stage="tiles",
                wanted=wants_pyramid, done=has_pyramid, compute=self._pyramid,
                record=self.app.record_tiles, record_failure=self.app.record_tiling_failure,
                failure_code=lambda error: type(error).__name__,
                failures=(BlobCorrupted, OSError, ValueError),
            )
        self.tracking.insert_tracking(tracking)

    def _yield_cpu(self) -> None:
        """Lower this thread's scheduling priority (Linux nices threads one by one); the
        libvips threads it starts inherit it."""
        thread = threading.get_native_id()
        if thread not in self._yielding:
            self._yielding.add(thread)
            # Not Linux, or not permitted: run at normal priority.
            with contextlib.suppress(AttributeError, OSError):
                os.setpriority(os.PRIO_PROCESS, thread, NICENESS)

    def _pyramid(self, image: Image) -> TilePyramid:
        pyramid = make_pyramid(self.blobs.read(image.id, image.original),
                               mirror_axis(image.view))
        pack = self.blobs.put_bytes(image.id, "tiles/pack", pyramid.pack,
                                    "application/octet-stream", owner_id=image.patient_id)
        manifest = {"format": PACK_FORMAT,
                    "pack": {"sha256": pack.sha256, "size": pack.size},
                    "tiles": pyramid.index}
        manifest_ref = self.blobs.put_bytes(
            image.id, "tiles/manifest.json", json.dumps(manifest).encode(), "application/json",
            owner_id=image.patient_id)
        return TilePyramid(manifest=manifest_ref, width=pyramid.width, height=pyramid.height,
                           tile_count=len(pyramid.index))

