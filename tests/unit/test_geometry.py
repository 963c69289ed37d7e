import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain import geometry as g
from domain.errors import InvalidInput

coord = st.floats(min_value=-1000, max_value=1000, allow_nan=False, allow_infinity=False)
point = st.tuples(coord, coord)
angle_deg = st.floats(min_value=-360, max_value=360, allow_nan=False)


def far_apart(*points: tuple[float, float], minimum: float = 1.0) -> bool:
    return all(g.distance(p, q) >= minimum for i, p in enumerate(points) for q in points[i + 1 :])


def transform(p, degrees, shift):
    x, y = g.rotate(p, degrees)
    return (x + shift[0], y + shift[1])


# --- fixed values -------------------------------------------------------------------------


def test_ang3_right_angle_and_straight_angle():
    assert g.ang3((1, 0), (0, 0), (0, 1)) == pytest.approx(90)
    assert g.ang3((1, 0), (0, 0), (-3, 0)) == pytest.approx(180)
    assert g.ang3((2, 0), (0, 0), (5, 0)) == pytest.approx(0)


def test_ang3_known_triangle():
    # 3-4-5 triangle: angle at the origin between (4,0) and (4,3) is atan(3/4) = 36.8699 deg.
    assert g.ang3((4, 0), (0, 0), (4, 3)) == pytest.approx(36.869898, abs=1e-6)


def test_ang3_rejects_coincident_arm():
    with pytest.raises(InvalidInput) as err:
        g.ang3((0, 0), (0, 0), (1, 1))
    assert err.value.code == "degenerate_geometry"


def test_lines_directed_and_undirected():
    # Line a along +x; line b at 150 deg: directed 150, undirected (acute) 30.
    b2 = (math.cos(math.radians(150)), math.sin(math.radians(150)))
    assert g.angle_between_directions((0, 0), (1, 0), (0, 0), b2) == pytest.approx(150)
    assert g.angle_between_lines((0, 0), (1, 0), (0, 0), b2) == pytest.approx(30)
    # Reversing one line's point order flips directed, never undirected.
    assert g.angle_between_directions((1, 0), (0, 0), (0, 0), b2) == pytest.approx(30)
    assert g.angle_between_lines((1, 0), (0, 0), b2, (0, 0)) == pytest.approx(30)


def test_angle_between_lines_rejects_zero_length_line():
    with pytest.raises(InvalidInput) as err:
        g.angle_between_lines((1, 1), (1, 1), (0, 0), (1, 0))
    assert err.value.code == "degenerate_geometry"


def test_signed_angle_is_clockwise_on_screen():
    # y points down: turning +x towards +y (down the screen) is clockwise, hence positive.
    assert g.signed_angle((1, 0), (0, 1)) == pytest.approx(90)
    assert g.signed_angle((1, 0), (0, -1)) == pytest.approx(-90)


def test_signed_angle_toward_follows_facing():
    # Reference points down; v leans to +x by 45 deg.
    assert g.signed_angle_toward((0, 1), (1, 1), facing=(1, 0)) == pytest.approx(45)
    assert g.signed_angle_toward((0, 1), (1, 1), facing=(-1, 0)) == pytest.approx(-45)
    with pytest.raises(InvalidInput):
        g.signed_angle_toward((0, 1), (1, 1), facing=(0, 5))


def test_signed_distance_sign_follows_facing():
    # Vertical line x=2; the point at x=5 is 3 ahead when facing +x, 3 behind facing -x.
    assert g.signed_distance_to_line((5, 7), (2, 0), (2, 10), (1, 0)) == pytest.approx(3)
    assert g.signed_distance_to_line((5, 7), (2, 0), (2, 10), (-1, 0)) == pytest.approx(-3)
    assert g.signed_distance_to_line((5, 7), (2, 10), (2, 0), (1, 0)) == pytest.approx(3)
    assert g.distance_to_line((5, 7), (2, 10), (2, 0)) == pytest.approx(3)


def test_signed_distance_rejects_degenerate_line_and_parallel_facing():
    with pytest.raises(InvalidInput):
        g.signed_distance_to_line((5, 7), (2, 0), (2, 0), (1, 0))
    with pytest.raises(InvalidInput):
        g.signed_distance_to_line((5, 7), (2, 0), (2, 10), (0, 1))


def test_projection_on_line():
    assert g.project_on_line((3, 4), (0, 0), (10, 0)) == pytest.approx((3, 0))
    # On the diagonal y = x, (2, 0) projects to (1, 1).
    assert g.project_on_line((2, 0), (0, 0), (5, 5)) == pytest.approx((1, 1))
    with pytest.raises(InvalidInput):
        g.project_on_line((2, 0), (1, 1), (1, 1))


def test_distance_and_polyline_length():
    assert g.distance((0, 0), (3, 4)) == 5
    assert g.polyline_length([(0, 0), (3, 4), (3, 10)]) == pytest.approx(11)
    with pytest.raises(InvalidInput):
        g.polyline_length([(0, 0)])


