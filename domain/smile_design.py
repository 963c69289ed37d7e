"""Smile design on a frontal smile photo, from clicked points.

Three analyses, each computed when its points are there (a note says why one is not):

- **Facial midline**: the line through glabella (or soft-tissue nasion), subnasale and the chin
  midpoint (a least-squares line when all three are given), its tilt from the image vertical,
  and the offset of the dental midline from it.
- **Smile arc** (Sarver 2001): a parabola through the upper incisal edges and one through the
  upper border of the lower lip, in the frame of the facial midline. *Consonant* when the
  incisal curve is a smile-shaped curve following the lip (curvature ratio 0.5-2), *flat* when
  its depth is under 2 % of its width, *reverse* when it curves the other way, else
  *non-consonant*. The thresholds are starting values, to calibrate.
- **Tooth proportions**: apparent (frontal) widths of central, lateral and canine on each side
  from the contact points, against the golden proportion (each tooth 1.618 times the next,
  Levin 1978) and the recurring esthetic dental (RED) proportion (each tooth a constant share of
  the next, 70 % by default; Ward 2001 suggests 62-80 %). Natural smiles rarely follow the
  golden proportion (Preston 1993): it is a design guide, not a norm.

Coordinates are image pixels, y down. On an unmirrored frontal photo the patient's right is
the image's left; ``right`` and ``left`` below always mean the patient's. Distances are in mm
when ``mm_per_pixel`` is given, else in px; ratios have no unit.

The result carries an annotation layer as plain data (lines, curves and labels in image
pixels) for the viewer to draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from domain import geometry as g
from domain.errors import InvalidInput
from domain.geometry import Point, Vector

GOLDEN_RATIO = (1.0 + math.sqrt(5.0)) / 2.0
DEFAULT_RED_PCT = 70.0
# Smile-arc thresholds (starting values): depth under this share of the width is flat, and a
# curvature ratio inside the band is consonant.
FLAT_DEPTH_SHARE = 0.02
CONSONANT_RATIO = (0.5, 2.0)

SOURCES: dict[str, str] = {
    "golden": "Levin EI. Dental esthetics and the golden proportion. J Prosthet Dent "
    "1978;40:244-252",
    "golden_caveat": "Preston JD. The golden proportion revisited. J Esthet Dent 1993;5:247-251",
    "red": "Ward DH. Proportional smile design using the recurring esthetic dental (RED) "
    "proportion. Dent Clin North Am 2001;45:143-156",
    "smile_arc": "Sarver DM. The importance of incisor positioning in the esthetic smile: the "
    "smile arc. Am J Orthod Dentofacial Orthop 2001;120:98-111",
}


@dataclass(frozen=True, slots=True)
class SmilePoints:
    """Clicked points on one frontal smile photo (px).

    ``right_contacts`` / ``left_contacts``: on the patient's side, going outwards along the
    incisal level, the central-lateral contact, the lateral-canine contact and the distal
    edge of the canine as seen from the front (three points each).
    """

    glabella: Point | None = None  # or soft-tissue nasion
    subnasale: Point | None = None
    chin: Point | None = None  # midpoint of the soft-tissue chin
    dental_midline: Point | None = None  # contact of the upper central incisors, incisal end
    incisal_edges: tuple[Point, ...] = ()  # upper incisal edges / cusp tips, any order
    lower_lip: tuple[Point, ...] = ()  # upper border of the lower lip, any order
    right_contacts: tuple[Point, ...] = ()
    left_contacts: tuple[Point, ...] = ()
    mm_per_pixel: float | None = None


# --- annotation layer ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GuideLine:
    kind: str  # facial_midline, dental_midline, measured_contact, golden_guide, red_guide
    start: Point
    end: Point
    label: str


@dataclass(frozen=True, slots=True)
class GuideCurve:
    kind: str  # incisal_arc, lower_lip_arc
    points: tuple[Point, ...]
    label: str


@dataclass(frozen=True, slots=True)
class GuideLabel:
    kind: str
    at: Point
    text: str


@dataclass(frozen=True, slots=True)
class AnnotationLayer:
    lines: tuple[GuideLine, ...]
    curves: tuple[GuideCurve, ...]
    labels: tuple[GuideLabel, ...]


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FacialMidline:
    points_used: tuple[str, ...]
    tilt_deg: float  # from the image vertical, positive clockwise on screen
    max_point_deviation: float  # largest distance of a used point from the fitted line
    dental_midline_offset: float | None  # signed, positive towards the image's right
    dental_midline_side: str | None  # "patient_left", "patient_right" or "centred"


@dataclass(frozen=True, slots=True)
class SmileArc:
    incisal_depth: float  # sagitta over the incisal width; > 0 smile-shaped, < 0 reversed
    lip_depth: float | None
    incisal_width: float
    curvature_ratio: float | None  # incisal / lip curvature
    classification: str  # consonant, non_consonant, flat, reverse
    mean_lip_gap: float | None  # lip border below the incisal curve (+) at the incisal points


@dataclass(frozen=True, slots=True)
class SideProportions:
    side: str  # "right" or "left" (the patient's)
    central_width: float
    lateral_width: float
    canine_width: float
    central_to_lateral: float  # golden ideal 1.618
    lateral_to_canine: float
    golden_deviation_pct: tuple[float, float]  # of the two ratios from 1.618
    red_lateral_pct: float  # lateral / central
    red_canine_pct: float  # canine / lateral
    red_target_pct: float
    golden_widths: tuple[float, float, float]  # ideal widths from the measured central
    red_widths: tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class SmileAnalysis:
    unit: str  # "mm" or "px"
    midline: FacialMidline | None
    smile_arc: SmileArc | None
    proportions: tuple[SideProportions, ...]
    annotations: AnnotationLayer
    notes: tuple[str, ...]  # why an analysis is missing
    sources: tuple[str, ...] = tuple(SOURCES.values())


# --- helpers ------------------------------------------------------------------------------------


def _point(value: Sequence[float], what: str) -> Point:
    if len(value) != 2:
        raise InvalidInput("invalid_coordinates", f"{what} must be an (x, y) point")
    x, y = float(value[0]), float(value[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InvalidInput("invalid_coordinates", f"{what} must be finite")
    return (x, y)


@dataclass(frozen=True, slots=True)
class _Frame:
    """Facial frame: ``down`` along the midline, ``across`` towards the image's right."""

    origin: Point
    down: Vector
    across: Vector

    def to_frame(self, p: Point) -> tuple[float, float]:
        d = g.sub(p, self.origin)
        return g.dot(d, self.across), g.dot(d, self.down)

    def to_image(self, u: float, w: float) -> Point:
        return (
            self.origin[0] + u * self.across[0] + w * self.down[0],
            self.origin[1] + u * self.across[1] + w * self.down[1],
        )


