"""REST for the bytes of a tracing: the PDF report, the overlay image, CSV/JSON exports.

Exports need ``imaging:export``; anything that shows analysis values also needs
``imaging:cephalometric``. Rendering the radiograph into a report or overlay is an access to
its pixels and is recorded as one (kind ``preview``: a downscaled rendering).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from adapters.ceph_report_pdf import (
    ReportHeader,
    overlay_png,
    render_overlay,
    render_report,
    superimposition_png,
)
from api.graphql_annotations import analyse, superimposed
from api.rest_images import ActorDep, services_of
from api.services import Services
from domain.access import AccessKind
from domain.annotation_commands import TracingAnalysis
from domain.cephalometry.landmarks import LANDMARKS
from domain.cephalometry.norms import NORMS_VERSION
from domain.errors import NotFound
from domain.image import Image
from domain.measurement import Calibration
from domain.permissions import Permission, require
from domain.tracing import Tracing
from domain.values import Actor

router = APIRouter(prefix="/api/v1", tags=["cephalometry"])
# Formats Pillow decodes directly; anything else (DICOM) is drawn on its rendered preview.
_DECODABLE = {"image/jpeg", "image/png", "image/tiff", "image/webp", "image/heic",
              "image/heif", "image/avif", "image/bmp"}


def _private(media_type: str, filename: str) -> dict[str, str]:
    return {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Content-Type": media_type}


def image_pixels(services: Services, actor: Actor, image: Image) -> bytes | None:
    ref = image.original if image.original.media_type in _DECODABLE else (
        image.derivatives.get("preview"))
    if ref is None:
        return None  # not rendered yet: the tracing is drawn on a blank canvas
    data = services.blobs.read(image.id, ref)
    services.app.record_access(actor, [(image.id, image.patient_id)], AccessKind.PREVIEW)
    return data


def _visible_tracing(services: Services, actor: Actor, tracing_id: UUID) -> Tracing:
    tracing = services.app.tracing(actor, tracing_id)
    if tracing.removed:
        raise NotFound("tracing_not_found", "no such tracing")
    return tracing


def _calibration_text(c: Calibration | None) -> str:
    if c is None:
        return "none (linear measures not computable)"
    text = f"{c.mm_per_pixel:.5f} mm/px ({c.source.value}"
    if c.magnification is not None:
        text += f", magnification {c.magnification:.4f} divided out"
    return text + ")"


def _report_pdf(services: Services, actor: Actor, tracing_id: UUID) -> bytes:
    require(actor, Permission.EXPORT)
    analysis: TracingAnalysis = analyse(services, actor, tracing_id, None)
    tracing = analysis.tracing
    image = services.app.get_image(tracing.image_id, actor)
    overlay = render_overlay(image_pixels(services, actor, image), (image.width, image.height),
                             tracing.landmarks)
    header = ReportHeader(
        tracing_id=str(tracing.id), tracing_version=tracing.version, image_id=str(image.id),
        patient_ref=str(tracing.patient_id), age_years=analysis.age, sex=analysis.sex,
        calibration=_calibration_text(analysis.calibration), norms_version=NORMS_VERSION,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    return render_report(header=header, overlay=overlay, results=analysis.results)


@router.get("/tracings/{tracing_id}/report.pdf")
async def tracing_report(tracing_id: UUID, request: Request, actor: ActorDep) -> Response:
    """The one-page analysis report: the tracing over the radiograph and every value."""
    data = await run_in_threadpool(_report_pdf, services_of(request), actor, tracing_id)
    return Response(data, headers=_private("application/pdf", f"tracing-{tracing_id}.pdf"))


def _overlay(services: Services, actor: Actor, tracing_id: UUID) -> bytes:
    require(actor, Permission.EXPORT)
    require(actor, Permission.VIEW)
    tracing = _visible_tracing(services, actor, tracing_id)
    image = services.app.get_image(tracing.image_id, actor)
    return overlay_png(image_pixels(services, actor, image), (image.width, image.height),
                       tracing.landmarks)


@router.get("/tracings/{tracing_id}/overlay.png")
async def tracing_overlay(tracing_id: UUID, request: Request, actor: ActorDep) -> Response:
    data = await run_in_threadpool(_overlay, services_of(request), actor, tracing_id)
    return Response(data, headers=_private("image/png", f"tracing-{tracing_id}.png"))


def _landmark_rows(tracing: Tracing) -> list[dict[str, Any]]:
    placed = tracing.landmarks
    return [{"code": lm.code, "name": lm.name, "x": placed[lm.code][0], "y": placed[lm.code][1]}
            for lm in LANDMARKS if lm.code in placed]


def _landmarks_export(services: Services, actor: Actor, tracing_id: UUID, fmt: str) -> bytes:
    require(actor, Permission.EXPORT)
    tracing = _visible_tracing(services, actor, tracing_id)
    rows = _landmark_rows(tracing)
    if fmt == "json":
        return json.dumps({"tracingId": str(tracing.id), "version": tracing.version,
                           "imageId": str(tracing.image_id), "space": "original image pixels",
                           "landmarks": rows}, indent=1).encode()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["code", "name", "x", "y"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


@router.get("/tracings/{tracing_id}/landmarks.csv")
async def landmarks_csv(tracing_id: UUID, request: Request, actor: ActorDep) -> Response:
    data = await run_in_threadpool(_landmarks_export, services_of(request), actor, tracing_id,
                                   "csv")
    return Response(data, headers=_private("text/csv; charset=utf-8",
                                           f"tracing-{tracing_id}-landmarks.csv"))


@router.get("/tracings/{tracing_id}/landmarks.json")
async def landmarks_json(tracing_id: UUID, request: Request, actor: ActorDep) -> Response:
    data = await run_in_threadpool(_landmarks_export, services_of(request), actor, tracing_id,
                                   "json")
    return Response(data, headers=_private("application/json",
                                           f"tracing-{tracing_id}-landmarks.json"))


def _analysis_csv(services: Services, actor: Actor, tracing_id: UUID) -> bytes:
    require(actor, Permission.EXPORT)
    analysis = analyse(services, actor, tracing_id, None)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["analysis", "key", "measurement", "value", "unit", "computable",
                     "norm_mean", "norm_sd", "norm_low", "norm_high", "deviation_sd",
                     "interpretation", "norm_source", "norm_version"])
    for result in analysis.results:
        for m in result.measurements:
            n = m.norm
            writer.writerow([
                result.key, m.key, m.name, "" if m.value is None else f"{m.value:.3f}", m.unit,
                m.computable, *(("" if v is None else v) for v in (
                    n.mean if n else None, n.sd if n else None, n.range_low if n else None,
                    n.range_high if n else None)),
                "" if m.deviation_sd is None else f"{m.deviation_sd:.2f}", m.interpretation,
                n.source if n else "", n.version if n else ""])
    return out.getvalue().encode()


@router.get("/tracings/{tracing_id}/analysis.csv")
async def analysis_csv(tracing_id: UUID, request: Request, actor: ActorDep) -> Response:
    data = await run_in_threadpool(_analysis_csv, services_of(request), actor, tracing_id)
    return Response(data, headers=_private("text/csv; charset=utf-8",
                                           f"tracing-{tracing_id}-analysis.csv"))


def _superimposition_png(services: Services, actor: Actor, first_id: UUID, second_id: UUID,
                         method: str) -> bytes:
    require(actor, Permission.EXPORT)
    both = superimposed(services, actor, first_id, second_id, method, None)
    return superimposition_png(both.first_mm, both.second_in_first_mm)


@router.get("/tracings/{first_id}/superimposition/{second_id}.png")
async def superimposition_image(first_id: UUID, second_id: UUID, request: Request,
                                actor: ActorDep, method: str = "sn_at_s") -> Response:
    """Both tracings drawn in the first one's frame (mm), displacements joined."""
    data = await run_in_threadpool(_superimposition_png, services_of(request), actor, first_id,
                                   second_id, method)
    return Response(data, headers=_private("image/png",
                                           f"superimposition-{first_id}-{second_id}.png"))
