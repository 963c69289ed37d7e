"""Issue 19: the measurements and norms added in norms version 2026.1.

Every new measurement is computed here on a tracing *constructed* from the value it should
give (points placed with sin/cos at a chosen angle or offset), in a frame turned and
mirrored on the film, so the expected value is the construction parameter itself, not a
number read back from the code. Compared to 0.01 as the issue asks.
"""

import math

import pytest

from domain import geometry as g
from domain.cephalometry.analyses import CephMeasurement, analyze
from domain.cephalometry.norms import DEFAULT_NORMS, NORMS_VERSION, Sex, select_norm

MM_PER_PX = 0.1


def _measure(points_mm: dict[str, tuple[float, float]], *, turn: float, mirror: bool,
             age: float | None = 30, sex: str | None = "female") -> dict[str, CephMeasurement]:
    """Put the anatomy (face towards +x, y down, mm) on a film turned by ``turn`` degrees
    and maybe mirrored, in pixels of 0.1 mm, and analyse it."""
    placed = {}
    for code, (x, y) in points_mm.items():
        px, py = g.rotate((-x if mirror else x, y), turn)
        placed[code] = (px / MM_PER_PX + 5000, py / MM_PER_PX + 5000)
    results = analyze(placed, MM_PER_PX, age=age, sex=sex)
    return {m.key: m for r in results for m in r.measurements}


def _at(origin: tuple[float, float], length: float, degrees: float) -> tuple[float, float]:
    """The point ``length`` mm from ``origin`` in direction ``degrees`` (0 = anterior, +x;
    90 = down, the image's y)."""
    r = math.radians(degrees)
    return (origin[0] + length * math.cos(r), origin[1] + length * math.sin(r))


POSES = [(0.0, False), (-17.0, False), (23.0, True), (180.0, True)]


def _value(m: dict[str, CephMeasurement], key: str) -> float:
    assert m[key].computable, m[key].interpretation
    assert m[key].value is not None
    return m[key].value


# --- U1-SN ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("turn", "mirror"), POSES)
@pytest.mark.parametrize("u1_sn", [95.0, 102.0, 118.5])
def test_u1_sn_constructed(turn, mirror, u1_sn):
    # S-N along +x; the U1 axis (apex -> tip) makes u1_sn with N->S (pointing back, 180 deg),
    # opening downward: its direction is 180 - u1_sn (measured downward from +x).
    apex = (58.0, 52.0)
    tip = _at(apex, 25.0, 180.0 - u1_sn)
    points = {"S": (0.0, 0.0), "N": (70.0, 0.0), "U1_apex": apex, "U1": tip}
    assert _value(_measure(points, turn=turn, mirror=mirror), "u1_sn") == pytest.approx(
        u1_sn, abs=0.01)


# --- interincisal angle, 0-360 --------------------------------------------------------------


def _incisors(upper_lean: float, lower_lean: float) -> dict[str, tuple[float, float]]:
    """Incisors meeting near (65, 80); each axis leans ``*_lean`` degrees forward of the
    vertical at its tip (apex behind the tip); negative = retroclined, apex ahead."""
    upper_tip, lower_tip = (66.0, 81.0), (64.0, 79.0)
    # tip -> apex: upward (-90 deg) turned back (towards 180) by the lean.
    upper_apex = _at(upper_tip, 23.0, -90.0 - upper_lean)
    lower_apex = _at(lower_tip, 21.0, 90.0 + lower_lean)
    return {"S": (0.0, 0.0), "N": (70.0, 0.0), "U1": upper_tip, "U1_apex": upper_apex,
            "L1": lower_tip, "L1_apex": lower_apex}


@pytest.mark.parametrize(("turn", "mirror"), POSES)
@pytest.mark.parametrize(("upper", "lower"), [
    (18.0, 36.0),    # normal-ish: 180 - 18 - 36 = 126
    (0.0, 0.0),      # both upright: 180
    (-2.0, -3.0),    # a retroclined pair (Class II div 2 with a large ANB): 185
    (-20.0, -15.0),  # 215
])
def test_interincisal_is_the_lingual_angle_up_to_360(turn, mirror, upper, lower):
    # The angle on the lingual side between the two tip->apex directions: from straight up
    # to straight down is 180; each forward lean of a tooth takes its lean off that.
    expected = 180.0 - upper - lower
    m = _measure(_incisors(upper, lower), turn=turn, mirror=mirror)
    assert _value(m, "interincisal_angle") == pytest.approx(expected, abs=0.01)


