"""Server-side measurement of annotation shapes, in pixels or calibrated millimetres.

The server recomputes every value from the stored coordinates rather than trusting a number
sent by a viewer, so reports, exports and the UI agree.

Calibration is resolved in this order (first usable wins, see :func:`resolve_calibration`):

1. DICOM Pixel Spacing (0028,0030), taken as already referring to the patient plane;
2. DICOM Imager Pixel Spacing (0018,1164) divided by the Estimated Radiographic
   Magnification Factor (0018,1114);
3. a ruler annotation of known length drawn on the image;
4. Imager Pixel Spacing *without* a magnification factor: it is the detector plane, which
   overstates anatomy by the magnification (about 8-13 % on a ceph), so a ruler beats it;
5. the device's configured default;
6. none: lengths and areas are reported in pixels.

Coordinates are pixel positions, x to the right and y down, with (0, 0) the top-left corner
of the top-left pixel, so valid points lie in ``[0, width] x [0, height]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from domain import geometry
from domain.errors import InvalidInput, Unprocessable
from domain.geometry import Point


class CalibrationSource(StrEnum):
    DICOM_PIXEL_SPACING = "dicom_pixel_spacing"
    # A film scan's resolution (dpi) divided by the radiographic magnification, recorded by
    # a clinician (see domain/image_calibration.py); as good as corrected imager spacing.
    SCAN_RESOLUTION = "scan_resolution"
    RULER = "ruler"
    # A mm-per-pixel figure typed in by a clinician without further provenance.
    MANUAL = "manual"
    DEVICE_DEFAULT = "device_default"


class ShapeKind(StrEnum):
    POINT = "point"
    LINE = "line"
    ANGLE = "angle"
    POLYLINE = "polyline"
    POLYGON = "polygon"
    ELLIPSE = "ellipse"
    RECTANGLE = "rectangle"
    RULER = "ruler"


class Unit(StrEnum):
    MM = "mm"
    MM2 = "mm²"
    PX = "px"
    PX2 = "px²"
    DEG = "deg"


def _positive_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


@dataclass(frozen=True, slots=True)
class Calibration:
    """Millimetres per pixel at the patient plane.

    ``mm_per_pixel`` is the horizontal (column) spacing and also the vertical one unless
    ``mm_per_pixel_y`` says otherwise: DICOM allows non-square pixels, and angles must then
    be measured after scaling, not in pixel space. ``magnification`` records the factor that
    was already divided out, for provenance only.
    """

    mm_per_pixel: float
    source: CalibrationSource
    magnification: float | None = None
    mm_per_pixel_y: float | None = None

    def __post_init__(self) -> None:
        if not _positive_finite(self.mm_per_pixel):
            raise InvalidInput("invalid_calibration", "mm_per_pixel must be positive")
        if self.mm_per_pixel_y is not None and not _positive_finite(self.mm_per_pixel_y):
            raise InvalidInput("invalid_calibration", "mm_per_pixel_y must be positive")
        if self.magnification is not None and not _positive_finite(self.magnification):
            raise InvalidInput("invalid_calibration", "magnification must be positive")

    @property
    def row_spacing(self) -> float:
        return self.mm_per_pixel if self.mm_per_pixel_y is None else self.mm_per_pixel_y

    @property
    def is_isotropic(self) -> bool:
        return math.isclose(self.mm_per_pixel, self.row_spacing, rel_tol=1e-9)

    def to_mm(self, point: Sequence[float]) -> Point:
        return (float(point[0]) * self.mm_per_pixel, float(point[1]) * self.row_spacing)


@dataclass(frozen=True, slots=True)
class Shape:
    """An annotation's geometry in pixel coordinates.

    Point layout by kind:

    - point: 1; line, ruler: 2 (ends); polyline: >= 2; polygon: >= 3, in drawing order;
    - angle: 3 (arm end, vertex, arm end) or 4 (two lines a1, a2, b1, b2; the acute angle
      between them, as for a Cobb angle);
    - ellipse: 2 (opposite corners of its axis-aligned bounding box) or 3 (centre, end of
      one semi-axis, end of the other; conjugate semi-diameters are accepted too);
    - rectangle: 2 (opposite corners, axis-aligned) or 4 (corners in order).

    ``known_length_mm`` is the true length of a ruler.
    """

    kind: ShapeKind
    points: tuple[Point, ...]
    known_length_mm: float | None = None


@dataclass(frozen=True, slots=True)
class Measurement:
    kind: ShapeKind
    value: float | None  # None for a point, whose result is `position`
    unit: Unit
    calibrated: bool
    calibration_source: CalibrationSource | None
    position: Point | None = None


_POINT_COUNTS: dict[ShapeKind, tuple[int, ...]] = {
    ShapeKind.POINT: (1,),
    ShapeKind.LINE: (2,),
    ShapeKind.RULER: (2,),
    ShapeKind.ANGLE: (3, 4),
    ShapeKind.ELLIPSE: (2, 3),
    ShapeKind.RECTANGLE: (2, 4),
}
_MIN_POINTS: dict[ShapeKind, int] = {ShapeKind.POLYLINE: 2, ShapeKind.POLYGON: 3}


def _check_point_count(shape: Shape) -> None:
    n = len(shape.points)
    allowed = _POINT_COUNTS.get(shape.kind)
    if allowed is not None and n not in allowed:
        wanted = " or ".join(str(a) for a in allowed)
        raise InvalidInput("invalid_shape", f"{shape.kind} needs {wanted} points, got {n}")
    minimum = _MIN_POINTS.get(shape.kind)
    if minimum is not None and n < minimum:
        raise InvalidInput("invalid_shape", f"{shape.kind} needs at least {minimum} points")


def check_coordinates(
    points: Sequence[Sequence[float]], image_size: tuple[int, int] | None
) -> None:
    """Reject NaN/inf and, when the image size is known, points outside the image."""
    for x, y in points:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InvalidInput("invalid_coordinates", "coordinates must be finite numbers")
        if image_size is None:
            continue
        width, height = image_size
        if not (0 <= x <= width and 0 <= y <= height):
            raise InvalidInput(
                "coordinates_out_of_bounds",
                f"point ({x:g}, {y:g}) lies outside the {width}x{height} image",
            )


def _ellipse_area(pts: Sequence[Point]) -> float:
    if len(pts) == 2:
        (x1, y1), (x2, y2) = pts
        return geometry.ellipse_area(abs(x2 - x1) / 2.0, abs(y2 - y1) / 2.0)
    centre, end_a, end_b = pts
    # For conjugate semi-diameters u, v the area is pi*|u x v|; for perpendicular axes that
    # is pi*a*b, and it stays exact after anisotropic pixel scaling, which skews the axes.
    return math.pi * abs(geometry.cross(geometry.sub(end_a, centre), geometry.sub(end_b, centre)))


def _rectangle_area(pts: Sequence[Point]) -> float:
    if len(pts) == 2:
        (x1, y1), (x2, y2) = pts
        return abs(x2 - x1) * abs(y2 - y1)
    return geometry.polygon_area(pts)


def _angle(pts: Sequence[Point]) -> float:
    if len(pts) == 4:
        return geometry.angle_between_lines(*pts)
    p, v, q = pts
    vp, vq = geometry.sub(p, v), geometry.sub(q, v)
    scale = geometry.norm(vp) * geometry.norm(vq)
    # Three collinear clicks are a mis-click, not a 0 or 180 degree measurement.
    if scale <= geometry.EPSILON or abs(geometry.cross(vp, vq)) <= 1e-9 * scale:
        raise InvalidInput("degenerate_geometry", "the three angle points are collinear")
    return geometry.ang3(p, v, q)


def _line_length(pts: Sequence[Point]) -> float:
    length = geometry.distance(pts[0], pts[1])
    if length <= geometry.EPSILON:
        raise InvalidInput("degenerate_geometry", "the line has zero length")
    return length


def measure(
    shape: Shape,
    *,
    calibration: Calibration | None = None,
    image_size: tuple[int, int] | None = None,
    require_mm: bool = False,
) -> Measurement:
    """Measure one annotation shape.

    Lengths come out in mm (or px), areas in mm² (or px²), angles in degrees. With
    ``require_mm`` a length, area or position without a calibration is refused with
    ``calibration_required`` instead of silently falling back to pixels.
    """
    _check_point_count(shape)
    check_coordinates(shape.points, image_size)
    if shape.kind is ShapeKind.ANGLE:
        pts = [calibration.to_mm(p) for p in shape.points] if calibration else shape.points
        return Measurement(
            kind=shape.kind,
            value=_angle(pts),
            unit=Unit.DEG,
            calibrated=calibration is not None,
            calibration_source=calibration.source if calibration else None,
        )
    if calibration is None and require_mm:
        raise Unprocessable(
            "calibration_required",
            f"a {shape.kind} in mm needs a calibration (pixel spacing, ruler or device default)",
        )
    pts = [calibration.to_mm(p) for p in shape.points] if calibration else list(shape.points)
    length_unit, area_unit = (Unit.MM, Unit.MM2) if calibration else (Unit.PX, Unit.PX2)
    value: float | None = None
    position: Point | None = None
    unit = length_unit
    match shape.kind:
        case ShapeKind.POINT:
            position = (float(pts[0][0]), float(pts[0][1]))
        case ShapeKind.LINE | ShapeKind.RULER:
            value = _line_length(pts)
        case ShapeKind.POLYLINE:
            value = geometry.polyline_length(pts)
        case ShapeKind.POLYGON:
            value, unit = geometry.polygon_area(pts), area_unit
        case ShapeKind.ELLIPSE:
            value, unit = _ellipse_area(pts), area_unit
        case ShapeKind.RECTANGLE:
            value, unit = _rectangle_area(pts), area_unit
    return Measurement(
        kind=shape.kind,
        value=value,
        unit=unit,
        calibrated=calibration is not None,
        calibration_source=calibration.source if calibration else None,
        position=position,
    )


def calibration_from_ruler(ruler: Shape) -> Calibration:
    """Calibration from a ruler annotation drawn along a scale of known length."""
    if ruler.kind is not ShapeKind.RULER or len(ruler.points) != 2:
        raise InvalidInput("invalid_shape", "a calibration ruler is a 2-point ruler shape")
    check_coordinates(ruler.points, None)
    if not _positive_finite(ruler.known_length_mm):
        raise InvalidInput("invalid_calibration", "the ruler needs a positive known length")
    pixels = _line_length(ruler.points)
    assert ruler.known_length_mm is not None  # narrowed by _positive_finite
    return Calibration(mm_per_pixel=ruler.known_length_mm / pixels, source=CalibrationSource.RULER)


def _dicom_pair(spacing: Sequence[float] | None) -> tuple[float, float] | None:
    # DICOM spacing is (row spacing, column spacing) = (vertical, horizontal); headers often
    # carry 0 or junk, which counts as absent rather than as an error.
    if spacing is None or len(spacing) != 2:
        return None
    row, col = float(spacing[0]), float(spacing[1])
    if not (_positive_finite(row) and _positive_finite(col)):
        return None
    return row, col


def _from_dicom(row: float, col: float, magnification: float | None) -> Calibration:
    factor = magnification or 1.0
    row, col = row / factor, col / factor
    return Calibration(
        mm_per_pixel=col,
        mm_per_pixel_y=None if math.isclose(row, col, rel_tol=1e-9) else row,
        source=CalibrationSource.DICOM_PIXEL_SPACING,
        magnification=magnification,
    )


def resolve_calibration(
    *,
    pixel_spacing: Sequence[float] | None = None,
    imager_pixel_spacing: Sequence[float] | None = None,
    magnification: float | None = None,
    ruler: Shape | None = None,
    device_default_mm_per_pixel: float | None = None,
) -> Calibration | None:
    """Pick the best available calibration, in the order given in the module docstring."""
    factor = magnification if _positive_finite(magnification) else None
    spacing = _dicom_pair(pixel_spacing)
    if spacing is not None:
        return _from_dicom(*spacing, None)
    imager = _dicom_pair(imager_pixel_spacing)
    if imager is not None and factor is not None:
        return _from_dicom(*imager, factor)
    if ruler is not None:
        return calibration_from_ruler(ruler)
    if imager is not None:
        return _from_dicom(*imager, None)
    if _positive_finite(device_default_mm_per_pixel):
        assert device_default_mm_per_pixel is not None
        return Calibration(
            mm_per_pixel=device_default_mm_per_pixel, source=CalibrationSource.DEVICE_DEFAULT
        )
    return None
