"""Photo registration and warping for treatment simulation, with numpy alone.

- :func:`fit_similarity`: scale, rotation and translation from two or more clicked point
  pairs (least squares, no reflection) - to bring a photo onto another, or a tracing onto a
  photo. :func:`fit_affine` is the same with three or more pairs and shear allowed.
- :class:`ThinPlateSpline`: the smoothest map (least bending energy) that takes control
  points exactly onto their targets; it reproduces an affine map exactly when the
  displacements are affine, and bends smoothly between the points otherwise.
- :func:`warp_image`: moves the image content at ``src_points`` to ``dst_points``. Each output
  pixel looks up where it came from (backward mapping, so no holes) and samples bilinearly.
- :func:`watermark_simulation`: burns a "SIMULATION" band into an image, drawn with a built-in
  stroke font so nothing depends on installed fonts.

Pixel coordinates: ``(x, y)`` = (column, row) of the pixel *centre*, y down, as clicks are.
Rotation angles are positive clockwise on screen, like ``domain/geometry.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from domain.errors import InvalidInput

DEGENERATE = "degenerate_registration"

# Relative to the points' spread: below this the pairs do not pin the map down.
_RANK_TOLERANCE = 1e-9
# Output pixels evaluated per batch of the spline: about 50 MB of temporaries for 10 points.
_WARP_BATCH = 1 << 18


def _degenerate(message: str) -> InvalidInput:
    return InvalidInput(DEGENERATE, message)


def _points(points: Sequence[Sequence[float]] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0:
        array = array.reshape(0, 2)
    if array.ndim != 2 or array.shape[1] != 2:
        raise InvalidInput("invalid_coordinates", f"{what} must be a list of (x, y) points")
    if not np.isfinite(array).all():
        raise InvalidInput("invalid_coordinates", f"{what} must be finite")
    return array


def _pairs(
    src: Sequence[Sequence[float]] | np.ndarray,
    dst: Sequence[Sequence[float]] | np.ndarray,
    minimum: int,
) -> tuple[np.ndarray, np.ndarray]:
    s, d = _points(src, "source points"), _points(dst, "target points")
    if len(s) != len(d):
        raise _degenerate(f"{len(s)} source points but {len(d)} target points")
    if len(s) < minimum:
        raise _degenerate(f"at least {minimum} point pairs are needed, got {len(s)}")
    return s, d


def _spread(points: np.ndarray) -> np.ndarray:
    """Singular values of the centred points: how far they span each direction."""
    return np.linalg.svd(points - points.mean(axis=0), compute_uv=False)


# --- similarity and affine ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Similarity:
    """``p -> scale * R(rotation_deg) p + translation``; positive rotation clockwise on screen."""

    scale: float
    rotation_deg: float
    translation: tuple[float, float]
    rms_residual: float  # px (or the points' unit), over the pairs it was fitted to

    @property
    def matrix(self) -> np.ndarray:
        """2x3 matrix ``[A | t]``."""
        c = self.scale * math.cos(math.radians(self.rotation_deg))
        s = self.scale * math.sin(math.radians(self.rotation_deg))
        return np.array([[c, -s, self.translation[0]], [s, c, self.translation[1]]])

    def apply(self, points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        return _apply_matrix(self.matrix, _points(points, "points"))

    def inverse(self) -> Similarity:
        m = np.linalg.inv(np.vstack([self.matrix, [0.0, 0.0, 1.0]]))
        return Similarity(
            1.0 / self.scale, -self.rotation_deg, (float(m[0, 2]), float(m[1, 2])), math.nan
        )


@dataclass(frozen=True, slots=True)
class Affine:
    matrix: np.ndarray  # 2x3
    rms_residual: float

    def apply(self, points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        return _apply_matrix(self.matrix, _points(points, "points"))


def _apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _rms(predicted: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((predicted - target) ** 2, axis=1))))


def fit_similarity(
    src: Sequence[Sequence[float]] | np.ndarray, dst: Sequence[Sequence[float]] | np.ndarray
) -> Similarity:
    """Least-squares similarity taking ``src`` onto ``dst`` (Umeyama, det = +1).

    Two pairs fix it; more are averaged. Coincident points on either side are
    ``degenerate_registration``: they fix neither rotation nor scale.
    """
    s, d = _pairs(src, dst, 2)
    s_mean, d_mean = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - s_mean, d - d_mean
    spread_s, spread_d = float(np.sum(sc**2)), float(np.sum(dc**2))
    extent = max(float(np.abs(s).max()), float(np.abs(d).max()), 1.0)
    if spread_s <= (_RANK_TOLERANCE * extent) ** 2 or spread_d <= (_RANK_TOLERANCE * extent) ** 2:
        raise _degenerate("the points of one side coincide")
    # Umeyama 1991: rotation from the SVD of the cross-covariance, flipping the weaker
    # direction when det < 0 so the result never mirrors.
    u, singular, vt = np.linalg.svd(dc.T @ sc)
    flip = np.diag([1.0, 1.0 if np.linalg.det(u @ vt) >= 0 else -1.0])
    rotation = u @ flip @ vt
    scale = float(np.sum(singular * np.diag(flip))) / spread_s
    if scale <= 0:
        raise _degenerate("the point pairs do not determine a similarity")
    translation = d_mean - scale * rotation @ s_mean
    result = Similarity(
        scale=scale,
        rotation_deg=math.degrees(math.atan2(rotation[1, 0], rotation[0, 0])),
        translation=(float(translation[0]), float(translation[1])),
        rms_residual=0.0,
    )
    return Similarity(
        result.scale, result.rotation_deg, result.translation, _rms(result.apply(s), d)
    )


def fit_affine(
    src: Sequence[Sequence[float]] | np.ndarray, dst: Sequence[Sequence[float]] | np.ndarray
) -> Affine:
    """Least-squares affine map; needs three pairs whose source points are not on one line."""
    s, d = _pairs(src, dst, 3)
    spread = _spread(s)
    if spread[-1] <= _RANK_TOLERANCE * max(spread[0], 1.0):
        raise _degenerate("the source points lie on one line")
    design = np.hstack([s, np.ones((len(s), 1))])
    solution, *_ = np.linalg.lstsq(design, d, rcond=None)
    matrix = solution.T
    return Affine(matrix, _rms(_apply_matrix(matrix, s), d))


# --- thin-plate spline --------------------------------------------------------------------------


def _kernel(r2: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log r^2 (a constant factor off r^2 log r, absorbed by the weights)."""
    return np.where(r2 > 0, r2 * np.log(np.where(r2 > 0, r2, 1.0)), 0.0)


