"""GraphQL for annotations, image calibration, cephalometric tracings and analyses.

Every edit names the ``version`` it was made on and answers 409 ``stale_version`` when
someone else's edit came first. Measurements and analyses are computed on each read from
the stored geometry and the image's current calibration (``domain/image_calibration.py``).
Mutations wait for the annotations read model (read-your-writes) before answering.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import strawberry
from strawberry.types import Info

from api.graphql_context import actor_of, blocking, parse_id
from api.services import Services
from domain.annotation import Annotation, measure_content
from domain.annotation_commands import Edited, TracingAnalysis
from domain.cephalometry.analyses import AnalysisResult, CephMeasurement
from domain.cephalometry.landmarks import LANDMARKS
from domain.cephalometry.norms import NORMS_VERSION
from domain.errors import InvalidInput, NotFound, Unprocessable
from domain.measurement import Calibration
from domain.permissions import Permission, require
from domain.superimposition import (
    DEFAULT_REFERENCE_POINTS,
    CalibratedSuperimposition,
    superimpose_calibrated,
)
from domain.tracing import Tracing
from domain.values import Actor
from projections.annotations import AnnotationRow, TracingRow


@strawberry.type(name="AnnotationMeasurement")
class MeasurementNode:
    value: float | None
    unit: str
    calibrated: bool
    calibration_source: str | None
    position: list[float] | None


@strawberry.type(name="Annotation")
class AnnotationNode:
    id: strawberry.ID
    image_id: strawberry.ID
    author: str = strawberry.field(description="The author's user id; also the layer.")
    kind: str
    points: list[list[float]]
    label: str
    text: str
    known_length_mm: float | None
    removed: bool
    version: int = strawberry.field(description="Send this back with the next edit.")
    can_undo: bool | None
    can_redo: bool | None
    measurement: MeasurementNode | None


@strawberry.type(name="MeasurementCalibration")
class CalibrationNode:
    mm_per_pixel: float
    mm_per_pixel_y: float | None
    source: str
    magnification: float | None


@strawberry.type(name="ImageCalibration")
class ImageCalibrationNode:
    image_id: strawberry.ID
    effective: CalibrationNode | None = strawberry.field(
        description="What measurements use now; null: lengths stay in pixels.")
    recorded: CalibrationNode | None = strawberry.field(
        description="What a clinician recorded (dpi/magnification or manual).")
    recorded_dpi: float | None
    version: int = strawberry.field(description="Of the recorded calibration; 0 if none.")


@strawberry.type(name="CephLandmarkDefinition")
class LandmarkDefinitionNode:
    code: str
    name: str
    description: str
    group: str
    sets: list[str]


@strawberry.type(name="CephLandmark")
class LandmarkNode:
    code: str
    x: float
    y: float


@strawberry.type(name="LandmarkSuggestionSource")
class SuggestionSourceNode:
    source: str = strawberry.field(description="template_from_anchors or onnx_model.")
    model_id: strawberry.ID | None
    model_name: str | None
    model_version: str | None


@strawberry.type(name="LandmarkModel")
class LandmarkModelNode:
    id: strawberry.ID
    name: str
    version: str
    input_width: int
    input_height: int
    landmarks: list[str] = strawberry.field(description="Codes in the model's output order.")
    pixel_spacing_mm: float
    sha256: str
    size: int


@strawberry.type(name="CephTracing")
class TracingNode:
    id: strawberry.ID
    image_id: strawberry.ID
    patient_id: strawberry.ID
    author: str
    version: int
    removed: bool
    landmarks: list[LandmarkNode] = strawberry.field(
        description="Placed or confirmed landmarks: the ones analyses use.")
    suggestions: list[LandmarkNode] = strawberry.field(
        description="Suggested positions awaiting a clinician's confirmation.")
    suggested_by: SuggestionSourceNode | None = strawberry.field(
        description="What made the current suggestions (a model: its name and version); "
                    "given by cephTracing and the tracing mutations, null in imageTracings.")
    can_undo: bool | None
    can_redo: bool | None
    report_pdf_url: str
    landmarks_csv_url: str
    landmarks_json_url: str


@strawberry.type(name="CephNorm")
class NormNode:
    mean: float | None
    sd: float | None
    range_low: float | None
    range_high: float | None
    source: str
    population: str
    version: str


@strawberry.type(name="CephMeasurement")
class CephMeasurementNode:
    key: str
    name: str
    unit: str
    value: float | None
    computable: bool
    reason: str | None
    missing_landmarks: list[str]
    norm: NormNode | None
    deviation_sd: float | None
    interpretation: str


@strawberry.type(name="CephAnalysis")
class AnalysisNode:
    key: str
    name: str
    measurements: list[CephMeasurementNode]


@strawberry.type(name="CephAnalysisReport")
class AnalysisReportNode:
    tracing_id: strawberry.ID
    tracing_version: int
    calibration: CalibrationNode | None
    patient_age_years: float | None
    patient_sex: str | None
    norms_version: str
    analyses: list[AnalysisNode]
    report_pdf_url: str
    analysis_csv_url: str


@strawberry.type(name="LandmarkDisplacement")
class DisplacementNode:
    code: str
    dx_mm: float
    dy_mm: float
    distance_mm: float


@strawberry.type(name="TracingSuperimposition")
class SuperimpositionNode:
    method: str
    rotation_deg: float
    translation_mm: list[float]
    reference_points: list[str]
    rms_residual_mm: float
    displacements: list[DisplacementNode]
    overlay_url: str


@strawberry.input
class AddAnnotationInput:
    image_id: strawberry.ID
    kind: str
    points: list[list[float]]
    label: str = ""
    text: str = ""
    known_length_mm: float | None = None


@strawberry.input
class EditAnnotationInput:
    id: strawberry.ID
    version: int
    points: list[list[float]] | None = None
    label: str | None = None
    text: str | None = None
    known_length_mm: float | None = None


@strawberry.input
class CalibrateImageInput:
    image_id: strawberry.ID
    version: int = strawberry.field(description="0 when the image has no recorded calibration.")
    dpi: float | None = None
    mm_per_pixel: float | None = None
    magnification: float | None = None
    source: str | None = None


@strawberry.input(name="CephLandmarkInput")
class LandmarkInput:
    code: str
    x: float
    y: float


# ---- conversions ---------------------------------------------------------------------


def _calibration(c: Calibration | None) -> CalibrationNode | None:
    if c is None:
        return None
    return CalibrationNode(mm_per_pixel=c.mm_per_pixel, mm_per_pixel_y=c.mm_per_pixel_y,
                           source=c.source.value, magnification=c.magnification)


def _measurement(content: dict[str, Any], calibration: Calibration | None
                 ) -> MeasurementNode | None:
    measured = measure_content(content, calibration)
    if measured is None:
        return None
    return MeasurementNode(
        value=measured.value, unit=measured.unit.value, calibrated=measured.calibrated,
        calibration_source=measured.calibration_source.value
        if measured.calibration_source else None,
        position=list(measured.position) if measured.position else None)


def _annotation_from_row(row: AnnotationRow, calibration: Calibration | None) -> AnnotationNode:
    return AnnotationNode(
        id=strawberry.ID(str(row.id)), image_id=strawberry.ID(str(row.image_id)),
        author=row.author, kind=row.kind, points=row.points, label=row.label, text=row.text,
        known_length_mm=row.known_length_mm, removed=row.removed, version=row.version,
        can_undo=None, can_redo=None, measurement=_measurement(row.content, calibration))


def _annotation(a: Annotation, calibration: Calibration | None) -> AnnotationNode:
    c = a.content
    return AnnotationNode(
        id=strawberry.ID(str(a.id)), image_id=strawberry.ID(str(a.image_id)),
        author=a.author, kind=c["kind"], points=c["points"], label=c["label"], text=c["text"],
        known_length_mm=c["known_length_mm"], removed=c["removed"], version=a.version,
        can_undo=a.history.can_undo, can_redo=a.history.can_redo,
        measurement=_measurement(c, calibration))


def _urls(tracing_id: UUID) -> dict[str, str]:
    base = f"/api/v1/tracings/{tracing_id}"
    return {"report_pdf_url": f"{base}/report.pdf", "landmarks_csv_url": f"{base}/landmarks.csv",
            "landmarks_json_url": f"{base}/landmarks.json"}


def _landmarks(landmarks: dict[str, list[float]]) -> list[LandmarkNode]:
    order = {lm.code: i for i, lm in enumerate(LANDMARKS)}
    return [LandmarkNode(code=code, x=xy[0], y=xy[1])
            for code, xy in sorted(landmarks.items(), key=lambda kv: order.get(kv[0], 999))]


def _tracing(t: Tracing) -> TracingNode:
    return TracingNode(
        id=strawberry.ID(str(t.id)), image_id=strawberry.ID(str(t.image_id)),
        patient_id=strawberry.ID(str(t.patient_id)), author=t.author, version=t.version,
        removed=t.removed, landmarks=_landmarks(t.landmarks),
        suggestions=_landmarks(t.suggestions), suggested_by=_suggested_by(t.suggested_by),
        can_undo=t.history.can_undo, can_redo=t.history.can_redo, **_urls(t.id))


def _suggested_by(by: dict[str, Any] | None) -> SuggestionSourceNode | None:
    if by is None:
        return None
    return SuggestionSourceNode(source=by["source"], model_id=by.get("id"),
                                model_name=by.get("name"), model_version=by.get("version"))


def _tracing_from_row(row: TracingRow) -> TracingNode:
    return TracingNode(
        id=strawberry.ID(str(row.id)), image_id=strawberry.ID(str(row.image_id)),
        patient_id=strawberry.ID(str(row.patient_id)), author=row.author,
        version=row.version, removed=row.removed, landmarks=_landmarks(row.landmarks),
        suggestions=_landmarks(row.suggestions), suggested_by=None,
        can_undo=None, can_redo=None, **_urls(row.id))


def ceph_measurement(m: CephMeasurement) -> CephMeasurementNode:
    norm = None if m.norm is None else NormNode(
        mean=m.norm.mean, sd=m.norm.sd, range_low=m.norm.range_low,
        range_high=m.norm.range_high, source=m.norm.source, population=m.norm.population,
        version=m.norm.version)
    return CephMeasurementNode(
        key=m.key, name=m.name, unit=m.unit, value=m.value, computable=m.computable,
        reason=m.reason, missing_landmarks=list(m.missing_landmarks), norm=norm,
        deviation_sd=m.deviation_sd, interpretation=m.interpretation)


def _analysis(result: AnalysisResult) -> AnalysisNode:
    return AnalysisNode(key=result.key, name=result.name,
                        measurements=[ceph_measurement(m) for m in result.measurements])


# ---- blocking helpers (run in a worker thread) ---------------------------------------


def image_calibration(services: Services, actor: Actor, image_id: UUID) -> Calibration | None:
    """The image's effective calibration, its ruler taken from the read model."""
    ruler = services.annotations.calibration_ruler(actor.clinic_id, image_id)
    return services.app.image_calibration(actor, image_id, ruler)


