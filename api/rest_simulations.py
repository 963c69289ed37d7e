"""REST for simulation bytes: set-up imports in; simulation images and exports out.

Every output fetch and every export is an access record; an export for marketing or
education also needs the patient's consent for that use (409 ``consent_required``).
"""

from __future__ import annotations

import io
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from PIL import Image as PILImage

from adapters.simulation_render import export_csv, export_pdf, tracing_overlay
from api.multipart_stream import ReceivedForm, receive_form
from api.rest_images import ActorDep, services_of
from api.services import Services
from domain.errors import Conflict, Gone, NotFound, Unprocessable
from domain.simulation import (
    DESIGN_NOTICE,
    PREDICTION_NOTICE,
    Simulation,
    SimulationKind,
    setup_layout,
    step_limit,
)
from domain.simulation_commands import new_simulation_id
from domain.values import Actor

router = APIRouter(prefix="/api/v1", tags=["simulations"])

MESH_MEDIA_TYPE = "application/octet-stream"
Purpose = Annotated[str, Query(description="clinical, marketing or educational")]


@router.post("/patients/{patient_id}/setups", status_code=202)
async def import_setup(patient_id: UUID, request: Request, actor: ActorDep) -> JSONResponse:
    """Import a staged aligner set-up: multipart files ``stage_<n>_<upper|lower>`` (STL, PLY
    or OBJ, one per stage and arch, in the planning software's frame, mm), optionally
    ``scan_<upper|lower>`` (a later real scan to compare with the final stage), and fields
    ``label`` and ``stepLimitMm`` (default 0.25). Answers 202: a worker analyses it; read the
    result as the ``simulation`` in GraphQL."""
    services = services_of(request)
    # Tenancy and permissions before reading the body.
    await run_in_threadpool(services.app.check_setup_import, actor, patient_id)
    form = await receive_form(request.headers.get("content-type", ""), request.stream(),
                              max_bytes=services.settings.max_upload_bytes, spool_dir=None)
    try:
        simulation_id, position = await run_in_threadpool(
            _store_setup, services, actor, patient_id, form)
    finally:
        form.close()
    await run_in_threadpool(services.wait_for_read_models, position, services.simulations)
    return JSONResponse({"id": str(simulation_id), "status": "pending"}, status_code=202,
                        headers={"Location": f"/api/v1/simulations/{simulation_id}"})


def _store_setup(services: Services, actor: Actor, patient_id: UUID, form: ReceivedForm
                 ) -> tuple[UUID, int]:
    """Validate the layout, store the meshes sealed under the new simulation, record it.

    Either the request event is saved or no blob of it stays behind.
    """
    layout = setup_layout([f.field_name for f in form.files])
    limit = step_limit(form.fields.get("stepLimitMm"))
    by_field = {f.field_name: f for f in form.files}
    for entry in layout:
        if by_field[entry["field"]].size == 0:
            raise Unprocessable("mesh_empty", f"{entry['field']} is an empty file")
    simulation_id = new_simulation_id()
    try:
        inputs = {}
        files = []
        for entry in layout:
            received = by_field[entry["field"]]
            received.handle.seek(0)
            inputs[entry["field"]] = services.blobs.put(
                simulation_id, f"input/{entry['field']}", received.handle, MESH_MEDIA_TYPE,
                owner_id=patient_id)
            files.append({"input": entry["field"], "stage": entry["stage"],
                          "arch": entry["arch"], "filename": received.filename[:200]})
        return services.app.request_setup_analysis(
            actor, patient_id, simulation_id,
            parameters={"files": files, "step_limit_mm": limit},
            inputs=inputs, label=form.fields.get("label", ""),
        )
    except BaseException:
        services.blobs.delete_subject(simulation_id)
        raise


def _output(services: Services, actor: Actor, simulation_id: UUID, name: str
            ) -> tuple[Simulation, Any]:
    simulation = services.app.simulation(actor, simulation_id)
    ref = simulation.outputs.get(name)
    if ref is None:
        if simulation.withdrawn is not None:
            raise Gone("output_withdrawn", "the images were deleted with their source photo")
        if simulation.settled:
            raise NotFound("output_not_found", "the simulation has no such output")
        raise Conflict("simulation_not_ready", "the simulation is still running; retry shortly")
    return simulation, ref


_HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
            "X-Simulation": "true"}


@router.get("/simulations/{simulation_id}/outputs/{name}")
def get_output(simulation_id: UUID, name: str, request: Request, actor: ActorDep) -> Response:
    """A simulation image (or a stage's GLB), as recorded; every fetch is access-logged."""
    services = services_of(request)
    simulation, ref = _output(services, actor, simulation_id, name)
    services.app.log_simulation_access(actor, simulation, f"simulation_output:{name}")
    return Response(services.blobs.read(simulation.id, ref), media_type=ref.media_type,
                    headers={**_HEADERS, "ETag": f'"{ref.sha256}"'})


