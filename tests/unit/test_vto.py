"""Treatment plans (VTO) against movements computed by hand on a fixed tracing.

The tracing is in mm with S at the origin and S-N along +x, patient facing right, so the
cranial-base frame is the image frame: dx = anterior = +x, dy = inferior = +y (down), and a
positive rotation is clockwise on screen. Passed in pixels at 0.25 mm/px (px = mm * 4).

Rotation of a vector (x, y) by t degrees clockwise on screen (y down):
  (x cos t - y sin t, x sin t + y cos t)
cos 10 = 0.984808, sin 10 = 0.173648; cos 5 = 0.996195, sin 5 = 0.087156.
"""

import math

import pytest

from domain.errors import InvalidInput
from domain.growth import DISCLAIMER, VERIFY
from domain.vto import (
    DEFAULT_SOFT_TISSUE_RATIOS,
    GROUP_LANDMARKS,
    MAX_ROTATION_DEG,
    MAX_TRANSLATION_MM,
    MovementGroup,
    PlannedMovement,
    SoftTissueRatio,
    TreatmentPlan,
    apply_plan,
)

MM_PER_PX = 0.25

TRACING_MM: dict[str, tuple[float, float]] = {
    "S": (0, 0), "N": (70, 0), "Po": (-10, 20), "Or": (60, 28),
    "A": (65, 50), "B": (52, 90), "Pog": (57, 100), "Gn": (55, 110), "Me": (45, 117),
    "Go": (-5, 82), "Ar": (-20, 32), "Co": (-8, 27), "ANS": (74, 47), "PNS": (22, 49),
    "U1": (68, 82), "U1_apex": (58, 52), "L1": (60, 79), "L1_apex": (42, 103),
    "Prn": (95, 45), "Sn": (82, 55), "UL": (84, 72), "LL": (80, 88), "Pog_s": (72, 108),
    "N_s": (78, 2),
}  # fmt: skip


def to_px(tracing_mm, mm_per_px=MM_PER_PX):
    return {code: (x / mm_per_px, y / mm_per_px) for code, (x, y) in tracing_mm.items()}


def plan(*movements):
    return TreatmentPlan(tuple(movements))


def run(*movements, tracing=TRACING_MM):
    return apply_plan(to_px(tracing), MM_PER_PX, plan(*movements))


def shift(result, code):
    return next(((s.anterior_mm, s.inferior_mm) for s in result.shifts if s.code == code), (0, 0))


def change(result, key):
    return next(c for c in result.measurement_changes if c.key == key)


def predicted_mm(result, code):
    x, y = result.predicted_px[code]
    return (x * MM_PER_PX, y * MM_PER_PX)


@pytest.fixture(scope="module")
def retract_and_advance():
    return run(
        PlannedMovement("upper_incisors", rotation_deg=10.0),  # about U1_apex (default)
        PlannedMovement("mandible", dx_mm=4.0),
    )


def test_incisor_rotation_about_its_apex(retract_and_advance):
    # U1 apex (58, 52) -> tip (68, 82): (10, 30) rotated 10 deg:
    #   (10 * 0.984808 - 30 * 0.173648, 10 * 0.173648 + 30 * 0.984808) = (4.6387, 31.2807)
    # so U1 -> (62.6387, 83.2807): 5.3613 mm back, 1.2807 mm down; the apex stays.
    assert predicted_mm(retract_and_advance, "U1") == pytest.approx((62.6387, 83.2807), abs=1e-4)
    assert shift(retract_and_advance, "U1") == pytest.approx((-5.3613, 1.2807), abs=1e-4)
    assert shift(retract_and_advance, "U1_apex") == (0, 0)


def test_upper_lip_follows_incisor_at_the_published_ratio(retract_and_advance):
    # UL: 0.6 * -5.3613 = -3.2168 mm, horizontal only.
    assert shift(retract_and_advance, "UL") == pytest.approx((-3.2168, 0.0), abs=1e-4)
    assert predicted_mm(retract_and_advance, "UL") == pytest.approx((80.7832, 72.0), abs=1e-4)