def analyse(services: Services, actor: Actor, tracing_id: UUID,
            analyses: list[str] | None) -> TracingAnalysis:
    tracing = services.app.tracing(actor, tracing_id)
    ruler = services.annotations.calibration_ruler(actor.clinic_id, tracing.image_id)
    return services.app.analyse_tracing(actor, tracing_id, analyses, ruler)


def _image_annotations(services: Services, actor: Actor, image_id: UUID,
                       include_removed: bool, author: str | None,
                       require_mm: bool) -> list[AnnotationNode]:
    require(actor, Permission.VIEW)
    services.app.get_image(image_id, actor)  # tenancy: another clinic's image is NotFound
    calibration = image_calibration(services, actor, image_id)
    rows = services.annotations.annotations_of_image(
        actor.clinic_id, image_id, include_removed=include_removed, author=author)
    if require_mm:
        for row in rows:
            measure_content(row.content, calibration, require_mm=True)
    return [_annotation_from_row(r, calibration) for r in rows]


def _calibration_node(services: Services, actor: Actor, image_id: UUID
                      ) -> ImageCalibrationNode:
    require(actor, Permission.VIEW)
    recorded, version = services.app.recorded_calibration(actor, image_id)
    return ImageCalibrationNode(
        image_id=strawberry.ID(str(image_id)),
        effective=_calibration(image_calibration(services, actor, image_id)),
        recorded=_calibration(recorded.as_calibration() if recorded else None),
        recorded_dpi=recorded.dpi if recorded else None, version=version)


