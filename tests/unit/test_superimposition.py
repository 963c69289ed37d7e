import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import geometry as g
from domain.errors import InvalidInput
from domain.superimposition import Method, best_fit, sn_at_s, superimpose

# A cranial base and face in pixels (0.1 mm/px); y down, patient facing +x.
FIRST = {
    "S": (1000, 1000), "N": (1700, 1000), "Ba": (780, 1420), "Pt": (1120, 1220),
    "A": (1650, 1500), "B": (1520, 1900), "Me": (1450, 2170), "Go": (950, 1820),
}  # fmt: skip
MM = 0.1

angle = st.floats(min_value=-179, max_value=179, allow_nan=False)
offset = st.floats(min_value=-2000, max_value=2000, allow_nan=False)


def moved(tracing, degrees, shift, scale=1.0):
    """Every point rotated by `degrees` about the origin, scaled, then shifted (pixels)."""
    out = {}
    for code, p in tracing.items():
        x, y = g.rotate(p, degrees)
        out[code] = (x * scale + shift[0], y * scale + shift[1])
    return out


def rotation_det(rotation_deg: float) -> float:
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    return float(np.linalg.det(np.array([[c, -s], [s, c]])))


def norm_angle(a: float) -> float:
    return (a + 180) % 360 - 180


@settings(max_examples=200, deadline=None)
@given(angle, offset, offset)
def test_best_fit_recovers_a_known_rigid_transform(degrees, tx, ty):
    second = moved(FIRST, degrees, (tx, ty))
    result = best_fit(FIRST, second, MM)
    # second = R(degrees) first + t, so mapping second back onto first is R(-degrees).
    assert norm_angle(result.transform.rotation_deg + degrees) == pytest.approx(0, abs=1e-6)
    assert result.rms_residual_mm == pytest.approx(0, abs=1e-6)
    for d in result.displacements:
        assert d.distance == pytest.approx(0, abs=1e-6)
    assert {d.code for d in result.displacements} == set(FIRST)
    assert result.reference_points == ("S", "N", "Ba", "Pt")


@settings(max_examples=200, deadline=None)
@given(angle, offset, offset)
def test_sn_at_s_recovers_a_known_rigid_transform_and_keeps_s_fixed(degrees, tx, ty):
    second = moved(FIRST, degrees, (tx, ty))
    result = sn_at_s(FIRST, second, MM)
    assert norm_angle(result.transform.rotation_deg + degrees) == pytest.approx(0, abs=1e-6)
    assert result.displacement("S").distance == pytest.approx(0, abs=1e-9)
    assert result.displacement("N").distance == pytest.approx(0, abs=1e-6)
    assert result.displacement("Me").distance == pytest.approx(0, abs=1e-6)


def best_rotation_by_search(first_mm, second_mm) -> float:
    """Smallest RMS over rigid poses, by brute force over the angle (0.01 deg steps)."""
    p = np.array(second_mm) - np.mean(second_mm, axis=0)
    q = np.array(first_mm) - np.mean(first_mm, axis=0)
    theta = np.radians(np.arange(0, 360, 0.01))[:, None]
    rx = np.cos(theta) * p[:, 0] - np.sin(theta) * p[:, 1]
    ry = np.sin(theta) * p[:, 0] + np.cos(theta) * p[:, 1]
    rms = np.sqrt(np.mean((rx - q[:, 0]) ** 2 + (ry - q[:, 1]) ** 2, axis=1))
    return float(rms.min())


