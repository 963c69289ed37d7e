"""REST for 3D: scan uploads in; glTF models and CBCT planes out (``imaging:3d_view``).

Thumbnails and previews of scans and volumes are served by the ordinary image routes
(``/images/{id}/thumbnail`` and ``/preview``), so the gallery shows them like any image.
Opening the 3D data itself — the glTF model of a scan, a plane of a CBCT volume — needs the
3D viewing permission and is recorded as a preview access.
"""

from __future__ import annotations

import io
import json
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from PIL import Image as PILImage

from adapters import cbct_volume
from adapters.cbct_volume import Plane
from api.mesh_upload import store_mesh_upload
from api.multipart_stream import receive_form
from api.rest_images import ActorDep, services_of
from api.services import Services
from domain.access import AccessKind
from domain.cbct import VOLUME_MEDIA_TYPE, VOLUME_VIEWS
from domain.errors import Conflict, NotFound
from domain.image import Image
from domain.permissions import Grant, Permission, grant, require
from domain.values import Actor, BlobRef

router = APIRouter(prefix="/api/v1", tags=["3d"])


@router.post("/patients/{patient_id}/scans", status_code=201)
async def upload_scan(
    patient_id: UUID, request: Request, actor: ActorDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """One STL, PLY or OBJ scan (multipart field ``file``; optional ``arch`` = upper|lower,
    ``captured_at``, ``tags``). Answers 201 with its statistics once it is committed."""
    services = services_of(request)
    # The front desk's limited grade gets the precise refusal from check_capture.
    require(actor, Permission.CAPTURE, Grant.DOCUMENTS)
    await run_in_threadpool(services.app.get_patient, patient_id, actor)
    form = await receive_form(
        request.headers.get("content-type", ""), request.stream(),
        max_bytes=services.settings.max_upload_bytes, spool_dir=None,
    )
    try:
        result = await run_in_threadpool(store_mesh_upload, services, actor, patient_id, form,
                                         idempotency_key)
    finally:
        form.close()
    headers = {"Location": f"/api/v1/images/{result.image_id}"}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(
        {"id": str(result.image_id), "patientId": str(patient_id), "replayed": result.replayed,
         "duplicate": result.duplicate_of is not None, "arch": result.arch,
         "pairedWith": str(result.paired_with) if result.paired_with else None,
         "stats": result.stats},
        status_code=200 if result.duplicate_of or result.replayed else 201, headers=headers,
    )


def _image_3d(services: Services, actor: Actor, image_id: UUID) -> Image:
    """Tenancy first (another clinic's id is 404), then the 3D viewing permission."""
    image = services.app.get_image(image_id, actor)
    if image.is_deleted and grant(actor.role, Permission.DELETE) is not Grant.FULL:
        raise NotFound("image_not_found", "no such image")
    require(actor, Permission.VIEW)
    require(actor, Permission.VIEW_3D)
    return image


def _bytes(services: Services, actor: Actor, image: Image, ref: BlobRef) -> bytes:
    services.app.record_access(actor, [(image.id, image.patient_id)], AccessKind.PREVIEW)
    return services.blobs.read(image.id, ref)


def _private(sha256: str) -> dict[str, str]:
    return {"ETag": f'"{sha256}"', "Cache-Control": "private, max-age=3600, no-transform",
            "X-Content-Type-Options": "nosniff"}


@router.get("/images/{image_id}/model.glb")
def get_model(image_id: UUID, request: Request, actor: ActorDep) -> Response:
    """The scan as binary glTF (metres, as glTF wants), for browser viewers."""
    services = services_of(request)
    image = _image_3d(services, actor, image_id)
    ref = image.derivatives.get("glb")
    if ref is None:
        if image.processing_failure:
            raise NotFound("no_model", f"no model could be made ({image.processing_failure})")
        raise Conflict("derivative_not_ready", "the model is still being generated")
    return Response(_bytes(services, actor, image, ref), media_type=ref.media_type,
                    headers=_private(ref.sha256))


def _volume(services: Services, actor: Actor, image_id: UUID) -> Image:
    image = _image_3d(services, actor, image_id)
    if image.original.media_type != VOLUME_MEDIA_TYPE:
        raise NotFound("not_a_volume", "this image is not a CBCT volume")
    if not image.derivatives:
        if image.processing_failure:
            raise NotFound("no_volume", f"the volume could not be built "
                                        f"({image.processing_failure})")
        raise Conflict("derivative_not_ready", "the volume is still being built")
    return image


def _plane_png(services: Services, image: Image, plane: Plane, index: int) -> bytes:
    """A plane at any index, re-assembled from the slices' sealed originals."""
    manifest = json.loads(services.blobs.read(image.id, image.original))
    slices = []
    for entry in manifest["slices"]:
        slice_image = services.app.repository.get(UUID(entry["image_id"]))
        slices.append(services.blobs.read(slice_image.id, slice_image.original))
    volume = cbct_volume.assemble_volume(slices)
    out = io.BytesIO()
    PILImage.fromarray(cbct_volume.slice_image(volume, plane, index)).save(out, "PNG")
    return out.getvalue()


@router.get("/images/{image_id}/volume/{view}")
def get_volume_view(
    image_id: UUID, view: str, request: Request, actor: ActorDep,
    index: Annotated[int | None, Query(ge=0, le=100_000)] = None,
) -> Response:
    """A CBCT plane: ``axial``, ``coronal``, ``sagittal`` (the middle slice, or ``index``),
    ``mip_coronal`` or ``mip_sagittal`` (maximum-intensity projections), as PNG."""
    services = services_of(request)
    if view not in VOLUME_VIEWS:
        raise NotFound("unknown_view", f"views are {', '.join(VOLUME_VIEWS)}")
    image = _volume(services, actor, image_id)
    if index is None or view.startswith("mip_"):
        ref = image.derivatives[view]
        return Response(_bytes(services, actor, image, ref), media_type=ref.media_type,
                        headers=_private(ref.sha256))
    services.app.record_access(actor, [(image.id, image.patient_id)], AccessKind.PREVIEW)
    data = _plane_png(services, image, Plane(view), index)
    return Response(data, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=3600, no-transform"})