def _fit_line(points: list[Point]) -> tuple[Point, Vector]:
    """Centroid and unit direction (pointing down the image) of the least-squares line."""
    array = np.array(points)
    centre = array.mean(axis=0)
    _, _, vt = np.linalg.svd(array - centre)
    direction = (float(vt[0, 0]), float(vt[0, 1]))
    if g.norm(direction) <= g.EPSILON:
        raise InvalidInput("degenerate_geometry", "the midline points coincide")
    if direction[1] < 0:
        direction = (-direction[0], -direction[1])
    return (float(centre[0]), float(centre[1])), direction


def _parabola(samples: list[tuple[float, float]]) -> tuple[float, float, float] | None:
    """w = a u^2 + b u + c through (u, w) samples; None when the u values do not spread."""
    u = np.array([s[0] for s in samples])
    w = np.array([s[1] for s in samples])
    if len(samples) < 3 or len(np.unique(np.round(u, 6))) < 3:
        return None
    a, b, c = np.polyfit(u, w, 2)
    return float(a), float(b), float(c)


# --- analyses -----------------------------------------------------------------------------------


def _midline(
    clicks: SmilePoints, scale: float, notes: list[str], lines: list[GuideLine]
) -> tuple[FacialMidline | None, _Frame | None]:
    named = [
        (name, getattr(clicks, name))
        for name in ("glabella", "subnasale", "chin")
        if getattr(clicks, name) is not None
    ]
    if len(named) < 2:
        notes.append("facial midline: needs two of glabella, subnasale and chin")
        return None, None
    points = [_point(p, name) for name, p in named]
    centre, down = _fit_line(points)
    across = (down[1], -down[0])  # down turned a quarter anticlockwise on screen: rightwards
    deviations = [abs(g.cross(down, g.sub(p, centre))) for p in points]
    offset = side = None
    if clicks.dental_midline is not None:
        dental = _point(clicks.dental_midline, "dental_midline")
        offset = g.dot(g.sub(dental, centre), across) * scale
        # Patient's left is the image's right on an unmirrored frontal photo.
        side = (
            "centred" if abs(offset) < 1e-9 else "patient_left" if offset > 0 else "patient_right"
        )
    ts = [g.dot(g.sub(p, centre), down) for p in points]
    reach = (max(ts) - min(ts)) * 0.1
    start = (centre[0] + (min(ts) - reach) * down[0], centre[1] + (min(ts) - reach) * down[1])
    end = (centre[0] + (max(ts) + reach) * down[0], centre[1] + (max(ts) + reach) * down[1])
    lines.append(GuideLine("facial_midline", start, end, "facial midline"))
    midline = FacialMidline(
        points_used=tuple(name for name, _ in named),
        tilt_deg=g.signed_angle((0.0, 1.0), down),
        max_point_deviation=max(deviations) * scale,
        dental_midline_offset=offset,
        dental_midline_side=side,
    )
    return midline, _Frame(centre, down, across)


