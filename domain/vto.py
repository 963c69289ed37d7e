"""Visual treatment objective: planned movements on a tracing and the predicted profile.

A :class:`TreatmentPlan` moves landmark groups (incisors, molars, maxilla, mandible) by a
translation in mm and a rotation about a named landmark, in the cranial-base frame of
``domain/growth.py`` (x anterior along S->N, y inferior), so a plan reads the same for a
patient facing left or right. Rotations are in degrees, positive *clockwise with the profile
facing right*: the orthodontic convention, in which a clockwise mandibular rotation opens the
bite and a clockwise upper-incisor rotation about its apex retroclines it.

Soft tissue is not moved by the plan but follows it: each soft-tissue landmark moves by a
published average ratio of a hard-tissue landmark's movement (upper lip about 0.6 of upper
incisor retraction, soft-tissue pogonion 1:1 with pogonion). The ratios are versioned data
with sources (:data:`DEFAULT_SOFT_TISSUE_RATIOS`); the predicted profile is an average-based
estimate and says so.

Order of application: skeletal groups first (maxilla, then mandible), then the teeth, each
rotating about its pivot's position at that moment; a landmark in two groups (an upper
incisor moved with the maxilla and then retracted) gets both movements.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from domain import geometry as g
from domain.cephalometry.landmarks import LANDMARKS, get_landmark
from domain.errors import InvalidInput
from domain.geometry import Point
from domain.growth import (
    DISCLAIMER,
    MAIN_MEASUREMENTS,
    VERIFY,
    CranialBaseFrame,
    LandmarkShift,
    MeasurementChange,
    compare_measurements,
    shifts_between,
    tracing_to_mm,
    tracing_to_px,
)

SOFT_TISSUE_RATIOS_VERSION = "2025.1"

# Beyond these a "planned movement" is an input error: no orthodontic or orthognathic move
# of a landmark group comes near them.
MAX_TRANSLATION_MM = 20.0
MAX_ROTATION_DEG = 45.0


class MovementGroup(StrEnum):
    UPPER_INCISORS = "upper_incisors"
    LOWER_INCISORS = "lower_incisors"
    UPPER_MOLARS = "upper_molars"
    LOWER_MOLARS = "lower_molars"
    MAXILLA = "maxilla"
    MANDIBLE = "mandible"


# The maxilla and mandible carry their teeth (a Le Fort I or a sagittal split moves the
# dentition with the bone). The mandible group is the tooth-bearing body and symphysis: the
# condyle and ramus points (Co, Ar, R, Xi, DC) stay, as in a sagittal split; for an
# autorotation, rotate the group about Co.
GROUP_LANDMARKS: dict[MovementGroup, tuple[str, ...]] = {
    MovementGroup.UPPER_INCISORS: ("U1", "U1_apex"),
    MovementGroup.LOWER_INCISORS: ("L1", "L1_apex"),
    MovementGroup.UPPER_MOLARS: ("UM",),
    MovementGroup.LOWER_MOLARS: ("LM",),
    MovementGroup.MAXILLA: ("A", "ANS", "PNS", "U1", "U1_apex", "UPM", "UM"),
    MovementGroup.MANDIBLE: ("B", "Pog", "Gn", "Me", "Pm", "Go", "L1", "L1_apex", "LPM", "LM"),
}

# Used when a rotation names no pivot.
DEFAULT_PIVOTS: dict[MovementGroup, str] = {
    MovementGroup.UPPER_INCISORS: "U1_apex",
    MovementGroup.LOWER_INCISORS: "L1_apex",
    MovementGroup.UPPER_MOLARS: "UM",
    MovementGroup.LOWER_MOLARS: "LM",
    MovementGroup.MAXILLA: "PNS",
    MovementGroup.MANDIBLE: "Co",
}

_ORDER = (
    MovementGroup.MAXILLA,
    MovementGroup.MANDIBLE,
    MovementGroup.UPPER_MOLARS,
    MovementGroup.LOWER_MOLARS,
    MovementGroup.UPPER_INCISORS,
    MovementGroup.LOWER_INCISORS,
)


# --- plans --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedMovement:
    """Move one group: rotate about ``pivot`` (a landmark code), then translate.

    ``dx_mm`` is anterior, ``dy_mm`` inferior, both in the cranial-base frame; the rotation is
    positive clockwise with the profile facing right. ``pivot`` None means the group's default.
    """

    group: str
    dx_mm: float = 0.0
    dy_mm: float = 0.0
    rotation_deg: float = 0.0
    pivot: str | None = None


@dataclass(frozen=True, slots=True)
class TreatmentPlan:
    movements: tuple[PlannedMovement, ...]
    label: str = ""


def _implausible(message: str) -> InvalidInput:
    return InvalidInput("implausible_movement", message)


def _check_movement(movement: PlannedMovement) -> MovementGroup:
    try:
        group = MovementGroup(movement.group)
    except ValueError:
        known = ", ".join(m.value for m in MovementGroup)
        raise InvalidInput(
            "unknown_landmark_group", f"unknown group {movement.group!r}; known: {known}"
        ) from None
    values = (movement.dx_mm, movement.dy_mm, movement.rotation_deg)
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        raise _implausible(f"{group.value}: movements must be finite numbers")
    if math.hypot(movement.dx_mm, movement.dy_mm) > MAX_TRANSLATION_MM:
        raise _implausible(f"{group.value}: translation over {MAX_TRANSLATION_MM:g} mm")
    if abs(movement.rotation_deg) > MAX_ROTATION_DEG:
        raise _implausible(f"{group.value}: rotation over {MAX_ROTATION_DEG:g} degrees")
    if movement.pivot is not None:
        get_landmark(movement.pivot)  # unknown_landmark for a code not in the catalogue
    return group


def validate_plan(plan: TreatmentPlan) -> dict[MovementGroup, PlannedMovement]:
    """The plan's movements by group; raises the stable codes for a bad plan."""
    by_group: dict[MovementGroup, PlannedMovement] = {}
    for movement in plan.movements:
        group = _check_movement(movement)
        if group in by_group:
            raise InvalidInput(
                "duplicate_landmark_group", f"{group.value} is moved twice; combine the moves"
            )
        by_group[group] = movement
    return by_group


