"""3D scan worker: a shaded thumbnail and preview, and a binary glTF for browser viewers.

Rendering is headless (numpy rasteriser in ``adapters/mesh_codec``), so it runs wherever the
workers run. Idempotent and failure-tolerant through ``workers/image_job.process_image``: a
scan that cannot be rendered is recorded as ``ProcessingFailed`` with the codec's code.
"""

from __future__ import annotations

import io
from typing import Any

from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from adapters import mesh_codec
from adapters.blob_store import BlobCorrupted, EncryptedBlobStore
from adapters.mesh_codec import MESH_MEDIA_TYPES
from domain.errors import OrthovaultError
from domain.image import Image
from domain.imaging import Imaging
from domain.values import BlobRef
from workers.image_job import process_image

NAME = "mesh_derivatives_v1"
TOPICS = (get_topic(Image.Captured),)
STAGE = "mesh_render"
WORKER = "system:mesh-derivatives"
GLB_MEDIA_TYPE = "model/gltf-binary"
THUMBNAIL_PX = 256
PREVIEW_PX = 512  # the rasteriser costs per pixel: 1024 px took ~5 s a scan


def _png(image: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def render_derivatives(data: bytes, filename: str) -> dict[str, tuple[bytes, str]]:
    """{"thumbnail", "preview": PNG renders, "glb": binary glTF}, with media types."""
    mesh = mesh_codec.load_mesh(data, filename)
    return {
        "thumbnail": (_png(mesh_codec.render_thumbnail(mesh, THUMBNAIL_PX)), "image/png"),
        "preview": (_png(mesh_codec.render_thumbnail(mesh, PREVIEW_PX)), "image/png"),
        "glb": (mesh_codec.to_glb(mesh), GLB_MEDIA_TYPE),
    }


class MeshDerivativesWorker:
    def __init__(self, app: Imaging, blobs: EncryptedBlobStore, tracking: TrackingRecorder):
        self.app = app
        self.blobs = blobs
        self.tracking = tracking

    def __call__(self, event: Any, tracking: Tracking) -> None:
        if isinstance(event, Image.Captured) and event.original.media_type in MESH_MEDIA_TYPES:
            process_image(
                self.app, event.originator_id, worker=WORKER, stage=STAGE,
                wanted=lambda _image: True, compute=self._render,
                record=self.app.record_derivatives, failure_code=failure_code,
            )
        self.tracking.insert_tracking(tracking)

    def _render(self, image: Image) -> dict[str, BlobRef]:
        outputs = render_derivatives(self.blobs.read(image.id, image.original), image.filename)
        return {
            kind: self.blobs.put_bytes(image.id, f"{kind}.{'glb' if kind == 'glb' else 'png'}",
                                       data, media_type, owner_id=image.patient_id)
            for kind, (data, media_type) in outputs.items()
        }


def failure_code(error: Exception) -> str:
    if isinstance(error, OrthovaultError):
        return error.code
    if isinstance(error, BlobCorrupted | OSError):
        return "blob_unreadable"
    return "mesh_render_error"