def _smile_arc(
    clicks: SmilePoints,
    frame: _Frame,
    scale: float,
    notes: list[str],
    curves: list[GuideCurve],
) -> SmileArc | None:
    incisal = [frame.to_frame(_point(p, "incisal edge")) for p in clicks.incisal_edges]
    lip = [frame.to_frame(_point(p, "lower lip")) for p in clicks.lower_lip]
    incisal_fit = _parabola(incisal)
    if incisal_fit is None:
        notes.append("smile arc: needs three incisal-edge points spread across the smile")
        return None
    lip_fit = _parabola(lip)
    if lip_fit is None:
        notes.append("smile arc: lower-lip curve needs three points spread across the smile")
    us = [u for u, _ in incisal]
    width = max(us) - min(us)
    # Depth of the arc over half its width; a < 0 is centre-low (w grows downwards): a smile.
    incisal_depth = -incisal_fit[0] * (width / 2.0) ** 2
    curves.append(_curve("incisal_arc", incisal_fit, min(us), max(us), frame, "incisal arc"))
    lip_depth = ratio = gap = None
    if lip_fit is not None:
        lip_us = [u for u, _ in lip]
        lip_depth = -lip_fit[0] * (width / 2.0) ** 2 * scale
        if abs(lip_fit[0]) > 1e-12:
            ratio = incisal_fit[0] / lip_fit[0]
        gap = float(np.mean([np.polyval(lip_fit, u) - w for u, w in incisal])) * scale
        curves.append(
            _curve("lower_lip_arc", lip_fit, min(lip_us), max(lip_us), frame, "lower lip")
        )
    if abs(incisal_depth) < FLAT_DEPTH_SHARE * width:
        classification = "flat"
    elif incisal_depth < 0:
        classification = "reverse"
    elif ratio is not None and CONSONANT_RATIO[0] <= ratio <= CONSONANT_RATIO[1]:
        classification = "consonant"
    else:
        classification = "non_consonant"
    return SmileArc(
        incisal_depth=incisal_depth * scale,
        lip_depth=lip_depth,
        incisal_width=width * scale,
        curvature_ratio=ratio,
        classification=classification,
        mean_lip_gap=gap,
    )


def _curve(
    kind: str,
    fit: tuple[float, float, float],
    low: float,
    high: float,
    frame: _Frame,
    label: str,
) -> GuideCurve:
    us = np.linspace(low, high, 25)
    return GuideCurve(
        kind, tuple(frame.to_image(float(u), float(np.polyval(fit, u))) for u in us), label
    )


def _side(
    side: str,
    contacts: tuple[Point, ...],
    midline_u: float,
    frame: _Frame,
    scale: float,
    red_pct: float,
) -> SideProportions | None:
    us = sorted(abs(frame.to_frame(_point(p, f"{side} contact"))[0] - midline_u) for p in contacts)
    central, lateral, canine = us[0], us[1] - us[0], us[2] - us[1]
    if min(central, lateral, canine) <= g.EPSILON:
        return None
    share = red_pct / 100.0
    return SideProportions(
        side=side,
        central_width=central * scale,
        lateral_width=lateral * scale,
        canine_width=canine * scale,
        central_to_lateral=central / lateral,
        lateral_to_canine=lateral / canine,
        golden_deviation_pct=(
            100.0 * (central / lateral / GOLDEN_RATIO - 1.0),
            100.0 * (lateral / canine / GOLDEN_RATIO - 1.0),
        ),
        red_lateral_pct=100.0 * lateral / central,
        red_canine_pct=100.0 * canine / lateral,
        red_target_pct=red_pct,
        golden_widths=(
            central * scale,
            central / GOLDEN_RATIO * scale,
            central / GOLDEN_RATIO**2 * scale,
        ),
        red_widths=(central * scale, central * share * scale, central * share**2 * scale),
    )


def _guides(
    proportions: SideProportions,
    midline_u: float,
    level_w: float,
    height: float,
    frame: _Frame,
    scale: float,
) -> list[GuideLine]:
    """Vertical guides (parallel to the midline) at the ideal contact positions."""
    sign = 1.0 if proportions.side == "left" else -1.0  # patient's left = image right
    lines = []
    for kind, widths in (
        ("golden_guide", proportions.golden_widths),
        ("red_guide", proportions.red_widths),
    ):
        edge = 0.0
        for tooth, width in zip(("central", "lateral", "canine"), widths, strict=True):
            edge += width / scale
            u = midline_u + sign * edge
            lines.append(
                GuideLine(
                    kind,
                    frame.to_image(u, level_w - height),
                    frame.to_image(u, level_w + height / 2),
                    f"{proportions.side} {tooth} ({'golden' if kind == 'golden_guide' else 'RED'})",
                )
            )
    return lines


