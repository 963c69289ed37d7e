"""Plane geometry on image points, the primitives of measurement and cephalometry.

Points are ``(x, y)`` in any consistent unit (pixels or millimetres). The image y axis
points *down*, so a positive signed rotation (:func:`signed_angle`) is clockwise as seen on
screen. Nothing here knows about anatomy: where "anterior" is comes in as an explicit
``facing`` direction.

Functions raise ``InvalidInput("degenerate_geometry")`` when the value they would return is
undefined (a zero-length line, an angle with a coincident arm); a value that is merely zero
(the area of a flat polygon) is returned as zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias

from domain.errors import InvalidInput

Point: TypeAlias = tuple[float, float]
Vector: TypeAlias = tuple[float, float]

# Coordinates come from clicks and detectors in pixels; anything this short is a
# double click, not a line, and would give an arbitrary direction.
EPSILON = 1e-9


def _degenerate(message: str) -> InvalidInput:
    return InvalidInput("degenerate_geometry", message)


def sub(p: Sequence[float], q: Sequence[float]) -> Vector:
    """The vector from ``q`` to ``p``."""
    return (float(p[0]) - float(q[0]), float(p[1]) - float(q[1]))


def dot(u: Vector, v: Vector) -> float:
    return u[0] * v[0] + u[1] * v[1]


def cross(u: Vector, v: Vector) -> float:
    """z of the 3-D cross product; positive when ``v`` is clockwise of ``u`` on screen."""
    return u[0] * v[1] - u[1] * v[0]


def norm(u: Vector) -> float:
    return math.hypot(u[0], u[1])


def distance(p: Sequence[float], q: Sequence[float]) -> float:
    return norm(sub(p, q))


def midpoint(p: Sequence[float], q: Sequence[float]) -> Point:
    return ((float(p[0]) + float(q[0])) / 2.0, (float(p[1]) + float(q[1])) / 2.0)


def unit(u: Vector, what: str = "vector") -> Vector:
    length = norm(u)
    if length <= EPSILON:
        raise _degenerate(f"{what} has zero length")
    return (u[0] / length, u[1] / length)


def direction(a: Sequence[float], b: Sequence[float], what: str = "line") -> Vector:
    """Unit vector from ``a`` to ``b``."""
    return unit(sub(b, a), what)


def angle_between_vectors(u: Vector, v: Vector) -> float:
    """Unsigned angle between two directions, 0-180 degrees."""
    unit(u, "first vector")
    unit(v, "second vector")
    # atan2 of (|cross|, dot) stays accurate near 0 and 180, where acos loses digits.
    return math.degrees(math.atan2(abs(cross(u, v)), dot(u, v)))


def signed_angle(u: Vector, v: Vector) -> float:
    """Rotation taking direction ``u`` to ``v``, in (-180, 180] degrees.

    Positive is clockwise on screen (y down), i.e. the mathematical sense of the raw
    coordinates.
    """
    unit(u, "first vector")
    unit(v, "second vector")
    return math.degrees(math.atan2(cross(u, v), dot(u, v)))


def signed_angle_toward(reference: Vector, v: Vector, facing: Vector) -> float:
    """Angle from ``reference`` to ``v``, positive when ``v`` leans to the ``facing`` side.

    Cephalometric inclinations (an incisor against N-A) are reported positive when the
    tooth tips anteriorly; this frees them from the image's handedness (patient facing
    left or right).
    """
    side = cross(reference, facing)
    if abs(side) <= EPSILON * norm(reference) * norm(facing):
        raise _degenerate("facing direction is parallel to the reference line")
    return signed_angle(reference, v) * math.copysign(1.0, side)


def ang3(p: Sequence[float], v: Sequence[float], q: Sequence[float]) -> float:
    """Angle P-V-Q at vertex ``v`` in degrees, 0-180; symmetric in ``p`` and ``q``."""
    vp, vq = sub(p, v), sub(q, v)
    if norm(vp) <= EPSILON or norm(vq) <= EPSILON:
        raise _degenerate("an arm of the angle has zero length")
    return angle_between_vectors(vp, vq)


def angle_between_directions(
    a1: Sequence[float], a2: Sequence[float], b1: Sequence[float], b2: Sequence[float]
) -> float:
    """Directed angle between ray a1→a2 and ray b1→b2, 0-180 degrees.

    Use when the order of the points carries meaning (S→N and Go→Me both point forward).
    """
    return angle_between_vectors(unit(sub(a2, a1), "first line"), unit(sub(b2, b1), "second line"))


def angle_between_lines(
    a1: Sequence[float], a2: Sequence[float], b1: Sequence[float], b2: Sequence[float]
) -> float:
    """Undirected (acute) angle between line a1-a2 and line b1-b2, 0-90 degrees.

    Independent of the order of the points on each line.
    """
    angle = angle_between_directions(a1, a2, b1, b2)
    return min(angle, 180.0 - angle)


def signed_distance_to_line(
    p: Sequence[float], a: Sequence[float], b: Sequence[float], facing: Vector
) -> float:
    """Perpendicular distance of ``p`` from line a-b, positive on the ``facing`` side.

    ``facing`` is any vector pointing to the side called positive (for cephalometry, the
    anterior direction, e.g. S→N). It must not be parallel to the line.
    """
    d = direction(a, b)
    side = cross(d, facing)
    if abs(side) <= EPSILON * norm(facing):
        raise _degenerate("facing direction is parallel to the line")
    return cross(d, sub(p, a)) * math.copysign(1.0, side)


def distance_to_line(p: Sequence[float], a: Sequence[float], b: Sequence[float]) -> float:
    """Unsigned perpendicular distance of ``p`` from the infinite line a-b."""
    return abs(cross(direction(a, b), sub(p, a)))


def project_on_line(p: Sequence[float], a: Sequence[float], b: Sequence[float]) -> Point:
    """Foot of the perpendicular from ``p`` on the infinite line a-b."""
    d = direction(a, b)
    t = dot(sub(p, a), d)
    return (float(a[0]) + t * d[0], float(a[1]) + t * d[1])


def polygon_area(points: Sequence[Sequence[float]]) -> float:
    """Area enclosed by a simple polygon (shoelace formula), vertices in either order.

    A self-intersecting outline gives the net signed area, not the painted area.
    """
    if len(points) < 3:
        raise _degenerate("a polygon needs at least 3 vertices")
    # Shift to the first vertex: shoelace on large pixel coordinates cancels badly otherwise.
    ox, oy = float(points[0][0]), float(points[0][1])
    twice = 0.0
    for i in range(len(points)):
        x1, y1 = float(points[i][0]) - ox, float(points[i][1]) - oy
        nxt = points[(i + 1) % len(points)]
        x2, y2 = float(nxt[0]) - ox, float(nxt[1]) - oy
        twice += x1 * y2 - x2 * y1
    return abs(twice) / 2.0


def ellipse_area(semi_axis_a: float, semi_axis_b: float) -> float:
    if semi_axis_a < 0 or semi_axis_b < 0:
        raise InvalidInput("invalid_geometry", "semi-axes must not be negative")
    return math.pi * semi_axis_a * semi_axis_b


def polyline_length(points: Sequence[Sequence[float]]) -> float:
    if len(points) < 2:
        raise _degenerate("a polyline needs at least 2 points")
    return sum(distance(points[i], points[i + 1]) for i in range(len(points) - 1))


def rotate(p: Sequence[float], degrees: float, about: Sequence[float] = (0.0, 0.0)) -> Point:
    """Rotate ``p`` by ``degrees`` about ``about``; positive is clockwise on screen."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    x, y = sub(p, about)
    return (float(about[0]) + c * x - s * y, float(about[1]) + s * x + c * y)