@router.get("/simulations/{simulation_id}/export/{name}")
def export_output(simulation_id: UUID, name: str, request: Request, actor: ActorDep,
                  purpose: Purpose = "clinical") -> Response:
    """Download one simulation image for a presentation (export permission, consent)."""
    services = services_of(request)
    simulation, _ = services.app.record_simulation_export(actor, simulation_id, purpose, name)
    _sim, ref = _output(services, actor, simulation.id, name)
    return Response(services.blobs.read(simulation.id, ref), media_type=ref.media_type,
                    headers={**_HEADERS, "Content-Disposition":
                             f'attachment; filename="simulation-{simulation.id}-{name}"'})


@router.get("/simulations/{simulation_id}/report.csv")
def export_report_csv(simulation_id: UUID, request: Request, actor: ActorDep,
                      purpose: Purpose = "clinical") -> Response:
    """The main table as CSV: the staging report of a set-up, the measurement changes of a
    forecast or VTO, the control points of an outcome preview."""
    services = services_of(request)
    simulation, _ = services.app.record_simulation_export(actor, simulation_id, purpose,
                                                          "report.csv")
    data = export_csv(simulation.kind, simulation.result or {})
    return Response(data, media_type="text/csv; charset=utf-8", headers={
        **_HEADERS,
        "Content-Disposition": f'attachment; filename="simulation-{simulation.id}.csv"'})


@router.get("/simulations/{simulation_id}/report.pdf")
def export_report_pdf(simulation_id: UUID, request: Request, actor: ActorDep,
                      purpose: Purpose = "clinical") -> Response:
    """One A4 case-presentation page, marked SIMULATION."""
    services = services_of(request)
    simulation, _ = services.app.record_simulation_export(actor, simulation_id, purpose,
                                                          "report.pdf")
    images = _report_images(services, actor, simulation)
    title = {"growth_forecast": "Growth forecast", "vto": "Visualised treatment objective",
             "outcome_preview": "Outcome preview", "setup_analysis": "Aligner set-up",
             "smile_design": "Smile design"}[
        simulation.kind]
    if simulation.label:
        title = f"{title}: {simulation.label}"
    prediction = SimulationKind(simulation.kind).is_prediction
    data = export_pdf(title, PREDICTION_NOTICE if prediction else DESIGN_NOTICE,
                      simulation.kind, simulation.result or {}, images, prediction=prediction)
    return Response(data, media_type="application/pdf", headers={
        **_HEADERS,
        "Content-Disposition": f'attachment; filename="simulation-{simulation.id}.pdf"'})


@router.get("/simulations/{simulation_id}/overlay.png")
def export_overlay(simulation_id: UUID, request: Request, actor: ActorDep,
                   purpose: Purpose = "clinical") -> Response:
    """A growth forecast or VTO drawn over its ceph (current blue, predicted red), as an
    image for a presentation."""
    services = services_of(request)
    simulation = services.app.simulation(actor, simulation_id)
    if simulation.kind not in (SimulationKind.GROWTH_FORECAST.value, SimulationKind.VTO.value):
        raise NotFound("output_not_found", "only tracings (forecast, VTO) have an overlay")
    simulation, _ = services.app.record_simulation_export(actor, simulation_id, purpose,
                                                          "overlay.png")
    return Response(_overlay_png(services, actor, simulation), media_type="image/png",
                    headers={**_HEADERS, "Content-Disposition":
                             f'attachment; filename="simulation-{simulation.id}-overlay.png"'})


def _report_images(services: Services, actor: Actor, simulation: Simulation) -> list[bytes]:
    kind = SimulationKind(simulation.kind)
    if kind in (SimulationKind.GROWTH_FORECAST, SimulationKind.VTO):
        return [_overlay_png(services, actor, simulation)]
    wanted = ("comparison.jpg",) if kind is SimulationKind.OUTCOME_PREVIEW else tuple(
        n for n in sorted(simulation.outputs)
        if n == "strip.png" or n.startswith(("movement_", "comparison_")))
    return [services.blobs.read(simulation.id, simulation.outputs[n]) for n in wanted
            if n in simulation.outputs]


def _overlay_png(services: Services, actor: Actor, simulation: Simulation) -> bytes:
    """The current and predicted tracing over the ceph's preview (or on white)."""
    landmarks = simulation.parameters["landmarks"]
    predicted = (simulation.result or {}).get("predicted_px", {})
    base, scale = None, 1.0
    image_id = simulation.parameters.get("image_id")
    if image_id:
        try:
            image = services.app.get_image(UUID(image_id), actor)
            ref = image.derivatives.get("preview")
            if ref is not None and not image.is_deleted:
                base = PILImage.open(io.BytesIO(services.blobs.read(image.id, ref)))
                scale = base.width / image.width
        except NotFound:
            base = None  # the ceph is gone: draw on white
    title = "Growth forecast" if simulation.kind == "growth_forecast" else "VTO"
    overlay = tracing_overlay(base, scale, landmarks, predicted, title)
    out = io.BytesIO()
    overlay.save(out, "PNG")
    return out.getvalue()
