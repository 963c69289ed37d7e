"""Growth forecast against displacements computed by hand on a fixed tracing.

The tracing is laid out in mm with S at the origin and S-N along +x, patient facing right,
so the cranial-base frame is the image frame itself: anterior = +x, inferior = +y (down).
It is passed in pixels at 0.25 mm/px (px = mm * 4).

Most tests use a small test table with round increments (mm/year, anterior, inferior):
  N (1.0, 0.0)   A (0.5, 1.0)   B (1.0, 2.0)   Pog (1.0, 2.0)   Me (0.5, 2.0)
  Go (0.0, 1.5)  S (0, 0)       Po: no increment (not modelled)
"""

import math

import pytest

from domain.cephalometry.landmarks import LANDMARKS
from domain.cephalometry.norms import Sex
from domain.errors import InvalidInput
from domain.growth import (
    DEFAULT_GROWTH_TABLES,
    DISCLAIMER,
    VERIFY,
    CranialBaseFrame,
    GrowthTable,
    Increment,
    compare_measurements,
    forecast_growth,
    select_table,
    with_increments,
)

MM_PER_PX = 0.25

TRACING_MM: dict[str, tuple[float, float]] = {
    "S": (0, 0), "N": (70, 0), "Po": (-10, 20), "Or": (60, 28),
    "A": (65, 50), "B": (52, 90), "Pog": (57, 100), "Me": (45, 117), "Gn": (55, 110),
    "Go": (-5, 82),
}  # fmt: skip

TEST_TABLE = GrowthTable(
    key="test",
    source="hand-made for tests",
    population="none",
    sex=Sex.ANY,
    age_min=6.0,
    age_max=16.0,
    increments=(
        Increment("S", 0.0, 0.0),
        Increment("N", 1.0, 0.0),
        Increment("Or", 0.0, 0.0),
        Increment("A", 0.5, 1.0),
        Increment("B", 1.0, 2.0),
        Increment("Pog", 1.0, 2.0),
        Increment("Me", 0.5, 2.0),
        Increment("Gn", 1.0, 2.0),
        Increment("Go", 0.0, 1.5),
    ),
)


def to_px(tracing_mm, mm_per_px=MM_PER_PX):
    return {code: (x / mm_per_px, y / mm_per_px) for code, (x, y) in tracing_mm.items()}


def shift(forecast, code):
    return next(s for s in forecast.shifts if s.code == code)


def change(forecast, key):
    return next(c for c in forecast.measurement_changes if c.key == key)


@pytest.fixture(scope="module")
def two_years():
    return forecast_growth(to_px(TRACING_MM), MM_PER_PX, age=10, years=2, tables=[TEST_TABLE])


def test_landmarks_move_by_increment_times_years(two_years):
    # 2 years: A (0.5, 1.0) * 2 = (1.0, 2.0) mm -> (65, 50) + (1, 2) = (66, 52) mm = (264, 208) px.
    a = shift(two_years, "A")
    assert (a.anterior_mm, a.inferior_mm) == pytest.approx((1.0, 2.0))
    assert (a.dx_px, a.dy_px) == pytest.approx((4.0, 8.0))
    assert two_years.predicted_px["A"] == pytest.approx((264.0, 208.0))
    # N (1, 0) * 2 -> (72, 0) mm = (288, 0) px; B (1, 2) * 2 -> (54, 94) mm = (216, 376) px.
    assert two_years.predicted_px["N"] == pytest.approx((288.0, 0.0))
    assert two_years.predicted_px["B"] == pytest.approx((216.0, 376.0))
    # S is the registration point.
    assert two_years.predicted_px["S"] == pytest.approx((0.0, 0.0))


def test_landmark_without_increment_stays_and_is_reported(two_years):
    assert two_years.predicted_px["Po"] == pytest.approx((-40.0, 80.0))
    assert two_years.not_modelled == ("Po",)