def _annotation_after(services: Services, actor: Actor, edited: Edited) -> AnnotationNode:
    services.wait_for_read_models(edited.position, services.annotations)
    annotation = services.app.annotation(actor, edited.id)
    return _annotation(annotation, image_calibration(services, actor, annotation.image_id))


def _tracing_after(services: Services, actor: Actor, edited: Edited) -> TracingNode:
    services.wait_for_read_models(edited.position, services.annotations)
    return _tracing(services.app.tracing(actor, edited.id))


def _report(analysis: TracingAnalysis) -> AnalysisReportNode:
    t = analysis.tracing
    return AnalysisReportNode(
        tracing_id=strawberry.ID(str(t.id)), tracing_version=t.version,
        calibration=_calibration(analysis.calibration),
        patient_age_years=round(analysis.age, 2) if analysis.age is not None else None,
        patient_sex=analysis.sex, norms_version=NORMS_VERSION,
        analyses=[_analysis(r) for r in analysis.results],
        report_pdf_url=f"/api/v1/tracings/{t.id}/report.pdf",
        analysis_csv_url=f"/api/v1/tracings/{t.id}/analysis.csv")


def superimposed(services: Services, actor: Actor, first_id: UUID, second_id: UUID,
                 method: str, reference_points: list[str] | None) -> CalibratedSuperimposition:
    """Two tracings of one patient superimposed, each in mm with its own image calibration
    (per axis: row and column spacing)."""
    require(actor, Permission.CEPHALOMETRIC)
    first, second = services.app.tracing(actor, first_id), services.app.tracing(actor, second_id)
    if first.removed or second.removed:
        raise NotFound("tracing_not_found", "no such tracing")
    if first.patient_id != second.patient_id:
        raise InvalidInput("different_patients", "superimpose two tracings of one patient")
    calibrations = []
    for tracing in (first, second):
        calibration = image_calibration(services, actor, tracing.image_id)
        if calibration is None:
            raise Unprocessable("calibration_required",
                                "superimposition compares millimetres: calibrate both images")
        calibrations.append(calibration)
    return superimpose_calibrated(method, first.landmarks, second.landmarks, *calibrations,
                                  reference_points or DEFAULT_REFERENCE_POINTS)


