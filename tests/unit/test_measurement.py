import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain import geometry as g
from domain.errors import ErrorKind, InvalidInput, Unprocessable
from domain.measurement import (
    Calibration,
    CalibrationSource,
    Shape,
    ShapeKind,
    Unit,
    calibration_from_ruler,
    measure,
    resolve_calibration,
)

HALF_MM = Calibration(mm_per_pixel=0.5, source=CalibrationSource.DICOM_PIXEL_SPACING)
coord = st.floats(min_value=0, max_value=2000, allow_nan=False)
point = st.tuples(coord, coord)


def shape(kind: ShapeKind, *points, known_length_mm=None) -> Shape:
    return Shape(kind, tuple(points), known_length_mm)


# --- each shape kind ----------------------------------------------------------------------


def test_line_in_pixels_without_calibration():
    m = measure(shape(ShapeKind.LINE, (0, 0), (30, 40)))
    assert (m.value, m.unit, m.calibrated, m.calibration_source) == (50, Unit.PX, False, None)


def test_line_in_mm_with_calibration():
    m = measure(shape(ShapeKind.LINE, (0, 0), (30, 40)), calibration=HALF_MM)
    assert m.value == pytest.approx(25)
    assert m.unit is Unit.MM
    assert m.calibrated
    assert m.calibration_source is CalibrationSource.DICOM_PIXEL_SPACING


def test_point_reports_position_in_mm():
    m = measure(shape(ShapeKind.POINT, (10, 20)), calibration=HALF_MM)
    assert m.value is None
    assert m.position == pytest.approx((5, 10))
    assert m.unit is Unit.MM


def test_angle_three_points_vertex_in_the_middle():
    m = measure(shape(ShapeKind.ANGLE, (10, 0), (0, 0), (0, 10)), calibration=HALF_MM)
    assert m.value == pytest.approx(90)
    assert m.unit is Unit.DEG


def test_angle_four_points_is_the_acute_angle_between_lines():
    # Line 1 along x; line 2 rises at 135 deg, so the acute angle is 45.
    m = measure(shape(ShapeKind.ANGLE, (0, 0), (10, 0), (10, 10), (20, 0)))
    assert m.value == pytest.approx(45)


def test_angle_is_physical_with_non_square_pixels():
    # Pixels 1 mm wide and 2 mm tall: the pixel-space 45 deg diagonal is 63.43 deg in mm
    # (atan(2/1)), which is what the clinician means.
    cal = Calibration(1.0, CalibrationSource.DICOM_PIXEL_SPACING, mm_per_pixel_y=2.0)
    m = measure(shape(ShapeKind.ANGLE, (10, 0), (0, 0), (10, 10)), calibration=cal)
    assert m.value == pytest.approx(math.degrees(math.atan(2.0)))


def test_polyline_length():
    m = measure(shape(ShapeKind.POLYLINE, (0, 0), (0, 10), (10, 10)), calibration=HALF_MM)
    assert m.value == pytest.approx(10)
    assert m.unit is Unit.MM


def test_polygon_area_in_square_mm():
    # 20 x 10 px triangle = 100 px^2 = 25 mm^2 at 0.5 mm/px.
    m = measure(shape(ShapeKind.POLYGON, (0, 0), (20, 0), (0, 10)), calibration=HALF_MM)
    assert m.value == pytest.approx(25)
    assert m.unit is Unit.MM2
    uncalibrated = measure(shape(ShapeKind.POLYGON, (0, 0), (20, 0), (0, 10)))
    assert (uncalibrated.value, uncalibrated.unit) == (pytest.approx(100), Unit.PX2)


def test_rectangle_two_corners_and_four_corners():
    assert measure(shape(ShapeKind.RECTANGLE, (10, 30), (2, 10))).value == pytest.approx(160)
    rotated = [(0, 0), (3, 4), (-1, 7), (-4, 3)]  # 5 x 5 square turned by atan(4/3)
    assert measure(shape(ShapeKind.RECTANGLE, *rotated)).value == pytest.approx(25)


def test_ellipse_bounding_box_and_axes():
    # Bounding box 20 x 10 px: semi-axes 10 and 5, area 50 pi px^2 -> 12.5 pi mm^2.
    box = measure(shape(ShapeKind.ELLIPSE, (0, 0), (20, 10)), calibration=HALF_MM)
    assert box.value == pytest.approx(12.5 * math.pi)
    assert box.unit is Unit.MM2
    # Centre and semi-axis ends, axes turned 30 deg: area pi * 6 * 2.
    c = (100, 100)
    a = g.rotate((106, 100), 30, about=c)
    b = g.rotate((100, 102), 30, about=c)
    assert measure(shape(ShapeKind.ELLIPSE, c, a, b)).value == pytest.approx(12 * math.pi)