def test_measurement_changes_hand_computed(two_years):
    # SNA before: N-S points straight back, N-A = (-5, 50): 90 - atan(5/50) = 84.2894.
    # After: N (72, 0), A (66, 52): N-A = (-6, 52): 90 - atan(6/52) = 83.4180.
    sna = change(two_years, "sna")
    assert sna.current == pytest.approx(90 - math.degrees(math.atan(5 / 50)), abs=1e-9)
    assert sna.predicted == pytest.approx(90 - math.degrees(math.atan(6 / 52)), abs=1e-9)
    assert sna.predicted == pytest.approx(83.4180, abs=1e-4)
    assert sna.change == pytest.approx(83.4180 - 84.2894, abs=1e-4)
    # SNB: B (52, 90) -> (54, 94); N-B (-18, 90) -> (-18, 94):
    # 90 - atan(18/90) = 90 - 11.3099 = 78.6901 -> 90 - atan(18/94) = 90 - 10.8403 = 79.1597.
    snb = change(two_years, "snb")
    assert snb.current == pytest.approx(78.6901, abs=1e-4)
    assert snb.predicted == pytest.approx(79.1597, abs=1e-4)
    # ANB = SNA - SNB on both tracings.
    anb = change(two_years, "anb")
    assert anb.predicted == pytest.approx(sna.predicted - snb.predicted, abs=1e-9)
    # A linear change: ANS-Me is not computable (no ANS) and says so with None.
    ans_me = change(two_years, "ans_me")
    assert ans_me.current is None and ans_me.change is None


def test_result_carries_disclaimer_and_table_provenance(two_years):
    assert two_years.disclaimer == "average-based estimate, not a prediction for this patient"
    assert two_years.disclaimer == DISCLAIMER
    (use,) = two_years.tables
    assert (use.key, use.years, use.status) == ("test", 2.0, VERIFY)
    assert two_years.years_covered == 2.0 and two_years.years_uncovered == 0.0


def test_frame_is_handedness_and_rotation_free():
    # The same patient facing left, the image turned by 15 degrees and shifted: the
    # displacements in the frame and every angle change must be identical.
    angle = math.radians(15)
    c, s = math.cos(angle), math.sin(angle)

    def pose(p):
        x, y = -p[0], p[1]  # mirror: facing left
        return (c * x - s * y + 300, s * x + c * y + 120)

    moved_mm = {code: pose(p) for code, p in TRACING_MM.items()}
    ref = forecast_growth(to_px(TRACING_MM), MM_PER_PX, age=10, years=2, tables=[TEST_TABLE])
    other = forecast_growth(to_px(moved_mm), MM_PER_PX, age=10, years=2, tables=[TEST_TABLE])
    for a, b in zip(ref.shifts, other.shifts, strict=True):
        assert (a.anterior_mm, a.inferior_mm) == pytest.approx((b.anterior_mm, b.inferior_mm))
    for a, b in zip(ref.measurement_changes, other.measurement_changes, strict=True):
        if a.change is not None:
            assert a.change == pytest.approx(b.change, abs=1e-9)
    frame = CranialBaseFrame.of(moved_mm)
    assert not frame.faces_right
    assert CranialBaseFrame.of(TRACING_MM).faces_right


def test_frame_inferior_is_the_face_side_even_upside_down():
    flipped = {code: (x, -y) for code, (x, y) in TRACING_MM.items()}  # face above S-N
    frame = CranialBaseFrame.of(flipped)
    assert frame.inferior == pytest.approx((0.0, -1.0))
    # Without face points the image's down is inferior.
    assert CranialBaseFrame.of({"S": (0, 0), "N": (1, 0)}).inferior == pytest.approx((0, 1))


def test_pieces_use_the_most_specific_table_per_age():
    # A girl of 9 for 3 years: 9-10 sex-neutral table, 10-12 the female pubertal table.
    # Pog: (1.0, 1.6) * 1 + (1.5, 1.5) * 2 = (4.0, 4.6) mm.
    forecast = forecast_growth(to_px(TRACING_MM), MM_PER_PX, age=9, years=3, sex="female")
    pog = shift(forecast, "Pog")
    assert (pog.anterior_mm, pog.inferior_mm) == pytest.approx((4.0, 4.6))
    years = {use.key: use.years for use in forecast.tables}
    assert years == pytest.approx(
        {"mean_increments_6_16": 1.0, "mean_increments_pubertal_female": 2.0}
    )