def test_polygon_area_known_shapes():
    assert g.polygon_area([(0, 0), (4, 0), (4, 3), (0, 3)]) == pytest.approx(12)
    assert g.polygon_area([(0, 0), (0, 3), (4, 3), (4, 0)]) == pytest.approx(12)  # clockwise
    assert g.polygon_area([(0, 0), (4, 0), (0, 3)]) == pytest.approx(6)
    # An L shape: 3x3 square minus its 2x2 top-right corner = 5.
    l_shape = [(0, 0), (1, 0), (1, 2), (3, 2), (3, 3), (0, 3)]
    assert g.polygon_area(l_shape) == pytest.approx(5)
    assert g.polygon_area([(0, 0), (1, 1), (2, 2)]) == 0
    with pytest.raises(InvalidInput):
        g.polygon_area([(0, 0), (1, 1)])


def test_polygon_area_far_from_origin_is_accurate():
    base = 1e7
    square = [(base, base), (base + 1, base), (base + 1, base + 1), (base, base + 1)]
    assert g.polygon_area(square) == pytest.approx(1, abs=1e-6)


def test_ellipse_area():
    assert g.ellipse_area(2, 3) == pytest.approx(6 * math.pi)
    assert g.ellipse_area(1, 1) == pytest.approx(math.pi)
    with pytest.raises(InvalidInput):
        g.ellipse_area(-1, 2)


# --- properties ---------------------------------------------------------------------------


@given(point, point, point)
def test_ang3_is_symmetric_and_bounded(p, v, q):
    assume(far_apart(p, v, q))
    a = g.ang3(p, v, q)
    assert 0 <= a <= 180
    assert a == pytest.approx(g.ang3(q, v, p), abs=1e-9)


@given(point, point, point)
def test_triangle_angles_sum_to_180(a, b, c):
    assume(far_apart(a, b, c, minimum=5.0))
    assume(g.distance_to_line(c, a, b) > 1.0)
    total = g.ang3(b, a, c) + g.ang3(a, b, c) + g.ang3(a, c, b)
    assert total == pytest.approx(180, abs=1e-7)


@given(point, point, point, angle_deg, point)
def test_angles_and_distances_invariant_under_rigid_motion(p, v, q, degrees, shift):
    assume(far_apart(p, v, q))
    moved = [transform(x, degrees, shift) for x in (p, v, q)]
    assert g.ang3(*moved) == pytest.approx(g.ang3(p, v, q), abs=1e-6)
    assert g.distance(moved[0], moved[1]) == pytest.approx(g.distance(p, v), rel=1e-9, abs=1e-6)


@given(point, point, point, point, angle_deg, point)
def test_line_angles_invariant_under_rigid_motion(a1, a2, b1, b2, degrees, shift):
    assume(far_apart(a1, a2) and far_apart(b1, b2))
    moved = [transform(x, degrees, shift) for x in (a1, a2, b1, b2)]
    assert g.angle_between_directions(*moved) == pytest.approx(
        g.angle_between_directions(a1, a2, b1, b2), abs=1e-6
    )
    undirected = g.angle_between_lines(a1, a2, b1, b2)
    assert 0 <= undirected <= 90
    assert g.angle_between_lines(*moved) == pytest.approx(undirected, abs=1e-6)


@given(point, point, point, angle_deg, point)
def test_signed_distance_invariant_when_facing_moves_along(p, a, b, degrees, shift):
    assume(far_apart(a, b))
    d = g.direction(a, b)
    facing = (-d[1], d[0])  # a normal of the line, so never parallel to it
    moved_p, moved_a, moved_b = (transform(x, degrees, shift) for x in (p, a, b))
    moved_facing = g.rotate(facing, degrees)
    before = g.signed_distance_to_line(p, a, b, facing)
    after = g.signed_distance_to_line(moved_p, moved_a, moved_b, moved_facing)
    assert after == pytest.approx(before, abs=1e-6)
    assert abs(before) == pytest.approx(g.distance_to_line(p, a, b), abs=1e-9)


@given(point, point, point)
def test_projection_is_on_line_and_perpendicular(p, a, b):
    assume(far_apart(a, b))
    foot = g.project_on_line(p, a, b)
    assert g.distance_to_line(foot, a, b) == pytest.approx(0, abs=1e-6)
    # p - foot is perpendicular to the line, and its length is the distance to the line.
    assert abs(g.dot(g.sub(p, foot), g.direction(a, b))) == pytest.approx(0, abs=1e-6)
    assert g.distance(p, foot) == pytest.approx(g.distance_to_line(p, a, b), abs=1e-6)


@given(point, st.floats(1, 500), st.floats(1, 500), angle_deg)
def test_rotated_rectangle_area(origin, w, h, degrees):
    corners = [(0, 0), (w, 0), (w, h), (0, h)]
    moved = [transform(c, degrees, origin) for c in corners]
    assert g.polygon_area(moved) == pytest.approx(w * h, rel=1e-6)


@given(st.lists(point, min_size=3, max_size=12), angle_deg, point)
def test_polygon_area_rigid_invariant_and_orientation_free(points, degrees, shift):
    area = g.polygon_area(points)
    moved = [transform(p, degrees, shift) for p in points]
    assert g.polygon_area(moved) == pytest.approx(area, rel=1e-6, abs=1e-3)
    assert g.polygon_area(points[::-1]) == pytest.approx(area, rel=1e-9, abs=1e-6)


@given(st.lists(point, min_size=2, max_size=12))
def test_polyline_length_at_least_the_chord(points):
    assert g.polyline_length(points) >= g.distance(points[0], points[-1]) - 1e-9
