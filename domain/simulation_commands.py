"""Commands for treatment simulations (mixed into the imaging service).

Who may do what (from the permission table, nothing hard-coded by role):
- run a growth forecast, a VTO or an outcome preview: ``imaging:cephalometric`` (they are
  cephalometric planning);
- import an aligner set-up: ``imaging:capture`` and ``imaging:3d_view``;
- read a simulation: full ``imaging:view`` (plus ``imaging:3d_view`` for a set-up); the
  limited view grades (thumbnails, metadata) see no simulations;
- export one: ``imaging:export``, and for marketing or education the patient's consent.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from domain.access import AccessRecord
from domain.consent_rules import Purpose
from domain.errors import Conflict, Gone, InvalidInput, NotFound, Unprocessable
from domain.growth import GROWTH_DATA_VERSION, forecast_growth
from domain.image import Image, ImageCategory
from domain.measurement import Calibration
from domain.patient import Sex
from domain.permissions import Grant, Permission, require
from domain.photo_warp import fit_affine, fit_similarity
from domain.simulation import (
    DESIGN_NOTICE,
    PREDICTION_NOTICE,
    Simulation,
    SimulationKind,
    SimulationStatus,
    calibration,
    clean_label,
    clicks_from,
    plain,
    setup_layout,
    step_limit,
    tracing_from,
)
from domain.smile_design import SmilePoints, analyse_smile
from domain.values import Actor, BlobRef
from domain.vto import SOFT_TISSUE_RATIOS_VERSION, PlannedMovement, TreatmentPlan, apply_plan

MAX_REGISTRATION_PAIRS = 20
MAX_SETUP_MESHES = 120
# Photo pixels per ceph pixel: a profile photo and a ceph scan are within two decades.
MIN_PHOTO_SCALE, MAX_PHOTO_SCALE = 0.01, 100.0
SEXES = tuple(s.value for s in Sex)
EXPORT_PURPOSES = ("clinical", "marketing", "educational")
EXPORT_ACCESS_KIND = "simulation_export"
RASTER_PHOTO_TYPES = ("image/jpeg", "image/png", "image/tiff", "image/webp", "image/heic",
                      "image/heif", "image/avif")


def _years_between(birth: date, day: date) -> float:
    return (day - birth).days / 365.2425


@dataclass(frozen=True)
class TracingScale:
    mm_per_pixel: float
    source: str  # a CalibrationSource value, or "client" for the request's own figure


def tracing_scale(client_mm_per_pixel: float | None, image_calibration: Calibration | None
                  ) -> TracingScale:
    """The image's effective calibration when it has one; the client's figure only when it
    has none (and recorded as the client's)."""
    if image_calibration is not None:
        if not image_calibration.is_isotropic:
            raise Conflict("anisotropic_pixels",
                           "the image has non-square pixels; simulations need square ones")
        return TracingScale(calibration(image_calibration.mm_per_pixel),
                            image_calibration.source.value)
    if client_mm_per_pixel is None:
        raise Unprocessable("calibration_required",
                            "the image has no calibration: calibrate it or send mmPerPixel")
    return TracingScale(calibration(client_mm_per_pixel), "client")


def acquisition_date(image: Image) -> date:
    """The day the radiograph was taken: DICOM Study Date, else the image's capture time."""
    study_date = (image.metadata.get("dicom") or {}).get("study_date")
    if isinstance(study_date, str) and study_date:
        try:
            return date.fromisoformat(study_date)
        except ValueError:
            pass  # an unreadable study date: the capture time is the next best witness
    return image.captured_at.date()


def _movement_payload(movements: Sequence[PlannedMovement]) -> list[dict[str, Any]]:
    return [plain(m) for m in movements]


class SimulationCommands:
    """Uses the application's repository, log, ``_save``, ``get_patient``, ``get_image`` and
    ``check_use_consent`` (domain/consent_rules.py)."""

    repository: Any
    _save: Any
    get_patient: Any
    get_image: Any
    check_use_consent: Any
    check_photograph_consent: Any
    events: Any
    recorder: Any
    mapper: Any

    # ---- reading -------------------------------------------------------------------------

    def _simulation(self, actor: Actor, simulation_id: UUID) -> Simulation:
        try:
            simulation = self.repository.get(simulation_id)
        except (AggregateNotFoundError, Gone):
            raise NotFound("simulation_not_found", "no such simulation") from None
        if not isinstance(simulation, Simulation) or simulation.clinic_id != actor.clinic_id:
            raise NotFound("simulation_not_found", "no such simulation")
        return simulation

    def simulation(self, actor: Actor, simulation_id: UUID) -> Simulation:
        simulation = self._simulation(actor, simulation_id)  # tenancy before permissions
        require(actor, Permission.VIEW)
        if simulation.kind == SimulationKind.SETUP_ANALYSIS.value:
            require(actor, Permission.VIEW_3D)
        return simulation

    def simulation_revisions(self, actor: Actor, simulation_id: UUID) -> list[dict[str, Any]]:
        """Every recorded run, oldest first: revision, parameters, status, result, when, who."""
        self.simulation(actor, simulation_id)
        return self.recorded_runs(simulation_id)

    def recorded_runs(self, simulation_id: UUID) -> list[dict[str, Any]]:
        """The runs of a simulation from its events; no tenancy check (workers, after one)."""
        runs: dict[int, dict[str, Any]] = {}
        for ev in self.events.get(simulation_id):
            if isinstance(ev, Simulation.Requested):
                runs[1] = {"revision": 1, "parameters": ev.parameters, "label": ev.label,
                           "requested_at": ev.timestamp, "actor": ev.actor}
            elif isinstance(ev, Simulation.Revised):
                runs[ev.revision] = {"revision": ev.revision, "parameters": ev.parameters,
                                     "label": ev.label, "requested_at": ev.timestamp,
                                     "actor": ev.actor}
            elif isinstance(ev, Simulation.Completed) and ev.revision in runs:
                runs[ev.revision].update(status="completed", result=ev.result,
                                         outputs=ev.outputs, settled_at=ev.timestamp)
            elif isinstance(ev, Simulation.Failed) and ev.revision in runs:
                runs[ev.revision].update(status="failed", failure={"code": ev.code,
                                         "message": ev.message}, settled_at=ev.timestamp)
        return [runs[k] for k in sorted(runs)]

    # ---- growth forecast and VTO (computed here: pure and fast) -------------------------

    def _tracing_context(self, actor: Actor, patient_id: UUID, image_id: UUID | None
                         ) -> tuple[Any, Image | None]:
        require(actor, Permission.CEPHALOMETRIC)
        patient = self.get_patient(patient_id, actor)
        image = None
        if image_id is not None:
            image = self.get_image(image_id, actor)
            if image.patient_id != patient.id:
                raise Conflict("image_patient_mismatch", "the image belongs to another patient")
        return patient, image

    def run_growth_forecast(
        self, actor: Actor, patient_id: UUID, *, landmarks: Sequence[tuple[str, float, float]],
        mm_per_pixel: float | None, years: float, age: float | None, sex: str | None,
        image_id: UUID | None, label: str, image_calibration: Calibration | None = None,
    ) -> tuple[UUID, int]:
        """``image_calibration`` is the image's effective calibration (the caller reads the
        ruler from the annotations read model); it beats the client's ``mm_per_pixel``."""
        patient, image = self._tracing_context(actor, patient_id, image_id)
        tracing = tracing_from(landmarks)
        scale = tracing_scale(mm_per_pixel, image_calibration)
        if age is not None:
            age_source, acquired_on = "client", None
        elif image is not None:
            # The patient's age on the day the radiograph was taken, as the analyses use:
            # an old ceph forecast from today's age starts from the wrong face.
            age_source, acquired_on = "radiograph_date", acquisition_date(image)
            age = round(_years_between(patient.birth_date, acquired_on), 2)
        else:
            age_source, acquired_on = "today", datetime.now(UTC).date()
            age = round(_years_between(patient.birth_date, acquired_on), 2)
        sex = (sex or patient.sex).strip().lower()
        if sex not in SEXES:
            raise InvalidInput("invalid_sex", f"sex is one of {', '.join(SEXES)}")
        forecast = forecast_growth(tracing, scale.mm_per_pixel, age=age, years=years, sex=sex)
        parameters = {
            "landmarks": {c: list(xy) for c, xy in tracing.items()},
            "mm_per_pixel": scale.mm_per_pixel, "calibration_source": scale.source,
            "age": age, "age_source": age_source,
            "acquired_on": acquired_on.isoformat() if acquired_on else None,
            "years": years, "sex": sex,
            "image_id": str(image_id) if image_id else None,
        }
        result = {**plain(forecast), "data_version": GROWTH_DATA_VERSION,
                  "notice": PREDICTION_NOTICE}
        return self._save_computed(actor, patient.id, SimulationKind.GROWTH_FORECAST, label,
                                   parameters, result)

    def run_vto(
        self, actor: Actor, patient_id: UUID, *, landmarks: Sequence[tuple[str, float, float]],
        mm_per_pixel: float | None, movements: Sequence[PlannedMovement],
        image_id: UUID | None, label: str, image_calibration: Calibration | None = None,
    ) -> tuple[UUID, int]:
        patient, _image = self._tracing_context(actor, patient_id, image_id)
        tracing = tracing_from(landmarks)
        scale = tracing_scale(mm_per_pixel, image_calibration)
        parameters = {
            "landmarks": {c: list(xy) for c, xy in tracing.items()},
            "mm_per_pixel": scale.mm_per_pixel, "calibration_source": scale.source,
            "movements": _movement_payload(movements),
            "image_id": str(image_id) if image_id else None,
        }
        result = self._vto_result(tracing, scale.mm_per_pixel, movements, label)
        return self._save_computed(actor, patient.id, SimulationKind.VTO, label, parameters,
                                   result)

    def revise_vto(
        self, actor: Actor, simulation_id: UUID, *, movements: Sequence[PlannedMovement],
        label: str | None, expected_revision: int,
    ) -> tuple[UUID, int]:
        """A new revision of a VTO plan on the same tracing; the earlier ones stay readable."""
        simulation = self._simulation(actor, simulation_id)
        require(actor, Permission.CEPHALOMETRIC)
        if simulation.kind != SimulationKind.VTO.value:
            raise Conflict("not_a_vto", "only VTO plans are revised; run a new simulation")
        if expected_revision != simulation.revision:
            raise Conflict("stale_revision",
                           f"the plan is at revision {simulation.revision}; reload and retry")
        new_label = simulation.label if label is None else clean_label(label)
        tracing = {c: (float(x), float(y))
                   for c, (x, y) in simulation.parameters["landmarks"].items()}
        mm_per_pixel = float(simulation.parameters["mm_per_pixel"])
        result = self._vto_result(tracing, mm_per_pixel, movements, new_label)
        parameters = {**simulation.parameters, "movements": _movement_payload(movements)}
        revision = simulation.revision + 1
        simulation.revise(clinic_id=simulation.clinic_id, patient_id=simulation.patient_id,
                          revision=revision, label=new_label, parameters=parameters, actor=actor)
        simulation.record_result(revision, result, {}, actor)
        try:
            return simulation.id, self._save(simulation)
        except IntegrityError:
            # Someone saved revision N+1 between our read and our write.
            raise Conflict("stale_revision", "the plan was revised meanwhile; reload and retry"
                           ) from None

    @staticmethod
    def _vto_result(tracing: dict[str, tuple[float, float]], mm_per_pixel: float,
                    movements: Sequence[PlannedMovement], label: str) -> dict[str, Any]:
        if not movements:
            raise InvalidInput("empty_plan", "a plan needs at least one movement")
        vto = apply_plan(tracing, mm_per_pixel, TreatmentPlan(tuple(movements), label))
        return {**plain(vto), "data_version": SOFT_TISSUE_RATIOS_VERSION,
                "notice": PREDICTION_NOTICE}

    def _save_computed(self, actor: Actor, patient_id: UUID, kind: SimulationKind, label: str,
                       parameters: dict[str, Any], result: dict[str, Any]) -> tuple[UUID, int]:
        simulation = Simulation(
            clinic_id=actor.clinic_id, patient_id=patient_id, kind=kind.value,
            label=clean_label(label), parameters=parameters, inputs={}, actor=actor,
            simulation_id=new_simulation_id(),
        )
        simulation.record_result(1, result, {}, actor)
        return simulation.id, self._save(simulation)  # request and result: one commit

    # ---- smile design (computed here) ------------------------------------------------------

    def run_smile_design(
        self, actor: Actor, patient_id: UUID, *, photo_image_id: UUID, points: SmilePoints,
        red_target_pct: float, label: str,
    ) -> tuple[UUID, int]:
        """Midline, smile arc and tooth-proportion guides on a frontal smile photo, kept as
        an annotation layer with the measured proportions."""
        require(actor, Permission.ANNOTATE, Grant.OWN)
        patient = self.get_patient(patient_id, actor)
        self._patient_photo(actor, patient.id, photo_image_id)
        analysis = analyse_smile(points, red_target_pct=red_target_pct)
        parameters = {"photo_image_id": str(photo_image_id), "points": plain(points),
                      "red_target_pct": red_target_pct}
        result = {**plain(analysis), "notice": DESIGN_NOTICE}
        return self._save_computed(actor, patient.id, SimulationKind.SMILE_DESIGN, label,
                                   parameters, result)

    def _patient_photo(self, actor: Actor, patient_id: UUID, image_id: UUID) -> Any:
        photo = self.get_image(image_id, actor)
        if photo.patient_id != patient_id:
            raise Conflict("image_patient_mismatch", "the photo belongs to another patient")
        if photo.is_deleted:
            raise Conflict("image_deleted", "the photo is deleted; restore it first")
        if (not ImageCategory(photo.category).is_photograph
                or photo.original.media_type not in RASTER_PHOTO_TYPES):
            raise InvalidInput("not_a_photo", "this needs a raster photograph")
        self.check_photograph_consent(actor, self.get_patient(patient_id, actor),
                                      ImageCategory(photo.category))
        return photo

    # ---- outcome preview (a worker warps the photo) ---------------------------------------

    def request_outcome_preview(
        self, actor: Actor, patient_id: UUID, *, photo_image_id: UUID,
        source_simulation_id: UUID, photo_points: Sequence[tuple[float, float]],
        tracing_points: Sequence[tuple[float, float]], label: str,
    ) -> tuple[UUID, int]:
        """Warp a profile photo by a VTO's (or growth forecast's) soft-tissue displacement.

        The photo is registered to the ceph by a similarity fitted to clicked point pairs
        (tracing -> photo). Three pairs at least, not on one line: two would fit exactly and
        leave no check of the clicks.
        """
        require(actor, Permission.CEPHALOMETRIC)
        patient = self.get_patient(patient_id, actor)
        photo = self._patient_photo(actor, patient.id, photo_image_id)
        source = self._simulation(actor, source_simulation_id)
        if source.patient_id != patient.id:
            raise Conflict("simulation_patient_mismatch",
                           "the simulation belongs to another patient")
        if source.kind not in (SimulationKind.VTO.value, SimulationKind.GROWTH_FORECAST.value):
            raise InvalidInput("invalid_source_simulation",
                               "the displacement comes from a VTO or a growth forecast")
        if source.status != SimulationStatus.COMPLETED.value:
            raise Conflict("simulation_not_ready", "the source simulation has no result")
        if not 3 <= len(photo_points) == len(tracing_points) <= MAX_REGISTRATION_PAIRS:
            raise InvalidInput(
                "degenerate_registration",
                f"give 3 to {MAX_REGISTRATION_PAIRS} point pairs, as many on the photo as on"
                " the tracing",
            )
        tracing_points = clicks_from(tracing_points, "tracingPoints")
        photo_points = clicks_from(photo_points, "photoPoints")
        fit_affine(tracing_points, photo_points)  # refuses collinear clicks
        similarity = fit_similarity(tracing_points, photo_points)
        if not (math.isfinite(similarity.scale)
                and MIN_PHOTO_SCALE <= similarity.scale <= MAX_PHOTO_SCALE):
            raise InvalidInput("degenerate_registration",
                               "the clicks give an implausible scale between ceph and photo")
        parameters = {
            "photo_image_id": str(photo.id),
            "source_simulation_id": str(source.id), "source_revision": source.revision,
            "photo_points": photo_points, "tracing_points": tracing_points,
            "registration": plain(similarity),
        }
        simulation = Simulation(
            clinic_id=actor.clinic_id, patient_id=patient.id,
            kind=SimulationKind.OUTCOME_PREVIEW.value, label=clean_label(label),
            parameters=parameters, inputs={}, actor=actor, simulation_id=new_simulation_id(),
        )
        return simulation.id, self._save(simulation)

    # ---- aligner set-ups (a worker analyses the meshes) -----------------------------------

    def check_setup_import(self, actor: Actor, patient_id: UUID) -> None:
        """What must hold before a set-up's mesh bytes are stored."""
        require(actor, Permission.CAPTURE)
        require(actor, Permission.VIEW_3D)
        self.get_patient(patient_id, actor)

    def request_setup_analysis(
        self, actor: Actor, patient_id: UUID, simulation_id: UUID, *,
        parameters: dict[str, Any], inputs: dict[str, BlobRef], label: str,
    ) -> tuple[UUID, int]:
        self.check_setup_import(actor, patient_id)
        simulation = Simulation(
            clinic_id=actor.clinic_id, patient_id=patient_id,
            kind=SimulationKind.SETUP_ANALYSIS.value, label=clean_label(label),
            parameters=parameters, inputs=inputs, actor=actor, simulation_id=simulation_id,
        )
        return simulation.id, self._save(simulation)

    def request_setup_from_scans(
        self, actor: Actor, patient_id: UUID, *,
        stages: Sequence[tuple[int, UUID | None, UUID | None]],
        scans: dict[str, UUID], step_limit_mm: float, label: str,
    ) -> tuple[UUID, int]:
        """A set-up analysis of meshes already in the patient's gallery (category scan):
        ``stages`` as (number, upper image id, lower image id), ``scans`` a later real scan
        per arch to compare with the final stage."""
        self.check_setup_import(actor, patient_id)
        named: dict[str, UUID] = {}
        for number, upper, lower in stages:
            for arch, image_id in (("upper", upper), ("lower", lower)):
                if image_id is not None:
                    named[f"stage_{number}_{arch}"] = image_id
        for arch, image_id in scans.items():
            named[f"scan_{arch}"] = image_id
        if len(named) > MAX_SETUP_MESHES:
            raise InvalidInput("too_many_meshes", f"a set-up has at most {MAX_SETUP_MESHES}"
                                                  " meshes")
        layout = setup_layout(list(named))
        files = []
        for entry in layout:
            image = self.get_image(named[entry["field"]], actor)
            if image.patient_id != patient_id:
                raise Conflict("image_patient_mismatch", "a mesh belongs to another patient")
            if image.is_deleted:
                raise Conflict("image_deleted", "a mesh is deleted; restore it first")
            if (image.category != ImageCategory.SCAN.value
                    or not image.original.media_type.startswith("model/")):
                raise InvalidInput("not_a_mesh", "set-up stages must be uploaded 3D scans")
            files.append({"image_id": str(image.id), "stage": entry["stage"],
                          "arch": entry["arch"], "filename": image.filename})
        simulation = Simulation(
            clinic_id=actor.clinic_id, patient_id=patient_id,
            kind=SimulationKind.SETUP_ANALYSIS.value, label=clean_label(label),
            parameters={"files": files, "step_limit_mm": step_limit(step_limit_mm)},
            inputs={}, actor=actor, simulation_id=new_simulation_id(),
        )
        return simulation.id, self._save(simulation)

    # ---- worker results --------------------------------------------------------------------

    def record_simulation_result(
        self, actor: Actor, simulation_id: UUID, revision: int, result: dict[str, Any],
        outputs: dict[str, BlobRef],
    ) -> tuple[UUID, int]:
        simulation: Simulation = self.repository.get(simulation_id)
        simulation.record_result(revision, {**result, "notice": PREDICTION_NOTICE}, outputs,
                                 actor)
        return simulation.id, self._save(simulation)

    def record_simulation_failure(self, actor: Actor, simulation_id: UUID, revision: int,
                                  code: str, message: str) -> tuple[UUID, int]:
        simulation: Simulation = self.repository.get(simulation_id)
        simulation.record_failure(revision, code, message, actor)
        return simulation.id, self._save(simulation)

    def previews_of_photo(self, photo_id: UUID, before: int) -> list[UUID]:
        """Outcome previews requested from a photo, among events before log position
        ``before``. Reads the log itself (rare: on an image's destruction), so it never
        depends on a read model having caught up."""
        topic = get_topic(Simulation.Requested)
        found: list[UUID] = []
        start = None
        while True:
            page = self.recorder.select_notifications(start=start, limit=500, stop=before - 1,
                                                      topics=[topic])
            for notification in page:
                ev = self.mapper.to_domain_event(notification)
                if (isinstance(ev, Simulation.Requested)
                        and ev.kind == SimulationKind.OUTCOME_PREVIEW.value
                        and ev.parameters.get("photo_image_id") == str(photo_id)):
                    found.append(ev.originator_id)
            if len(page) < 500:
                return found
            start = page[-1].id + 1

    def withdraw_simulation_outputs(self, actor: Actor, simulation_id: UUID, reason: str
                                    ) -> tuple[UUID, int] | None:
        """Record that a simulation's images were deleted; None if nothing was left."""
        simulation: Simulation = self.repository.get(simulation_id)
        if simulation.withdrawn is not None:
            return None
        simulation.withdraw_outputs(clinic_id=simulation.clinic_id,
                                    patient_id=simulation.patient_id, reason=reason,
                                    actor=actor)
        return simulation.id, self._save(simulation)

    # ---- exports ---------------------------------------------------------------------------

    def record_simulation_export(self, actor: Actor, simulation_id: UUID, purpose: str,
                                 what: str) -> tuple[Simulation, int]:
        """Check an export (permission, consent for marketing/education) and log it."""
        simulation = self.simulation(actor, simulation_id)
        require(actor, Permission.EXPORT)
        if purpose not in EXPORT_PURPOSES:
            raise InvalidInput("invalid_purpose", f"purpose is one of {', '.join(EXPORT_PURPOSES)}")
        if purpose != "clinical":
            # The practice's consent rules decide (and record a refusal): 409 consent_required.
            self.check_use_consent(actor, simulation.patient_id, Purpose(purpose),
                                   datetime.now(UTC))
        if simulation.status != SimulationStatus.COMPLETED.value:
            raise Conflict("simulation_not_ready", "the simulation has no result to export")
        position = self.log_simulation_access(actor, simulation,
                                              f"{EXPORT_ACCESS_KIND}:{what}:{purpose}")
        return simulation, position

    def log_simulation_access(self, actor: Actor, simulation: Simulation, kind: str) -> int:
        """An access record for a simulation output or export (audited like image views)."""
        return self._save(AccessRecord(clinic_id=actor.clinic_id, image_id=simulation.id,
                                       patient_id=simulation.patient_id, kind=kind[:120],
                                       actor=actor))


def new_simulation_id() -> UUID:
    return uuid.uuid4()
