"""Cephalometric analyses against values computed by hand on one fixed tracing.

The tracing is laid out in millimetres with S at the origin and S-N along +x (so SN is
"horizontal" and anterior is +x); the image y axis points down, so "below" means larger y.
It is fed to the code in pixels at 0.25 mm/px (pixel = mm * 4), so a forgotten calibration
shows up as a factor of 4 in every linear value.

Reference directions used below (angle from +x, positive = clockwise on screen = downward):
  FH   Po(-10,20) -> Or(60,28)    (70, 8)    atan(8/70)   =  6.5198 deg
  MP   Go(-5,82)  -> Me(45,117)   (50, 35)   atan(35/50)  = 34.9920 deg
  NA   N(70,0)    -> A(65,50)     (-5, 50)   5.7106 deg behind the vertical (atan(5/50))
  NB   N(70,0)    -> B(52,90)     (-18, 90)  11.3099 deg behind the vertical (atan(18/90))
  U1   apex(58,52) -> tip(68,82)  (10, 30)   18.4349 deg ahead of the vertical (atan(10/30))
  L1   apex(42,103) -> tip(60,79) (18, -24)  36.8699 deg ahead of the vertical (atan(18/24))
"""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import geometry as g
from domain.cephalometry.analyses import ANALYSES, AnalysisResult, CephMeasurement, analyze
from domain.cephalometry.landmarks import (
    LANDMARKS,
    LandmarkGroup,
    LandmarkSet,
    check_known,
    get_landmark,
    landmarks_in,
)
from domain.cephalometry.norms import DEFAULT_NORMS, Norm, Sex, select_norm
from domain.errors import InvalidInput

MM_PER_PX = 0.25

TRACING_MM: dict[str, tuple[float, float]] = {
    "S": (0, 0), "N": (70, 0), "Po": (-10, 20), "Or": (60, 28),
    "A": (65, 50), "B": (52, 90), "Pog": (57, 100), "Gn": (55, 110), "Me": (45, 117),
    "Go": (-5, 82), "Ar": (-20, 32), "Co": (-8, 27), "Ba": (-22, 42), "Pt": (12, 22),
    "ANS": (74, 47), "PNS": (22, 49),
    "U1": (68, 82), "U1_apex": (58, 52), "L1": (60, 79), "L1_apex": (42, 103),
    "UPM": (48, 83), "LPM": (48, 85), "UM": (28, 79), "LM": (28, 81),
    "Prn": (95, 45), "Pog_s": (72, 108), "LL": (80, 88), "UL": (84, 72), "Sn": (82, 55),
    "N_s": (78, 2),
}  # fmt: skip


def to_px(tracing_mm, mm_per_px=MM_PER_PX):
    return {code: (x / mm_per_px, y / mm_per_px) for code, (x, y) in tracing_mm.items()}


def run(tracing_mm=TRACING_MM, **options) -> dict[str, CephMeasurement]:
    options.setdefault("age", 30)
    options.setdefault("sex", "female")
    mm_per_px = options.pop("mm_per_pixel", MM_PER_PX)
    results = analyze(to_px(tracing_mm), mm_per_px, **options)
    return {m.key: m for r in results for m in r.measurements}


def value(measurements: dict[str, CephMeasurement], key: str) -> float:
    m = measurements[key]
    assert m.computable, m.interpretation
    assert m.value is not None
    return m.value


@pytest.fixture(scope="module")
def fixed() -> dict[str, CephMeasurement]:
    return run()


