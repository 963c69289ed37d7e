"""Photo registration and warping on synthetic images with known maps.

The grid image is black with one-pixel white lines at x = 16k + 8 and y = 16k + 8. After a
warp with a known forward map F, a source line must appear where F puts it: along an output
row, the intensity-weighted centre of the line's profile is compared with the exact crossing
of the mapped line with that row (bilinear sampling turns a line into a tent whose centroid
is its centre).
"""

import math

import numpy as np
import pytest

from domain.errors import InvalidInput
from domain.photo_warp import (
    Similarity,
    ThinPlateSpline,
    backward_map,
    fit_affine,
    fit_similarity,
    warp_field,
    warp_image,
    watermark_simulation,
)

SIZE = 160
SPACING = 16


def grid_image(size=SIZE):
    image = np.zeros((size, size))
    image[SPACING // 2 :: SPACING, :] = 1.0
    image[:, SPACING // 2 :: SPACING] = 1.0
    return image


def affine(scale=1.0, angle_deg=0.0, shear=0.0, shift=(0.0, 0.0)):
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    linear = scale * np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]])
    return np.hstack([linear, np.array(shift, dtype=float)[:, None]])


def forward(matrix, points):
    return np.asarray(points, dtype=float) @ matrix[:, :2].T + matrix[:, 2]