def test_best_fit_never_reflects():
    # The second tracing is the mirror image: a reflection would match it exactly, a
    # rotation cannot. The result must be the best proper rotation, found here by search.
    mirrored = {code: (-x, y) for code, (x, y) in FIRST.items()}
    result = best_fit(FIRST, mirrored, MM)
    assert rotation_det(result.transform.rotation_deg) == pytest.approx(1)
    refs = result.reference_points
    optimum = best_rotation_by_search(
        [(FIRST[c][0] * MM, FIRST[c][1] * MM) for c in refs],
        [(mirrored[c][0] * MM, mirrored[c][1] * MM) for c in refs],
    )
    assert result.rms_residual_mm > 1.0
    assert result.rms_residual_mm == pytest.approx(optimum, abs=1e-3)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(offset, offset), min_size=4, max_size=4),
    st.lists(st.tuples(offset, offset), min_size=4, max_size=4),
)
def test_any_fit_is_a_proper_rotation_and_the_least_squares_optimum(a, b):
    codes = ("S", "N", "Ba", "Pt")
    first, second = dict(zip(codes, a, strict=True)), dict(zip(codes, b, strict=True))
    try:
        fit = best_fit(first, second, MM)
    except InvalidInput as err:
        assert err.code == "degenerate_geometry"
        return
    assert rotation_det(fit.transform.rotation_deg) == pytest.approx(1)
    # No other rigid pose may do better on the same points; try the SN-at-S pose.
    try:
        sn = sn_at_s(first, second, MM)
    except InvalidInput:
        return
    squared = [
        g.distance(sn.transform.apply((second[c][0] * MM, second[c][1] * MM)),
                   (first[c][0] * MM, first[c][1] * MM)) ** 2
        for c in codes
    ]  # fmt: skip
    assert fit.rms_residual_mm <= math.sqrt(sum(squared) / len(codes)) + 1e-6


def test_sn_at_s_with_growth():
    # Second visit: the face grew 5 mm (50 px) straight down below the cranial base and N
    # moved 2 mm forward along SN; the whole tracing was also turned by 10 deg in the image.
    grown = {
        c: (x, y + 50) if c in {"A", "B", "Me", "Go"} else (x, y) for c, (x, y) in FIRST.items()
    }
    grown["N"] = (1720, 1000)
    second = moved(grown, 10, (300, -200))
    result = sn_at_s(FIRST, second, MM)
    assert result.method is Method.SN_AT_S
    assert result.transform.rotation_deg == pytest.approx(-10)
    s = result.displacement("S")
    assert (s.dx, s.dy) == (pytest.approx(0, abs=1e-9), pytest.approx(0, abs=1e-9))
    n = result.displacement("N")
    assert (n.dx, n.dy) == (pytest.approx(2), pytest.approx(0, abs=1e-9))
    me = result.displacement("Me")
    assert (me.dx, me.dy, me.distance) == (
        pytest.approx(0, abs=1e-9),
        pytest.approx(5),
        pytest.approx(5),
    )
    # Residual on S and N: sqrt((0^2 + 2^2) / 2).
    assert result.rms_residual_mm == pytest.approx(math.sqrt(2))


def test_best_fit_residual_and_displacement_in_first_frame():
    # Same pose, but Ba moved 3 mm down on the second tracing: the fit spreads the error,
    # and A (not a reference point) is moved exactly by the fitted transform.
    second = dict(FIRST, Ba=(780, 1450))
    result = best_fit(FIRST, second, MM)
    assert 0 < result.rms_residual_mm < 3
    a = result.displacement("A")
    expected = g.sub(result.transform.apply((1650 * MM, 1500 * MM)), (1650 * MM, 1500 * MM))
    assert (a.dx, a.dy) == (pytest.approx(expected[0]), pytest.approx(expected[1]))


def test_different_pixel_sizes_are_compared_in_mm():
    second = {c: (x * 2, y * 2) for c, (x, y) in FIRST.items()}  # scanned at twice the dpi
    result = best_fit(FIRST, second, MM, second_mm_per_pixel=MM / 2)
    assert result.rms_residual_mm == pytest.approx(0, abs=1e-9)
    assert result.transform.rotation_deg == pytest.approx(0, abs=1e-9)


def test_reference_points_are_configurable_and_need_three_non_collinear():
    with pytest.raises(InvalidInput) as err:
        best_fit(FIRST, FIRST, MM, reference_points=("S", "N"))
    assert err.value.code == "degenerate_geometry"
    line = {"S": (0, 0), "N": (10, 0), "Ba": (20, 0), "Pt": (30, 0)}
    with pytest.raises(InvalidInput) as err:
        best_fit(line, line, MM)
    assert err.value.code == "degenerate_geometry"
    without_pt = {c: p for c, p in FIRST.items() if c != "Pt"}
    result = best_fit(FIRST, without_pt, MM)
    assert result.reference_points == ("S", "N", "Ba")
    custom = best_fit(FIRST, FIRST, MM, reference_points=("A", "B", "Me"))
    assert custom.reference_points == ("A", "B", "Me")