# (key, hand-computed value, unit)
HAND_COMPUTED = [
    # --- Steiner
    # SNA: NS points straight back, NA is 5.7106 deg behind the vertical -> 90 - 5.7106.
    ("sna", 84.2894, "deg"),
    # SNB: 90 - atan(18/90) = 90 - 11.3099.
    ("snb", 78.6901, "deg"),
    # ANB: angle A-N-B = 11.3099 - 5.7106, positive because A is ahead of N-B.
    ("anb", 5.5993, "deg"),
    # SN-GoGn: SN along +x; Go(-5,82) -> Gn(55,110) = (60, 28): atan(28/60).
    ("sn_gogn", 25.0169, "deg"),
    # U1-NA: U1 leans 18.4349 forward, NA 5.7106 backward -> 24.1455 (proclined, +).
    ("u1_na_angle", 24.1455, "deg"),
    # U1 tip to line N-A: |cross((-5,50), (68-70, 82-0))| / |(-5,50)|
    #   = |(-5)(82) - (50)(-2)| / sqrt(2525) = 310 / 50.2494; tip is ahead of NA (+).
    ("u1_na_distance", 6.1692, "mm"),
    # L1-NB: B->N leans atan(18/90) = 11.3099 forward, L1 36.8699 forward -> 25.5600.
    ("l1_nb_angle", 25.5600, "deg"),
    # L1 tip to N-B: |(-18)(79) - (90)(60-70)| / sqrt(18^2 + 90^2) = 522 / 91.7824 (ahead, +).
    ("l1_nb_distance", 5.6874, "mm"),
    # Interincisal: tip->apex of U1 leans 18.4349 back from straight up, of L1 36.8699
    # back from straight down -> 180 - 18.4349 - 36.8699.
    ("interincisal_angle", 124.6952, "deg"),
    # --- Downs
    # Facial angle: 90 - atan(13/100) (N-Pog leans back 7.4069) + 6.5198 (FH tilt) .
    ("facial_angle", 89.1129, "deg"),
    # Convexity: at A, N is at atan2(-50, 5) = -84.2894 deg, Pog at atan2(50, -8) = 99.0903;
    # N-A-Pog = 360 - 183.3797 = 176.6203; 180 - that = 3.3797, + because A is ahead of
    # N-Pog (at y=50 the line is at x=63.5 < 65).
    ("angle_of_convexity", 3.3797, "deg"),
    # Y-axis: S->Gn at atan(110/55) = 63.4349 minus FH 6.5198.
    ("y_axis", 56.9151, "deg"),
    # --- Tweed
    # FMA: MP 34.9920 - FH 6.5198.
    ("fma", 28.4722, "deg"),
    # IMPA: Me->Go points at 180 + 34.9920 = 214.9920 deg, L1 apex->tip at
    # atan2(-24, 18) = -53.1301 = 306.8699 deg -> 91.8779.
    ("impa", 91.8779, "deg"),
    # FMIA: between Po->Or (6.5198) and L1 apex->tip (-53.1301) -> 59.6499.
    ("fmia", 59.6499, "deg"),
    # --- McNamara
    # A to N-perp: (A - N) . unit(FH) = ((-5)(70) + (50)(8)) / sqrt(70^2 + 8^2) = 50 / 70.4557.
    ("a_to_n_perp", 0.7097, "mm"),
    # Co(-8,27) to A(65,50): sqrt(73^2 + 23^2) = sqrt(5858).
    ("co_a", 76.5376, "mm"),
    # Co to Gn(55,110): sqrt(63^2 + 83^2) = sqrt(10858).
    ("co_gn", 104.2017, "mm"),
    # ANS(74,47) to Me(45,117): sqrt(29^2 + 70^2) = sqrt(5741).
    ("ans_me", 75.7694, "mm"),
    # Maxillomandibular difference: Co-Gn - Co-A = sqrt(10858) - sqrt(5858).
    ("maxillomandibular_difference", 27.6641, "mm"),
    # Pog to N-perp: (Pog - N) . unit(FH) = ((-13)(70) + (100)(8)) / 70.4557 = -110 / 70.4557.
    ("pog_to_n_perp", -1.5613, "mm"),
    # --- Ricketts
    # Facial axis: N->Ba = (-92, 42), Pt->Gn = (43, 88);
    #   cos = (-3956 + 3696) / (sqrt(10228) sqrt(9593)) = -260 / 9905.49 -> 91.5041.
    ("facial_axis", 91.5041, "deg"),
    # A to N-Pog: |(-13)(50) - (100)(-5)| / sqrt(13^2 + 100^2) = 150 / 100.8414, ahead (+).
    ("convexity_a_point", 1.4875, "mm"),
    # L1 tip to A-Pog: |(-8)(29) - (50)(-5)| / sqrt(8^2 + 50^2) = 18 / 50.6360; the line is
    # at x = 60.36 for y = 79, the tip at 60, so behind (-).
    ("l1_to_a_pog", -0.3555, "mm"),
    # LL to Prn-Pog_s: |(-23)(43) - (63)(-15)| / sqrt(23^2 + 63^2) = 44 / 67.0671, ahead (+).
    ("lower_lip_to_e_plane", 0.6561, "mm"),
    # UL(84,72) to Prn-Pog_s: |(-23)(27) - (63)(-11)| / 67.0671 = 72 / 67.0671; the line is at
    # x = 85.14 for y = 72, the lip at 84, so behind (-).
    ("upper_lip_to_e_plane", -1.0736, "mm"),
    # --- Wits
    # Occlusal plane from mid molars (28,80) to mid premolars (48,84): (20, 4).
    # (A - B) . unit = ((13)(20) + (-40)(4)) / sqrt(416) = 100 / 20.3961.
    ("wits", 4.9029, "mm"),
    # --- Bjork-Jarabak
    # Saddle: S->N along +x, S->Ar = (-20, 32) at atan2(32, -20) = 122.0054.
    ("saddle_angle", 122.0054, "deg"),
    # Articular: Ar->S = (20, -32) at -57.9946, Ar->Go = (15, 50) at 73.3008 -> 131.2954.
    ("articular_angle", 131.2954, "deg"),
    # Gonial: Go->Ar = (-15, -50) at -106.6992, Go->Me at 34.9920 -> 141.6913.
    ("gonial_angle", 141.6913, "deg"),
    # Sum = 360 + angle(SN, MP) = 360 + 34.9920.
    ("bjork_sum", 394.9920, "deg"),
    # S-Go = sqrt(5^2 + 82^2) = 82.1523; N-Me = sqrt(25^2 + 117^2) = 119.6411 -> 68.6656 %.
    ("facial_height_ratio", 68.6656, "%"),
    # U1-SN: N->S = (-70, 0) against U1 apex->tip (10, 30): 90 + 18.4349.
    ("u1_sn", 108.4349, "deg"),
]


