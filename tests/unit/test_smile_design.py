"""Smile design on synthetic clicks with proportions and curves known by construction.

Layout (px, y down, 0.2 mm/px): facial midline vertical at x = 500 through glabella (500, 100),
subnasale (500, 400) and chin (500, 800); their centroid (500, 433.33) is the frame origin.
Dental midline at (503, 560): 3 px = 0.6 mm to the image's right = the patient's left.

Incisal edges on y = 560 - 0.005 u^2 and the lower lip on y = 590 - 0.004 u^2, u = x - 503
at u = -60, -30, 0, 30, 60 (centre lowest: a smile-shaped arc).
  incisal depth over half the width: 0.005 * 60^2 = 18 px = 3.6 mm (width 120 px = 24 mm)
  lip depth over the same half width: 0.004 * 3600 = 14.4 px = 2.88 mm
  curvature ratio 0.005 / 0.004 = 1.25 -> consonant
  lip below the incisal curve at the incisal points: 30 + 0.001 u^2 -> mean 30 + 9/5 = 31.8 px
  = 6.36 mm

Patient's right (image left): golden widths 40, 40/phi = 24.7214, 40/phi^2 = 15.2786 px.
Patient's left (image right): RED 70 %: 40, 28, 19.6 px.
"""

import math

import pytest

from domain.errors import InvalidInput
from domain.smile_design import GOLDEN_RATIO, SmilePoints, analyse_smile

PHI = (1 + math.sqrt(5)) / 2
MID = 503.0


def incisal(u):
    return (MID + u, 560 - 0.005 * u * u)


def lip(u):
    return (MID + u, 590 - 0.004 * u * u)


US = (-60, -30, 0, 30, 60)
RIGHT = (MID - 40, MID - 40 - 40 / PHI, MID - 40 - 40 / PHI - 40 / PHI**2)
LEFT = (MID + 40, MID + 68, MID + 87.6)

CLICKS = SmilePoints(
    glabella=(500, 100),
    subnasale=(500, 400),
    chin=(500, 800),
    dental_midline=(MID, 560),
    incisal_edges=tuple(incisal(u) for u in US),
    lower_lip=tuple(lip(u) for u in US),
    right_contacts=tuple((x, 560.0) for x in RIGHT),
    left_contacts=tuple((x, 560.0) for x in LEFT),
    mm_per_pixel=0.2,
)


def rotated(clicks, degrees, about=(500.0, 500.0)):
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))

    def turn(p):
        x, y = p[0] - about[0], p[1] - about[1]
        return (about[0] + c * x - s * y, about[1] + s * x + c * y)

    return SmilePoints(
        glabella=turn(clicks.glabella),
        subnasale=turn(clicks.subnasale),
        chin=turn(clicks.chin),
        dental_midline=turn(clicks.dental_midline),
        incisal_edges=tuple(map(turn, clicks.incisal_edges)),
        lower_lip=tuple(map(turn, clicks.lower_lip)),
        right_contacts=tuple(map(turn, clicks.right_contacts)),
        left_contacts=tuple(map(turn, clicks.left_contacts)),
        mm_per_pixel=clicks.mm_per_pixel,
    )


@pytest.fixture(scope="module")
def result():
    return analyse_smile(CLICKS)


def test_facial_midline(result):
    m = result.midline
    assert m.points_used == ("glabella", "subnasale", "chin")
    assert m.tilt_deg == pytest.approx(0.0, abs=1e-9)
    assert m.max_point_deviation == pytest.approx(0.0, abs=1e-9)
    assert m.dental_midline_offset == pytest.approx(0.6)  # 3 px * 0.2
    assert m.dental_midline_side == "patient_left"
    assert result.unit == "mm"


def test_smile_arc(result):
    arc = result.smile_arc
    assert arc.incisal_depth == pytest.approx(3.6)
    assert arc.incisal_width == pytest.approx(24.0)
    assert arc.lip_depth == pytest.approx(2.88)
    assert arc.curvature_ratio == pytest.approx(1.25)
    assert arc.classification == "consonant"
    assert arc.mean_lip_gap == pytest.approx(6.36)


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        (lambda u: 560 + 0.005 * u * u, "reverse"),  # canines lower than centrals
        (lambda u: 560 - 0.0001 * u * u, "flat"),  # depth 0.36 px on 120 px width
        (lambda u: 560 - 0.02 * u * u, "non_consonant"),  # 5x the lip's curvature
    ],
)
def test_smile_arc_classes(curve, expected):
    clicks = SmilePoints(
        glabella=CLICKS.glabella,
        chin=CLICKS.chin,
        incisal_edges=tuple((MID + u, curve(u)) for u in US),
        lower_lip=CLICKS.lower_lip,
    )
    assert analyse_smile(clicks).smile_arc.classification == expected


