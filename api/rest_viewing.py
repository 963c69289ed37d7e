"""REST for the rendering of an image's non-destructive edits, per revision.

``GET /api/v1/images/{id}/edited?revision=N&size=PX``: the edit list of revision N (default:
the current one; 1 is the original) applied to the original, as JPEG. The ETag hashes the
original's SHA-256, the operations and the size, so a revision renders to the same bytes
every time and caches cleanly; viewing it is recorded as a ``preview`` access.
"""

from __future__ import annotations

import io
import math
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from PIL import Image as PILImage

from adapters.image_codec import decode_at_least
from adapters.image_edit_renderer import render, rendering_key
from adapters.photo_alignment import align
from api.rest_cephalometry import image_pixels
from api.rest_images import ActorDep, services_of
from api.services import Services
from domain.comparison import Transform
from domain.errors import Conflict, InvalidInput, NotFound
from domain.image import Image
from domain.permissions import Permission, require
from domain.values import Actor

router = APIRouter(prefix="/api/v1", tags=["viewing"])
MAX_SIZE = 4096


def _rendering(services: Services, actor: Actor, image_id: UUID, revision: int | None,
               size: int, if_none_match: str) -> tuple[bytes | None, str]:
    require(actor, Permission.VIEW)
    if not 16 <= size <= MAX_SIZE:
        raise InvalidInput("invalid_size", f"size is 16-{MAX_SIZE} pixels")
    image = services.app.get_image(image_id, actor)
    edits = services.app.image_edits(actor, image_id)
    if edits is None:
        if revision not in (None, 1):
            raise InvalidInput("invalid_revision", "the image has only its original revision")
        operations: list = []
    else:
        operations = edits.operations if revision is None else edits.operations_at(revision)
    etag = f'"{rendering_key(image.original.sha256, operations, size)}"'
    if etag in if_none_match:
        return None, etag
    data = image_pixels(services, actor, image)
    if data is None:
        raise Conflict("derivative_not_ready", "the image is still being rendered; retry")
    return render(data, (image.width, image.height), operations, size), etag


@router.get("/images/{image_id}/edited")
async def edited_image(image_id: UUID, request: Request, actor: ActorDep,
                       revision: int | None = None, size: int = 1600) -> Response:
    data, etag = await run_in_threadpool(
        _rendering, services_of(request), actor, image_id, revision, size,
        request.headers.get("if-none-match", ""))
    headers = {"ETag": etag, "Cache-Control": "private, max-age=3600, no-transform",
               "X-Content-Type-Options": "nosniff"}
    if data is None:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="image/jpeg", headers=headers)


# ---- comparisons -------------------------------------------------------------------


def decoded_size(data: bytes) -> tuple[int, int]:
    return PILImage.open(io.BytesIO(data)).size


def auto_alignment(services: Services, actor: Actor, reference: Image, moving: Image
                   ) -> Transform:
    """Align ``moving`` onto ``reference`` (both as stored) and express the transform in
    original pixels even when the pixels come from rendered previews (DICOM)."""
    ref_bytes, mov_bytes = (image_pixels(services, actor, reference),
                            image_pixels(services, actor, moving))
    if ref_bytes is None or mov_bytes is None:
        raise Conflict("derivative_not_ready", "an image is still being rendered; retry")
    found = align(ref_bytes, mov_bytes)
    kr = max(decoded_size(ref_bytes)) / max(reference.width, reference.height)
    km = max(decoded_size(mov_bytes)) / max(moving.width, moving.height)
    return Transform(scale=found.scale * km / kr, rotation_deg=found.rotation_deg,
                     translate_x=found.translation[0] / kr,
                     translate_y=found.translation[1] / kr, source="auto",
                     quality=round(found.quality, 4))


def _aligned(services: Services, actor: Actor, comparison_id: UUID, index: int, size: int,
             mode: str) -> bytes:
    require(actor, Permission.VIEW)
    if not 16 <= size <= MAX_SIZE:
        raise InvalidInput("invalid_size", f"size is 16-{MAX_SIZE} pixels")
    if mode not in ("side_by_side", "blend"):
        raise InvalidInput("invalid_mode", "mode is side_by_side or blend")
    comparison = services.app.comparison(actor, comparison_id)
    if not 1 <= index < len(comparison.image_ids):
        raise NotFound("comparison_image_not_found", "no such image in the comparison")
    transform = comparison.transform(index)
    if transform is None:
        raise Conflict("not_aligned", "this image has no alignment yet")
    reference = services.app.get_image(comparison.image_ids[0], actor)
    moving = services.app.get_image(comparison.image_ids[index], actor)
    ref_bytes, mov_bytes = (image_pixels(services, actor, reference),
                            image_pixels(services, actor, moving))
    if ref_bytes is None or mov_bytes is None:
        raise Conflict("derivative_not_ready", "an image is still being rendered; retry")
    ref_pic = decode_at_least(ref_bytes, size).convert("RGB")
    ref_pic.thumbnail((size, size), PILImage.Resampling.LANCZOS)
    mov_pic = decode_at_least(mov_bytes, size).convert("RGB")
    kr = ref_pic.width / reference.width
    km = mov_pic.width / moving.width
    s, t = transform.scale, (transform.translate_x, transform.translate_y)
    c = math.cos(math.radians(transform.rotation_deg))
    n = math.sin(math.radians(transform.rotation_deg))
    k = km / (s * kr)
    # Output pixel q (reference frame) -> moving pixel: km * R^T (q / kr - t) / s.
    coefficients = (k * c, k * n, -(km / s) * (c * t[0] + n * t[1]),
                    -k * n, k * c, -(km / s) * (-n * t[0] + c * t[1]))
    warped = mov_pic.transform(ref_pic.size, PILImage.Transform.AFFINE, coefficients,
                               resample=PILImage.Resampling.BICUBIC)
    if mode == "blend":
        out_pic = PILImage.blend(ref_pic, warped, 0.5)
    else:
        out_pic = PILImage.new("RGB", (ref_pic.width * 2, ref_pic.height))
        out_pic.paste(ref_pic, (0, 0))
        out_pic.paste(warped, (ref_pic.width, 0))
    out = io.BytesIO()
    out_pic.save(out, "JPEG", quality=88)
    return out.getvalue()


@router.get("/comparisons/{comparison_id}/aligned/{index}.jpg")
async def aligned_image(comparison_id: UUID, index: int, request: Request, actor: ActorDep,
                        size: int = 1200, mode: str = "side_by_side") -> Response:
    """Image ``index`` moved onto the reference (image 0): side by side or blended."""
    data = await run_in_threadpool(_aligned, services_of(request), actor, comparison_id,
                                   index, size, mode)
    return Response(data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, no-store",
                             "X-Content-Type-Options": "nosniff"})