@pytest.mark.parametrize(("key", "expected", "unit"), HAND_COMPUTED)
def test_fixed_tracing_against_hand_computation(fixed, key, expected, unit):
    m = fixed[key]
    assert m.computable
    assert m.unit == unit
    assert value(fixed, key) == pytest.approx(expected, abs=1e-3)


def test_every_measurement_is_hand_checked(fixed):
    assert {key for key, _, _ in HAND_COMPUTED} == set(fixed)


def test_results_are_frozen_dataclasses():
    result = analyze(to_px(TRACING_MM), MM_PER_PX, analyses=["steiner"])[0]
    assert isinstance(result, AnalysisResult)
    with pytest.raises(AttributeError):
        result.measurements[0].value = 1.0  # type: ignore[misc]


# --- norms, deviations, interpretation ----------------------------------------------------


def test_norm_deviation_and_interpretation(fixed):
    sna = fixed["sna"]
    assert sna.norm is not None
    assert (sna.norm.mean, sna.norm.sd) == (82.0, 2.0)
    assert "Steiner" in sna.norm.source
    assert sna.deviation_sd == pytest.approx((84.2894 - 82) / 2, abs=1e-3)
    assert "maxilla protrusive" in sna.interpretation
    assert fixed["snb"].interpretation.startswith("within the norm")
    assert fixed["anb"].interpretation == "skeletal Class II (+1.8 SD)"
    # Range norm: FMIA 59.65 is below Tweed's 65-70.
    assert fixed["fmia"].deviation_sd is None
    assert "below" in fixed["fmia"].interpretation
    # Sex-specific McNamara norm for an adult woman.
    assert fixed["co_gn"].norm is not None
    assert fixed["co_gn"].norm.mean == 120.2
    # Ricketts' convexity norm is for children: no norm for a 30-year-old.
    assert fixed["convexity_a_point"].norm is None