def _superimposition(services: Services, actor: Actor, first_id: UUID, second_id: UUID,
                     method: str, reference_points: list[str] | None) -> SuperimpositionNode:
    result = superimposed(services, actor, first_id, second_id, method,
                          reference_points).result
    return SuperimpositionNode(
        method=result.method.value, rotation_deg=result.transform.rotation_deg,
        translation_mm=list(result.transform.translation),
        reference_points=list(result.reference_points),
        rms_residual_mm=result.rms_residual_mm,
        displacements=[DisplacementNode(code=d.code, dx_mm=d.dx, dy_mm=d.dy,
                                        distance_mm=d.distance) for d in result.displacements],
        overlay_url=f"/api/v1/tracings/{first_id}/superimposition/{second_id}.png"
                    f"?method={result.method.value}")


def _landmark_map(landmarks: list[LandmarkInput]) -> dict[str, list[float]]:
    codes = [lm.code for lm in landmarks]
    if len(set(codes)) != len(codes):
        raise InvalidInput("duplicate_landmark", "each landmark code appears once")
    return {lm.code: [lm.x, lm.y] for lm in landmarks}


async def _annotation_step(info: Info, id: strawberry.ID, version: int,
                           command: str) -> AnnotationNode:
    actor, services = actor_of(info), info.context.services

    def run() -> AnnotationNode:
        edited = getattr(services.app, command)(actor, parse_id(id, "id"), version)
        return _annotation_after(services, actor, edited)

    return await blocking(run)