# --- soft-tissue response -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SoftTissueRatio:
    """``soft`` moves ``ratio`` times ``hard``'s movement along ``axis`` of the frame."""

    soft: str
    hard: str
    axis: str  # "anterior" (horizontal) or "inferior" (vertical)
    ratio: float
    range_low: float | None
    range_high: float | None
    source: str
    population: str
    status: str = VERIFY
    version: str = SOFT_TISSUE_RATIOS_VERSION


_TALASS_1987 = (
    "Talass MF, Talass L, Baker RC. Soft-tissue profile changes resulting from retraction of "
    "maxillary incisors. Am J Orthod Dentofacial Orthop 1987;91:385-394"
)
_BRIEF_RANGE = "Commonly quoted average ratio range (0.5-0.7:1) for upper-lip retraction"
_CHIN = (
    "Soft-tissue chin follows bony chin about 1:1 in mandibular advancement and setback "
    "(e.g. Mobarak KA, Espeland L, Krogstad O, Lyberg T. Soft tissue profile changes following "
    "mandibular advancement surgery. Am J Orthod Dentofacial Orthop 2001;119:353-367)"
)
_LOWER_LIP = (
    "Lower lip follows lower incisor movement at a ratio below 1 (reported values vary widely, "
    "about 0.4-0.9:1, with the lower lip also resting on the upper incisors)"
)
_NOSE = (
    "Subnasale and pronasale follow A point in maxillary advancement at about 0.5-0.8:1 and "
    "0.2-0.4:1 (reported values vary with technique, e.g. alar cinch suture)"
)
_ADOLESCENTS = "Orthodontic and orthognathic patients, mostly adolescents and adults"

DEFAULT_SOFT_TISSUE_RATIOS: tuple[SoftTissueRatio, ...] = (
    SoftTissueRatio(
        "UL", "U1", "anterior", 0.6, 0.5, 0.7, f"{_TALASS_1987}; {_BRIEF_RANGE}", _ADOLESCENTS
    ),
    SoftTissueRatio("LL", "L1", "anterior", 0.6, 0.4, 0.9, _LOWER_LIP, _ADOLESCENTS),
    SoftTissueRatio("Pog_s", "Pog", "anterior", 1.0, 0.9, 1.1, _CHIN, _ADOLESCENTS),
    SoftTissueRatio("Pog_s", "Pog", "inferior", 1.0, 0.9, 1.1, _CHIN, _ADOLESCENTS),
    SoftTissueRatio("Sn", "A", "anterior", 0.6, 0.5, 0.8, _NOSE, _ADOLESCENTS),
    SoftTissueRatio("Prn", "A", "anterior", 0.3, 0.2, 0.4, _NOSE, _ADOLESCENTS),
)

_AXES = ("anterior", "inferior")


def _soft_tissue_response(
    hard_shift: Mapping[str, tuple[float, float]],
    present: Iterable[str],
    ratios: Sequence[SoftTissueRatio],
) -> dict[str, tuple[float, float]]:
    """(anterior, inferior) movement of each soft-tissue landmark that a ratio drives."""
    present = set(present)
    response: dict[str, tuple[float, float]] = {}
    for r in ratios:
        if r.axis not in _AXES:
            raise InvalidInput("invalid_ratio", f"axis must be one of {_AXES}, got {r.axis!r}")
        if r.soft not in present or r.hard not in hard_shift:
            continue
        driver = hard_shift[r.hard][_AXES.index(r.axis)]
        a, i = response.get(r.soft, (0.0, 0.0))
        if r.axis == "anterior":
            response[r.soft] = (a + r.ratio * driver, i)
        else:
            response[r.soft] = (a, i + r.ratio * driver)
    return response