def test_golden_side(result):
    right = next(p for p in result.proportions if p.side == "right")
    assert (right.central_width, right.lateral_width, right.canine_width) == pytest.approx(
        (8.0, 8.0 / PHI, 8.0 / PHI**2)
    )
    assert right.central_to_lateral == pytest.approx(GOLDEN_RATIO)
    assert right.lateral_to_canine == pytest.approx(GOLDEN_RATIO)
    assert right.golden_deviation_pct == pytest.approx((0.0, 0.0), abs=1e-9)
    # Golden is RED at 61.8 %.
    assert right.red_lateral_pct == pytest.approx(100 / PHI)
    assert right.red_canine_pct == pytest.approx(100 / PHI)


def test_red_side(result):
    left = next(p for p in result.proportions if p.side == "left")
    assert (left.central_width, left.lateral_width, left.canine_width) == pytest.approx(
        (8.0, 5.6, 3.92)
    )
    assert (left.red_lateral_pct, left.red_canine_pct) == pytest.approx((70.0, 70.0))
    # 40 / 28 = 1.4286; (1.4286 / 1.6180 - 1) * 100 = -11.71 %.
    assert left.central_to_lateral == pytest.approx(40 / 28)
    assert left.golden_deviation_pct[0] == pytest.approx(-11.71, abs=0.01)
    assert left.red_widths == pytest.approx((8.0, 5.6, 3.92))
    assert left.golden_widths == pytest.approx((8.0, 8.0 / PHI, 8.0 / PHI**2))


def test_annotation_layer(result):
    kinds = {line.kind for line in result.annotations.lines}
    assert {"facial_midline", "dental_midline", "measured_contact", "golden_guide"} <= kinds
    assert "red_guide" in kinds
    midline = next(line for line in result.annotations.lines if line.kind == "facial_midline")
    assert midline.start[0] == pytest.approx(500) and midline.end[0] == pytest.approx(500)
    assert midline.start[1] < 100 and midline.end[1] > 800  # extended past the clicks
    # On the golden side the golden guides fall on the measured contacts.
    guides = sorted(
        line.start[0]
        for line in result.annotations.lines
        if line.kind == "golden_guide" and line.label.startswith("right")
    )
    assert guides == pytest.approx(sorted(RIGHT))
    arcs = {curve.kind: curve for curve in result.annotations.curves}
    assert set(arcs) == {"incisal_arc", "lower_lip_arc"}
    first, middle = arcs["incisal_arc"].points[0], arcs["incisal_arc"].points[12]
    assert first == pytest.approx(incisal(-60)) and middle == pytest.approx(incisal(0))
    assert any(label.text == "consonant" for label in result.annotations.labels)


def test_results_do_not_depend_on_head_tilt(result):
    tilted = analyse_smile(rotated(CLICKS, 8.0))
    assert tilted.midline.tilt_deg == pytest.approx(8.0)
    assert tilted.smile_arc.incisal_depth == pytest.approx(result.smile_arc.incisal_depth)
    assert tilted.smile_arc.classification == "consonant"
    for a, b in zip(result.proportions, tilted.proportions, strict=True):
        assert a.central_to_lateral == pytest.approx(b.central_to_lateral)
        assert a.red_canine_pct == pytest.approx(b.red_canine_pct)


def test_partial_clicks_say_what_is_missing():
    only_teeth = SmilePoints(incisal_edges=CLICKS.incisal_edges)
    analysis = analyse_smile(only_teeth)
    assert analysis.midline is None and analysis.proportions == ()
    assert analysis.smile_arc.classification == "non_consonant"  # no lip to follow
    assert analysis.unit == "px"
    assert any("facial midline" in note for note in analysis.notes)
    no_midline = SmilePoints(right_contacts=CLICKS.right_contacts)
    assert any("dental midline" in n for n in analyse_smile(no_midline).notes)


@pytest.mark.parametrize(
    ("clicks", "code"),
    [
        (SmilePoints(right_contacts=((1, 1), (2, 2))), "invalid_smile_points"),
        (SmilePoints(glabella=(math.nan, 1), chin=(1, 100)), "invalid_coordinates"),
        (SmilePoints(mm_per_pixel=0.0), "invalid_calibration"),
    ],
)
def test_invalid_clicks(clicks, code):
    with pytest.raises(InvalidInput) as err:
        analyse_smile(clicks)
    assert err.value.code == code
