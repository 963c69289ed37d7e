"""GraphQL for treatment simulations: growth forecasts, VTO plans, outcome previews, set-ups.

Every simulation answers ``isPrediction: true`` and a ``notice``; its images carry a burned-in
SIMULATION band. Results are the recorded ones (never recomputed on read). Set-up meshes
are bytes and arrive over REST (``POST /api/v1/patients/{id}/setups``); their analysis is
read here like any other simulation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.graphql_annotations import image_calibration
from api.graphql_context import actor_of, blocking, parse_id
from api.services import Services
from domain.measurement import Calibration
from domain.permissions import Permission, require
from domain.simulation import DESIGN_NOTICE, PREDICTION_NOTICE, Simulation, SimulationKind
from domain.smile_design import DEFAULT_RED_PCT, SmilePoints
from domain.values import Actor
from domain.vto import PlannedMovement

SimulationKindEnum = strawberry.enum(SimulationKind, name="SimulationKind")


@strawberry.type
class SimulationOutput:
    name: str
    media_type: str
    size: int
    sha256: str
    url: str


@strawberry.type
class SimulationFailure:
    code: str
    message: str


@strawberry.type
class SimulationRun:
    revision: int
    label: str
    status: str
    parameters: JSON
    result: JSON | None
    failure: SimulationFailure | None
    requested_at: datetime | None
    requested_by: str


@strawberry.type(name="Simulation")
class SimulationNode:
    id: strawberry.ID
    patient_id: strawberry.ID
    kind: SimulationKindEnum  # type: ignore[valid-type]
    label: str
    status: str
    revision: int
    is_prediction: bool
    notice: str
    parameters: JSON
    result: JSON | None
    failure: SimulationFailure | None
    outputs: list[SimulationOutput]
    outputs_withdrawn: str | None = strawberry.field(
        description="Why the images were deleted (their source photo was destroyed).")

    @strawberry.field(description="Every recorded run, oldest first (plans are versioned).")
    async def revisions(self, info: Info) -> list[SimulationRun]:
        services: Services = info.context.services
        runs = await blocking(services.app.simulation_revisions, actor_of(info),
                              UUID(str(self.id)))
        return [SimulationRun(
            revision=r["revision"], label=r["label"], status=r.get("status", "pending"),
            parameters=r["parameters"], result=r.get("result"),
            failure=SimulationFailure(**r["failure"]) if r.get("failure") else None,
            requested_at=r.get("requested_at"), requested_by=r["actor"].user_id,
        ) for r in runs]


@strawberry.type
class SimulationSummary:
    id: strawberry.ID
    kind: SimulationKindEnum  # type: ignore[valid-type]
    label: str
    status: str
    revision: int
    requested_at: datetime
    updated_at: datetime
    failure_code: str | None
    is_prediction: bool


def simulation_node(simulation: Simulation) -> SimulationNode:
    base = f"/api/v1/simulations/{simulation.id}/outputs"
    kind = SimulationKind(simulation.kind)
    return SimulationNode(
        id=strawberry.ID(str(simulation.id)),
        patient_id=strawberry.ID(str(simulation.patient_id)),
        kind=kind, label=simulation.label, status=simulation.status,
        revision=simulation.revision, is_prediction=kind.is_prediction,
        notice=PREDICTION_NOTICE if kind.is_prediction else DESIGN_NOTICE,
        parameters=simulation.parameters, result=simulation.result,
        failure=SimulationFailure(**simulation.failure) if simulation.failure else None,
        outputs=[SimulationOutput(name=name, media_type=ref.media_type, size=ref.size,
                                  sha256=ref.sha256, url=f"{base}/{name}")
                 for name, ref in sorted(simulation.outputs.items())],
        outputs_withdrawn=simulation.withdrawn,
    )


@strawberry.input
class LandmarkInput:
    code: str
    x: float
    y: float


@strawberry.input
class PointInput:
    x: float
    y: float


@strawberry.input
class MovementInput:
    group: str
    dx_mm: float = 0.0
    dy_mm: float = 0.0
    rotation_deg: float = 0.0
    pivot: str | None = None


@strawberry.input
class GrowthForecastInput:
    patient_id: strawberry.ID
    landmarks: list[LandmarkInput]
    mm_per_pixel: float | None = strawberry.field(default=None, description=(
        "Used only when the image has no calibration of its own (recorded as 'client')."))
    years: float
    age: float | None = strawberry.UNSET
    sex: str | None = strawberry.UNSET
    image_id: strawberry.ID | None = None
    label: str = ""


@strawberry.input
class VtoInput:
    patient_id: strawberry.ID
    landmarks: list[LandmarkInput]
    movements: list[MovementInput]
    mm_per_pixel: float | None = strawberry.field(default=None, description=(
        "Used only when the image has no calibration of its own (recorded as 'client')."))
    image_id: strawberry.ID | None = None
    label: str = ""


@strawberry.input
class ReviseVtoInput:
    simulation_id: strawberry.ID
    expected_revision: int
    movements: list[MovementInput]
    label: str | None = None


@strawberry.input
class OutcomePreviewInput:
    patient_id: strawberry.ID
    photo_image_id: strawberry.ID
    source_simulation_id: strawberry.ID
    photo_points: list[PointInput]
    tracing_points: list[PointInput]
    label: str = ""


@strawberry.input
class SmileDesignInput:
    """Clicked points on a frontal smile photo (px); "right"/"left" are the patient's.
    Contacts: central-lateral, lateral-canine, distal canine edge (three per side, or none)."""

    patient_id: strawberry.ID
    photo_image_id: strawberry.ID
    glabella: PointInput | None = None
    subnasale: PointInput | None = None
    chin: PointInput | None = None
    dental_midline: PointInput | None = None
    incisal_edges: list[PointInput] = strawberry.field(default_factory=list)
    lower_lip: list[PointInput] = strawberry.field(default_factory=list)
    right_contacts: list[PointInput] = strawberry.field(default_factory=list)
    left_contacts: list[PointInput] = strawberry.field(default_factory=list)
    mm_per_pixel: float | None = None
    red_target_pct: float = DEFAULT_RED_PCT
    label: str = ""


@strawberry.input
class SetupStageInput:
    number: int
    upper_image_id: strawberry.ID | None = None
    lower_image_id: strawberry.ID | None = None


@strawberry.input
class SetupFromScansInput:
    """Stages of an aligner set-up from meshes already uploaded as scans."""

    patient_id: strawberry.ID
    stages: list[SetupStageInput]
    scan_upper_image_id: strawberry.ID | None = None
    scan_lower_image_id: strawberry.ID | None = None
    step_limit_mm: float = 0.25
    label: str = ""


def _smile_points(i: SmileDesignInput) -> SmilePoints:
    def one(p: PointInput | None) -> tuple[float, float] | None:
        return None if p is None else (p.x, p.y)

    return SmilePoints(
        glabella=one(i.glabella), subnasale=one(i.subnasale), chin=one(i.chin),
        dental_midline=one(i.dental_midline), incisal_edges=tuple(_points(i.incisal_edges)),
        lower_lip=tuple(_points(i.lower_lip)), right_contacts=tuple(_points(i.right_contacts)),
        left_contacts=tuple(_points(i.left_contacts)), mm_per_pixel=i.mm_per_pixel,
    )


def _landmarks(items: list[LandmarkInput]) -> list[tuple[str, float, float]]:
    return [(i.code.strip(), i.x, i.y) for i in items]


def _movements(items: list[MovementInput]) -> list[PlannedMovement]:
    return [PlannedMovement(group=m.group.strip(), dx_mm=m.dx_mm, dy_mm=m.dy_mm,
                            rotation_deg=m.rotation_deg, pivot=m.pivot) for m in items]


def _points(items: list[PointInput]) -> list[tuple[float, float]]:
    return [(p.x, p.y) for p in items]


def _optional_id(value: strawberry.ID | None, what: str) -> UUID | None:
    return None if value is None else parse_id(value, what)


def _given(value: Any) -> Any:
    return None if value is strawberry.UNSET else value


async def _image_calibration(services: Services, actor: Actor, image_id: UUID | None
                             ) -> Calibration | None:
    """The image's effective calibration (DICOM, scan, ruler, manual), if it has one."""
    if image_id is None:
        return None
    return await blocking(image_calibration, services, actor, image_id)