# Guide line length when no tooth gives a scale: about a central incisor at a usual photo size.
_DEFAULT_REACH_PX = 40.0


def _proportions(
    clicks: SmilePoints,
    frame: _Frame,
    scale: float,
    red_pct: float,
    notes: list[str],
    lines: list[GuideLine],
    labels: list[GuideLabel],
) -> list[SideProportions]:
    """Both sides' proportions, with their contact lines, ideal guides and labels."""
    if clicks.dental_midline is None:
        if clicks.right_contacts or clicks.left_contacts:
            notes.append("tooth proportions: need the dental midline point")
        return []
    midline_u, level_w = frame.to_frame(_point(clicks.dental_midline, "dental_midline"))
    results: list[SideProportions] = []
    for side, contacts in (("right", clicks.right_contacts), ("left", clicks.left_contacts)):
        if not contacts:
            continue
        result = _side(side, contacts, midline_u, frame, scale, red_pct)
        if result is None:
            notes.append(f"tooth proportions ({side}): two contact points coincide")
            continue
        results.append(result)
        reach = result.central_width / scale  # guides as long as a central incisor is wide
        for p in contacts:
            u, _ = frame.to_frame(_point(p, f"{side} contact"))
            lines.append(
                GuideLine(
                    "measured_contact",
                    frame.to_image(u, level_w - reach),
                    frame.to_image(u, level_w + reach / 4),
                    f"{side} contact",
                )
            )
        lines.extend(_guides(result, midline_u, level_w, reach, frame, scale))
        outwards = 1.0 if side == "left" else -1.0  # the patient's left is the image's right
        labels.append(
            GuideLabel(
                "proportion",
                frame.to_image(midline_u + outwards * reach, level_w + reach),
                f"{result.central_to_lateral:.2f} : 1 : {1 / result.lateral_to_canine:.2f}"
                f" (RED {result.red_lateral_pct:.0f}% / {result.red_canine_pct:.0f}%)",
            )
        )
    reach = results[0].central_width / scale if results else _DEFAULT_REACH_PX
    lines.append(
        GuideLine(
            "dental_midline",
            frame.to_image(midline_u, level_w - reach),
            frame.to_image(midline_u, level_w + reach / 2),
            "dental midline",
        )
    )
    return results


def analyse_smile(clicks: SmilePoints, *, red_target_pct: float = DEFAULT_RED_PCT) -> SmileAnalysis:
    """Midline, smile arc and tooth proportions from the clicks that are present."""
    if clicks.mm_per_pixel is not None and not (
        math.isfinite(clicks.mm_per_pixel) and clicks.mm_per_pixel > 0
    ):
        raise InvalidInput("invalid_calibration", "mm_per_pixel must be positive")
    if not (math.isfinite(red_target_pct) and 50.0 <= red_target_pct <= 100.0):
        raise InvalidInput("invalid_proportion", "the RED target must be 50-100 %")
    for name in ("right_contacts", "left_contacts"):
        count = len(getattr(clicks, name))
        if count not in (0, 3):
            raise InvalidInput(
                "invalid_smile_points", f"{name} needs 3 points (or none), got {count}"
            )
    scale = clicks.mm_per_pixel or 1.0
    notes: list[str] = []
    lines: list[GuideLine] = []
    curves: list[GuideCurve] = []
    labels: list[GuideLabel] = []

    midline, frame = _midline(clicks, scale, notes, lines)
    if frame is None:
        # Without a facial midline the image axes stand in for the facial frame.
        origin = clicks.dental_midline or (0.0, 0.0)
        frame = _Frame(_point(origin, "dental_midline"), (0.0, 1.0), (1.0, 0.0))
        notes.append("no facial midline: the image axes are used as the facial frame")

    arc = _smile_arc(clicks, frame, scale, notes, curves)

    proportions = _proportions(clicks, frame, scale, red_target_pct, notes, lines, labels)
    if arc is not None:
        labels.append(
            GuideLabel(
                "smile_arc", curves[0].points[len(curves[0].points) // 2], arc.classification
            )
        )
    return SmileAnalysis(
        unit="mm" if clicks.mm_per_pixel else "px",
        midline=midline,
        smile_arc=arc,
        proportions=tuple(proportions),
        annotations=AnnotationLayer(tuple(lines), tuple(curves), tuple(labels)),
        notes=tuple(notes),
    )