@dataclass(frozen=True, slots=True, eq=False)
class ThinPlateSpline:
    """Maps plane points; fitted so each control point lands on its target.

    Coordinates are centred and scaled internally: on raw pixel coordinates (thousands) the
    r^2 log r^2 terms and the affine terms differ by many orders of magnitude.
    """

    controls: np.ndarray  # (n, 2), normalised
    weights: np.ndarray  # (n, 2)
    affine: np.ndarray  # (3, 2): [1, x, y] -> (x', y')
    centre: np.ndarray
    scale: float

    @classmethod
    def fit(
        cls,
        src: Sequence[Sequence[float]] | np.ndarray,
        dst: Sequence[Sequence[float]] | np.ndarray,
        smoothing: float = 0.0,
    ) -> ThinPlateSpline:
        """Spline taking ``src`` to ``dst``; ``smoothing`` > 0 trades exactness for smoothness."""
        s, d = _pairs(src, dst, 3)
        if not (math.isfinite(smoothing) and smoothing >= 0):
            raise InvalidInput("invalid_smoothing", "smoothing must be a number >= 0")
        centre = s.mean(axis=0)
        scale = float(np.abs(s - centre).max()) or 1.0
        spread = _spread(s)
        if spread[-1] <= _RANK_TOLERANCE * max(spread[0], 1.0):
            raise _degenerate("the control points lie on one line")
        unique = np.unique(np.round((s - centre) / scale, 12), axis=0)
        if len(unique) != len(s):
            raise _degenerate("two control points coincide")
        cs, cd = (s - centre) / scale, (d - centre) / scale
        n = len(s)
        k = _kernel(np.sum((cs[:, None, :] - cs[None, :, :]) ** 2, axis=2)) + smoothing * np.eye(n)
        p = np.hstack([np.ones((n, 1)), cs])
        system = np.zeros((n + 3, n + 3))
        system[:n, :n], system[:n, n:], system[n:, :n] = k, p, p.T
        rhs = np.vstack([cd, np.zeros((3, 2))])
        try:
            solution = np.linalg.solve(system, rhs)
        except np.linalg.LinAlgError:
            raise _degenerate("the control points do not determine a spline") from None
        return cls(cs, solution[:n], solution[n:], centre, scale)

    def apply(self, points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        q = (np.asarray(points, dtype=np.float64).reshape(-1, 2) - self.centre) / self.scale
        r2 = np.sum((q[:, None, :] - self.controls[None, :, :]) ** 2, axis=2)
        mapped = _kernel(r2) @ self.weights + self.affine[0] + q @ self.affine[1:]
        return mapped * self.scale + self.centre


# --- warping ------------------------------------------------------------------------------------


def backward_map(
    src_points: Sequence[Sequence[float]] | np.ndarray,
    dst_points: Sequence[Sequence[float]] | np.ndarray,
    smoothing: float = 0.0,
) -> ThinPlateSpline | Similarity:
    """Where each output position comes from: the map taking ``dst_points`` to ``src_points``.

    One pair is a pure shift, two a similarity, three or more a thin-plate spline (a
    similarity when they lie on one line, since a spline is not determined then).
    """
    s, d = _pairs(src_points, dst_points, 1)
    if len(s) == 1:
        shift = s[0] - d[0]
        return Similarity(1.0, 0.0, (float(shift[0]), float(shift[1])), 0.0)
    spread = _spread(d)
    if len(s) == 2 or spread[-1] <= _RANK_TOLERANCE * max(spread[0], 1.0):
        return fit_similarity(d, s)
    return ThinPlateSpline.fit(d, s, smoothing)


def warp_field(
    shape: tuple[int, int],
    src_points: Sequence[Sequence[float]] | np.ndarray,
    dst_points: Sequence[Sequence[float]] | np.ndarray,
    smoothing: float = 0.0,
) -> np.ndarray:
    """(height, width, 2): for each output pixel, the (x, y) it samples in the input."""
    height, width = int(shape[0]), int(shape[1])
    if height <= 0 or width <= 0:
        raise InvalidInput("invalid_image", "the image has no pixels")
    mapping = backward_map(src_points, dst_points, smoothing)
    ys, xs = np.mgrid[0:height, 0:width]
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    field = np.empty_like(grid)
    for start in range(0, len(grid), _WARP_BATCH):
        field[start : start + _WARP_BATCH] = mapping.apply(grid[start : start + _WARP_BATCH])
    return field.reshape(height, width, 2)


def sample_bilinear(pixels: np.ndarray, field: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """``pixels`` sampled at the (x, y) positions of ``field``; outside the image is ``fill``."""
    image = np.asarray(pixels)
    height, width = image.shape[:2]
    x, y = field[..., 0], field[..., 1]
    inside = (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    # Half a pixel beyond the outer centres is still the image: clamp there, no fill.
    x = np.clip(x, 0.0, width - 1.0)
    y = np.clip(y, 0.0, height - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), max(width - 2, 0))
    y0 = np.minimum(np.floor(y).astype(np.int64), max(height - 2, 0))
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = x - x0, y - y0
    if image.ndim == 3:
        fx, fy, inside = fx[..., None], fy[..., None], inside[..., None]
    source = image.astype(np.float64)
    top = source[y0, x0] * (1 - fx) + source[y0, x1] * fx
    bottom = source[y1, x0] * (1 - fx) + source[y1, x1] * fx
    result = np.where(inside, top * (1 - fy) + bottom * fy, fill)
    return _to_dtype(result, image.dtype)


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def warp_image(
    pixels: np.ndarray,
    src_points: Sequence[Sequence[float]] | np.ndarray,
    dst_points: Sequence[Sequence[float]] | np.ndarray,
    *,
    smoothing: float = 0.0,
    fill: float = 0.0,
) -> np.ndarray:
    """The image with the content at ``src_points`` moved to ``dst_points``, same shape/dtype.

    ``pixels`` is (height, width) or (height, width, channels).
    """
    image = np.asarray(pixels)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidInput("invalid_image", "pixels must be a (height, width[, channels]) array")
    field = warp_field(image.shape[:2], src_points, dst_points, smoothing)
    return sample_bilinear(image, field, fill)


# --- watermark ----------------------------------------------------------------------------------

WATERMARK_TEXT = "SIMULATION"

# Stroke font on a unit cell (x right, y down); each glyph is a list of polylines.
# fmt: off
_GLYPHS: dict[str, tuple[tuple[tuple[float, float], ...], ...]] = {
    "S": (((1, 0), (0, 0), (0, 0.5), (1, 0.5), (1, 1), (0, 1)),),
    "I": (((0.5, 0), (0.5, 1)), ((0.2, 0), (0.8, 0)), ((0.2, 1), (0.8, 1))),
    "M": (((0, 1), (0, 0), (0.5, 0.55), (1, 0), (1, 1)),),
    "U": (((0, 0), (0, 1), (1, 1), (1, 0)),),
    "L": (((0, 0), (0, 1), (1, 1)),),
    "A": (((0, 1), (0.5, 0), (1, 1)), ((0.25, 0.5), (0.75, 0.5))),
    "T": (((0, 0), (1, 0)), ((0.5, 0), (0.5, 1))),
    "O": (((0, 0), (1, 0), (1, 1), (0, 1), (0, 0)),),
    "N": (((0, 1), (0, 0), (1, 1), (1, 0)),),
}
# fmt: on
_GLYPH_ASPECT = 0.6  # glyph width / height
_GAP = 0.35  # space between glyphs, in glyph heights


def _segments(text: str, height: float, origin: tuple[float, float]) -> np.ndarray:
    """(k, 4) segments x0, y0, x1, y1 of ``text`` drawn ``height`` px tall from ``origin``."""
    segments = []
    advance = height * (_GLYPH_ASPECT + _GAP)
    for index, char in enumerate(text):
        for line in _GLYPHS[char]:
            for (x0, y0), (x1, y1) in pairwise(line):
                left = origin[0] + index * advance
                segments.append(
                    (
                        left + x0 * height * _GLYPH_ASPECT,
                        origin[1] + y0 * height,
                        left + x1 * height * _GLYPH_ASPECT,
                        origin[1] + y1 * height,
                    )
                )
    return np.array(segments, dtype=np.float64)


def _stroke_coverage(
    segments: np.ndarray, shape: tuple[int, int], offset: tuple[int, int], half_width: float
) -> np.ndarray:
    """Anti-aliased coverage (0-1) of thick segments over a (rows, cols) patch at ``offset``."""
    rows, cols = shape
    ys, xs = np.mgrid[0:rows, 0:cols]
    px = xs.astype(np.float64) + offset[1]
    py = ys.astype(np.float64) + offset[0]
    nearest = np.full(shape, np.inf)
    for x0, y0, x1, y1 in segments:
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / length2, 0.0, 1.0) if length2 else 0.0
        nearest = np.minimum(nearest, np.hypot(px - (x0 + t * dx), py - (y0 + t * dy)))
    return np.clip(half_width + 0.5 - nearest, 0.0, 1.0)


def watermark_simulation(pixels: np.ndarray, *, band_fraction: float = 0.1) -> np.ndarray:
    """A copy of the image with a dark band across the bottom reading SIMULATION in white.

    Works on grey, RGB and RGBA arrays of any integer dtype (full range) or floats (0-1);
    alpha is set opaque inside the band. Pixels above the band are untouched.
    """
    image = np.asarray(pixels)
    if image.ndim not in (2, 3) or image.shape[0] < 8 or image.shape[1] < 8:
        raise InvalidInput("invalid_image", "the image is too small to mark")
    height, width = image.shape[:2]
    white = float(np.iinfo(image.dtype).max) if np.issubdtype(image.dtype, np.integer) else 1.0
    band = max(8, min(height, round(height * band_fraction)))
    top = height - band
    # Letters as tall as the band allows, shrunk until the word fits the width.
    n = len(WATERMARK_TEXT)
    glyph = min(band * 0.6, 0.9 * width / (n * _GLYPH_ASPECT + (n - 1) * _GAP))
    text_width = glyph * (n * _GLYPH_ASPECT + (n - 1) * _GAP)
    origin = ((width - text_width) / 2.0, top + (band - glyph) / 2.0)
    coverage = _stroke_coverage(
        _segments(WATERMARK_TEXT, glyph, origin),
        (band, width),
        (top, 0),
        max(0.75, glyph * 0.07),
    )
    result = image.astype(np.float64)
    region = result[top:]
    if image.ndim == 3:
        coverage = coverage[..., None]
    # Darken the band to 35 % so white text reads on any photo, then paint the strokes.
    darkened = region * 0.35
    painted = darkened * (1 - coverage) + white * coverage
    if image.ndim == 3 and image.shape[2] == 4:
        painted[..., 3] = white
    result[top:] = painted
    return _to_dtype(result, image.dtype)