def test_mandibular_advancement_moves_body_teeth_and_chin(retract_and_advance):
    for code in ("B", "Pog", "Gn", "Me", "Go", "L1", "L1_apex"):
        assert shift(retract_and_advance, code) == pytest.approx((4.0, 0.0)), code
    # Condyle and articulare stay: the ramus is not in the mandible group.
    assert shift(retract_and_advance, "Co") == (0, 0)
    assert shift(retract_and_advance, "Ar") == (0, 0)
    # Soft-tissue pogonion 1:1, lower lip 0.6 * 4 = 2.4 (driven by L1).
    assert shift(retract_and_advance, "Pog_s") == pytest.approx((4.0, 0.0))
    assert shift(retract_and_advance, "LL") == pytest.approx((2.4, 0.0))
    # Unplanned points do not move.
    for code in ("S", "N", "A", "Sn", "Prn", "N_s"):
        assert shift(retract_and_advance, code) == (0, 0)


def test_measurements_beside_current(retract_and_advance):
    # SNB: B (52, 90) -> (56, 90); N-B (-18, 90) -> (-14, 90):
    #   90 - atan(18/90) = 78.6901 -> 90 - atan(14/90) = 90 - 8.8418 = 81.1582.
    snb = change(retract_and_advance, "snb")
    assert snb.current == pytest.approx(78.6901, abs=1e-4)
    assert snb.predicted == pytest.approx(81.1582, abs=1e-4)
    # SNA unchanged (A not moved); ANB = SNA - SNB falls by the same 2.4681.
    assert change(retract_and_advance, "sna").change == pytest.approx(0.0, abs=1e-12)
    assert change(retract_and_advance, "anb").change == pytest.approx(-2.4681, abs=1e-4)
    # The incisor rotated 10 deg back: U1-NA angle -10, interincisal +10 (L1 only translated).
    assert change(retract_and_advance, "u1_na_angle").change == pytest.approx(-10.0, abs=1e-9)
    assert change(retract_and_advance, "interincisal_angle").change == pytest.approx(10.0, abs=1e-9)


def test_profile_and_disclaimer(retract_and_advance):
    codes = [p.code for p in retract_and_advance.profile_predicted]
    assert codes == ["N_s", "Prn", "Sn", "UL", "LL", "Pog_s"]
    ul = next(p for p in retract_and_advance.profile_predicted if p.code == "UL")
    assert (ul.x * MM_PER_PX, ul.y * MM_PER_PX) == pytest.approx((80.7832, 72.0), abs=1e-4)
    before = next(p for p in retract_and_advance.profile_current if p.code == "UL")
    assert (before.x, before.y) == pytest.approx((84 * 4, 72 * 4))
    assert retract_and_advance.disclaimer == DISCLAIMER
    used = {(r.soft, r.hard, r.axis) for r in retract_and_advance.ratios_used}
    assert ("UL", "U1", "anterior") in used and ("Pog_s", "Pog", "inferior") in used


def test_mandibular_autorotation_about_condylion():
    # Co (-8, 27) -> Pog (57, 100): (65, 73) rotated 5 deg clockwise (opening):
    #   (65 * 0.996195 - 73 * 0.087156, 65 * 0.087156 + 73 * 0.996195) = (58.3903, 78.3873)
    # Pog -> (50.3903, 105.3873): 6.6097 mm back and 5.3873 mm down.
    result = run(PlannedMovement("mandible", rotation_deg=5.0, pivot="Co"))
    assert shift(result, "Pog") == pytest.approx((-6.6097, 5.3873), abs=1e-4)
    assert shift(result, "Pog_s") == pytest.approx((-6.6097, 5.3873), abs=1e-4)
    assert change(result, "fma").change > 0  # the mandibular plane steepens


def test_skeletal_moves_apply_before_dental_moves():
    # Maxilla forward 3 mm carries U1 and its apex; the incisor is then translated back 1 mm.
    # Given in the dental-first order, the result is the same: U1 net +2 mm, A +3 mm.
    result = run(
        PlannedMovement("upper_incisors", dx_mm=-1.0),
        PlannedMovement("maxilla", dx_mm=3.0),
    )
    assert shift(result, "U1") == pytest.approx((2.0, 0.0))
    assert shift(result, "A") == pytest.approx((3.0, 0.0))
    # Sn follows A at 0.6, pronasale at 0.3; UL follows U1's net movement at 0.6.
    assert shift(result, "Sn") == pytest.approx((1.8, 0.0))
    assert shift(result, "Prn") == pytest.approx((0.9, 0.0))
    assert shift(result, "UL") == pytest.approx((1.2, 0.0))