def test_interincisal_beyond_180_reads_55_above_steiners_130():
    m = _measure(_incisors(-2.0, -3.0), turn=0.0, mirror=False)
    angle = m["interincisal_angle"]
    assert angle.value == pytest.approx(185.0, abs=0.01)  # an unsigned angle would say 175
    assert angle.interpretation.startswith("55 deg above the norm mean of 130")


# --- McNamara -------------------------------------------------------------------------------


@pytest.mark.parametrize(("turn", "mirror"), POSES)
@pytest.mark.parametrize(("co_a", "co_gn"), [(91.0, 120.2), (85.5, 131.0)])
def test_maxillomandibular_difference_constructed(turn, mirror, co_a, co_gn):
    co = (-8.0, 27.0)
    points = {"S": (0.0, 0.0), "N": (70.0, 0.0), "Co": co,
              "A": _at(co, co_a, 17.5), "Gn": _at(co, co_gn, 52.0)}
    m = _measure(points, turn=turn, mirror=mirror)
    assert _value(m, "maxillomandibular_difference") == pytest.approx(co_gn - co_a, abs=0.01)
    assert _value(m, "co_gn") - _value(m, "co_a") == pytest.approx(co_gn - co_a, abs=1e-9)


@pytest.mark.parametrize(("turn", "mirror"), POSES)
@pytest.mark.parametrize("offset", [-7.0, -1.8, 0.0, 3.25])
def test_pog_to_n_perpendicular_constructed(turn, mirror, offset):
    # FH tilted 6 deg to S-N; Pog placed ``offset`` mm along FH (anterior +) from the
    # perpendicular through N, and 110 mm down that perpendicular.
    fh = 6.0
    po = (-10.0, 20.0)
    orb = _at(po, 70.0, fh)
    n = (70.0, 0.0)
    along = _at(n, offset, fh)
    pog = _at(along, 110.0, fh + 90.0)
    points = {"S": (0.0, 0.0), "N": n, "Po": po, "Or": orb, "Pog": pog}
    assert _value(_measure(points, turn=turn, mirror=mirror), "pog_to_n_perp") == pytest.approx(
        offset, abs=0.01)


# --- upper lip to E-plane -------------------------------------------------------------------


@pytest.mark.parametrize(("turn", "mirror"), POSES)
@pytest.mark.parametrize("offset", [-4.0, 0.5, 2.75])
def test_upper_lip_to_e_plane_constructed(turn, mirror, offset):
    prn, pog_s = (95.0, 45.0), (72.0, 108.0)
    line = math.degrees(math.atan2(pog_s[1] - prn[1], pog_s[0] - prn[0]))
    foot = _at(prn, 30.0, line)
    # The line runs down and back; anterior is its normal pointing to +x: line - 90 deg.
    lip = _at(foot, offset, line - 90.0)
    points = {"S": (0.0, 0.0), "N": (70.0, 0.0), "Prn": prn, "Pog_s": pog_s, "UL": lip}
    m = _measure(points, turn=turn, mirror=mirror)
    assert _value(m, "upper_lip_to_e_plane") == pytest.approx(offset, abs=0.01)


# --- norms 2026.1 ---------------------------------------------------------------------------

# Pinned: (key, sex, age_min, age_max, mean, sd, range_low, range_high, source starts with).
PINNED_2026_1 = {
    ("impa", "any", None, None, 90.0, 5.0, 85.0, 95.0, "Tweed CH"),
    ("angle_of_convexity", "any", None, None, 0.0, 5.1, -8.5, 10.0, "Downs WB"),
    ("y_axis", "any", None, None, 59.4, 3.8, 53.0, 66.0, "Downs WB"),
    ("a_to_n_perp", "female", 18.0, None, 0.4, 2.3, None, None, "McNamara JA"),
    ("a_to_n_perp", "male", 18.0, None, 1.1, 2.7, None, None, "McNamara JA"),
    ("co_a", "female", 18.0, None, 91.0, 4.3, None, None, "McNamara JA"),
    ("co_a", "male", 18.0, None, 99.8, 6.0, None, None, "McNamara JA"),
    ("co_gn", "female", 18.0, None, 120.2, 5.3, None, None, "McNamara JA"),
    ("co_gn", "male", 18.0, None, 134.3, 6.8, None, None, "McNamara JA"),
    ("ans_me", "female", 18.0, None, 66.7, 4.1, None, None, "McNamara JA"),
    ("ans_me", "male", 18.0, None, 74.6, 5.0, None, None, "McNamara JA"),
    ("maxillomandibular_difference", "female", 18.0, None, 29.2, 3.3, None, None, "McNamara JA"),
    ("maxillomandibular_difference", "male", 18.0, None, 34.5, 4.0, None, None, "McNamara JA"),
    ("maxillomandibular_difference", "any", None, 18.0, None, None, 20.0, 23.0, "McNamara JA"),
    ("pog_to_n_perp", "any", None, 18.0, None, None, -8.0, -6.0, "McNamara JA"),
    ("pog_to_n_perp", "female", 18.0, None, -1.8, 4.5, None, None, "McNamara JA"),
    ("pog_to_n_perp", "male", 18.0, None, -0.3, 3.8, None, None, "McNamara JA"),
    ("wits", "female", None, None, 0.0, 1.77, None, None, "Jacobson A"),
    ("wits", "male", None, None, -1.0, 1.19, None, None, "Jacobson A"),
    ("saddle_angle", "any", None, None, 123.0, 5.0, None, None, "Bjork A"),
    ("articular_angle", "any", None, None, 143.0, 6.0, None, None, "Bjork A"),
    ("gonial_angle", "any", None, None, 130.0, 7.0, None, None, "Bjork A"),
    ("u1_sn", "any", None, None, 102.0, 2.0, None, None, "Jarabak JR"),
    ("upper_lip_to_e_plane", "any", None, None, -4.0, None, None, None, "Ricketts RM"),
}


