"""Growth forecast of a cephalometric tracing from average annual increments.

The method is the mean-increment forecast (Johnston 1975): register on S with S-N fixed, and
move every landmark by the population's average yearly displacement times the years ahead.
It forecasts the *average* child of the reference population, so every result says so
(:data:`DISCLAIMER`); it knows nothing of this patient's growth pattern, maturity or
treatment.

Increments are versioned data, like the norms: each table carries its source, population,
sex and age range, and a ``status``. The default values are approximations of magnitudes
reported in the cited sources, not transcriptions of their tables, and all are marked
:data:`VERIFY`; replacing them means adding a table with a new version.

The frame (:class:`CranialBaseFrame`): origin at S, *anterior* along S->N, *inferior*
perpendicular to it on the side of the face. It is the same for a patient facing left or
right, so one increment table serves both; displacements are mm in that frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

from domain import geometry as g
from domain.cephalometry.analyses import analyze
from domain.cephalometry.landmarks import LANDMARKS, check_known
from domain.cephalometry.norms import Sex
from domain.errors import InvalidInput
from domain.geometry import Point, Vector

DISCLAIMER = "average-based estimate, not a prediction for this patient"
VERIFY = "verify before clinical use"
GROWTH_DATA_VERSION = "2025.1"

# Measurements whose forecast change a report shows by default (keys of analyses.py).
MAIN_MEASUREMENTS: tuple[str, ...] = (
    "sna",
    "snb",
    "anb",
    "sn_gogn",
    "fma",
    "facial_angle",
    "y_axis",
    "co_a",
    "co_gn",
    "ans_me",
    "facial_height_ratio",
    "lower_lip_to_e_plane",
)

# Landmarks below S-N that tell which side the face is on when the image is rotated.
_FACE_POINTS = ("Me", "Gn", "Pog", "B", "A", "ANS", "U1", "L1", "Go")


# --- the cranial-base frame -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CranialBaseFrame:
    """S at the origin, ``anterior`` along S->N, ``inferior`` towards the face (unit vectors).

    For a patient facing right (image y down) the frame is the image's own axes turned to
    S-N; facing left it is their mirror image, which is what lets one table serve both.
    """

    origin: Point
    anterior: Vector
    inferior: Vector

    @classmethod
    def of(cls, points: Mapping[str, Sequence[float]]) -> CranialBaseFrame:
        missing = [code for code in ("S", "N") if code not in points]
        if missing:
            raise InvalidInput(
                "missing_landmarks",
                f"the cranial-base frame needs S and N; missing {', '.join(missing)}",
            )
        s = (float(points["S"][0]), float(points["S"][1]))
        anterior = g.direction(s, points["N"], "S-N")
        perpendicular = (-anterior[1], anterior[0])  # S->N turned 90 degrees clockwise on screen
        side = sum(
            g.cross(anterior, g.sub(points[code], s)) for code in _FACE_POINTS if code in points
        )
        if side == 0.0:
            side = perpendicular[1]  # no face points: inferior is down the image
        inferior = perpendicular if side > 0 else (-perpendicular[0], -perpendicular[1])
        return cls(s, anterior, inferior)

    def vector_to_image(self, anterior_mm: float, inferior_mm: float) -> Vector:
        return (
            anterior_mm * self.anterior[0] + inferior_mm * self.inferior[0],
            anterior_mm * self.anterior[1] + inferior_mm * self.inferior[1],
        )

    def vector_to_frame(self, vector: Sequence[float]) -> tuple[float, float]:
        v = (float(vector[0]), float(vector[1]))
        return g.dot(v, self.anterior), g.dot(v, self.inferior)

    def point_to_frame(self, point: Sequence[float]) -> tuple[float, float]:
        return self.vector_to_frame(g.sub(point, self.origin))

    def point_to_image(self, anterior_mm: float, inferior_mm: float) -> Point:
        dx, dy = self.vector_to_image(anterior_mm, inferior_mm)
        return (self.origin[0] + dx, self.origin[1] + dy)

    @property
    def faces_right(self) -> bool:
        """True when the frame has the image's handedness (the profile faces right)."""
        return g.cross(self.anterior, self.inferior) > 0