def test_plan_reads_the_same_for_a_left_facing_tracing():
    mirrored = {code: (-x, y) for code, (x, y) in TRACING_MM.items()}
    movements = (
        PlannedMovement("upper_incisors", rotation_deg=10.0),
        PlannedMovement("mandible", dx_mm=4.0),
    )
    right, left = run(*movements), run(*movements, tracing=mirrored)
    for a, b in zip(right.shifts, left.shifts, strict=True):
        assert (a.code, a.anterior_mm, a.inferior_mm) == pytest.approx(
            (b.code, b.anterior_mm, b.inferior_mm)
        )
    # In the image the left-facing U1 moves towards +x (backwards for that patient).
    u1 = next(s for s in left.shifts if s.code == "U1")
    assert u1.dx_px == pytest.approx(5.3613 * 4, abs=1e-3)


def test_custom_ratios_are_data():
    ratios = (SoftTissueRatio("UL", "U1", "anterior", 0.5, None, None, "test", "none"),)
    result = apply_plan(
        to_px(TRACING_MM), MM_PER_PX, plan(PlannedMovement("upper_incisors", dx_mm=-4.0)),
        ratios=ratios,
    )  # fmt: skip
    assert shift(result, "UL") == pytest.approx((-2.0, 0.0))
    assert result.ratios_used == ratios


def test_default_ratios_are_sourced():
    for ratio in DEFAULT_SOFT_TISSUE_RATIOS:
        assert ratio.source and ratio.population and ratio.status == VERIFY
        assert ratio.axis in ("anterior", "inferior")
        if ratio.range_low is not None:
            assert ratio.range_low <= ratio.ratio <= ratio.range_high
    ul = next(r for r in DEFAULT_SOFT_TISSUE_RATIOS if r.soft == "UL")
    assert 0.5 <= ul.ratio <= 0.7


def test_every_group_lists_known_landmarks():
    assert set(GROUP_LANDMARKS) == set(MovementGroup)


def test_missing_group_landmarks_are_reported():
    partial = {k: v for k, v in TRACING_MM.items() if k != "L1_apex"}
    result = run(PlannedMovement("lower_incisors", dx_mm=-1.0), tracing=partial)
    assert result.not_moved == ("L1_apex",)
    assert shift(result, "L1") == pytest.approx((-1.0, 0.0))


def code_of(*movements):
    with pytest.raises(InvalidInput) as err:
        run(*movements)
    return err.value.code


def test_unknown_group():
    assert code_of(PlannedMovement("wisdom_teeth", dx_mm=1.0)) == "unknown_landmark_group"


@pytest.mark.parametrize(
    "movement",
    [
        PlannedMovement("maxilla", dx_mm=math.nan),
        PlannedMovement("maxilla", dy_mm=math.inf),
        PlannedMovement("maxilla", rotation_deg=-math.inf),
        PlannedMovement("maxilla", dx_mm=MAX_TRANSLATION_MM + 0.1),
        PlannedMovement("maxilla", dx_mm=15.0, dy_mm=15.0),  # 21.2 mm in all
        PlannedMovement("mandible", rotation_deg=MAX_ROTATION_DEG + 1),
        PlannedMovement("mandible", rotation_deg=-46.0),
    ],
)
def test_implausible_movements(movement):
    assert code_of(movement) == "implausible_movement"


def test_limits_themselves_are_allowed():
    result = run(
        PlannedMovement("maxilla", dx_mm=MAX_TRANSLATION_MM),
        PlannedMovement("mandible", rotation_deg=MAX_ROTATION_DEG, pivot="Co"),
    )
    assert shift(result, "A") == pytest.approx((20.0, 0.0))


def test_other_plan_errors():
    assert (
        code_of(PlannedMovement("maxilla", dx_mm=1), PlannedMovement("maxilla", dy_mm=1))
        == "duplicate_landmark_group"
    )
    assert code_of(PlannedMovement("mandible", rotation_deg=3, pivot="Nope")) == "unknown_landmark"
    assert code_of(PlannedMovement("mandible", rotation_deg=3, pivot="Xi")) == "missing_landmarks"