def test_ruler_measures_like_a_line():
    m = measure(shape(ShapeKind.RULER, (0, 0), (0, 80), known_length_mm=10))
    assert (m.value, m.unit) == (pytest.approx(80), Unit.PX)


# --- errors -------------------------------------------------------------------------------


def test_mm_demanded_without_calibration_is_unprocessable():
    with pytest.raises(Unprocessable) as err:
        measure(shape(ShapeKind.LINE, (0, 0), (1, 1)), require_mm=True)
    assert err.value.code == "calibration_required"
    assert err.value.kind is ErrorKind.UNPROCESSABLE


def test_angles_need_no_calibration_even_when_mm_demanded():
    m = measure(shape(ShapeKind.ANGLE, (1, 0), (0, 0), (0, 1)), require_mm=True)
    assert m.value == pytest.approx(90)


@pytest.mark.parametrize("bad", [(-0.1, 5), (5, -1), (100.5, 5), (5, 50.01)])
def test_coordinates_out_of_bounds(bad):
    with pytest.raises(InvalidInput) as err:
        measure(shape(ShapeKind.LINE, (0, 0), bad), image_size=(100, 50))
    assert err.value.code == "coordinates_out_of_bounds"


def test_image_edges_are_inside():
    m = measure(shape(ShapeKind.LINE, (0, 0), (100, 50)), image_size=(100, 50))
    assert m.value == pytest.approx(math.hypot(100, 50))


def test_non_finite_coordinates_rejected():
    with pytest.raises(InvalidInput) as err:
        measure(shape(ShapeKind.LINE, (0, 0), (math.nan, 1)))
    assert err.value.code == "invalid_coordinates"


@pytest.mark.parametrize(
    "bad_shape",
    [
        shape(ShapeKind.ANGLE, (0, 0), (5, 5), (10, 10)),  # collinear
        shape(ShapeKind.ANGLE, (3, 3), (3, 3), (10, 10)),  # arm of zero length
        shape(ShapeKind.LINE, (4, 4), (4, 4)),
        shape(ShapeKind.RULER, (4, 4), (4, 4)),
        shape(ShapeKind.ANGLE, (0, 0), (0, 0), (1, 0), (2, 1)),  # 4-point, zero first line
    ],
)
def test_degenerate_geometry(bad_shape):
    with pytest.raises(InvalidInput) as err:
        measure(bad_shape)
    assert err.value.code == "degenerate_geometry"


@pytest.mark.parametrize(
    "bad_shape",
    [
        shape(ShapeKind.LINE, (0, 0)),
        shape(ShapeKind.POLYGON, (0, 0), (1, 1)),
        shape(ShapeKind.ANGLE, (0, 0), (1, 1)),
        shape(ShapeKind.ELLIPSE, (0, 0)),
    ],
)
def test_wrong_point_count(bad_shape):
    with pytest.raises(InvalidInput) as err:
        measure(bad_shape)
    assert err.value.code == "invalid_shape"


@pytest.mark.parametrize("value", [0, -1, math.inf, math.nan])
def test_calibration_must_be_positive(value):
    with pytest.raises(InvalidInput) as err:
        Calibration(value, CalibrationSource.RULER)
    assert err.value.code == "invalid_calibration"


# --- calibration resolution ---------------------------------------------------------------

RULER = shape(ShapeKind.RULER, (10, 10), (10, 210), known_length_mm=20)  # 0.1 mm/px


def test_pixel_spacing_wins_and_is_row_then_column():
    cal = resolve_calibration(
        pixel_spacing=(0.2, 0.1),
        imager_pixel_spacing=(0.3, 0.3),
        magnification=1.1,
        ruler=RULER,
        device_default_mm_per_pixel=0.5,
    )
    assert cal is not None
    assert cal.source is CalibrationSource.DICOM_PIXEL_SPACING
    assert cal.mm_per_pixel == pytest.approx(0.1)  # column spacing = horizontal
    assert cal.row_spacing == pytest.approx(0.2)
    assert not cal.is_isotropic


def test_imager_pixel_spacing_is_divided_by_magnification():
    cal = resolve_calibration(imager_pixel_spacing=(0.11, 0.11), magnification=1.1, ruler=RULER)
    assert cal is not None
    assert cal.source is CalibrationSource.DICOM_PIXEL_SPACING
    assert cal.mm_per_pixel == pytest.approx(0.1)
    assert cal.magnification == pytest.approx(1.1)
    assert cal.is_isotropic


