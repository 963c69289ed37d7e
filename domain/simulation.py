"""The Simulation aggregate: one growth forecast, VTO, outcome preview or set-up analysis.

Every simulation is a prediction and is stored as one: the parameters it was run with, the
result it produced and the versions of the reference data it used are events, so a result
is read back exactly as it was recorded and never silently recomputed with newer tables.
A VTO plan is revised, not overwritten: each revision is a new event and a new result, and
earlier revisions stay readable (time travel). Several simulations per patient are the
alternatives a clinician compares.

Quick kinds (growth forecast, VTO) are computed by the command and recorded in the same
transaction as the request. Heavy kinds (warping a photo, registering meshes) are recorded
as requested; a worker computes them and records ``Completed`` or ``Failed`` for that
revision. Every event carries the actor and the patient and clinic ids, so each run is
audited and sealed with the patient's key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import Conflict, InvalidInput
from domain.values import Actor, BlobRef

MAX_LABEL = 120
MAX_LANDMARKS = 200
MAX_CODE = 16
# Beyond any real image: larger values are input errors (and would overflow the geometry).
MAX_PIXEL = 1e6
MIN_MM_PER_PIXEL = 0.001
MAX_MM_PER_PIXEL = 10.0
PREDICTION_NOTICE = (
    "Simulation: an average-based prediction for explaining a plan, not a diagnosis or a "
    "guaranteed outcome."
)
DESIGN_NOTICE = (
    "Smile design guides: apparent proportions on a 2-D photo compared with design ideals, "
    "not norms for this patient."
)


class SimulationKind(StrEnum):
    GROWTH_FORECAST = "growth_forecast"
    VTO = "vto"
    OUTCOME_PREVIEW = "outcome_preview"
    SETUP_ANALYSIS = "setup_analysis"
    SMILE_DESIGN = "smile_design"  # design guides measured on a photo, not a prediction

    @property
    def is_prediction(self) -> bool:
        return self is not SimulationKind.SMILE_DESIGN

    @property
    def runs_in_worker(self) -> bool:
        return self in (SimulationKind.OUTCOME_PREVIEW, SimulationKind.SETUP_ANALYSIS)


class SimulationStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


class Simulation(Aggregate):
    @staticmethod
    def create_id(simulation_id: UUID) -> UUID:
        # Chosen by the caller: a set-up's mesh blobs are stored under it before the request.
        return simulation_id

    @event("Requested")
    def __init__(
        self, *, simulation_id: UUID, clinic_id: str, patient_id: UUID, kind: str, label: str,
        parameters: dict[str, Any], inputs: dict[str, BlobRef], actor: Actor,
    ) -> None:
        self.clinic_id = clinic_id
        self.patient_id = patient_id
        self.kind = kind
        self.label = label
        self.parameters = parameters
        self.inputs = inputs
        self.revision = 1
        self.status = SimulationStatus.PENDING.value
        self.result: dict[str, Any] | None = None
        self.outputs: dict[str, BlobRef] = {}
        self.failure: dict[str, str] | None = None
        self.withdrawn: str | None = None

    @event("Revised")
    def revise(self, *, clinic_id: str, patient_id: UUID, revision: int, label: str,
               parameters: dict[str, Any], actor: Actor) -> None:
        self.revision = revision
        self.label = label
        self.parameters = parameters
        self.status = SimulationStatus.PENDING.value
        self.result = None
        self.outputs = {}
        self.failure = None

    @event("Completed")
    def complete(self, *, clinic_id: str, patient_id: UUID, revision: int,
                 result: dict[str, Any], outputs: dict[str, BlobRef], actor: Actor) -> None:
        self.status = SimulationStatus.COMPLETED.value
        self.result = result
        self.outputs = dict(outputs)

    @event("Failed")
    def fail(self, *, clinic_id: str, patient_id: UUID, revision: int, code: str,
             message: str, actor: Actor) -> None:
        self.status = SimulationStatus.FAILED.value
        self.failure = {"code": code, "message": message}

    @event("OutputsWithdrawn")
    def withdraw_outputs(self, *, clinic_id: str, patient_id: UUID, reason: str,
                         actor: Actor) -> None:
        """The images are deleted (their source photo was destroyed); numbers stay."""
        self.outputs = {}
        self.withdrawn = reason

    @property
    def settled(self) -> bool:
        return self.status != SimulationStatus.PENDING.value

    def record_result(self, revision: int, result: dict[str, Any], outputs: dict[str, BlobRef],
                      actor: Actor) -> None:
        self._check_current(revision)
        self.complete(clinic_id=self.clinic_id, patient_id=self.patient_id, revision=revision,
                      result=result, outputs=outputs, actor=actor)

    def record_failure(self, revision: int, code: str, message: str, actor: Actor) -> None:
        self._check_current(revision)
        self.fail(clinic_id=self.clinic_id, patient_id=self.patient_id, revision=revision,
                  code=code, message=message[:300], actor=actor)

    def _check_current(self, revision: int) -> None:
        if revision != self.revision or self.settled:
            raise Conflict("simulation_superseded",
                           "the simulation was revised or already has its result")


# --- input checks shared by the commands (pure) -----------------------------------------------


def clean_label(label: str) -> str:
    cleaned = " ".join(label.split())
    if len(cleaned) > MAX_LABEL or any(not ch.isprintable() for ch in cleaned):
        raise InvalidInput("invalid_label", f"a label is at most {MAX_LABEL} printable characters")
    return cleaned


def tracing_from(landmarks: Sequence[tuple[str, float, float]]) -> dict[str, tuple[float, float]]:
    """A tracing as a code -> (x, y) map; each code once, finite pixel coordinates."""
    if not landmarks:
        raise InvalidInput("missing_landmarks", "send the tracing's landmarks")
    if len(landmarks) > MAX_LANDMARKS:
        raise InvalidInput("too_many_landmarks", f"at most {MAX_LANDMARKS} landmarks")
    tracing: dict[str, tuple[float, float]] = {}
    for code, x, y in landmarks:
        if not code or len(code) > MAX_CODE or not code.isprintable():
            raise InvalidInput("unknown_landmark", "landmark codes are 1-16 printable characters")
        if code in tracing:
            raise InvalidInput("duplicate_landmark", f"landmark {code[:16]!r} is given twice")
        if not (math.isfinite(x) and math.isfinite(y)) or max(abs(x), abs(y)) > MAX_PIXEL:
            raise InvalidInput("invalid_coordinates",
                               f"landmark {code!r} must be a pixel position within"
                               f" {MAX_PIXEL:g} px")
        tracing[code] = (float(x), float(y))
    return tracing


def clicks_from(points: Sequence[tuple[float, float]], what: str) -> list[list[float]]:
    """Clicked pixel positions: finite and within any image's reach."""
    if any(not (math.isfinite(x) and math.isfinite(y)) or max(abs(x), abs(y)) > MAX_PIXEL
           for x, y in points):
        raise InvalidInput("invalid_coordinates", f"{what} must be pixel positions within"
                                                  f" {MAX_PIXEL:g} px")
    return [[float(x), float(y)] for x, y in points]