def _with_anb(target_deg: float) -> dict[str, tuple[float, float]]:
    # SNA is 84.2894; put B 90 mm from N at SNB = SNA - target (rotating NS downward).
    snb = math.radians(84.28940686 - target_deg)
    tracing = dict(TRACING_MM)
    tracing["B"] = (70 - 90 * math.cos(snb), 90 * math.sin(snb))
    return tracing


@pytest.mark.parametrize(
    ("anb", "verdict"),
    [
        (5.0, "skeletal Class II"),
        (4.1, "skeletal Class II"),
        (3.9, "skeletal Class I"),
        (2.0, "skeletal Class I"),
        (0.1, "skeletal Class I"),
        (-0.1, "skeletal Class III"),
        (-3.0, "skeletal Class III"),
    ],
)
def test_anb_classification(anb, verdict):
    m = run(_with_anb(anb))["anb"]
    assert m.value == pytest.approx(anb, abs=1e-6)
    # "Class I" is a prefix of "Class II": compare the verdict before the SD note exactly.
    assert m.interpretation.split(" (")[0] == verdict


def test_norms_follow_sex_and_age():
    male = run(sex="male")
    assert male["wits"].norm is not None and male["wits"].norm.mean == -1.0
    assert male["co_a"].norm is not None and male["co_a"].norm.mean == 99.8
    child = run(age=9, sex=None)
    assert child["a_to_n_perp"].norm is not None and child["a_to_n_perp"].norm.mean == 0.0
    assert child["co_a"].norm is None  # adult, sex-specific norms only
    assert child["convexity_a_point"].norm is not None
    unknown = run(age=None, sex="unknown")
    assert unknown["wits"].norm is None
    assert unknown["wits"].interpretation == "no applicable norm"
    assert unknown["sna"].norm is not None


# --- not computable -----------------------------------------------------------------------


def test_missing_landmarks_reported_not_raised():
    tracing = {k: v for k, v in TRACING_MM.items() if k not in {"Go", "L1_apex"}}
    m = run(tracing)
    for key in ("sn_gogn", "fma", "articular_angle", "gonial_angle", "bjork_sum"):
        assert not m[key].computable
        assert m[key].reason == "missing_landmarks"
        assert "Go" in m[key].missing_landmarks
        assert m[key].value is None
    assert m["impa"].missing_landmarks == ("Go", "L1_apex")
    assert "Go, L1_apex" in m["impa"].interpretation
    assert m["sna"].computable


def test_without_calibration_only_linear_measures_are_missing():
    m = run(mm_per_pixel=None)
    assert not m["co_a"].computable
    assert m["co_a"].reason == "calibration_required"
    assert m["wits"].reason == "calibration_required"
    assert value(m, "sna") == pytest.approx(84.2894, abs=1e-3)
    # A ratio needs no calibration.
    assert value(m, "facial_height_ratio") == pytest.approx(68.6656, abs=1e-3)


def test_orientation_unknown_without_s_n_po_or_unless_facing_given():
    tracing = {k: v for k, v in TRACING_MM.items() if k not in {"S", "Po"}}
    m = run(tracing)
    assert m["convexity_a_point"].reason == "orientation_unknown"
    assert value(m, "co_a") == pytest.approx(76.5376, abs=1e-3)  # unsigned: unaffected
    faced = run(tracing, facing=(1, 0))
    assert value(faced, "convexity_a_point") == pytest.approx(1.4875, abs=1e-3)
    assert value(run(tracing, facing=(-1, 0)), "convexity_a_point") == pytest.approx(
        -1.4875, abs=1e-3
    )