# --- tracings in millimetres --------------------------------------------------------------------


def tracing_to_mm(tracing: Mapping[str, Sequence[float]], mm_per_pixel: float) -> dict[str, Point]:
    """Validated copy of a pixel tracing, in mm; simulations need real distances."""
    check_known(tracing)
    if not (isinstance(mm_per_pixel, int | float) and math.isfinite(mm_per_pixel)):
        raise InvalidInput("invalid_calibration", "mm_per_pixel must be a positive number")
    if mm_per_pixel <= 0:
        raise InvalidInput("invalid_calibration", "mm_per_pixel must be positive")
    points: dict[str, Point] = {}
    for code, xy in tracing.items():
        x, y = float(xy[0]), float(xy[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InvalidInput("invalid_coordinates", f"landmark {code} has non-finite coordinates")
        points[code] = (x * mm_per_pixel, y * mm_per_pixel)
    return points


def tracing_to_px(points_mm: Mapping[str, Point], mm_per_pixel: float) -> dict[str, Point]:
    return {code: (x / mm_per_pixel, y / mm_per_pixel) for code, (x, y) in points_mm.items()}


@dataclass(frozen=True, slots=True)
class LandmarkShift:
    """A landmark's predicted displacement: in the cranial-base frame and in the image."""

    code: str
    anterior_mm: float
    inferior_mm: float
    dx_px: float
    dy_px: float

    @property
    def distance_mm(self) -> float:
        return math.hypot(self.anterior_mm, self.inferior_mm)


def shifts_between(
    current_mm: Mapping[str, Point],
    predicted_mm: Mapping[str, Point],
    frame: CranialBaseFrame,
    mm_per_pixel: float,
) -> tuple[LandmarkShift, ...]:
    """Displacement of every landmark, in catalogue order."""
    shifts = []
    for landmark in LANDMARKS:
        code = landmark.code
        if code in current_mm and code in predicted_mm:
            dx, dy = g.sub(predicted_mm[code], current_mm[code])
            anterior, inferior = frame.vector_to_frame((dx, dy))
            shifts.append(
                LandmarkShift(code, anterior, inferior, dx / mm_per_pixel, dy / mm_per_pixel)
            )
    return tuple(shifts)


# --- measurements beside each other -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeasurementChange:
    key: str
    name: str
    unit: str
    current: float | None  # None when not computable on that tracing
    predicted: float | None
    change: float | None  # predicted - current, when both exist


def compare_measurements(
    current_px: Mapping[str, Sequence[float]],
    predicted_px: Mapping[str, Sequence[float]],
    mm_per_pixel: float,
    keys: Sequence[str] = MAIN_MEASUREMENTS,
) -> tuple[MeasurementChange, ...]:
    """The named measurements (analyses.py keys) on both tracings, in the order given."""
    before = {m.key: m for r in analyze(current_px, mm_per_pixel) for m in r.measurements}
    after = {m.key: m for r in analyze(predicted_px, mm_per_pixel) for m in r.measurements}
    unknown = [key for key in keys if key not in before]
    if unknown:
        raise InvalidInput("unknown_measurement", f"unknown measurements: {', '.join(unknown)}")
    changes = []
    for key in keys:
        b, a = before[key], after[key]
        change = a.value - b.value if a.value is not None and b.value is not None else None
        changes.append(MeasurementChange(key, b.name, b.unit, b.value, a.value, change))
    return tuple(changes)


# --- increment tables ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Increment:
    """Average displacement per year in the cranial-base frame (mm/year)."""

    code: str
    anterior_mm: float
    inferior_mm: float


@dataclass(frozen=True, slots=True)
class GrowthTable:
    """Increments for one population, sex and age band; ``age_min`` inclusive, max exclusive."""

    key: str
    source: str
    population: str
    sex: Sex
    age_min: float
    age_max: float
    increments: tuple[Increment, ...]
    status: str = VERIFY
    version: str = GROWTH_DATA_VERSION

    def applies_to(self, age: float, sex: Sex | None) -> bool:
        # Unknown sex gets only sex-neutral tables, as with the norms.
        if self.sex is not Sex.ANY and self.sex is not sex:
            return False
        return self.age_min <= age < self.age_max

    def increment(self, code: str) -> Increment | None:
        for inc in self.increments:
            if inc.code == code:
                return inc
        return None


JOHNSTON_1975 = (
    "Johnston LE Jr. A simplified approach to prediction. Am J Orthod 1975;67:253-257 "
    "(mean-increment forecast on S-N registered at S)"
)
RIOLO_1974 = (
    "Riolo ML, Moyers RE, McNamara JA Jr, Hunter WS. An atlas of craniofacial growth: "
    "cephalometric standards from the University School Growth Study. Monograph 2, "
    "Craniofacial Growth Series. Ann Arbor: University of Michigan; 1974"
)
STANDERWICK_2014 = (
    "Standerwick RG. Analysis of average horizontal and vertical mandibular growth "
    "components relative to the horizontal plane as determined from cross-sectional "
    "cephalometric normal standards. J Dent App 2014;1(4):55-60 (from the Riolo 1974 data)"
)

_BASE_SOURCE = (
    f"Approximate magnitudes after {RIOLO_1974}; method after {JOHNSTON_1975}. "
    "Values rounded by orthovault, not transcribed from a table"
)
_PUBERTAL_SOURCE = (
    f"Mandibular components after {STANDERWICK_2014}, which are relative to FH and are "
    f"applied here in the S-N frame; other values as the base table. {VERIFY}"
)
_MICHIGAN = "Untreated children of the University School Growth Study, Ann Arbor (Michigan)"


def _increments(values: Mapping[str, tuple[float, float]]) -> tuple[Increment, ...]:
    return tuple(Increment(code, a, i) for code, (a, i) in values.items())


# (anterior, inferior) mm/year. Teeth in occlusion get equal vectors (U1 = L1, molars and
# premolars upper = lower): on average the dentition erupts with the jaws, and unequal values
# would open or close the bite by the difference every year.
# fmt: off
_BASE: dict[str, tuple[float, float]] = {
    # Cranial base: S is the registration point; N stays on S-N by construction.
    "S": (0.0, 0.0), "N": (0.8, 0.0), "Or": (0.6, 0.4), "Po": (-0.3, 0.4),
    "Ar": (-0.3, 0.5), "Ba": (-0.4, 0.6), "Pt": (0.0, 0.3), "CC": (0.2, 0.4),
    # Maxilla: forward and down, the anterior nasal spine a little more forward.
    "A": (0.5, 1.0), "ANS": (0.6, 0.9), "PNS": (0.1, 0.9),
    # Mandible: symphysis forward and down, ramus and condyle back and up.
    "B": (0.9, 1.5), "Pog": (1.0, 1.6), "Gn": (1.0, 1.7), "Me": (0.9, 1.8), "Pm": (1.0, 1.6),
    "Go": (-0.1, 1.4), "Co": (-0.3, 0.5), "R": (-0.2, 1.0), "Xi": (0.0, 1.1), "DC": (-0.3, 0.5),
    # Dentition.
    "U1": (0.7, 1.3), "L1": (0.7, 1.3), "U1_apex": (0.5, 1.0), "L1_apex": (0.8, 1.5),
    "UPM": (0.6, 1.3), "LPM": (0.6, 1.3), "UM": (0.6, 1.3), "LM": (0.6, 1.3),
    # Soft tissue: the nose grows forward most; the soft chin follows the bony chin.
    "N_s": (0.8, 0.1), "Prn": (1.2, 0.8), "Sn": (0.7, 0.9), "UL": (0.7, 1.1),
    "LL": (0.9, 1.4), "Pog_s": (1.0, 1.6),
}

_FEMALE_PUBERTAL: dict[str, tuple[float, float]] = {
    **_BASE,
    "A": (0.6, 1.1), "ANS": (0.7, 1.0),
    "B": (1.3, 1.4), "Pog": (1.5, 1.5), "Gn": (1.5, 1.6), "Me": (1.4, 1.7), "Pm": (1.5, 1.5),
    "U1": (1.0, 1.4), "L1": (1.0, 1.4), "U1_apex": (0.7, 1.1), "L1_apex": (1.2, 1.5),
    "UPM": (0.8, 1.4), "LPM": (0.8, 1.4), "UM": (0.8, 1.4), "LM": (0.8, 1.4),
    "UL": (0.9, 1.2), "LL": (1.2, 1.4), "Pog_s": (1.5, 1.5),
}

_MALE_PUBERTAL: dict[str, tuple[float, float]] = {
    **_BASE,
    "N": (1.0, 0.0),
    "A": (0.8, 1.4), "ANS": (0.9, 1.3),
    "B": (1.8, 2.6), "Pog": (2.0, 2.8), "Gn": (2.0, 2.9), "Me": (1.9, 3.0), "Pm": (2.0, 2.7),
    "Go": (0.0, 2.0),
    "U1": (1.3, 2.1), "L1": (1.3, 2.1), "U1_apex": (0.9, 1.5), "L1_apex": (1.6, 2.5),
    "UPM": (1.0, 2.1), "LPM": (1.0, 2.1), "UM": (1.0, 2.1), "LM": (1.0, 2.1),
    "Prn": (1.5, 1.2), "Sn": (0.9, 1.2), "UL": (1.1, 1.8), "LL": (1.5, 2.2), "Pog_s": (2.0, 2.8),
}
# fmt: on

DEFAULT_GROWTH_TABLES: tuple[GrowthTable, ...] = (
    GrowthTable(
        "mean_increments_6_16", _BASE_SOURCE, _MICHIGAN, Sex.ANY, 6.0, 16.0, _increments(_BASE)
    ),
    GrowthTable(
        "mean_increments_pubertal_female",
        _PUBERTAL_SOURCE,
        _MICHIGAN + ", girls",
        Sex.FEMALE,
        10.0,
        14.0,
        _increments(_FEMALE_PUBERTAL),
    ),
    GrowthTable(
        "mean_increments_pubertal_male",
        _PUBERTAL_SOURCE,
        _MICHIGAN + ", boys",
        Sex.MALE,
        12.0,
        16.0,
        _increments(_MALE_PUBERTAL),
    ),
)


def select_table(
    age: float, sex: Sex | None, tables: Iterable[GrowthTable] = DEFAULT_GROWTH_TABLES
) -> GrowthTable | None:
    """The most specific table for this age: sex-specific, then narrower band, then newer."""
    candidates = [t for t in tables if t.applies_to(age, sex)]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda t: (t.sex is Sex.ANY, t.age_max - t.age_min, _newest_first(t.version)),
    )


def _newest_first(version: str) -> tuple[int, ...]:
    return tuple(-int(part) if part.isdigit() else 0 for part in version.split("."))


# --- the forecast -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableUse:
    """A table the forecast used, and for how many of the years."""

    key: str
    version: str
    source: str
    population: str
    sex: str
    age_min: float
    age_max: float
    status: str
    years: float


@dataclass(frozen=True, slots=True)
class GrowthForecast:
    age_from: float
    age_to: float
    years_covered: float  # years some table applied to
    years_uncovered: float  # years outside every table: no growth added for them
    predicted_px: Mapping[str, Point]
    shifts: tuple[LandmarkShift, ...]
    measurement_changes: tuple[MeasurementChange, ...]
    tables: tuple[TableUse, ...]
    not_modelled: tuple[str, ...]  # landmarks a used table has no increment for: left in place
    disclaimer: str = DISCLAIMER


# Beyond this a mean-increment forecast is meaningless (growth has ended, or the request is an
# input error).
MAX_FORECAST_YEARS = 20.0


def _to_sex(sex: Sex | str | None) -> Sex | None:
    if sex is None:
        return None
    try:
        parsed = Sex(str(sex).lower())
    except ValueError:
        return None
    return None if parsed is Sex.ANY else parsed


def _pieces(
    age_from: float, age_to: float, tables: Sequence[GrowthTable]
) -> list[tuple[float, float]]:
    """[age_from, age_to] cut at every table boundary inside it."""
    cuts = {age_from, age_to}
    cuts.update(b for t in tables for b in (t.age_min, t.age_max) if age_from < b < age_to)
    ordered = sorted(cuts)
    return list(pairwise(ordered))


def forecast_growth(
    tracing_px: Mapping[str, Sequence[float]],
    mm_per_pixel: float,
    *,
    age: float,
    years: float,
    sex: Sex | str | None = None,
    tables: Iterable[GrowthTable] = DEFAULT_GROWTH_TABLES,
    measurements: Sequence[str] = MAIN_MEASUREMENTS,
) -> GrowthForecast:
    """Forecast the tracing ``years`` ahead of ``age`` by adding average annual increments.

    The span is cut where tables begin or end, and each piece uses the most specific table
    for its age (a girl of 9 forecast 3 years: one year of the sex-neutral table, then two of
    the pubertal one). Years no table covers add nothing and are reported.
    """
    if not (isinstance(age, int | float) and math.isfinite(age) and 0 <= age < 120):
        raise InvalidInput("invalid_age", "age must be a number of years between 0 and 120")
    if not (isinstance(years, int | float) and math.isfinite(years)):
        raise InvalidInput("invalid_forecast_years", "years must be a finite number")
    if not 0 < years <= MAX_FORECAST_YEARS:
        raise InvalidInput(
            "invalid_forecast_years", f"years must be above 0 and at most {MAX_FORECAST_YEARS:g}"
        )
    table_list = tuple(tables)
    points = tracing_to_mm(tracing_px, mm_per_pixel)
    frame = CranialBaseFrame.of(points)
    patient_sex = _to_sex(sex)

    totals = dict.fromkeys(points, (0.0, 0.0))
    not_modelled: set[str] = set()
    uses: dict[tuple[str, str], float] = {}
    used: dict[tuple[str, str], GrowthTable] = {}
    uncovered = 0.0
    for start, end in _pieces(float(age), float(age) + float(years), table_list):
        span = end - start
        table = select_table((start + end) / 2.0, patient_sex, table_list)
        if table is None:
            uncovered += span
            continue
        ref = (table.key, table.version)
        uses[ref] = uses.get(ref, 0.0) + span
        used[ref] = table
        for code in points:
            inc = table.increment(code)
            if inc is None:
                not_modelled.add(code)
                continue
            a, i = totals[code]
            totals[code] = (a + inc.anterior_mm * span, i + inc.inferior_mm * span)

    predicted_mm = {}
    for code, (x, y) in points.items():
        dx, dy = frame.vector_to_image(*totals[code])
        predicted_mm[code] = (x + dx, y + dy)
    predicted_px = tracing_to_px(predicted_mm, mm_per_pixel)
    current_px = tracing_to_px(points, mm_per_pixel)
    return GrowthForecast(
        age_from=float(age),
        age_to=float(age) + float(years),
        years_covered=float(years) - uncovered,
        years_uncovered=uncovered,
        predicted_px=predicted_px,
        shifts=shifts_between(points, predicted_mm, frame, mm_per_pixel),
        measurement_changes=compare_measurements(
            current_px, predicted_px, mm_per_pixel, measurements
        ),
        tables=tuple(
            TableUse(
                t.key,
                t.version,
                t.source,
                t.population,
                t.sex.value,
                t.age_min,
                t.age_max,
                t.status,
                uses[ref],
            )
            for ref, t in used.items()
        ),
        not_modelled=tuple(lm.code for lm in LANDMARKS if lm.code in not_modelled),
    )


def with_increments(
    table: GrowthTable, version: str, **changes: tuple[float, float]
) -> GrowthTable:
    """A new version of ``table`` with some increments replaced (tables are never edited)."""
    values = {inc.code: (inc.anterior_mm, inc.inferior_mm) for inc in table.increments}
    check_known(changes)
    values.update(changes)
    return replace(table, increments=_increments(values), version=version)