def calibration(mm_per_pixel: float) -> float:
    """A radiograph's scale: X-ray detectors and film scans are 0.01-1 mm per pixel."""
    if not (math.isfinite(mm_per_pixel) and MIN_MM_PER_PIXEL <= mm_per_pixel
            <= MAX_MM_PER_PIXEL):
        raise InvalidInput("invalid_calibration",
                           f"mmPerPixel must be {MIN_MM_PER_PIXEL:g}-{MAX_MM_PER_PIXEL:g}")
    return float(mm_per_pixel)


def plain(value: Any) -> Any:
    """Results as JSON-ready data: dataclasses to dicts, tuples to lists, NaN refused."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- the layout of an imported set-up (pure) --------------------------------------------------

SETUP_ARCHES = ("upper", "lower")
DEFAULT_STEP_LIMIT_MM = 0.25
MAX_STEP_LIMIT_MM = 5.0
_STAGE_FIELD = re.compile(r"^stage_(\d{1,3})_(upper|lower)$")
_SCAN_FIELD = re.compile(r"^scan_(upper|lower)$")


def setup_layout(field_names: Sequence[str]) -> list[dict[str, Any]]:
    """Check the files of a set-up import and say which stage and arch each one is.

    Files are named ``stage_<n>_<upper|lower>`` (one per stage and arch, as the planning
    software exports them) and optionally ``scan_<arch>`` (a later real scan to compare with
    the final stage). Stages must be consecutive, at least two, and an arch present at one
    stage present at all; otherwise ``setup_stages_mismatch``. Returns one entry per file,
    in the order given: ``{"field", "stage" (None for a scan), "arch"}``.
    """
    entries: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name in field_names:
        if name in seen:
            raise InvalidInput("duplicate_setup_file", f"{name[:40]!r} is sent twice")
        seen.add(name)
        if stage := _STAGE_FIELD.match(name):
            entries.append({"field": name, "stage": int(stage[1]), "arch": stage[2]})
        elif scan := _SCAN_FIELD.match(name):
            entries.append({"field": name, "stage": None, "arch": scan[1]})
        else:
            raise InvalidInput("invalid_setup_file",
                               f"{name[:40]!r}: name files stage_<n>_<upper|lower> or"
                               " scan_<upper|lower>")
    numbers = sorted({e["stage"] for e in entries if e["stage"] is not None})
    if len(numbers) < 2:
        raise InvalidInput("setup_stages_mismatch", "a set-up needs at least two stages")
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        raise InvalidInput("setup_stages_mismatch",
                           f"stage numbers must be consecutive, got {numbers}")
    arches = {e["arch"] for e in entries if e["stage"] is not None}
    for arch in sorted(arches):
        have = {e["stage"] for e in entries if e["arch"] == arch and e["stage"] is not None}
        missing = [n for n in numbers if n not in have]
        if missing:
            raise InvalidInput("setup_stages_mismatch",
                               f"the {arch} arch is missing at stages {missing}")
    for entry in entries:
        if entry["stage"] is None and entry["arch"] not in arches:
            raise InvalidInput("setup_stages_mismatch",
                               f"a {entry['arch']} scan needs {entry['arch']} stages to compare")
    return entries


def step_limit(value: str | float | None) -> float:
    if value is None or value == "":
        return DEFAULT_STEP_LIMIT_MM
    try:
        limit = float(value)
    except ValueError:
        raise InvalidInput("invalid_step_limit", "stepLimitMm must be a number") from None
    if not (math.isfinite(limit) and 0 < limit <= MAX_STEP_LIMIT_MM):
        raise InvalidInput("invalid_step_limit",
                           f"stepLimitMm must be above 0 and at most {MAX_STEP_LIMIT_MM:g}")
    return limit
