"""Cephalometric analyses computed on demand from placed landmarks.

Input is a mapping of landmark code to pixel position (x right, y down) and the image's
mm-per-pixel. Everything is converted to millimetres first, so norms in mm apply directly;
angles do not depend on the scale and are computed even without a calibration.

Conventions (see docs ORTHODONTICS.md):

- *Anterior* is the explicit ``facing`` vector if given, else S->N, else Po->Or. Signed
  distances and inclinations are positive anteriorly (incisor proclined, A ahead of N-Pog),
  so a ceph of a patient facing left gives the same numbers as the mirrored image.
- A measurement whose landmarks are missing, which needs a calibration that is absent, or
  whose points coincide is reported as not computable with a reason; it never raises.

Ricketts summary, chosen because each is a well-defined construction on placed points:
facial axis (angle Ba-N to Pt-Gn, reported as the posterior-inferior angle, 90 normal,
smaller = vertical grower), convexity at A point (distance of A from N-Pog, mm), lower
incisor to A-Pog (distance of the L1 tip, mm) and the lower and upper lip to the E-plane
(Prn-Pog_s, mm).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from domain import geometry as g
from domain.cephalometry.landmarks import check_known
from domain.cephalometry.norms import DEFAULT_NORMS, Norm, Sex, select_norm
from domain.errors import InvalidInput
from domain.geometry import Point, Vector

Points = Mapping[str, Point]
# Each computation receives the landmarks in mm (px when uncalibrated) and the unit
# anterior direction, which is None when it cannot be determined.
Compute = Callable[[Points, Vector | None], float]


@dataclass(frozen=True, slots=True)
class NormRef:
    mean: float | None
    sd: float | None
    range_low: float | None
    range_high: float | None
    source: str
    population: str
    version: str

    @classmethod
    def of(cls, norm: Norm) -> NormRef:
        return cls(
            norm.mean,
            norm.sd,
            norm.range_low,
            norm.range_high,
            norm.source,
            norm.population,
            norm.version,
        )


@dataclass(frozen=True, slots=True)
class CephMeasurement:
    key: str
    name: str
    unit: str
    value: float | None
    computable: bool
    # Why not computable: "missing_landmarks", "calibration_required",
    # "orientation_unknown" or "degenerate_geometry".
    reason: str | None
    missing_landmarks: tuple[str, ...]
    norm: NormRef | None
    deviation_sd: float | None
    interpretation: str


@dataclass(frozen=True, slots=True)
class AnalysisResult:
    key: str
    name: str
    measurements: tuple[CephMeasurement, ...]

    def get(self, key: str) -> CephMeasurement:
        for m in self.measurements:
            if m.key == key:
                return m
        raise KeyError(key)


@dataclass(frozen=True, slots=True)
class _Definition:
    key: str
    name: str
    unit: str  # "deg", "mm" (needs calibration) or "%"
    landmarks: tuple[str, ...]
    compute: Compute
    low: str  # what a value below the norm means
    high: str  # and above
    within: str = "within the norm"


class _NoAnterior(Exception):
    """Anterior is unknown; _evaluate turns this into a not-computable result."""


def _anterior(facing: Vector | None) -> Vector:
    if facing is None:
        raise _NoAnterior
    return facing


def _vec(p: Points, tail: str, head: str) -> Vector:
    return g.sub(p[head], p[tail])


def _signed_ang3_toward(p: Points, arm: str, vertex: str, line_end: str, a: Vector) -> float:
    """ang3(arm, vertex, line_end), negative when ``arm`` lies behind line vertex-line_end."""
    angle = g.ang3(p[arm], p[vertex], p[line_end])
    side = g.signed_distance_to_line(p[arm], p[vertex], p[line_end], a)
    return math.copysign(angle, side) if side != 0 else angle


def _anb(p: Points, f: Vector | None) -> float:
    # Measured directly as the angle A-N-B (not as SNA - SNB) so the 2-D identity
    # ANB = SNA - SNB is a real check in the tests.
    return _signed_ang3_toward(p, "A", "N", "B", _anterior(f))


def _convexity(p: Points, f: Vector | None) -> float:
    angle = 180.0 - g.ang3(p["N"], p["A"], p["Pog"])
    side = g.signed_distance_to_line(p["A"], p["N"], p["Pog"], _anterior(f))
    return math.copysign(angle, side) if side != 0 else angle


def _to_n_perp(code: str) -> Compute:
    def compute(p: Points, _f: Vector | None) -> float:
        # The line through N perpendicular to FH; distance along FH, Po->Or being anterior.
        return g.dot(_vec(p, "N", code), g.direction(p["Po"], p["Or"], "FH"))

    return compute


def _interincisal(p: Points, f: Vector | None) -> float:
    """The angle between the incisor axes on their lingual (posterior) side, 0-360.

    Measured from the U1 axis (tip->apex) round through the back of the mouth to the L1
    axis (tip->apex), as drawn in the textbooks: 130 deg is normal, and a retroclined pair
    whose apices lie ahead of their tips passes 180 deg. "Up" is L1 apex -> U1 apex (the two
    roots are far apart vertically), so the sense does not depend on the image's handedness.
    """
    up = _vec(p, "L1_apex", "U1_apex")
    posterior_sense = g.cross(_anterior(f), up)
    if abs(posterior_sense) <= g.EPSILON * g.norm(up):
        raise InvalidInput("degenerate_geometry", "the incisor apices lie on the anterior line")
    turn = g.signed_angle(_vec(p, "U1", "U1_apex"), _vec(p, "L1", "L1_apex"))
    # Anterior -> up -> posterior is one sense of rotation; measure U1 -> L1 in it.
    return (math.copysign(1.0, posterior_sense) * turn) % 360.0


def _u1_sn(p: Points, _f: Vector | None) -> float:
    # The posterior-inferior angle between SN and the U1 axis: N->S against apex->tip.
    return g.angle_between_vectors(_vec(p, "N", "S"), _vec(p, "U1_apex", "U1"))


def _wits(p: Points, _f: Vector | None) -> float:
    # AO-BO: the distance between the feet of A and B on the functional occlusal plane is
    # the component of A-B along the plane; molars->premolars points anteriorly.
    premolars = g.midpoint(p["UPM"], p["LPM"])
    molars = g.midpoint(p["UM"], p["LM"])
    return g.dot(_vec(p, "B", "A"), g.direction(molars, premolars, "functional occlusal plane"))


def _saddle(p: Points) -> float:
    return g.ang3(p["N"], p["S"], p["Ar"])


def _articular(p: Points) -> float:
    return g.ang3(p["S"], p["Ar"], p["Go"])


def _gonial(p: Points) -> float:
    return g.ang3(p["Ar"], p["Go"], p["Me"])


def _facial_height_ratio(p: Points, _f: Vector | None) -> float:
    anterior = g.distance(p["N"], p["Me"])
    if anterior <= g.EPSILON:
        raise InvalidInput("degenerate_geometry", "N and Me coincide")
    return 100.0 * g.distance(p["S"], p["Go"]) / anterior


# fmt: off
_D = _Definition
_HIGH_ANGLE = "high mandibular plane angle (vertical, hyperdivergent pattern)"
_LOW_ANGLE = "low mandibular plane angle (horizontal, hypodivergent pattern)"

STEINER: tuple[_Definition, ...] = (
    _D("sna", "SNA", "deg", ("S", "N", "A"),
       lambda p, f: g.ang3(p["S"], p["N"], p["A"]),
       "maxilla retrusive relative to the cranial base",
       "maxilla protrusive relative to the cranial base"),
    _D("snb", "SNB", "deg", ("S", "N", "B"),
       lambda p, f: g.ang3(p["S"], p["N"], p["B"]),
       "mandible retrusive relative to the cranial base",
       "mandible protrusive relative to the cranial base"),
    _D("anb", "ANB", "deg", ("S", "N", "A", "B"), _anb,
       "skeletal Class III", "skeletal Class II", within="skeletal Class I"),
    _D("sn_gogn", "SN-GoGn", "deg", ("S", "N", "Go", "Gn"),
       lambda p, f: g.angle_between_vectors(_vec(p, "S", "N"), _vec(p, "Go", "Gn")),
       _LOW_ANGLE, _HIGH_ANGLE),
    _D("u1_na_angle", "U1-NA (angle)", "deg", ("N", "A", "U1", "U1_apex"),
       lambda p, f: g.signed_angle_toward(
           _vec(p, "N", "A"), _vec(p, "U1_apex", "U1"), _anterior(f)),
       "upper incisors retroclined", "upper incisors proclined"),
    _D("u1_na_distance", "U1-NA (distance)", "mm", ("N", "A", "U1"),
       lambda p, f: g.signed_distance_to_line(p["U1"], p["N"], p["A"], _anterior(f)),
       "upper incisors retruded", "upper incisors protruded"),
    _D("l1_nb_angle", "L1-NB (angle)", "deg", ("N", "B", "L1", "L1_apex"),
       lambda p, f: g.signed_angle_toward(
           _vec(p, "B", "N"), _vec(p, "L1_apex", "L1"), _anterior(f)),
       "lower incisors retroclined", "lower incisors proclined"),
    _D("l1_nb_distance", "L1-NB (distance)", "mm", ("N", "B", "L1"),
       lambda p, f: g.signed_distance_to_line(p["L1"], p["N"], p["B"], _anterior(f)),
       "lower incisors retruded", "lower incisors protruded"),
    _D("interincisal_angle", "Interincisal angle", "deg", ("U1", "U1_apex", "L1", "L1_apex"),
       _interincisal, "incisors proclined", "incisors upright"),
)

DOWNS: tuple[_Definition, ...] = (
    _D("facial_angle", "Facial angle (FH to N-Pog)", "deg", ("Po", "Or", "N", "Pog"),
       lambda p, f: g.angle_between_vectors(_vec(p, "Or", "Po"), _vec(p, "N", "Pog")),
       "retrusive chin", "prominent chin"),
    _D("angle_of_convexity", "Angle of convexity (N-A-Pog)", "deg", ("N", "A", "Pog"),
       _convexity, "concave skeletal profile", "convex skeletal profile"),
    _D("y_axis", "Y-axis (FH to S-Gn)", "deg", ("Po", "Or", "S", "Gn"),
       lambda p, f: g.angle_between_vectors(_vec(p, "Po", "Or"), _vec(p, "S", "Gn")),
       "horizontal growth pattern", "vertical growth pattern"),
)

TWEED: tuple[_Definition, ...] = (
    _D("fma", "FMA (FH to MP)", "deg", ("Po", "Or", "Go", "Me"),
       lambda p, f: g.angle_between_vectors(_vec(p, "Po", "Or"), _vec(p, "Go", "Me")),
       _LOW_ANGLE, _HIGH_ANGLE),
    _D("impa", "IMPA (L1 to MP)", "deg", ("Go", "Me", "L1", "L1_apex"),
       lambda p, f: g.angle_between_vectors(_vec(p, "Me", "Go"), _vec(p, "L1_apex", "L1")),
       "lower incisors retroclined on the mandible",
       "lower incisors proclined on the mandible"),
    _D("fmia", "FMIA (L1 to FH)", "deg", ("Po", "Or", "L1", "L1_apex"),
       lambda p, f: g.angle_between_vectors(_vec(p, "Po", "Or"), _vec(p, "L1_apex", "L1")),
       "lower incisors proclined relative to FH", "lower incisors upright relative to FH"),
)

MCNAMARA: tuple[_Definition, ...] = (
    _D("a_to_n_perp", "A to N-perpendicular", "mm", ("Po", "Or", "N", "A"), _to_n_perp("A"),
       "maxilla retrusive", "maxilla protrusive"),
    _D("pog_to_n_perp", "Pog to N-perpendicular", "mm", ("Po", "Or", "N", "Pog"),
       _to_n_perp("Pog"), "chin retrusive", "chin protrusive"),
    _D("co_a", "Co-A (midface length)", "mm", ("Co", "A"),
       lambda p, f: g.distance(p["Co"], p["A"]), "short midface", "long midface"),
    _D("co_gn", "Co-Gn (mandibular length)", "mm", ("Co", "Gn"),
       lambda p, f: g.distance(p["Co"], p["Gn"]), "short mandible", "long mandible"),
    _D("ans_me", "ANS-Me (lower face height)", "mm", ("ANS", "Me"),
       lambda p, f: g.distance(p["ANS"], p["Me"]),
       "short lower face height", "long lower face height"),
    _D("maxillomandibular_difference", "Maxillomandibular difference (Co-Gn - Co-A)", "mm",
       ("Co", "A", "Gn"), lambda p, f: g.distance(p["Co"], p["Gn"]) - g.distance(p["Co"], p["A"]),
       "mandible short for the midface", "mandible long for the midface"),
)

RICKETTS: tuple[_Definition, ...] = (
    _D("facial_axis", "Facial axis (Ba-N to Pt-Gn)", "deg", ("Ba", "N", "Pt", "Gn"),
       lambda p, f: g.angle_between_vectors(_vec(p, "N", "Ba"), _vec(p, "Pt", "Gn")),
       "vertical (dolichofacial) growth", "horizontal (brachyfacial) growth"),
    _D("convexity_a_point", "Convexity (A to N-Pog)", "mm", ("N", "Pog", "A"),
       lambda p, f: g.signed_distance_to_line(p["A"], p["N"], p["Pog"], _anterior(f)),
       "concave profile (Class III pattern)", "convex profile (Class II pattern)"),
    _D("l1_to_a_pog", "Lower incisor to A-Pog", "mm", ("A", "Pog", "L1"),
       lambda p, f: g.signed_distance_to_line(p["L1"], p["A"], p["Pog"], _anterior(f)),
       "lower incisors retrusive", "lower incisors protrusive"),
    _D("lower_lip_to_e_plane", "Lower lip to E-plane", "mm", ("Prn", "Pog_s", "LL"),
       lambda p, f: g.signed_distance_to_line(p["LL"], p["Prn"], p["Pog_s"], _anterior(f)),
       "lower lip retrusive", "lower lip protrusive"),
    _D("upper_lip_to_e_plane", "Upper lip to E-plane", "mm", ("Prn", "Pog_s", "UL"),
       lambda p, f: g.signed_distance_to_line(p["UL"], p["Prn"], p["Pog_s"], _anterior(f)),
       "upper lip retrusive", "upper lip protrusive"),
)

WITS: tuple[_Definition, ...] = (
    _D("wits", "Wits appraisal (AO-BO)", "mm", ("A", "B", "UPM", "LPM", "UM", "LM"), _wits,
       "Class III jaw relationship", "Class II jaw relationship"),
)

BJORK_JARABAK: tuple[_Definition, ...] = (
    _D("saddle_angle", "Saddle angle (N-S-Ar)", "deg", ("N", "S", "Ar"),
       lambda p, f: _saddle(p), "mandibular joint placed anteriorly",
       "mandibular joint placed posteriorly"),
    _D("articular_angle", "Articular angle (S-Ar-Go)", "deg", ("S", "Ar", "Go"),
       lambda p, f: _articular(p), "mandible rotated forward", "mandible rotated backward"),
    _D("gonial_angle", "Gonial angle (Ar-Go-Me)", "deg", ("Ar", "Go", "Me"),
       lambda p, f: _gonial(p), "horizontal growth pattern", "vertical growth pattern"),
    _D("u1_sn", "U1-SN", "deg", ("S", "N", "U1", "U1_apex"), _u1_sn,
       "upper incisors retroclined on the cranial base",
       "upper incisors proclined on the cranial base"),
    _D("bjork_sum", "Bjork sum", "deg", ("N", "S", "Ar", "Go", "Me"),
       lambda p, f: _saddle(p) + _articular(p) + _gonial(p),
       "horizontal (counter-clockwise) growth pattern",
       "vertical (clockwise) growth pattern"),
    _D("facial_height_ratio", "Facial height ratio (S-Go / N-Me)", "%",
       ("S", "Go", "N", "Me"), _facial_height_ratio,
       "vertical (clockwise) growth pattern", "horizontal (counter-clockwise) growth pattern"),
)

ANALYSES: dict[str, tuple[str, tuple[_Definition, ...]]] = {
    "steiner": ("Steiner", STEINER),
    "downs": ("Downs", DOWNS),
    "tweed": ("Tweed", TWEED),
    "mcnamara": ("McNamara", MCNAMARA),
    "ricketts": ("Ricketts (summary)", RICKETTS),
    "wits": ("Wits appraisal", WITS),
    "bjork_jarabak": ("Bjork-Jarabak", BJORK_JARABAK),
}
# fmt: on


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _interpret(defn: _Definition, value: float, norm: Norm | None) -> tuple[float | None, str]:
    """Deviation in SDs and a sentence for the report."""
    if norm is None:
        return None, "no applicable norm"
    deviation = norm.deviation_sd(value)
    if deviation is not None:
        # Outside one SD is the conventional clinical flag; with Steiner's ANB 2 +/- 2 this
        # gives exactly Class II above 4 and Class III below 0.
        verdict = defn.high if deviation > 1 else defn.low if deviation < -1 else defn.within
        return deviation, f"{verdict} ({deviation:+.1f} SD)"
    low, high = norm.range_low, norm.range_high
    if low is not None and high is not None:
        span = f"{_fmt(low)} to {_fmt(high)} {defn.unit}"
        if value > high:
            return None, f"{defn.high} (above the {span} range)"
        if value < low:
            return None, f"{defn.low} (below the {span} range)"
        return None, f"{defn.within} ({span})"
    if norm.mean is not None:
        diff = value - norm.mean
        return None, (
            f"{_fmt(abs(diff))} {defn.unit} {'above' if diff >= 0 else 'below'} the norm mean of "
            f"{_fmt(norm.mean)}; the source gives no SD"
        )
    return None, "no usable norm value"


def _not_computable(
    defn: _Definition, reason: str, text: str, missing: tuple[str, ...] = ()
) -> CephMeasurement:
    return CephMeasurement(
        key=defn.key,
        name=defn.name,
        unit=defn.unit,
        value=None,
        computable=False,
        reason=reason,
        missing_landmarks=missing,
        norm=None,
        deviation_sd=None,
        interpretation=f"not computable: {text}",
    )


@dataclass(frozen=True, slots=True)
class _Context:
    points: Points  # mm when calibrated, else px
    calibrated: bool
    anterior: Vector | None
    age: float | None
    sex: Sex | None
    norms: tuple[Norm, ...]


def _evaluate(defn: _Definition, ctx: _Context) -> CephMeasurement:
    missing = tuple(code for code in defn.landmarks if code not in ctx.points)
    if missing:
        return _not_computable(
            defn, "missing_landmarks", f"missing landmarks {', '.join(missing)}", missing
        )
    if defn.unit == "mm" and not ctx.calibrated:
        return _not_computable(defn, "calibration_required", "the image has no calibration")
    try:
        value = defn.compute(ctx.points, ctx.anterior)
    except _NoAnterior:
        return _not_computable(
            defn, "orientation_unknown", "needs S and N (or Po and Or) to tell anterior"
        )
    except InvalidInput as err:
        if err.code != "degenerate_geometry":
            raise
        return _not_computable(defn, "degenerate_geometry", err.message)
    norm = select_norm(defn.key, age=ctx.age, sex=ctx.sex, norms=ctx.norms)
    deviation, text = _interpret(defn, value, norm)
    return CephMeasurement(
        key=defn.key,
        name=defn.name,
        unit=defn.unit,
        value=value,
        computable=True,
        reason=None,
        missing_landmarks=(),
        norm=NormRef.of(norm) if norm else None,
        deviation_sd=deviation,
        interpretation=text,
    )


def _find_anterior(points: Points, facing: Sequence[float] | None) -> Vector | None:
    if facing is not None:
        return g.unit((float(facing[0]), float(facing[1])), "facing")
    for back, front in (("S", "N"), ("Po", "Or")):
        if back in points and front in points:
            vector = g.sub(points[front], points[back])
            if g.norm(vector) > g.EPSILON:
                return g.unit(vector)
    return None


def _to_sex(sex: Sex | str | None) -> Sex | None:
    # The patient record also knows "other" and "unknown": those get sex-neutral norms.
    if sex is None:
        return None
    try:
        parsed = Sex(str(sex).lower())
    except ValueError:
        return None
    return None if parsed is Sex.ANY else parsed


def _prepare(
    landmarks: Mapping[str, Sequence[float]], mm_per_pixel: float | None
) -> dict[str, Point]:
    check_known(landmarks)
    if mm_per_pixel is not None and not (math.isfinite(mm_per_pixel) and mm_per_pixel > 0):
        raise InvalidInput("invalid_calibration", "mm_per_pixel must be positive")
    scale = mm_per_pixel or 1.0
    points: dict[str, Point] = {}
    for code, xy in landmarks.items():
        x, y = float(xy[0]), float(xy[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InvalidInput("invalid_coordinates", f"landmark {code} has non-finite coordinates")
        points[code] = (x * scale, y * scale)
    return points


def analyze(
    landmarks: Mapping[str, Sequence[float]],
    mm_per_pixel: float | None,
    *,
    analyses: Iterable[str] | None = None,
    age: float | None = None,
    sex: Sex | str | None = None,
    facing: Sequence[float] | None = None,
    norms: Iterable[Norm] = DEFAULT_NORMS,
) -> tuple[AnalysisResult, ...]:
    """Run the named analyses (all of them by default) on one tracing.

    ``landmarks`` maps catalogue codes to pixel positions; an unknown code raises
    ``unknown_landmark``. Without ``mm_per_pixel`` linear measures are not computable.
    """
    keys = list(ANALYSES) if analyses is None else list(analyses)
    unknown = [k for k in keys if k not in ANALYSES]
    if unknown:
        raise InvalidInput("unknown_analysis", f"unknown analyses: {', '.join(unknown)}")
    points = _prepare(landmarks, mm_per_pixel)
    ctx = _Context(
        points=points,
        calibrated=mm_per_pixel is not None,
        anterior=_find_anterior(points, facing),
        age=age,
        sex=_to_sex(sex),
        norms=tuple(norms),
    )
    results = []
    for key in keys:
        name, definitions = ANALYSES[key]
        measurements = tuple(_evaluate(d, ctx) for d in definitions)
        results.append(AnalysisResult(key=key, name=name, measurements=measurements))
    return tuple(results)


def analyze_one(
    analysis: str,
    landmarks: Mapping[str, Sequence[float]],
    mm_per_pixel: float | None,
    *,
    age: float | None = None,
    sex: Sex | str | None = None,
    facing: Sequence[float] | None = None,
    norms: Iterable[Norm] = DEFAULT_NORMS,
) -> AnalysisResult:
    """One analysis by key (``"steiner"``, ``"downs"``, ...); see :func:`analyze`."""
    return analyze(
        landmarks, mm_per_pixel, analyses=[analysis], age=age, sex=sex, facing=facing, norms=norms
    )[0]