def test_coincident_points_are_not_computable():
    tracing = dict(TRACING_MM, Me=TRACING_MM["Go"])
    m = run(tracing)
    assert m["fma"].reason == "degenerate_geometry"
    assert value(m, "sna") == pytest.approx(84.2894, abs=1e-3)


def test_unknown_landmark_and_analysis_raise():
    with pytest.raises(InvalidInput) as err:
        analyze({"S": (0, 0), "Zz": (1, 1)}, 0.1)
    assert err.value.code == "unknown_landmark"
    with pytest.raises(InvalidInput) as err:
        analyze({"S": (0, 0)}, 0.1, analyses=["harvold"])
    assert err.value.code == "unknown_analysis"
    with pytest.raises(InvalidInput) as err:
        analyze({"S": (0, 0)}, -1)
    assert err.value.code == "invalid_calibration"


# --- invariants (ORTHODONTICS.md) as properties -------------------------------------------

jitter = st.floats(min_value=-3, max_value=3, allow_nan=False)


@st.composite
def tracings(draw):
    """The fixed tracing with every point moved up to 3 mm, turned, shifted, maybe mirrored."""
    degrees = draw(st.floats(-180, 180))
    shift = (draw(st.floats(-500, 500)), draw(st.floats(-500, 500)))
    mirror = draw(st.booleans())
    out = {}
    for code, (x, y) in TRACING_MM.items():
        p = (x + draw(jitter), y + draw(jitter))
        if mirror:
            p = (-p[0], p[1])
        rx, ry = g.rotate(p, degrees)
        out[code] = (rx + shift[0], ry + shift[1])
    return out