async def _after(services: Services, actor: Actor, simulation_id: UUID, position: int
                 ) -> SimulationNode:
    await blocking(services.wait_for_read_models, position, services.simulations)
    return simulation_node(await blocking(services.app.simulation, actor, simulation_id))


@strawberry.type
class SimulationQuery:
    @strawberry.field(description="One simulation with its recorded result.")
    async def simulation(self, info: Info, id: strawberry.ID) -> SimulationNode:
        actor, services = actor_of(info), info.context.services
        return simulation_node(await blocking(services.app.simulation, actor,
                                              parse_id(id, "id")))

    @strawberry.field(description="A patient's simulations, newest first.")
    async def simulations(self, info: Info, patient_id: strawberry.ID,
                          kind: SimulationKindEnum | None = None  # type: ignore[valid-type]
                          ) -> list[SimulationSummary]:
        actor, services = actor_of(info), info.context.services
        patient = await blocking(services.app.get_patient, parse_id(patient_id, "patientId"),
                                 actor)
        require(actor, Permission.VIEW)
        rows = await blocking(services.simulations.for_patient, actor.clinic_id, patient.id,
                              kind.value if kind is not None else None)
        return [SimulationSummary(
            id=strawberry.ID(str(r.id)), kind=SimulationKind(r.kind), label=r.label,
            status=r.status, revision=r.revision, requested_at=r.requested_at,
            updated_at=r.updated_at, failure_code=r.failure_code,
            is_prediction=SimulationKind(r.kind).is_prediction,
        ) for r in rows]