async def _tracing_step(info: Info, tracing_id: strawberry.ID, version: int,
                        command: str) -> TracingNode:
    actor, services = actor_of(info), info.context.services

    def run() -> TracingNode:
        edited = getattr(services.app, command)(actor, parse_id(tracing_id, "tracingId"),
                                                version)
        return _tracing_after(services, actor, edited)

    return await blocking(run)


# ---- schema --------------------------------------------------------------------------


@strawberry.type
class AnnotationQuery:
    @strawberry.field(description="An image's annotations, each measured by the server.")
    async def image_annotations(self, info: Info, image_id: strawberry.ID,
                                include_removed: bool = False, author: str | None = None,
                                require_mm: bool = False) -> list[AnnotationNode]:
        actor, services = actor_of(info), info.context.services
        return await blocking(_image_annotations, services, actor,
                              parse_id(image_id, "imageId"), include_removed, author,
                              require_mm)

    @strawberry.field
    async def annotation(self, info: Info, id: strawberry.ID) -> AnnotationNode:
        actor, services = actor_of(info), info.context.services

        def load() -> AnnotationNode:
            a = services.app.annotation(actor, parse_id(id, "id"))
            return _annotation(a, image_calibration(services, actor, a.image_id))

        return await blocking(load)

    @strawberry.field
    async def image_calibration(self, info: Info, image_id: strawberry.ID
                                ) -> ImageCalibrationNode:
        actor, services = actor_of(info), info.context.services
        return await blocking(_calibration_node, services, actor, parse_id(image_id, "imageId"))

    @strawberry.field(description="The landmark catalogue (ISBI 2015 + Aariz + analysis points).")
    def ceph_landmark_catalogue(self, info: Info) -> list[LandmarkDefinitionNode]:
        # Static data, but a GET /graphql without a token reaches resolvers: members only.
        actor_of(info)
        return [LandmarkDefinitionNode(code=lm.code, name=lm.name, description=lm.description,
                                       group=lm.group.value, sets=sorted(s.value for s in lm.sets))
                for lm in LANDMARKS]

    @strawberry.field
    async def ceph_tracing(self, info: Info, id: strawberry.ID) -> TracingNode:
        actor, services = actor_of(info), info.context.services
        return _tracing(await blocking(services.app.tracing, actor, parse_id(id, "id")))

    @strawberry.field
    async def image_tracings(self, info: Info, image_id: strawberry.ID) -> list[TracingNode]:
        actor, services = actor_of(info), info.context.services

        def load() -> list[TracingNode]:
            require(actor, Permission.VIEW)
            image = services.app.get_image(parse_id(image_id, "imageId"), actor)
            return [_tracing_from_row(r)
                    for r in services.annotations.tracings_of_image(actor.clinic_id, image.id)]

        return await blocking(load)

    @strawberry.field(description="A registered landmark model of the clinic.")
    async def landmark_model(self, info: Info, id: strawberry.ID) -> LandmarkModelNode:
        from api.landmark_models import load_model, registered  # see suggest_landmarks

        actor, services = actor_of(info), info.context.services
        model = registered(await blocking(load_model, services, actor, parse_id(id, "id")))
        s = model.spec
        return LandmarkModelNode(
            id=strawberry.ID(str(model.id)), name=s.name, version=s.version,
            input_width=s.input_width, input_height=s.input_height,
            landmarks=list(s.landmarks), pixel_spacing_mm=s.pixel_spacing_mm,
            sha256=model.sha256, size=model.size)

    @strawberry.field(description="Run analyses (all by default: steiner, downs, tweed, "
                      "mcnamara, ricketts, wits, bjork_jarabak) on a tracing.")
    async def ceph_analysis(self, info: Info, tracing_id: strawberry.ID,
                            analyses: list[str] | None = None) -> AnalysisReportNode:
        actor, services = actor_of(info), info.context.services
        result = await blocking(analyse, services, actor, parse_id(tracing_id, "tracingId"),
                                analyses)
        return _report(result)

    @strawberry.field(description="Superimpose two tracings of one patient (sn_at_s or "
                      "best_fit); displacements in mm in the first tracing's frame.")
    async def compare_tracings(self, info: Info, first_id: strawberry.ID,
                               second_id: strawberry.ID, method: str = "sn_at_s",
                               reference_points: list[str] | None = None
                               ) -> SuperimpositionNode:
        actor, services = actor_of(info), info.context.services
        return await blocking(_superimposition, services, actor,
                              parse_id(first_id, "firstId"), parse_id(second_id, "secondId"),
                              method, reference_points)