def test_sn_at_s_needs_s_and_n():
    with pytest.raises(InvalidInput) as err:
        sn_at_s(FIRST, {c: p for c, p in FIRST.items() if c != "N"}, MM)
    assert err.value.code == "degenerate_geometry"
    with pytest.raises(InvalidInput) as err:
        sn_at_s(FIRST, dict(FIRST, N=FIRST["S"]), MM)
    assert err.value.code == "degenerate_geometry"


def test_dispatch_and_validation():
    assert superimpose("best_fit", FIRST, FIRST, MM).method is Method.BEST_FIT
    assert superimpose(Method.SN_AT_S, FIRST, FIRST, MM).method is Method.SN_AT_S
    with pytest.raises(InvalidInput) as err:
        superimpose("procrustes", FIRST, FIRST, MM)
    assert err.value.code == "unknown_method"
    with pytest.raises(InvalidInput) as err:
        best_fit(dict(FIRST, Qq=(1, 1)), FIRST, MM)
    assert err.value.code == "unknown_landmark"
    with pytest.raises(InvalidInput) as err:
        best_fit(FIRST, FIRST, 0.0)
    assert err.value.code == "invalid_calibration"


# --- non-square pixels (issue 19) ----------------------------------------------------------

ANATOMY_MM = {
    "S": (100.0, 100.0), "N": (170.0, 100.0), "Ba": (78.0, 142.0), "Pt": (112.0, 122.0),
    "A": (165.0, 150.0), "B": (152.0, 190.0), "Pog": (157.0, 200.0), "Me": (145.0, 217.0),
    "Go": (95.0, 182.0),
}  # fmt: skip


@pytest.mark.parametrize("method", ["sn_at_s", "best_fit"])
def test_non_square_pixels_measured_per_axis(method):
    from domain.measurement import Calibration, CalibrationSource
    from domain.superimposition import superimpose_calibrated

    # Both films have rows 0.11 mm and columns 0.10 mm apart. Between them the head turned
    # -7 deg and moved; pogonion alone came 3 mm forward (growth).
    column, row = 0.10, 0.11
    calibration = Calibration(column, CalibrationSource.DICOM_PIXEL_SPACING,
                              mm_per_pixel_y=row)
    later_mm = {c: g.rotate(p, -7.0) for c, p in ANATOMY_MM.items()}
    pog = ANATOMY_MM["Pog"]
    later_mm["Pog"] = g.rotate((pog[0] + 3.0, pog[1]), -7.0)
    later_mm = {c: (x + 12.0, y - 5.0) for c, (x, y) in later_mm.items()}

    def film(points_mm):
        return {c: (x / column, y / row) for c, (x, y) in points_mm.items()}

    both = superimpose_calibrated(method, film(ANATOMY_MM), film(later_mm), calibration,
                                  calibration)
    # The later film is turned back by +7 deg onto the first.
    assert both.result.transform.rotation_deg == pytest.approx(7.0, abs=1e-9)
    for d in both.result.displacements:
        if d.code == "Pog":
            assert (d.dx, d.dy) == (pytest.approx(3.0, abs=1e-9), pytest.approx(0, abs=1e-9))
        else:
            assert d.distance == pytest.approx(0.0, abs=1e-9), d.code
    assert both.first_mm["N"] == pytest.approx(ANATOMY_MM["N"])
    assert both.second_in_first_mm["Me"] == pytest.approx(ANATOMY_MM["Me"])
    # One figure for both axes (the old behaviour) shears the tracing: wrong angle, and
    # displacement where nothing moved.
    sheared = superimpose(method, film(ANATOMY_MM), film(later_mm), column)
    assert abs(sheared.transform.rotation_deg - 7.0) > 0.3
    assert max(d.distance for d in sheared.displacements if d.code != "Pog") > 1.0
