"""The Simulation aggregate's rules, set-up file layouts, and the outcome-preview geometry."""

import math
import uuid

import numpy as np
import pytest

from adapters.simulation_render import coarse_warp_field, soft_tissue_control_points
from domain.errors import Conflict, InvalidInput
from domain.photo_warp import Similarity, warp_field
from domain.simulation import (
    Simulation,
    SimulationStatus,
    plain,
    setup_layout,
    step_limit,
    tracing_from,
)
from domain.values import Actor

ACTOR = Actor(user_id="u", role="doctor", clinic_id="c")


def simulation():
    return Simulation(simulation_id=uuid.uuid4(), clinic_id="c", patient_id=uuid.uuid4(),
                      kind="vto", label="", parameters={}, inputs={}, actor=ACTOR)


def test_results_belong_to_their_revision():
    sim = simulation()
    sim.record_result(1, {"a": 1}, {}, ACTOR)
    assert sim.status == SimulationStatus.COMPLETED and sim.result == {"a": 1}
    with pytest.raises(Conflict) as err:  # settled: never overwritten
        sim.record_result(1, {"a": 2}, {}, ACTOR)
    assert err.value.code == "simulation_superseded"
    sim.revise(clinic_id="c", patient_id=sim.patient_id, revision=2, label="b", parameters={},
               actor=ACTOR)
    assert sim.result is None and sim.status == SimulationStatus.PENDING
    with pytest.raises(Conflict):  # a worker finishing the old revision late
        sim.record_failure(1, "x", "late", ACTOR)
    sim.record_failure(2, "mesh_invalid", "bad", ACTOR)
    assert sim.failure == {"code": "mesh_invalid", "message": "bad"}


def test_every_event_carries_actor_patient_and_clinic():
    sim = simulation()
    sim.record_result(1, {}, {}, ACTOR)
    for ev in sim.collect_events():
        assert ev.actor == ACTOR
        assert ev.patient_id == sim.patient_id and ev.clinic_id == "c"


def test_tracing_input_checks():
    assert tracing_from([("S", 1, 2), ("N", 3, 4)]) == {"S": (1.0, 2.0), "N": (3.0, 4.0)}
    for bad, code in (([], "missing_landmarks"), ([("S", 1, 2), ("S", 1, 2)],
                                                  "duplicate_landmark"),
                      ([("S", math.nan, 2)], "invalid_coordinates")):
        with pytest.raises(InvalidInput) as err:
            tracing_from(bad)
        assert err.value.code == code


def test_plain_results_are_json_ready():
    assert plain({"a": (1.0, math.inf), "b": [math.nan]}) == {"a": [1.0, None], "b": [None]}


def names(stages, arches=("upper", "lower")):
    return [f"stage_{n}_{a}" for n in stages for a in arches]


def layout_error(field_names):
    with pytest.raises(InvalidInput) as err:
        setup_layout(field_names)
    return err.value.code


def test_setup_layout():
    entries = setup_layout([*names([3, 4, 5]), "scan_upper"])
    assert [(e["stage"], e["arch"]) for e in entries][-2:] == [(5, "lower"), (None, "upper")]
    assert setup_layout(names([0, 1], ("lower",)))[0] == {
        "field": "stage_0_lower", "stage": 0, "arch": "lower"}
    assert layout_error(names([1])) == "setup_stages_mismatch"
    assert layout_error(names([1, 3])) == "setup_stages_mismatch"
    assert layout_error([*names([1, 2]), "stage_3_upper"]) == "setup_stages_mismatch"
    assert layout_error([*names([1, 2], ("lower",)), "scan_upper"]) == "setup_stages_mismatch"
    assert layout_error([*names([1, 2]), "notes"]) == "invalid_setup_file"
    assert layout_error([*names([1, 2]), "stage_1_upper"]) == "duplicate_setup_file"


def test_step_limit():
    assert step_limit(None) == 0.25 and step_limit("0.3") == 0.3
    for bad in ("x", "0", "-1", "nan", "9"):
        with pytest.raises(InvalidInput):
            step_limit(bad)


def test_coarse_field_matches_the_exact_spline():
    rng = np.random.default_rng(2)
    src = rng.uniform(20, 300, size=(12, 2))
    dst = src + rng.normal(scale=6.0, size=src.shape)
    exact = warp_field((240, 320), src, dst)
    coarse = coarse_warp_field((240, 320), src, dst)
    # Worst next to a control point, where the spline bends most; typically far less.
    assert np.abs(coarse - exact).max() < 0.25
    assert np.percentile(np.abs(coarse - exact), 99) < 0.05


def test_control_points_follow_the_registration():
    registration = Similarity(scale=0.5, rotation_deg=0.0, translation=(100.0, 50.0),
                              rms_residual=0.0)
    landmarks = {"S": (0, 0), "UL": (336, 288), "Pog_s": (288, 432)}
    points = soft_tissue_control_points(
        landmarks, [{"code": "Pog_s", "dx_px": 16.0, "dy_px": 0.0}], registration)
    assert points.codes == ("UL", "Pog_s")  # profile points only, forehead to chin
    np.testing.assert_allclose(points.current, [[268, 194], [244, 266]])
    np.testing.assert_allclose(points.predicted - points.current, [[0, 0], [8, 0]])


# --- the radiograph's own date and scale (issue 19) -----------------------------------------


def test_acquisition_date_prefers_the_dicom_study_date():
    from datetime import UTC, date, datetime
    from types import SimpleNamespace

    from domain.simulation_commands import acquisition_date

    uploaded_late = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    dicom = SimpleNamespace(metadata={"dicom": {"study_date": "2019-11-20"}},
                            captured_at=uploaded_late)
    assert acquisition_date(dicom) == date(2019, 11, 20)  # type: ignore[arg-type]
    scanned_film = SimpleNamespace(metadata={}, captured_at=datetime(2018, 5, 2, tzinfo=UTC))
    assert acquisition_date(scanned_film) == date(2018, 5, 2)  # type: ignore[arg-type]
    unreadable = SimpleNamespace(metadata={"dicom": {"study_date": "2019-13-45"}},
                                 captured_at=uploaded_late)
    assert acquisition_date(unreadable) == date(2026, 3, 1)  # type: ignore[arg-type]


def test_tracing_scale_takes_the_image_calibration_over_the_client():
    from domain.errors import Unprocessable
    from domain.measurement import Calibration, CalibrationSource
    from domain.simulation_commands import tracing_scale

    ruler = Calibration(0.1, CalibrationSource.RULER)
    assert tracing_scale(0.25, ruler).mm_per_pixel == 0.1
    assert tracing_scale(0.25, ruler).source == "ruler"
    assert tracing_scale(None, ruler).mm_per_pixel == 0.1
    assert (tracing_scale(0.25, None).mm_per_pixel, tracing_scale(0.25, None).source) == (
        0.25, "client")
    with pytest.raises(Unprocessable) as none:
        tracing_scale(None, None)
    assert none.value.code == "calibration_required"
    non_square = Calibration(0.1, CalibrationSource.DICOM_PIXEL_SPACING, mm_per_pixel_y=0.11)
    with pytest.raises(Conflict) as refused:
        tracing_scale(0.25, non_square)
    assert refused.value.code == "anisotropic_pixels"