@strawberry.type
class AnnotationMutation:
    @strawberry.mutation
    async def add_annotation(self, info: Info, input: AddAnnotationInput) -> AnnotationNode:
        actor, services = actor_of(info), info.context.services

        def run() -> AnnotationNode:
            edited = services.app.add_annotation(
                actor, parse_id(input.image_id, "imageId"), kind=input.kind,
                points=input.points, label=input.label, text=input.text,
                known_length_mm=input.known_length_mm)
            return _annotation_after(services, actor, edited)

        return await blocking(run)

    @strawberry.mutation
    async def edit_annotation(self, info: Info, input: EditAnnotationInput) -> AnnotationNode:
        actor, services = actor_of(info), info.context.services

        def run() -> AnnotationNode:
            edited = services.app.edit_annotation(
                actor, parse_id(input.id, "id"), input.version, points=input.points,
                label=input.label, text=input.text, known_length_mm=input.known_length_mm)
            return _annotation_after(services, actor, edited)

        return await blocking(run)

    @strawberry.mutation(description="Remove (undo restores it). Clinical staff: own only.")
    async def remove_annotation(self, info: Info, id: strawberry.ID, version: int
                                ) -> AnnotationNode:
        return await _annotation_step(info, id, version, "remove_annotation")

    @strawberry.mutation
    async def undo_annotation(self, info: Info, id: strawberry.ID, version: int
                              ) -> AnnotationNode:
        return await _annotation_step(info, id, version, "undo_annotation")

    @strawberry.mutation
    async def redo_annotation(self, info: Info, id: strawberry.ID, version: int
                              ) -> AnnotationNode:
        return await _annotation_step(info, id, version, "redo_annotation")

    @strawberry.mutation(description="Record mm per pixel: dpi (a film scan) or mmPerPixel, "
                         "with the radiographic magnification divided out when given.")
    async def calibrate_image(self, info: Info, input: CalibrateImageInput
                              ) -> ImageCalibrationNode:
        actor, services = actor_of(info), info.context.services
        image_id = parse_id(input.image_id, "imageId")

        def run() -> ImageCalibrationNode:
            services.app.calibrate_image(actor, image_id, input.version, dpi=input.dpi,
                                         mm_per_pixel=input.mm_per_pixel,
                                         magnification=input.magnification, source=input.source)
            return _calibration_node(services, actor, image_id)

        return await blocking(run)

    @strawberry.mutation
    async def clear_image_calibration(self, info: Info, image_id: strawberry.ID, version: int
                                      ) -> ImageCalibrationNode:
        actor, services = actor_of(info), info.context.services
        image = parse_id(image_id, "imageId")

        def run() -> ImageCalibrationNode:
            services.app.clear_calibration(actor, image, version)
            return _calibration_node(services, actor, image)

        return await blocking(run)

    @strawberry.mutation
    async def start_tracing(self, info: Info, image_id: strawberry.ID,
                            landmarks: list[LandmarkInput] | None = None) -> TracingNode:
        actor, services = actor_of(info), info.context.services

        def run() -> TracingNode:
            edited = services.app.start_tracing(actor, parse_id(image_id, "imageId"),
                                                _landmark_map(landmarks or []))
            return _tracing_after(services, actor, edited)

        return await blocking(run)

    @strawberry.mutation(description="Place new landmarks or move placed ones.")
    async def place_landmarks(self, info: Info, tracing_id: strawberry.ID, version: int,
                              landmarks: list[LandmarkInput]) -> TracingNode:
        actor, services = actor_of(info), info.context.services

        def run() -> TracingNode:
            edited = services.app.place_landmarks(actor, parse_id(tracing_id, "tracingId"),
                                                  version, _landmark_map(landmarks))
            return _tracing_after(services, actor, edited)

        return await blocking(run)

    @strawberry.mutation(description="Suggest the missing landmarks: with modelId, by a "
                         "registered landmark model (run in a child process); without, from "
                         "the placed anchors S, N and Me (template baseline). Confirm them to "
                         "use them.")
    async def suggest_landmarks(self, info: Info, tracing_id: strawberry.ID, version: int,
                                model_id: strawberry.ID | None = None) -> TracingNode:
        if model_id is None:
            return await _tracing_step(info, tracing_id, version, "suggest_landmarks")
        # Imported here: api.landmark_models uses this module's calibration helper.
        from api.landmark_models import suggest_with_model

        actor, services = actor_of(info), info.context.services

        def run() -> TracingNode:
            edited = suggest_with_model(services, actor, parse_id(tracing_id, "tracingId"),
                                        version, parse_id(model_id, "modelId"))
            return _tracing_after(services, actor, edited)

        return await blocking(run)

    @strawberry.mutation(description="Accept suggestions (all when codes is omitted).")
    async def confirm_landmarks(self, info: Info, tracing_id: strawberry.ID, version: int,
                                codes: list[str] | None = None) -> TracingNode:
        actor, services = actor_of(info), info.context.services

        def run() -> TracingNode:
            edited = services.app.confirm_landmarks(actor, parse_id(tracing_id, "tracingId"),
                                                    version, codes)
            return _tracing_after(services, actor, edited)

        return await blocking(run)

    @strawberry.mutation
    async def remove_landmarks(self, info: Info, tracing_id: strawberry.ID, version: int,
                               codes: list[str]) -> TracingNode:
        actor, services = actor_of(info), info.context.services

        def run() -> TracingNode:
            edited = services.app.remove_landmarks(actor, parse_id(tracing_id, "tracingId"),
                                                   version, codes)
            return _tracing_after(services, actor, edited)

        return await blocking(run)

    @strawberry.mutation
    async def undo_tracing(self, info: Info, tracing_id: strawberry.ID, version: int
                           ) -> TracingNode:
        return await _tracing_step(info, tracing_id, version, "undo_tracing")

    @strawberry.mutation
    async def redo_tracing(self, info: Info, tracing_id: strawberry.ID, version: int
                           ) -> TracingNode:
        return await _tracing_step(info, tracing_id, version, "redo_tracing")

    @strawberry.mutation
    async def discard_tracing(self, info: Info, tracing_id: strawberry.ID, version: int
                              ) -> TracingNode:
        return await _tracing_step(info, tracing_id, version, "discard_tracing")


__all__ = ["AnnotationMutation", "AnnotationQuery", "analyse", "ceph_measurement",
           "image_calibration", "superimposed"]