def test_ruler_beats_uncorrected_imager_spacing_and_device_default():
    cal = resolve_calibration(
        imager_pixel_spacing=(0.3, 0.3), ruler=RULER, device_default_mm_per_pixel=0.5
    )
    assert cal is not None
    assert (cal.mm_per_pixel, cal.source) == (pytest.approx(0.1), CalibrationSource.RULER)


def test_uncorrected_imager_spacing_beats_device_default():
    cal = resolve_calibration(imager_pixel_spacing=(0.3, 0.3), device_default_mm_per_pixel=0.5)
    assert cal is not None
    assert cal.mm_per_pixel == pytest.approx(0.3)
    assert cal.magnification is None


def test_device_default_then_none():
    cal = resolve_calibration(pixel_spacing=(0, 0), device_default_mm_per_pixel=0.5)
    assert cal == Calibration(0.5, CalibrationSource.DEVICE_DEFAULT)
    assert resolve_calibration() is None
    assert resolve_calibration(pixel_spacing=(0.0, 0.0), magnification=1.1) is None


def test_ruler_calibration_errors():
    with pytest.raises(InvalidInput) as err:
        calibration_from_ruler(shape(ShapeKind.RULER, (0, 0), (0, 10)))
    assert err.value.code == "invalid_calibration"
    with pytest.raises(InvalidInput) as err:
        calibration_from_ruler(shape(ShapeKind.LINE, (0, 0), (0, 10), known_length_mm=5))
    assert err.value.code == "invalid_shape"


def test_ruler_measured_with_its_own_calibration_gives_its_known_length():
    cal = calibration_from_ruler(RULER)
    assert measure(RULER, calibration=cal).value == pytest.approx(20)


# --- properties ---------------------------------------------------------------------------


@given(point, point, st.floats(0.01, 1.0))
def test_length_scales_linearly_with_calibration(p, q, scale):
    assume(g.distance(p, q) > 1e-3)
    px = measure(shape(ShapeKind.LINE, p, q)).value
    mm = measure(
        shape(ShapeKind.LINE, p, q), calibration=Calibration(scale, CalibrationSource.RULER)
    ).value
    assert px is not None and mm is not None
    assert mm == pytest.approx(px * scale, rel=1e-9)


@given(st.lists(point, min_size=3, max_size=10), st.floats(0.01, 1.0))
def test_area_scales_quadratically(points, scale):
    px = measure(Shape(ShapeKind.POLYGON, tuple(points))).value
    mm = measure(
        Shape(ShapeKind.POLYGON, tuple(points)),
        calibration=Calibration(scale, CalibrationSource.RULER),
    ).value
    assert px is not None and mm is not None
    assert mm == pytest.approx(px * scale * scale, rel=1e-6, abs=1e-9)


@given(point, point, point, st.floats(0.01, 1.0))
def test_angle_independent_of_isotropic_calibration(p, v, q, scale):
    assume(g.distance(p, v) > 1 and g.distance(q, v) > 1)
    assume(g.distance_to_line(q, v, p) > 0.5)
    plain = measure(shape(ShapeKind.ANGLE, p, v, q)).value
    cal = Calibration(scale, CalibrationSource.DEVICE_DEFAULT)
    assert measure(shape(ShapeKind.ANGLE, p, v, q), calibration=cal).value == pytest.approx(
        plain, abs=1e-6
    )


@given(point, point, point, st.floats(-180, 180))
def test_measured_values_invariant_under_rotation(p, v, q, degrees):
    assume(g.distance(p, v) > 1 and g.distance(q, v) > 1)
    assume(g.distance_to_line(q, v, p) > 0.5)
    moved = [g.rotate(x, degrees, about=(1000, 1000)) for x in (p, v, q)]
    for kind in (ShapeKind.ANGLE, ShapeKind.POLYLINE, ShapeKind.POLYGON):
        before = measure(shape(kind, p, v, q)).value
        after = measure(shape(kind, *moved)).value
        assert after == pytest.approx(before, rel=1e-6, abs=1e-6)


@given(st.floats(0.5, 300), st.floats(0.5, 300), st.floats(-180, 180))
def test_ellipse_area_from_axes_any_orientation(a, b, degrees):
    c = (1000.0, 1000.0)
    end_a = g.rotate((1000 + a, 1000), degrees, about=c)
    end_b = g.rotate((1000, 1000 + b), degrees, about=c)
    m = measure(shape(ShapeKind.ELLIPSE, c, end_a, end_b))
    assert m.value == pytest.approx(math.pi * a * b, rel=1e-6)