@strawberry.type
class SimulationMutation:
    @strawberry.mutation(description="Forecast a tracing N years ahead (average increments).")
    async def run_growth_forecast(self, info: Info, input: GrowthForecastInput
                                  ) -> SimulationNode:
        actor, services = actor_of(info), info.context.services
        image_id = _optional_id(input.image_id, "imageId")
        simulation_id, position = await blocking(
            services.app.run_growth_forecast, actor, parse_id(input.patient_id, "patientId"),
            landmarks=_landmarks(input.landmarks), mm_per_pixel=input.mm_per_pixel,
            years=input.years, age=_given(input.age), sex=_given(input.sex),
            image_id=image_id, label=input.label,
            image_calibration=await _image_calibration(services, actor, image_id),
        )
        return await _after(services, actor, simulation_id, position)

    @strawberry.mutation(description="A VTO: planned movements on a tracing, soft tissue "
                                     "following by published ratios.")
    async def run_vto(self, info: Info, input: VtoInput) -> SimulationNode:
        actor, services = actor_of(info), info.context.services
        image_id = _optional_id(input.image_id, "imageId")
        simulation_id, position = await blocking(
            services.app.run_vto, actor, parse_id(input.patient_id, "patientId"),
            landmarks=_landmarks(input.landmarks), mm_per_pixel=input.mm_per_pixel,
            movements=_movements(input.movements), image_id=image_id, label=input.label,
            image_calibration=await _image_calibration(services, actor, image_id),
        )
        return await _after(services, actor, simulation_id, position)

    @strawberry.mutation(description="A new revision of a VTO plan (409 stale_revision if "
                                     "someone revised it meanwhile).")
    async def revise_vto(self, info: Info, input: ReviseVtoInput) -> SimulationNode:
        actor, services = actor_of(info), info.context.services
        simulation_id, position = await blocking(
            services.app.revise_vto, actor, parse_id(input.simulation_id, "simulationId"),
            movements=_movements(input.movements), label=input.label,
            expected_revision=input.expected_revision,
        )
        return await _after(services, actor, simulation_id, position)

    @strawberry.mutation(description="Analyse an aligner set-up from uploaded scans (stage "
                                     "movement, colour maps, strip; ICP against a later "
                                     "scan); the worker records the result.")
    async def analyse_setup(self, info: Info, input: SetupFromScansInput) -> SimulationNode:
        actor, services = actor_of(info), info.context.services
        stages = [(s.number, _optional_id(s.upper_image_id, "upperImageId"),
                   _optional_id(s.lower_image_id, "lowerImageId")) for s in input.stages]
        scans = {arch: parse_id(value, f"scan{arch.title()}ImageId")
                 for arch, value in (("upper", input.scan_upper_image_id),
                                     ("lower", input.scan_lower_image_id)) if value is not None}
        simulation_id, position = await blocking(
            services.app.request_setup_from_scans, actor,
            parse_id(input.patient_id, "patientId"), stages=stages, scans=scans,
            step_limit_mm=input.step_limit_mm, label=input.label,
        )
        return await _after(services, actor, simulation_id, position)

    @strawberry.mutation(description="Smile design guides on a frontal smile photo, kept as "
                                     "an annotation layer (imaging:annotate).")
    async def run_smile_design(self, info: Info, input: SmileDesignInput) -> SimulationNode:
        actor, services = actor_of(info), info.context.services
        simulation_id, position = await blocking(
            services.app.run_smile_design, actor, parse_id(input.patient_id, "patientId"),
            photo_image_id=parse_id(input.photo_image_id, "photoImageId"),
            points=_smile_points(input), red_target_pct=input.red_target_pct,
            label=input.label,
        )
        return await _after(services, actor, simulation_id, position)

    @strawberry.mutation(description="Warp a profile photo by a simulation's soft-tissue "
                                     "change; the worker records the images.")
    async def request_outcome_preview(self, info: Info, input: OutcomePreviewInput
                                      ) -> SimulationNode:
        actor, services = actor_of(info), info.context.services
        simulation_id, position = await blocking(
            services.app.request_outcome_preview, actor,
            parse_id(input.patient_id, "patientId"),
            photo_image_id=parse_id(input.photo_image_id, "photoImageId"),
            source_simulation_id=parse_id(input.source_simulation_id, "sourceSimulationId"),
            photo_points=_points(input.photo_points),
            tracing_points=_points(input.tracing_points), label=input.label,
        )
        return await _after(services, actor, simulation_id, position)


__all__ = ["SimulationMutation", "SimulationQuery"]
