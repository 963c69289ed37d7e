"""REST for bytes: uploads in, originals/previews/thumbnails out."""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from adapters.deepzoom import MIN_PIXELS, dzi_xml
from api.auth import bearer_token, verify_token
from api.batch_upload import store_batch
from api.capture_guidance import MAX_FRAME_BYTES, guide
from api.image_upload import store_upload
from api.multipart_stream import receive_form
from api.services import Services
from domain.access import AccessKind
from domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from domain.image import Image, ImageCategory
from domain.permissions import Grant, Permission, grant, require
from domain.values import Actor

router = APIRouter(prefix="/api/v1", tags=["images"])


def services_of(request: Request) -> Services:
    return request.app.state.services


def current_actor(request: Request) -> Actor:
    services = services_of(request)
    token = bearer_token(request.headers.get("authorization"))
    return verify_token(services.tokens, token, getattr(request.state, "request_id", ""))


ActorDep = Annotated[Actor, Depends(current_actor)]


@router.post("/patients/{patient_id}/images", status_code=201)
async def upload_image(
    patient_id: UUID,
    request: Request,
    actor: ActorDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Upload one image (multipart field ``file``; optional ``view``, ``category``,
    ``captured_at``, ``tags``). Answers 201 once the ImageCaptured event is committed."""
    services = services_of(request)
    require(actor, Permission.CAPTURE, Grant.DOCUMENTS)
    # Fail fast on an unknown or foreign patient before reading the body.
    await run_in_threadpool(services.app.get_patient, patient_id, actor)
    form = await receive_form(
        request.headers.get("content-type", ""), request.stream(),
        max_bytes=services.settings.max_upload_bytes, spool_dir=None,
    )
    metrics = request.app.state.metrics
    try:
        result = await run_in_threadpool(
            store_upload, services, actor, patient_id, form, idempotency_key
        )
    except Exception:
        metrics.uploads.labels("refused").inc()
        raise
    finally:
        form.close()
    if result.reconciliation_id is not None:
        metrics.uploads.labels("held").inc()
        return JSONResponse({"reconciliationId": str(result.reconciliation_id),
                             "reasons": list(result.reasons)}, status_code=202)
    outcome = "duplicate" if result.duplicate_of else (
        "replayed" if result.replayed else "stored")
    metrics.uploads.labels(outcome).inc()
    headers = {"Location": f"/api/v1/images/{result.image_id}"}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(
        {"id": str(result.image_id), "patientId": str(patient_id), "replayed": result.replayed,
         "duplicate": result.duplicate_of is not None,
         "nearDuplicates": [str(i) for i in result.near_duplicates]},
        status_code=200 if result.duplicate_of else 201, headers=headers,
    )


@router.post("/patients/{patient_id}/image-batches")
async def upload_batch(patient_id: UUID, request: Request, actor: ActorDep) -> JSONResponse:
    """Several images (multipart field ``files``, repeated) or zip archives in one request.

    Answers 200 with one result per file: ``accepted``, ``duplicate`` (exactly these bytes
    are already the patient's) or ``rejected`` with a code; a rejected file never stops
    the others. Optional fields as for one upload; a view code in a file name
    (``IV07_front.jpg``) names that file's view.
    """
    services = services_of(request)
    require(actor, Permission.CAPTURE, Grant.DOCUMENTS)
    await run_in_threadpool(services.app.get_patient, patient_id, actor)
    form = await receive_form(
        request.headers.get("content-type", ""), request.stream(),
        max_bytes=services.settings.max_upload_bytes, spool_dir=None,
    )
    try:
        results = await run_in_threadpool(store_batch, services, actor, patient_id, form)
    finally:
        form.close()
    for result in results:
        request.app.state.metrics.uploads.labels(result.status).inc()
    return JSONResponse({
        "results": [r.as_json() for r in results],
        "accepted": sum(r.status == "accepted" for r in results),
        "duplicates": sum(r.status == "duplicate" for r in results),
        "rejected": sum(r.status == "rejected" for r in results),
    })


@router.post("/capture-sessions/{session_id}/guidance")
async def capture_guidance(session_id: UUID, request: Request, actor: ActorDep) -> JSONResponse:
    """Check a live preview frame (multipart ``frame``, ≤640 px) for the ``slot`` being
    shot; answers hints such as "too dark", "blurred" or "tilted 4° clockwise"."""
    services = services_of(request)
    require(actor, Permission.CAPTURE, Grant.DOCUMENTS)
    session = await run_in_threadpool(services.app.capture_session, actor, session_id)
    session.check_open()
    form = await receive_form(request.headers.get("content-type", ""), request.stream(),
                              max_bytes=MAX_FRAME_BYTES + 64 * 1024, spool_dir=None)
    try:
        frames = [f for f in form.files if f.field_name == "frame"]
        if len(frames) != 1:
            raise InvalidInput("file_required", "send the frame in the multipart field 'frame'")
        slot = (form.fields.get("slot") or "").strip().upper()
        session.slot(slot)
        data = frames[0].handle.read()
    finally:
        form.close()
    result = await run_in_threadpool(guide, data, slot)
    return JSONResponse({
        "slot": result.slot, "status": result.status, "hints": result.hints,
        "checks": result.checks, "looksLike": result.looks_like,
        "looksLikeConfidence": round(result.looks_like_confidence, 3),
    })


def _viewable_image(services: Services, actor: Actor, image_id: UUID, kind: AccessKind) -> Image:
    image = services.app.get_image(image_id, actor)
    held = grant(actor.role, Permission.VIEW)
    if image.is_deleted and grant(actor.role, Permission.DELETE) is not Grant.FULL:
        raise NotFound("image_not_found", "no such image")
    if kind is AccessKind.THUMBNAIL:
        if (held is Grant.THUMBNAILS
                and ImageCategory(image.category).hidden_from_thumbnail_grade):
            raise PermissionDenied("radiographs_restricted", "this role may not view radiographs")
        require(actor, Permission.VIEW, Grant.THUMBNAILS)
    else:
        require(actor, Permission.VIEW)
    return image


def _serve(request: Request, actor: Actor, image_id: UUID, kind: AccessKind) -> Response:
    services = services_of(request)
    image = _viewable_image(services, actor, image_id, kind)
    if kind is AccessKind.ORIGINAL:
        ref = image.original
    else:
        ref = image.derivatives.get(kind.value)
        if ref is None:
            raise Conflict("derivative_not_ready",
                           f"the {kind.value} is still being generated; retry shortly")
    services.app.record_access(actor, [(image.id, image.patient_id)], kind)
    etag = f'"{ref.sha256}"'
    headers = {
        "ETag": etag,
        # PHI: never in shared caches; the bytes behind one URL only change with a new
        # image version, which changes the ETag.
        "Cache-Control": "private, max-age=3600, no-transform",
        "X-Content-Type-Options": "nosniff",
    }
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(ref.size)
    if kind is AccessKind.ORIGINAL:
        headers["Content-Disposition"] = f'attachment; filename="{image.id}"'
    return StreamingResponse(services.blobs.open(image.id, ref), media_type=ref.media_type,
                             headers=headers)


_TILE_NAME = re.compile(r"^\d{1,2}/\d{1,5}_\d{1,5}\.jpg$")


def _tiled_image(services: Services, actor: Actor, image_id: UUID) -> Image:
    image = _viewable_image(services, actor, image_id, AccessKind.TILES)
    if image.tiles is None:
        if image.width * image.height <= MIN_PIXELS:
            raise NotFound("no_tiles", "small images have no tile pyramid; use /preview")
        if image.tiling_failure is not None:
            raise NotFound("no_tiles", "no tile pyramid could be made; use /preview")
        raise Conflict("derivative_not_ready", "the tiles are still being generated")
    return image


@router.get("/images/{image_id}/tiles/image.dzi")
def get_dzi(image_id: UUID, request: Request, actor: ActorDep) -> Response:
    """The DeepZoom descriptor of an image over 4 megapixels (opening it is one access)."""
    services = services_of(request)
    image = _tiled_image(services, actor, image_id)
    services.app.record_access(actor, [(image.id, image.patient_id)], AccessKind.TILES)
    return Response(dzi_xml(image.tiles["width"], image.tiles["height"]),
                    media_type="application/xml",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.get("/images/{image_id}/tiles/image_files/{level}/{tile}")
def get_tile(image_id: UUID, level: int, tile: str, request: Request,
             actor: ActorDep) -> Response:
    """One tile; tiles are not access-logged one by one (the .dzi request is)."""
    services = services_of(request)
    name = f"{level}/{tile}"
    if not _TILE_NAME.match(name):
        raise NotFound("tile_not_found", "no such tile")
    image = _tiled_image(services, actor, image_id)
    found = services.tile_reader.tile(image.id, image.tiles["manifest"], name)
    if found is None:
        raise NotFound("tile_not_found", "no such tile")
    data, etag = found
    return Response(data, media_type="image/jpeg",
                    headers={"ETag": f'"{etag}"',
                             "Cache-Control": "private, max-age=86400, immutable"})


@router.get("/images/{image_id}/thumbnail")
def get_thumbnail(image_id: UUID, request: Request, actor: ActorDep) -> Response:
    return _serve(request, actor, image_id, AccessKind.THUMBNAIL)


@router.get("/images/{image_id}/preview")
def get_preview(image_id: UUID, request: Request, actor: ActorDep) -> Response:
    return _serve(request, actor, image_id, AccessKind.PREVIEW)


@router.get("/images/{image_id}/original")
def get_original(image_id: UUID, request: Request, actor: ActorDep) -> Response:
    return _serve(request, actor, image_id, AccessKind.ORIGINAL)