def line_errors(warped, matrix):
    """Largest distance (px) between where vertical source lines land and where they should."""
    errors = []
    a = matrix[:, :2]
    b = matrix[:, 2]
    for x0 in range(SPACING // 2, SIZE, SPACING):
        for row in range(12, SIZE - 12):
            # On the mapped line F(x0, t): its y equals ``row`` at t below; x follows.
            t = (row - a[1, 0] * x0 - b[1]) / a[1, 1]
            # Skip rows near a horizontal source line (they would join the profile) and
            # crossings too close to the border to have a whole profile.
            if min(abs(t - (k * SPACING + SPACING // 2)) for k in range(SIZE // SPACING)) < 4:
                continue
            if not 0 <= t <= SIZE - 1:
                continue
            expected = a[0, 0] * x0 + a[0, 1] * t + b[0]
            if not 8 <= expected < SIZE - 8:
                continue
            columns = np.arange(int(expected) - 4, int(expected) + 6)
            profile = warped[row, columns]
            if profile.sum() < 0.5:
                errors.append(math.inf)  # the line is missing
                continue
            errors.append(abs(float((profile * columns).sum() / profile.sum()) - expected))
    assert len(errors) > 50
    return max(errors)


def control_points():
    return np.array([[20.0, 20.0], [140.0, 25.0], [30.0, 135.0], [130.0, 140.0], [80.0, 75.0]])


@pytest.mark.parametrize(
    "matrix",
    [
        affine(shift=(6.4, -3.3)),  # a pure translation, not a whole pixel
        affine(scale=1.06, angle_deg=4.0, shear=0.05, shift=(-5.0, 3.0)),  # a known affine
    ],
    ids=["translation", "affine"],
)
def test_warped_grid_lines_land_where_expected(matrix):
    src = control_points()
    dst = forward(matrix, src)
    warped = warp_image(grid_image(), src, dst)
    assert line_errors(warped, matrix) < 1.0


def test_warp_with_two_pairs_uses_a_similarity():
    matrix = affine(scale=0.95, angle_deg=-3.0, shift=(4.0, 2.0))
    src = np.array([[30.0, 40.0], [120.0, 110.0]])
    warped = warp_image(grid_image(), src, forward(matrix, src))
    assert line_errors(warped, matrix) < 1.0


def test_single_pair_is_a_shift_and_identity_changes_nothing():
    image = grid_image()
    shifted = warp_image(image, [[50, 50]], [[53, 48]])
    # Content moves 3 px right and 2 px up: output(x, y) = input(x - 3, y + 2).
    np.testing.assert_allclose(
        shifted[10:-10, 10:-10], np.roll(image, (-2, 3), (0, 1))[10:-10, 10:-10]
    )
    same = warp_image(image, control_points(), control_points())
    np.testing.assert_allclose(same, image, atol=1e-9)


def test_warp_keeps_shape_and_dtype_and_fills_outside():
    rgb = np.zeros((40, 50, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    out = warp_image(rgb, [[10, 10], [40, 10], [25, 30]], [[20, 10], [50, 10], [35, 30]])
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (out[:, :9, 0] == 0).all()  # shifted right by 10: the left strip has no source
    assert (out[:, 12:, 0] == 200).all()


def test_warp_field_is_the_backward_map():
    matrix = affine(scale=1.1, angle_deg=7.0, shift=(3.0, -2.0))
    src = control_points()
    field = warp_field((SIZE, SIZE), src, forward(matrix, src))
    # Output pixel p samples F^-1(p).
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    np.testing.assert_allclose(field[37, 91], forward(inverse, [[91, 37]])[0], atol=1e-6)


def test_thin_plate_spline_interpolates_and_reproduces_affine():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 1000, size=(8, 2))
    bent = src + rng.normal(scale=15, size=src.shape)
    spline = ThinPlateSpline.fit(src, bent)
    np.testing.assert_allclose(spline.apply(src), bent, atol=1e-6)
    matrix = affine(scale=1.2, angle_deg=20, shear=0.1, shift=(30, -12))
    spline = ThinPlateSpline.fit(src, forward(matrix, src))
    probe = rng.uniform(-200, 1200, size=(50, 2))
    np.testing.assert_allclose(spline.apply(probe), forward(matrix, probe), atol=1e-6)


def test_thin_plate_spline_smoothing_relaxes_interpolation():
    src = control_points()
    dst = src.copy()
    dst[4] += (10, 0)
    exact = ThinPlateSpline.fit(src, dst)
    smooth = ThinPlateSpline.fit(src, dst, smoothing=1.0)
    assert exact.apply(src[4:5])[0] == pytest.approx(dst[4])
    assert smooth.apply(src[4:5])[0, 0] < dst[4, 0]


def test_fit_similarity_recovers_a_known_similarity():
    truth = Similarity(1.3, 12.0, (40.0, -7.0), 0.0)
    src = np.array([[0, 0], [100, 0], [0, 50], [70, 80]], dtype=float)
    fitted = fit_similarity(src, truth.apply(src))
    assert fitted.scale == pytest.approx(1.3)
    assert fitted.rotation_deg == pytest.approx(12.0)
    assert fitted.translation == pytest.approx((40.0, -7.0))
    assert fitted.rms_residual == pytest.approx(0.0, abs=1e-9)
    # Two pairs fix it exactly: (0,0)->(5,5), (10,0)->(5,25) is scale 2, 90 deg clockwise.
    two = fit_similarity([[0, 0], [10, 0]], [[5, 5], [5, 25]])
    assert (two.scale, two.rotation_deg) == pytest.approx((2.0, 90.0))
    assert two.translation == pytest.approx((5.0, 5.0))
    back = two.inverse()
    np.testing.assert_allclose(back.apply(two.apply([[3.0, 4.0]])), [[3.0, 4.0]], atol=1e-9)


def test_fit_similarity_never_mirrors():
    src = np.array([[0, 0], [10, 0], [0, 10]], dtype=float)
    mirrored = src * np.array([-1.0, 1.0])
    fitted = fit_similarity(src, mirrored)
    assert fitted.scale > 0 and fitted.rms_residual > 1.0


def test_fit_affine_recovers_a_known_affine():
    matrix = affine(scale=0.9, angle_deg=-8, shear=0.2, shift=(3, 4))
    src = control_points()
    np.testing.assert_allclose(fit_affine(src, forward(matrix, src)).matrix, matrix, atol=1e-9)


def degenerate(call, *args):
    with pytest.raises(InvalidInput) as err:
        call(*args)
    return err.value.code


def test_degenerate_registrations():
    line = [[0, 0], [10, 10], [20, 20], [30, 30]]
    assert degenerate(fit_affine, line, line) == "degenerate_registration"
    assert degenerate(ThinPlateSpline.fit, line, line) == "degenerate_registration"
    same = [[5, 5], [5, 5], [5, 5]]
    assert degenerate(fit_similarity, same, [[0, 0], [1, 0], [0, 1]]) == "degenerate_registration"
    assert degenerate(fit_similarity, [[0, 0], [1, 0], [0, 1]], same) == "degenerate_registration"
    assert degenerate(fit_similarity, [[0, 0]], [[1, 1]]) == "degenerate_registration"
    assert degenerate(fit_similarity, [[0, 0], [1, 1]], [[1, 1]]) == "degenerate_registration"
    duplicate = [[0, 0], [10, 0], [0, 10], [10, 0]]
    assert degenerate(ThinPlateSpline.fit, duplicate, duplicate) == "degenerate_registration"
    assert degenerate(backward_map, [], []) == "degenerate_registration"


def test_collinear_warp_points_fall_back_to_a_similarity():
    line = np.array([[20.0, 20.0], [60.0, 60.0], [100.0, 100.0]])
    mapping = backward_map(line, line + 5)
    assert isinstance(mapping, Similarity)
    assert mapping.translation == pytest.approx((-5.0, -5.0))


def test_invalid_inputs():
    assert degenerate(fit_similarity, [[0, math.nan], [1, 1]], [[0, 0], [1, 1]]) == (
        "invalid_coordinates"
    )
    assert degenerate(warp_image, np.zeros((0, 5)), [[0, 0]], [[1, 1]]) == "invalid_image"


def test_watermark_marks_only_the_band():
    image = np.full((200, 300, 3), 120, dtype=np.uint8)
    marked = watermark_simulation(image)
    assert marked.shape == image.shape and marked.dtype == np.uint8
    band = 20  # 10 % of the height
    np.testing.assert_array_equal(marked[:-band], image[:-band])
    bottom = marked[-band:]
    assert (bottom == 255).all(axis=2).sum() > 50  # white strokes
    assert ((bottom == 42).all(axis=2)).sum() > 0.5 * bottom[..., 0].size  # darkened to 35 %
    assert (bottom[:, :5] == 42).all()  # the text is centred, margins stay plain


def test_watermark_grey_float_and_rgba():
    grey = watermark_simulation(np.full((100, 400), 0.5))
    assert grey.dtype == np.float64 and grey.max() == pytest.approx(1.0)
    rgba = np.zeros((100, 100, 4), dtype=np.uint16)
    marked = watermark_simulation(rgba)
    assert (marked[-10:, :, 3] == 65535).all() and (marked[:-10, :, 3] == 0).all()
    assert degenerate(watermark_simulation, np.zeros((4, 4))) == "invalid_image"