# --- applying a plan ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProfilePoint:
    code: str
    x: float  # px
    y: float


@dataclass(frozen=True, slots=True)
class VtoResult:
    plan: TreatmentPlan
    predicted_px: Mapping[str, Point]
    shifts: tuple[LandmarkShift, ...]  # every landmark that moved, hard and soft
    profile_current: tuple[ProfilePoint, ...]  # soft-tissue outline, forehead to chin
    profile_predicted: tuple[ProfilePoint, ...]
    measurement_changes: tuple[MeasurementChange, ...]
    ratios_used: tuple[SoftTissueRatio, ...]
    not_moved: tuple[str, ...]  # group landmarks the plan names but the tracing lacks
    disclaimer: str = DISCLAIMER


# What a VTO report shows beside the current values: the growth set plus the incisors.
VTO_MEASUREMENTS: tuple[str, ...] = (
    *MAIN_MEASUREMENTS,
    "u1_na_angle",
    "u1_na_distance",
    "l1_nb_angle",
    "l1_nb_distance",
    "interincisal_angle",
)

# Soft-tissue profile from forehead to chin, as drawn on a tracing.
PROFILE_ORDER: tuple[str, ...] = ("N_s", "Prn", "Sn", "UL", "LL", "Pog_s")


def _profile(points: Mapping[str, Point]) -> tuple[ProfilePoint, ...]:
    return tuple(ProfilePoint(c, points[c][0], points[c][1]) for c in PROFILE_ORDER if c in points)


def _move_group(
    frame_points: dict[str, tuple[float, float]],
    group: MovementGroup,
    movement: PlannedMovement,
) -> list[str]:
    """Move the group's landmarks in place (frame coordinates); return those missing."""
    codes = GROUP_LANDMARKS[group]
    missing = [c for c in codes if c not in frame_points]
    if movement.rotation_deg:
        pivot_code = movement.pivot or DEFAULT_PIVOTS[group]
        if pivot_code not in frame_points:
            raise InvalidInput(
                "missing_landmarks", f"{group.value}: the pivot {pivot_code} is not on the tracing"
            )
        pivot = frame_points[pivot_code]
    for code in codes:
        if code not in frame_points:
            continue
        point = frame_points[code]
        if movement.rotation_deg:
            # The frame is a right-facing image frame (x anterior, y down), where
            # g.rotate's positive sense is clockwise on screen: the convention we document.
            point = g.rotate(point, movement.rotation_deg, pivot)
        frame_points[code] = (point[0] + movement.dx_mm, point[1] + movement.dy_mm)
    return missing


def apply_plan(
    tracing_px: Mapping[str, Sequence[float]],
    mm_per_pixel: float,
    plan: TreatmentPlan,
    *,
    ratios: Sequence[SoftTissueRatio] = DEFAULT_SOFT_TISSUE_RATIOS,
    measurements: Sequence[str] = VTO_MEASUREMENTS,
) -> VtoResult:
    """Predicted tracing, profile and measurements of a treatment plan on one tracing."""
    by_group = validate_plan(plan)
    points = tracing_to_mm(tracing_px, mm_per_pixel)
    frame = CranialBaseFrame.of(points)
    frame_points = {code: frame.point_to_frame(p) for code, p in points.items()}
    original = dict(frame_points)

    missing: set[str] = set()
    for group in _ORDER:
        if group in by_group:
            missing.update(_move_group(frame_points, group, by_group[group]))

    hard_shift = {
        code: (frame_points[code][0] - original[code][0], frame_points[code][1] - original[code][1])
        for code in frame_points
    }
    response = _soft_tissue_response(hard_shift, frame_points, ratios)
    for code, (a, i) in response.items():
        frame_points[code] = (frame_points[code][0] + a, frame_points[code][1] + i)

    predicted_mm = {code: frame.point_to_image(*xy) for code, xy in frame_points.items()}
    predicted_px = tracing_to_px(predicted_mm, mm_per_pixel)
    current_px = tracing_to_px(points, mm_per_pixel)
    moved = tuple(
        s for s in shifts_between(points, predicted_mm, frame, mm_per_pixel) if s.distance_mm > 0
    )
    used = tuple(r for r in ratios if r.soft in frame_points and r.hard in hard_shift)
    return VtoResult(
        plan=plan,
        predicted_px=predicted_px,
        shifts=moved,
        profile_current=_profile(current_px),
        profile_predicted=_profile(predicted_px),
        measurement_changes=compare_measurements(
            current_px, predicted_px, mm_per_pixel, measurements
        ),
        ratios_used=used,
        not_moved=tuple(lm.code for lm in LANDMARKS if lm.code in missing),
    )
