"""Superimposition of two tracings of one patient (e.g. before and after treatment).

The second tracing is moved rigidly into the first tracing's frame, in millimetres, and
every landmark both tracings share gets a displacement vector there: growth and treatment
change show up as displacement, the fit's quality as the RMS residual on the reference
points. Two methods:

- ``sn_at_s``: S onto S, then rotate so S->N lies along S->N; the classic hand method.
- ``best_fit``: least-squares rigid fit (Kabsch) on stable cranial-base points.

Neither scales nor reflects: a scale change would hide growth, and a mirror image is a
different patient view, not a pose. (``scipy.spatial.procrustes`` does both, hence Kabsch.)
Rotation angles are positive clockwise on screen, the image y axis pointing down.

Pixels are converted to millimetres per axis (column spacing for x, row spacing for y):
with non-square pixels a single figure would shear the tracing, turning a -7 deg rotation
into -6.4 deg and showing millimetres of displacement where nothing moved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from domain import geometry as g
from domain.cephalometry.landmarks import LANDMARKS, check_known
from domain.errors import InvalidInput
from domain.geometry import Point
from domain.measurement import Calibration

# mm per pixel: one figure for square pixels, or (column, row) spacing, i.e. (x, y).
Spacing = float | tuple[float, float]

# Points that growth and treatment barely move; callers may pass their own list.
DEFAULT_REFERENCE_POINTS: tuple[str, ...] = ("S", "N", "Ba", "Pt")

# Below this ratio of the smaller to the larger spread the reference points are a line and
# the least-squares rotation is not determined by more than two of them.
_COLLINEAR_RATIO = 1e-6


class Method(StrEnum):
    SN_AT_S = "sn_at_s"
    BEST_FIT = "best_fit"


@dataclass(frozen=True, slots=True)
class RigidTransform:
    """``p -> R(rotation_deg) p + translation``, from the second tracing to the first (mm)."""

    rotation_deg: float
    translation: Point

    def apply(self, p: Sequence[float]) -> Point:
        x, y = g.rotate(p, self.rotation_deg)
        return (x + self.translation[0], y + self.translation[1])

    @property
    def matrix(self) -> tuple[tuple[float, float], tuple[float, float]]:
        c = math.cos(math.radians(self.rotation_deg))
        s = math.sin(math.radians(self.rotation_deg))
        return ((c, -s), (s, c))


@dataclass(frozen=True, slots=True)
class Displacement:
    code: str
    dx: float  # mm, first tracing's frame, second minus first
    dy: float
    distance: float


@dataclass(frozen=True, slots=True)
class Superimposition:
    method: Method
    transform: RigidTransform
    reference_points: tuple[str, ...]
    rms_residual_mm: float
    displacements: tuple[Displacement, ...]

    def displacement(self, code: str) -> Displacement:
        for d in self.displacements:
            if d.code == code:
                return d
        raise KeyError(code)


def to_mm(tracing: Mapping[str, Sequence[float]], spacing: Spacing) -> dict[str, Point]:
    """Landmarks in pixels to millimetres, x by the column and y by the row spacing."""
    check_known(tracing)
    column, row = (spacing, spacing) if isinstance(spacing, int | float) else spacing
    for value in (column, row):
        if not (math.isfinite(value) and value > 0):
            raise InvalidInput("invalid_calibration", "mm_per_pixel must be positive")
    points: dict[str, Point] = {}
    for code, xy in tracing.items():
        x, y = float(xy[0]), float(xy[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InvalidInput("invalid_coordinates", f"landmark {code} has non-finite coordinates")
        points[code] = (x * column, y * row)
    return points



def _result(
    method: Method,
    transform: RigidTransform,
    reference: tuple[str, ...],
    first: Mapping[str, Point],
    second: Mapping[str, Point],
) -> Superimposition:
    residuals = [g.distance(transform.apply(second[c]), first[c]) for c in reference]
    rms = math.sqrt(sum(r * r for r in residuals) / len(residuals))
    displacements = []
    for landmark in LANDMARKS:  # catalogue order, so reports list points stably
        code = landmark.code
        if code in first and code in second:
            dx, dy = g.sub(transform.apply(second[code]), first[code])
            displacements.append(Displacement(code, dx, dy, math.hypot(dx, dy)))
    return Superimposition(method, transform, reference, rms, tuple(displacements))


def sn_at_s(
    first: Mapping[str, Sequence[float]],
    second: Mapping[str, Sequence[float]],
    mm_per_pixel: Spacing,
    second_mm_per_pixel: Spacing | None = None,
) -> Superimposition:
    """Register S on S and S->N along S->N; the residual shows the change in S-N length."""
    p1 = to_mm(first, mm_per_pixel)
    p2 = to_mm(second, second_mm_per_pixel or mm_per_pixel)
    missing = [c for c in ("S", "N") if c not in p1 or c not in p2]
    if missing:
        raise InvalidInput(
            "degenerate_geometry",
            f"SN superimposition needs S and N on both tracings; missing {', '.join(missing)}",
        )
    # signed_angle refuses a zero-length S-N with degenerate_geometry.
    rotation = g.signed_angle(g.sub(p2["N"], p2["S"]), g.sub(p1["N"], p1["S"]))
    rotated_s = g.rotate(p2["S"], rotation)
    translation = (p1["S"][0] - rotated_s[0], p1["S"][1] - rotated_s[1])
    transform = RigidTransform(rotation, translation)
    return _result(Method.SN_AT_S, transform, ("S", "N"), p1, p2)


def best_fit(
    first: Mapping[str, Sequence[float]],
    second: Mapping[str, Sequence[float]],
    mm_per_pixel: Spacing,
    second_mm_per_pixel: Spacing | None = None,
    reference_points: Sequence[str] = DEFAULT_REFERENCE_POINTS,
) -> Superimposition:
    """Least-squares rigid fit (rotation + translation, det R = +1) on the reference points.

    Uses those of ``reference_points`` present on both tracings; at least three, not all on
    one line.
    """
    check_known(reference_points)
    p1 = to_mm(first, mm_per_pixel)
    p2 = to_mm(second, second_mm_per_pixel or mm_per_pixel)
    reference = tuple(dict.fromkeys(c for c in reference_points if c in p1 and c in p2))
    if len(reference) < 3:
        raise InvalidInput(
            "degenerate_geometry",
            f"best-fit superimposition needs 3 shared reference points, found {len(reference)}",
        )
    source = np.array([p2[c] for c in reference], dtype=float)
    target = np.array([p1[c] for c in reference], dtype=float)
    source_centroid, target_centroid = source.mean(axis=0), target.mean(axis=0)
    centred_source, centred_target = source - source_centroid, target - target_centroid
    for centred in (centred_source, centred_target):
        spread = np.linalg.svd(centred, compute_uv=False)
        if spread[0] <= g.EPSILON or spread[-1] <= _COLLINEAR_RATIO * spread[0]:
            raise InvalidInput("degenerate_geometry", "the reference points lie on one line")
    # Kabsch: the rotation maximising trace(R H); flipping the last singular direction
    # when det < 0 gives the best proper rotation instead of a reflection.
    u, _, vt = np.linalg.svd(centred_source.T @ centred_target)
    d = 1.0 if np.linalg.det(vt.T @ u.T) >= 0 else -1.0
    rotation = vt.T @ np.diag([1.0, d]) @ u.T
    translation = target_centroid - rotation @ source_centroid
    transform = RigidTransform(
        math.degrees(math.atan2(rotation[1, 0], rotation[0, 0])),
        (float(translation[0]), float(translation[1])),
    )
    return _result(Method.BEST_FIT, transform, reference, p1, p2)


def superimpose(
    method: Method | str,
    first: Mapping[str, Sequence[float]],
    second: Mapping[str, Sequence[float]],
    mm_per_pixel: Spacing,
    second_mm_per_pixel: Spacing | None = None,
    reference_points: Sequence[str] = DEFAULT_REFERENCE_POINTS,
) -> Superimposition:
    try:
        chosen = Method(method)
    except ValueError:
        raise InvalidInput("unknown_method", f"unknown superimposition {method!r}") from None
    if chosen is Method.SN_AT_S:
        return sn_at_s(first, second, mm_per_pixel, second_mm_per_pixel)
    return best_fit(first, second, mm_per_pixel, second_mm_per_pixel, reference_points)


@dataclass(frozen=True, slots=True)
class CalibratedSuperimposition:
    """A superimposition of two calibrated images' tracings, with both drawn in mm."""

    result: Superimposition
    first_mm: dict[str, Point]
    second_in_first_mm: dict[str, Point]


def _spacing(calibration: Calibration) -> tuple[float, float]:
    return (calibration.mm_per_pixel, calibration.row_spacing)


def superimpose_calibrated(
    method: Method | str,
    first: Mapping[str, Sequence[float]],
    second: Mapping[str, Sequence[float]],
    first_calibration: Calibration,
    second_calibration: Calibration,
    reference_points: Sequence[str] = DEFAULT_REFERENCE_POINTS,
) -> CalibratedSuperimposition:
    """Superimpose with each image's own calibration, per axis (row and column spacing)."""
    first_spacing, second_spacing = _spacing(first_calibration), _spacing(second_calibration)
    result = superimpose(method, first, second, first_spacing, second_spacing, reference_points)
    moved = {c: result.transform.apply(p) for c, p in to_mm(second, second_spacing).items()}
    return CalibratedSuperimposition(result, to_mm(first, first_spacing), moved)