@settings(max_examples=150, deadline=None)
@given(tracings())
def test_bjork_sum_is_360_plus_sn_to_mandibular_plane(tracing):
    m = run(tracing)
    sn_mp = g.angle_between_directions(tracing["S"], tracing["N"], tracing["Go"], tracing["Me"])
    assert value(m, "bjork_sum") == pytest.approx(360 + sn_mp, abs=1e-7)
    parts = value(m, "saddle_angle") + value(m, "articular_angle") + value(m, "gonial_angle")
    assert value(m, "bjork_sum") == pytest.approx(parts, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(tracings())
def test_tweed_triangle_sums_to_180(tracing):
    m = run(tracing)
    assert value(m, "fma") + value(m, "impa") + value(m, "fmia") == pytest.approx(180, abs=1e-7)


@settings(max_examples=150, deadline=None)
@given(tracings())
def test_anb_equals_sna_minus_snb(tracing):
    m = run(tracing)
    assert value(m, "anb") == pytest.approx(value(m, "sna") - value(m, "snb"), abs=1e-7)


@settings(max_examples=60, deadline=None)
@given(st.floats(-180, 180), st.booleans(), st.floats(0.05, 0.5))
def test_every_value_invariant_under_pose_mirror_and_pixel_size(degrees, mirror, mm_per_px):
    # The same anatomy photographed turned, mirrored (patient facing left) and at another
    # resolution must give identical numbers, signs included.
    moved = {}
    for code, (x, y) in TRACING_MM.items():
        moved[code] = g.rotate((-x if mirror else x, y), degrees)
    reference = run()
    other = analyze(to_px(moved, mm_per_px), mm_per_px, age=30, sex="female")
    for m in (m for r in other for m in r.measurements):
        assert m.value == pytest.approx(reference[m.key].value, abs=1e-6), m.key


# --- norm selection -----------------------------------------------------------------------


def _norm(mean, **kw):
    return Norm("x", "deg", mean, 1.0, "test", "test", **kw)


def test_select_norm_prefers_sex_specific_then_narrower_age_then_newer():
    norms = [
        _norm(1.0),
        _norm(2.0, sex=Sex.FEMALE),
        _norm(3.0, sex=Sex.FEMALE, age_min=10, age_max=20),
        _norm(4.0, age_min=12, age_max=14),
        _norm(5.0, sex=Sex.FEMALE, age_min=10, age_max=20, version="2099.1"),
    ]
    assert select_norm("x", norms=norms).mean == 1.0  # type: ignore[union-attr]
    assert select_norm("x", sex=Sex.FEMALE, norms=norms).mean == 2.0  # type: ignore[union-attr]
    assert select_norm("x", age=13, sex=Sex.FEMALE, norms=norms).mean == 5.0  # type: ignore[union-attr]
    assert select_norm("x", age=13, sex=Sex.MALE, norms=norms).mean == 4.0  # type: ignore[union-attr]
    assert select_norm("x", age=30, sex=Sex.FEMALE, norms=norms).mean == 2.0  # type: ignore[union-attr]
    assert select_norm("y", norms=norms) is None


def test_select_norm_default_table():
    adult_f = select_norm("co_a", age=25, sex=Sex.FEMALE)
    adult_m = select_norm("co_a", age=25, sex=Sex.MALE)
    assert adult_f is not None and adult_f.mean == 91.0 and adult_f.sex is Sex.FEMALE
    assert adult_m is not None and adult_m.mean == 99.8
    assert select_norm("co_a", age=25) is None  # sex unknown: no guess
    assert select_norm("co_a", age=10, sex=Sex.FEMALE) is None
    assert select_norm("a_to_n_perp", age=17.9).mean == 0.0  # type: ignore[union-attr]
    assert select_norm("a_to_n_perp", age=18).mean == 1.0  # type: ignore[union-attr]
    assert select_norm("a_to_n_perp") is None  # age unknown and both norms age-banded


def test_norm_table_is_versioned_and_cited():
    keys = {d.key for _, defs in ANALYSES.values() for d in defs}
    for norm in DEFAULT_NORMS:
        assert norm.key in keys, norm.key
        assert norm.source and norm.population and norm.version
        assert norm.mean is not None or (norm.range_low is not None and norm.range_high)
    expected = {
        ("sna", 82.0), ("snb", 80.0), ("anb", 2.0), ("sn_gogn", 32.0), ("u1_na_angle", 22.0),
        ("u1_na_distance", 4.0), ("l1_nb_angle", 25.0), ("l1_nb_distance", 4.0),
        ("interincisal_angle", 130.0), ("facial_angle", 87.8), ("angle_of_convexity", 0.0),
        ("y_axis", 59.4), ("fma", 25.0), ("impa", 90.0), ("bjork_sum", 396.0),
    }  # fmt: skip
    assert expected <= {(n.key, n.mean) for n in DEFAULT_NORMS}


# --- landmark catalogue -------------------------------------------------------------------


def test_catalogue_contents():
    codes = [lm.code for lm in LANDMARKS]
    assert len(codes) == len(set(codes)) >= 35
    isbi = {lm.code for lm in landmarks_in(LandmarkSet.ISBI_2015)}
    aariz = {lm.code for lm in landmarks_in(LandmarkSet.AARIZ)}
    assert len(isbi) == 19
    assert len(aariz) == 29
    assert isbi <= aariz
    assert {"Ba", "Pt", "Xi", "DC", "Pm", "CC"} <= set(codes)
    assert get_landmark("Go").group is LandmarkGroup.MANDIBLE
    assert get_landmark("Pog_s").group is LandmarkGroup.SOFT_TISSUE
    # Every landmark an analysis uses is catalogued.
    check_known(code for _, defs in ANALYSES.values() for d in defs for code in d.landmarks)


def test_unknown_landmark():
    with pytest.raises(InvalidInput) as err:
        get_landmark("s")  # codes are case-sensitive
    assert err.value.code == "unknown_landmark"
    with pytest.raises(InvalidInput) as err:
        check_known(["S", "Q1", "Q2"])
    assert "Q1, Q2" in err.value.message