def test_norms_2026_1_pinned_with_sources():
    assert NORMS_VERSION == "2026.1"
    rows = {n for n in DEFAULT_NORMS if n.version == "2026.1"}
    got = set()
    for n in rows:
        pinned = next(p for p in PINNED_2026_1 if p[:4] == (n.key, n.sex.value, n.age_min,
                                                            n.age_max))
        assert n.source.startswith(pinned[8]), n
        assert n.population, n
        got.add((n.key, n.sex.value, n.age_min, n.age_max, n.mean, n.sd, n.range_low,
                 n.range_high, pinned[8]))
    assert got == PINNED_2026_1
    # The first table stays, unchanged, for reports that named it.
    first = {(n.key, n.mean, n.range_low, n.range_high) for n in DEFAULT_NORMS
             if n.version == "2025.1"}
    assert ("impa", 90.0, 87.0, 93.0) in first
    assert len([n for n in DEFAULT_NORMS if n.version == "2025.1"]) == 31


def test_every_measurement_with_an_sd_gets_an_sd_deviation():
    # Downs' convexity and Y-axis, Jacobson's Wits and McNamara's adult values used to say
    # "the source gives no SD".
    for key, sex, age in [("angle_of_convexity", None, None), ("y_axis", None, None),
                          ("wits", Sex.FEMALE, 30), ("wits", Sex.MALE, 30),
                          ("co_a", Sex.MALE, 30), ("pog_to_n_perp", Sex.FEMALE, 30),
                          ("saddle_angle", None, None), ("gonial_angle", None, None)]:
        norm = select_norm(key, age=age, sex=sex)
        assert norm is not None and norm.sd is not None, key
        assert norm.version == "2026.1"


def test_impa_94_is_within_the_norm():
    # L1 axis 94 deg to Me->Go: MP along +x (Go behind Me), the tooth leaning forward.
    me, go = (45.0, 117.0), (-5.0, 117.0)
    apex = (40.0, 100.0)
    points = {"S": (0.0, 0.0), "N": (70.0, 0.0), "Go": go, "Me": me, "L1_apex": apex,
              "L1": _at(apex, 22.0, -(180.0 - 94.0))}
    impa = _measure(points, turn=11.0, mirror=True)["impa"]
    assert impa.value == pytest.approx(94.0, abs=0.01)
    assert impa.norm is not None and impa.norm.version == "2026.1"
    assert impa.deviation_sd == pytest.approx(0.8, abs=0.01)
    assert impa.interpretation.startswith("within the norm")


@pytest.mark.parametrize(("sex", "sd"), [("female", 1.77), ("male", 1.19)])
def test_wits_sd_by_sex(sex, sd):
    # A and B projected on an occlusal plane along +x, 3 mm apart: Wits +3.
    points = {"S": (0.0, 0.0), "N": (70.0, 0.0), "A": (65.0, 50.0), "B": (62.0, 90.0),
              "UPM": (48.0, 80.0), "LPM": (48.0, 82.0), "UM": (28.0, 80.0), "LM": (28.0, 82.0)}
    wits = _measure(points, turn=0.0, mirror=False, sex=sex)["wits"]
    assert wits.value == pytest.approx(3.0, abs=0.01)
    mean = 0.0 if sex == "female" else -1.0
    assert wits.deviation_sd == pytest.approx((3.0 - mean) / sd, abs=0.01)
    assert wits.norm is not None and wits.norm.sd == sd
    unknown = _measure(points, turn=0.0, mirror=False, sex=None)["wits"]
    assert unknown.norm is None  # no guess at the sex