def test_years_outside_every_table_add_nothing():
    # Unknown sex at 15 for 3 years: only 15-16 is covered; N moves 0.8 mm, not 2.4.
    forecast = forecast_growth(to_px(TRACING_MM), MM_PER_PX, age=15, years=3, sex="unknown")
    assert forecast.years_covered == pytest.approx(1.0)
    assert forecast.years_uncovered == pytest.approx(2.0)
    assert shift(forecast, "N").anterior_mm == pytest.approx(0.8)
    # An adult: nothing covered, nothing moves, the disclaimer stays.
    adult = forecast_growth(to_px(TRACING_MM), MM_PER_PX, age=30, years=5)
    assert adult.years_covered == 0.0 and adult.tables == ()
    assert all(s.distance_mm == 0 for s in adult.shifts)
    assert adult.disclaimer == DISCLAIMER


def test_select_table_prefers_sex_specific_then_narrow():
    assert select_table(12.0, Sex.FEMALE).key == "mean_increments_pubertal_female"
    assert select_table(12.0, Sex.MALE).key == "mean_increments_pubertal_male"
    assert select_table(12.0, None).key == "mean_increments_6_16"
    assert select_table(17.0, Sex.MALE) is None


def test_default_tables_are_complete_documented_and_consistent():
    codes = {lm.code for lm in LANDMARKS}
    for table in DEFAULT_GROWTH_TABLES:
        assert {inc.code for inc in table.increments} == codes
        assert table.status == VERIFY
        assert table.source and table.population and table.version
        assert table.increment("S") == Increment("S", 0.0, 0.0)
        assert table.increment("N").inferior_mm == 0.0  # N stays on S-N
        # Teeth in occlusion move together, or the bite would open every year.
        for upper, lower in (("U1", "L1"), ("UM", "LM"), ("UPM", "LPM")):
            assert table.increment(upper) == Increment(upper, *_pair(table, lower))


def _pair(table, code):
    inc = table.increment(code)
    return inc.anterior_mm, inc.inferior_mm


def test_with_increments_makes_a_new_version():
    base = DEFAULT_GROWTH_TABLES[0]
    newer = with_increments(base, "2025.2", N=(0.9, 0.0))
    assert newer.version == "2025.2" and newer.increment("N").anterior_mm == 0.9
    assert base.increment("N").anterior_mm == 0.8


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"years": 0}, "invalid_forecast_years"),
        ({"years": -1}, "invalid_forecast_years"),
        ({"years": math.nan}, "invalid_forecast_years"),
        ({"years": 25}, "invalid_forecast_years"),
        ({"age": -1}, "invalid_age"),
        ({"age": math.inf}, "invalid_age"),
    ],
)
def test_invalid_requests(kwargs, code):
    options = {"age": 10, "years": 2, **kwargs}
    with pytest.raises(InvalidInput) as err:
        forecast_growth(to_px(TRACING_MM), MM_PER_PX, **options)
    assert err.value.code == code


def test_invalid_tracings():
    with pytest.raises(InvalidInput) as err:
        forecast_growth({"N": (1, 1), "A": (2, 2)}, MM_PER_PX, age=10, years=1)
    assert err.value.code == "missing_landmarks"
    with pytest.raises(InvalidInput) as err:
        forecast_growth({**to_px(TRACING_MM), "Xx": (1, 1)}, MM_PER_PX, age=10, years=1)
    assert err.value.code == "unknown_landmark"
    with pytest.raises(InvalidInput) as err:
        forecast_growth(to_px(TRACING_MM), 0.0, age=10, years=1)
    assert err.value.code == "invalid_calibration"
    with pytest.raises(InvalidInput) as err:
        forecast_growth({**to_px(TRACING_MM), "A": (math.nan, 1)}, MM_PER_PX, age=10, years=1)
    assert err.value.code == "invalid_coordinates"


def test_compare_measurements_rejects_unknown_keys():
    with pytest.raises(InvalidInput) as err:
        compare_measurements(to_px(TRACING_MM), to_px(TRACING_MM), MM_PER_PX, ["nope"])
    assert err.value.code == "unknown_measurement"
