"""Treatment simulations through the API: recorded as events, labelled as predictions,
computed in the request (growth, VTO) or by the worker (outcome preview, set-up), exported
with access records; bad input refused with stable codes and nothing stored; another
clinic's simulation is 404.

The tracing is laid out in mm with S at the origin and S-N along +x (facing right), passed
in pixels at 0.25 mm/px, so the cranial-base frame is the image frame: anterior = +x px / 4.
"""

from __future__ import annotations

import io
import math
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import trimesh
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from conftest import (
    GRANT,
    blob_subjects,
    graphql,
    jpeg_bytes,
    make_settings,
    register_patient,
    stored_events,
    upload,
    wait_until,
)
from domain.access import AccessRecord
from domain.growth import DEFAULT_GROWTH_TABLES
from domain.simulation import Simulation
from workers.simulations import SimulationWorker

# The jobs these tests need, in an app of their own: the session app runs every job of every
# area, which these tests neither need nor should wait behind.
JOBS = "gallery_v1,search_v1,simulations_v1,simulation_worker_v1"


@pytest.fixture(scope="module")
def client(database_factory, tmp_path_factory):
    settings = make_settings(database_factory(), tmp_path_factory.mktemp("simulations"),
                             in_process_jobs=JOBS)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


MM_PER_PX = 0.25
TRACING_MM = {
    "S": (0, 0), "N": (70, 0), "Po": (-10, 20), "Or": (60, 28),
    "A": (65, 50), "B": (52, 90), "Pog": (57, 100), "Gn": (55, 110), "Me": (45, 117),
    "Go": (-5, 82), "Ar": (-20, 32), "Co": (-8, 27), "ANS": (74, 47), "PNS": (22, 49),
    "U1": (68, 82), "U1_apex": (58, 52), "L1": (60, 79), "L1_apex": (42, 103),
    "Prn": (95, 45), "Sn": (82, 55), "UL": (84, 72), "LL": (80, 88), "Pog_s": (72, 108),
    "N_s": (78, 2),
}  # fmt: skip
LANDMARKS = [{"code": c, "x": x / MM_PER_PX, "y": y / MM_PER_PX}
             for c, (x, y) in TRACING_MM.items()]

SIM_FIELDS = """id patientId kind label status revision isPrediction notice parameters result
  failure { code message } outputs { name mediaType size url }"""
GROWTH = f"""mutation($input: GrowthForecastInput!) {{ runGrowthForecast(input: $input) {{
  {SIM_FIELDS} }} }}"""
VTO = f"mutation($input: VtoInput!) {{ runVto(input: $input) {{ {SIM_FIELDS} }} }}"
REVISE = f"mutation($input: ReviseVtoInput!) {{ reviseVto(input: $input) {{ {SIM_FIELDS} }} }}"
PREVIEW = f"""mutation($input: OutcomePreviewInput!) {{ requestOutcomePreview(input: $input) {{
  {SIM_FIELDS} }} }}"""
GET = f"""query($id: ID!) {{ simulation(id: $id) {{ {SIM_FIELDS}
  revisions {{ revision status result requestedBy }} }} }}"""
DESTROY = """mutation($input: DestroyImageInput!) { destroyImage(input: $input) { id } }"""
LIST = """query($id: ID!) { simulations(patientId: $id) { id kind label status revision
  isPrediction } }"""


def error_of(result):
    assert result.get("data") is None or not any((result.get("data") or {}).values()), result
    return result["errors"][0]["extensions"]


def simulation_count(client):
    return len(stored_events(client, Simulation.Requested))


def shift_px(result, code):
    return next(((s["dx_px"], s["dy_px"]) for s in result["shifts"] if s["code"] == code),
                (0.0, 0.0))


def base_increment(code):
    table = next(t for t in DEFAULT_GROWTH_TABLES if t.key == "mean_increments_6_16")
    inc = table.increment(code)
    return inc.anterior_mm, inc.inferior_mm


# --- growth forecast --------------------------------------------------------------------------


def test_growth_forecast_is_recorded_with_hand_computed_shifts(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    before = simulation_count(client)
    answer = graphql(client, doctor, GROWTH, {"input": {
        "patientId": patient, "landmarks": LANDMARKS, "mmPerPixel": MM_PER_PX, "years": 2,
        "age": 8, "sex": "male", "label": "2-year forecast"}})
    assert "errors" not in answer, answer
    sim = answer["data"]["runGrowthForecast"]
    assert sim["kind"] == "GROWTH_FORECAST" and sim["status"] == "completed"
    assert sim["isPrediction"] is True and "Simulation" in sim["notice"]
    result = sim["result"]
    assert result["disclaimer"].startswith("average-based estimate")
    # Age 8 to 10, male: only the sex-neutral 6-16 table applies; shift = increment x 2 years,
    # in px = mm / 0.25, frame = image axes.
    for code in ("N", "Pog", "Me", "Go"):
        anterior, inferior = base_increment(code)
        assert shift_px(result, code) == pytest.approx(
            (2 * anterior / MM_PER_PX, 2 * inferior / MM_PER_PX), abs=1e-9), code
        x, y = TRACING_MM[code]
        assert result["predicted_px"][code] == pytest.approx(
            [(x + 2 * anterior) / MM_PER_PX, (y + 2 * inferior) / MM_PER_PX], abs=1e-9)
    assert [t["key"] for t in result["tables"]] == ["mean_increments_6_16"]
    assert result["data_version"] == "2025.1"

    # The request and its result are two events of one commit, each with actor, patient, clinic.
    assert simulation_count(client) == before + 1
    sim_id = uuid.UUID(sim["id"])
    completed = [e for e in stored_events(client, Simulation.Completed)
                 if e.originator_id == sim_id]
    assert len(completed) == 1
    assert completed[0].actor.user_id == "user-doctor"
    assert str(completed[0].patient_id) == patient and completed[0].clinic_id
    assert completed[0].result == result  # read back as recorded, not recomputed

    listed = graphql(client, doctor, LIST, {"id": patient})["data"]["simulations"]
    assert [(s["id"], s["status"], s["isPrediction"]) for s in listed] == [
        (sim["id"], "completed", True)]


def test_growth_forecast_defaults_to_the_patients_age_and_sex(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)  # born 2012-04-01, female
    answer = graphql(client, doctor, GROWTH, {"input": {
        "patientId": patient, "landmarks": LANDMARKS, "mmPerPixel": MM_PER_PX, "years": 1}})
    sim = answer["data"]["runGrowthForecast"]
    assert sim["parameters"]["sex"] == "female"
    assert 14 < sim["parameters"]["age"] < 30


CALIBRATE = """mutation($i: CalibrateImageInput!){ calibrateImage(input: $i){ version
  effective { mmPerPixel source } } }"""


def _radiograph(client, doctor, patient, captured_at: str | None = None, seed: int = 11) -> str:
    fields = {"category": "radiograph"}
    if captured_at:
        fields["capturedAt"] = captured_at
    response = upload(client, doctor, patient, jpeg_bytes(400, 500, seed=seed),
                      fields=fields)
    assert response.status_code in (200, 201, 202), response.text
    return response.json()["id"]


def test_growth_forecast_age_is_the_age_on_the_day_of_the_radiograph(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)  # born 2012-04-01
    old_ceph = _radiograph(client, doctor, patient, "2020-06-15T10:00:00+00:00")
    answer = graphql(client, doctor, GROWTH, {"input": {
        "patientId": patient, "landmarks": LANDMARKS, "mmPerPixel": MM_PER_PX, "years": 2,
        "imageId": old_ceph}})
    assert "errors" not in answer, answer
    parameters = answer["data"]["runGrowthForecast"]["parameters"]
    # 2012-04-01 to 2020-06-15 is 2997 days: 8.21 years, not the patient's age today.
    assert parameters["age"] == pytest.approx(round(2997 / 365.2425, 2))
    assert parameters["age_source"] == "radiograph_date"
    assert parameters["acquired_on"] == "2020-06-15"
    # The growth tables are chosen for that age too: the same forecast asked with the age.
    stated = graphql(client, doctor, GROWTH, {"input": {
        "patientId": patient, "landmarks": LANDMARKS, "mmPerPixel": MM_PER_PX, "years": 2,
        "age": parameters["age"]}})["data"]["runGrowthForecast"]
    forecast = answer["data"]["runGrowthForecast"]["result"]
    assert forecast["predicted_px"] == stated["result"]["predicted_px"]
    assert stated["parameters"]["age_source"] == "client"


def test_forecast_and_vto_take_the_images_calibration_over_the_clients(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    calibrated = _radiograph(client, doctor, patient)
    cal = graphql(client, doctor, CALIBRATE, {"i": {"imageId": calibrated, "version": 0,
                                                    "mmPerPixel": 0.1}})
    assert cal["data"]["calibrateImage"]["effective"]["mmPerPixel"] == pytest.approx(0.1)
    uncalibrated = _radiograph(client, doctor, patient, seed=12)

    def forecast(image_id, mm_per_pixel):
        return graphql(client, doctor, GROWTH, {"input": {
            "patientId": patient, "landmarks": LANDMARKS, "years": 2, "age": 9,
            "imageId": image_id, "mmPerPixel": mm_per_pixel}})

    # The client's 0.25 is ignored: the image knows its own scale.
    own = forecast(calibrated, MM_PER_PX)["data"]["runGrowthForecast"]
    assert own["parameters"]["mm_per_pixel"] == pytest.approx(0.1)
    assert own["parameters"]["calibration_source"] == "manual"
    # The same shift in mm is 2.5 times more pixels at 0.1 mm/px than at 0.25.
    client_scaled = forecast(uncalibrated, MM_PER_PX)["data"]["runGrowthForecast"]
    assert client_scaled["parameters"]["calibration_source"] == "client"
    assert shift_px(own["result"], "Pog")[1] == pytest.approx(
        2.5 * shift_px(client_scaled["result"], "Pog")[1])
    # No calibration anywhere: refused, nothing stored.
    before = simulation_count(client)
    ext = error_of(forecast(uncalibrated, None))
    assert (ext["code"], ext["status"]) == ("calibration_required", 422)
    assert simulation_count(client) == before

    vto = graphql(client, doctor, VTO, {"input": {
        "patientId": patient, "landmarks": LANDMARKS, "mmPerPixel": MM_PER_PX,
        "imageId": calibrated, "movements": [{"group": "mandible", "dxMm": 2.0}]}})
    assert "errors" not in vto, vto
    assert vto["data"]["runVto"]["parameters"]["mm_per_pixel"] == pytest.approx(0.1)
    assert vto["data"]["runVto"]["parameters"]["calibration_source"] == "manual"


@pytest.mark.parametrize(("change", "code"), [
    ({"years": 0}, "invalid_forecast_years"),
    ({"years": 25}, "invalid_forecast_years"),
    ({"mmPerPixel": -1}, "invalid_calibration"),
    ({"landmarks": [{"code": "XX", "x": 1, "y": 2}, *LANDMARKS]}, "unknown_landmark"),
    ({"landmarks": [lm for lm in LANDMARKS if lm["code"] != "S"]}, "missing_landmarks"),
    ({"landmarks": [LANDMARKS[0], *LANDMARKS]}, "duplicate_landmark"),
    ({"age": -3}, "invalid_age"),
    ({"imageId": "not-a-uuid"}, "invalid_id"),
    ({"sex": "robot"}, "invalid_sex"),
    ({"mmPerPixel": 1e300}, "invalid_calibration"),
    ({"landmarks": [{"code": "N", "x": 1e300, "y": 0}, *LANDMARKS[2:]]},
     "invalid_coordinates"),
    ({"landmarks": [{"code": "x" * 10_000, "x": 1, "y": 2}, *LANDMARKS]}, "unknown_landmark"),
])
def test_bad_growth_requests_store_nothing(client, auth, change, code):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    before = simulation_count(client)
    answer = graphql(client, doctor, GROWTH, {"input": {
        "patientId": patient, "landmarks": LANDMARKS, "mmPerPixel": MM_PER_PX, "years": 2,
        "age": 9, **change}})
    ext = error_of(answer)
    assert (ext["code"], ext["status"]) == (code, 400)
    assert simulation_count(client) == before
    # The server keeps serving.
    assert graphql(client, doctor, LIST, {"id": patient})["data"]["simulations"] == []


# --- VTO --------------------------------------------------------------------------------------


def run_vto(client, headers, patient, movements, label="plan A"):
    return graphql(client, headers, VTO, {"input": {
        "patientId": patient, "landmarks": LANDMARKS, "mmPerPixel": MM_PER_PX,
        "movements": movements, "label": label}})


def test_vto_plans_are_versioned_alternatives(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    first = run_vto(client, doctor, patient, [{"group": "mandible", "dxMm": 4.0}])
    assert "errors" not in first, first
    plan = first["data"]["runVto"]
    result = plan["result"]
    # Mandibular advancement 4 mm: Pog 4 mm forward, soft pogonion 1:1, lower lip 0.6:1.
    assert shift_px(result, "Pog") == pytest.approx((16.0, 0.0))
    assert shift_px(result, "Pog_s") == pytest.approx((16.0, 0.0))
    assert shift_px(result, "LL") == pytest.approx((0.6 * 16.0, 0.0))
    assert shift_px(result, "UL") == (0.0, 0.0)
    snb = next(m for m in result["measurement_changes"] if m["key"] == "snb")
    assert snb["current"] == pytest.approx(78.6901, abs=1e-4)
    # B moves to (56, 90) mm; N is at (70, 0): SNB = 90 - atan(14 / 90).
    assert snb["predicted"] == pytest.approx(90 - math.degrees(math.atan(14 / 90)), abs=1e-9)
    alternative = run_vto(client, doctor, patient,
                          [{"group": "upper_incisors", "rotationDeg": 10.0}], "plan B")
    assert "errors" not in alternative

    revised = graphql(client, doctor, REVISE, {"input": {
        "simulationId": plan["id"], "expectedRevision": 1, "label": "plan A, 5 mm",
        "movements": [{"group": "mandible", "dxMm": 5.0}]}})
    assert "errors" not in revised, revised
    node = revised["data"]["reviseVto"]
    assert (node["revision"], node["label"], node["status"]) == (2, "plan A, 5 mm", "completed")
    assert shift_px(node["result"], "Pog") == pytest.approx((20.0, 0.0))

    history = graphql(client, doctor, GET, {"id": plan["id"]})["data"]["simulation"]
    runs = history["revisions"]
    assert [r["revision"] for r in runs] == [1, 2]
    assert shift_px(runs[0]["result"], "Pog") == pytest.approx((16.0, 0.0))  # kept
    assert {r["requestedBy"] for r in runs} == {"user-doctor"}

    # Someone revising from a stale copy is told so, and nothing is recorded.
    revised_count = len(stored_events(client, Simulation.Revised))
    stale = graphql(client, doctor, REVISE, {"input": {
        "simulationId": plan["id"], "expectedRevision": 1,
        "movements": [{"group": "mandible", "dxMm": 3.0}]}})
    assert (error_of(stale)["code"], error_of(stale)["status"]) == ("stale_revision", 409)
    assert len(stored_events(client, Simulation.Revised)) == revised_count

    listed = graphql(client, doctor, LIST, {"id": patient})["data"]["simulations"]
    assert sorted(s["label"] for s in listed) == ["plan A, 5 mm", "plan B"]

    # The plan drawn over the tracing, as a presentation image (an access-logged export).
    overlay = client.get(f"/api/v1/simulations/{plan['id']}/overlay.png", headers=doctor)
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(overlay.content)).convert("RGB")).astype(int)
    red = (drawn[..., 0] > 180) & (drawn[..., 1] < 90) & (drawn[..., 2] < 90)
    blue = (drawn[..., 2] > 180) & (drawn[..., 0] < 90)
    assert red.sum() > 50 and blue.sum() > 50  # predicted and current points
    assert "simulation_export:overlay.png:clinical" in [
        e.kind for e in stored_events(client, AccessRecord.Recorded)
        if str(e.image_id) == plan["id"]]


@pytest.mark.parametrize(("movement", "code"), [
    ({"group": "nose"}, "unknown_landmark_group"),
    ({"group": "mandible", "dxMm": 500.0}, "implausible_movement"),
    ({"group": "maxilla", "rotationDeg": 1e6}, "implausible_movement"),
    ({"group": "mandible", "rotationDeg": 5.0, "pivot": "Nowhere"}, "unknown_landmark"),
])
def test_bad_plans_store_nothing(client, auth, movement, code):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    before = simulation_count(client)
    ext = error_of(run_vto(client, doctor, patient, [movement]))
    assert (ext["code"], ext["status"]) == (code, 400)
    duplicate = run_vto(client, doctor, patient, [{"group": "mandible"}, {"group": "mandible"}])
    assert error_of(duplicate)["code"] == "duplicate_landmark_group"
    assert error_of(run_vto(client, doctor, patient, []))["code"] == "empty_plan"
    assert simulation_count(client) == before


def test_permissions_and_other_clinics(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    plan = run_vto(client, doctor, patient, [{"group": "mandible", "dxMm": 2.0}])
    sim_id = plan["data"]["runVto"]["id"]

    # Cephalometric planning is the doctor's; clinical staff may read but not run it.
    staff = auth("clinical_staff")
    ext = error_of(run_vto(client, staff, patient, [{"group": "mandible", "dxMm": 2.0}]))
    assert (ext["code"], ext["status"]) == ("permission_denied", 403)
    assert graphql(client, staff, GET, {"id": sim_id})["data"]["simulation"]["id"] == sim_id
    # Limited view grades see no simulations.
    for role in ("front_desk", "billing"):
        assert error_of(graphql(client, auth(role), GET, {"id": sim_id}))["status"] == 403

    other = auth("doctor", clinic_id=f"other-{uuid.uuid4().hex[:6]}")
    assert error_of(graphql(client, other, GET, {"id": sim_id}))["code"] == "simulation_not_found"
    assert error_of(graphql(client, other, LIST, {"id": patient}))["code"] == "patient_not_found"
    assert error_of(run_vto(client, other, patient, [{"group": "mandible"}]))["status"] == 404
    revise = graphql(client, other, REVISE, {"input": {
        "simulationId": sim_id, "expectedRevision": 1, "movements": [{"group": "mandible"}]}})
    assert error_of(revise)["code"] == "simulation_not_found"
    for path in ("report.csv", "report.pdf", "outputs/preview.jpg"):
        response = client.get(f"/api/v1/simulations/{sim_id}/{path}", headers=other)
        assert response.status_code == 404, path
        assert response.json()["code"] == "simulation_not_found"


def test_two_clinicians_revising_at_once_one_wins(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    plan = run_vto(client, doctor, patient, [{"group": "mandible", "dxMm": 2.0}])
    sim_id = plan["data"]["runVto"]["id"]

    def revise(dx):
        return graphql(client, doctor, REVISE, {"input": {
            "simulationId": sim_id, "expectedRevision": 1,
            "movements": [{"group": "mandible", "dxMm": dx}]}})

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(revise, (3.0, 4.0)))
    won = [a for a in answers if "errors" not in a]
    lost = [error_of(a) for a in answers if "errors" in a]
    assert len(won) == 1 and lost == [{"code": "stale_revision", "status": 409}]
    final = graphql(client, doctor, GET, {"id": sim_id})["data"]["simulation"]
    assert [r["revision"] for r in final["revisions"]] == [1, 2]


# --- outcome preview --------------------------------------------------------------------------

# The photo is the tracing scaled by 0.5 and shifted by (100, 50) px.
PHOTO_SCALE, PHOTO_SHIFT = 0.5, (100.0, 50.0)


def to_photo(x, y):
    return {"x": x * PHOTO_SCALE + PHOTO_SHIFT[0], "y": y * PHOTO_SCALE + PHOTO_SHIFT[1]}


def clicks(codes):
    tracing = [{"x": TRACING_MM[c][0] / MM_PER_PX, "y": TRACING_MM[c][1] / MM_PER_PX}
               for c in codes]
    return tracing, [to_photo(p["x"], p["y"]) for p in tracing]


def test_outcome_preview_warps_the_photo_in_the_worker(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    original = jpeg_bytes(640, 480, seed=3)
    photo = upload(client, doctor, patient, original,
                   fields={"view": "EV01", "category": "extraoral"})
    assert photo.status_code == 201, photo.text
    plan = run_vto(client, doctor, patient, [{"group": "mandible", "dxMm": 4.0}])
    tracing, on_photo = clicks(["S", "N", "Me", "Prn"])
    answer = graphql(client, doctor, PREVIEW, {"input": {
        "patientId": patient, "photoImageId": photo.json()["id"],
        "sourceSimulationId": plan["data"]["runVto"]["id"], "photoPoints": on_photo,
        "tracingPoints": tracing, "label": "advancement preview"}})
    assert "errors" not in answer, answer
    sim = answer["data"]["requestOutcomePreview"]
    assert sim["parameters"]["registration"]["scale"] == pytest.approx(PHOTO_SCALE)

    done = wait_until(lambda: (lambda s: s if s["status"] != "pending" else None)(
        graphql(client, doctor, GET, {"id": sim["id"]})["data"]["simulation"]))
    assert done["status"] == "completed", done["failure"]
    points = {p["code"]: p for p in done["result"]["control_points"]}
    # Soft pogonion moves 4 mm = 16 ceph px = 8 photo px forward; the upper lip stays.
    assert points["Pog_s"]["shift_px"] == pytest.approx(8.0, abs=1e-6)
    assert points["Pog_s"]["from"] == pytest.approx(
        [to_photo(72 / MM_PER_PX, 108 / MM_PER_PX)["x"], to_photo(72 / MM_PER_PX,
                                                               108 / MM_PER_PX)["y"]])
    assert points["UL"]["shift_px"] == pytest.approx(0.0, abs=1e-9)
    assert {o["name"] for o in done["outputs"]} == {"preview.jpg", "comparison.jpg"}

    served = client.get(f"/api/v1/simulations/{sim['id']}/outputs/preview.jpg", headers=doctor)
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-simulation"] == "true"
    preview = np.asarray(Image.open(io.BytesIO(served.content)).convert("L"), dtype=float)
    assert preview.shape == (480, 640)
    before = np.asarray(Image.open(io.BytesIO(original)).convert("L"), dtype=float)
    # The SIMULATION band across the bottom: darkened to about 35 %, with white strokes; the
    # top of the photo (far from any moved point) is unchanged.
    band, unmarked = preview[-40:], before[-40:]
    assert band.mean() < 0.6 * unmarked.mean() and band.max() > 240
    assert np.abs(preview[:40] - before[:40]).mean() < 3.0
    side = client.get(f"/api/v1/simulations/{sim['id']}/outputs/comparison.jpg", headers=doctor)
    assert Image.open(io.BytesIO(side.content)).width == 1280
    # Each fetch is an access record on the simulation.
    kinds = [e.kind for e in stored_events(client, AccessRecord.Recorded)
             if str(e.image_id) == sim["id"]]
    assert kinds.count("simulation_output:preview.jpg") == 1

    # The warped photo as a presentation file: educational use needs the patient's consent.
    url = f"/api/v1/simulations/{sim['id']}/export/preview.jpg"
    refused = client.get(url + "?purpose=educational", headers=doctor)
    assert refused.status_code == 409 and refused.json()["code"] == "consent_required"
    granted = graphql(client, doctor, GRANT, {"input": {"patientId": patient,
                                                        "scope": "EDUCATIONAL"}})
    assert "errors" not in granted, granted
    exported = client.get(url + "?purpose=educational", headers=doctor)
    assert exported.status_code == 200 and exported.content == served.content
    assert "attachment" in exported.headers["content-disposition"]
    kinds = [e.kind for e in stored_events(client, AccessRecord.Recorded)
             if str(e.image_id) == sim["id"]]
    assert kinds.count("simulation_export:preview.jpg:educational") == 1
    # Reading staff without the export permission may view but not export.
    assert client.get(url, headers=auth("read_only")).status_code == 403

    # Replaying the request event (a worker restarted mid-way) records nothing twice.
    services = client.app.state.services
    completed = len(stored_events(client, Simulation.Completed))
    SimulationWorker(services.app, services.blobs, tracking=None)._process(uuid.UUID(sim["id"]))
    assert len(stored_events(client, Simulation.Completed)) == completed

    # Destroying the photo takes the pictures made from it along; the numbers stay.
    assert sim["id"] in blob_subjects(client)
    destroyed = graphql(client, auth("clinic_admin"), DESTROY, {"input": {
        "imageId": photo.json()["id"], "reason": "erasure request"}})
    assert "errors" not in destroyed, destroyed
    gone = wait_until(lambda: (lambda r: r if r.status_code == 410 else None)(
        client.get(f"/api/v1/simulations/{sim['id']}/outputs/preview.jpg", headers=doctor)))
    assert gone.json()["code"] == "output_withdrawn"
    after = graphql(client, doctor, GET, {"id": sim["id"]})["data"]["simulation"]
    assert after["outputs"] == [] and after["result"]["control_points"]
    assert sim["id"] not in blob_subjects(client)


def test_bad_outcome_previews_store_nothing(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    photo = upload(client, doctor, patient, jpeg_bytes(320, 240, seed=4),
                   fields={"view": "EV01", "category": "extraoral"}).json()["id"]
    source = run_vto(client, doctor, patient, [{"group": "mandible", "dxMm": 2.0}])
    source_id = source["data"]["runVto"]["id"]
    before = simulation_count(client)

    def request(tracing, on_photo, **overrides):
        return graphql(client, doctor, PREVIEW, {"input": {
            "patientId": patient, "photoImageId": photo, "sourceSimulationId": source_id,
            "photoPoints": on_photo, "tracingPoints": tracing, **overrides}})

    collinear = [{"x": 0, "y": 0}, {"x": 10, "y": 10}, {"x": 20, "y": 20}]
    assert error_of(request(collinear, [to_photo(p["x"], p["y"]) for p in collinear])) == {
        "code": "degenerate_registration", "status": 400}
    tracing, on_photo = clicks(["S", "N", "Me"])
    tiny = [{"x": p["x"] * 1e-4, "y": p["y"] * 1e-4} for p in on_photo]
    assert error_of(request(tracing, tiny))["code"] == "degenerate_registration"
    far = [{"x": 1e300, "y": 0}, *on_photo[1:]]
    assert error_of(request(tracing, far))["code"] == "invalid_coordinates"
    assert error_of(request(tracing[:2], on_photo[:2]))["code"] == "degenerate_registration"
    assert error_of(request(tracing, on_photo[:2]))["code"] == "degenerate_registration"
    other_patient = register_patient(client, doctor)
    other_photo = upload(client, doctor, other_patient, jpeg_bytes(320, 240, seed=5),
                         fields={"view": "EV01", "category": "extraoral"}).json()["id"]
    assert error_of(request(tracing, on_photo, photoImageId=other_photo)) == {
        "code": "image_patient_mismatch", "status": 409}
    assert error_of(request(tracing, on_photo, sourceSimulationId=str(uuid.uuid4())))[
        "code"] == "simulation_not_found"
    # Another clinic's photo is not found, never forbidden.
    elsewhere = auth("doctor", clinic_id=f"other-{uuid.uuid4().hex[:6]}")
    foreign_patient = register_patient(client, elsewhere)
    foreign_photo = upload(client, elsewhere, foreign_patient, jpeg_bytes(320, 240, seed=6),
                           fields={"view": "EV01", "category": "extraoral"}).json()["id"]
    assert error_of(request(tracing, on_photo, photoImageId=foreign_photo)) == {
        "code": "image_not_found", "status": 404}
    assert simulation_count(client) == before


# --- aligner set-ups --------------------------------------------------------------------------

# Cumulative translations per stage (mm), known exactly.
UPPER_STEPS = [(0, 0, 0), (0.2, 0, 0), (0.2, 0.15, 0), (0.25, 0.1, -0.3)]
LOWER_STEPS = [(0, 0, 0), (0, 0, 0), (-0.1, 0, 0), (-0.1, 0.05, 0.1)]


@pytest.fixture(scope="module")
def arch_meshes():
    upper = trimesh.load("/work/shared/testdata/meshes/trimesh/bunny.ply")
    upper.vertices = (upper.vertices - upper.vertices.mean(axis=0)) * 400.0  # ~60 mm across
    lower = trimesh.creation.icosphere(subdivisions=3)
    lower.vertices *= 12.0
    return upper, lower


def stl(mesh, offset=(0, 0, 0)):
    return trimesh.Trimesh(mesh.vertices + np.asarray(offset), mesh.faces,
                           process=False).export(file_type="stl")


def setup_files(arch_meshes):
    upper, lower = arch_meshes
    files = []
    for k in range(len(UPPER_STEPS)):
        files.append((f"stage_{k + 1}_upper", (f"Subsetup{k + 1}_Maxillary.stl",
                                               stl(upper, UPPER_STEPS[k]), "model/stl")))
        files.append((f"stage_{k + 1}_lower", (f"Subsetup{k + 1}_Mandibular.stl",
                                               stl(lower, LOWER_STEPS[k]), "model/stl")))
    return files


def wait_settled(client, headers, sim_id):
    return wait_until(lambda: (lambda s: s if s["status"] != "pending" else None)(
        graphql(client, headers, GET, {"id": sim_id})["data"]["simulation"]), timeout=120)


def test_setup_import_recovers_stage_movements_and_tracks_a_real_scan(client, auth,
                                                                       arch_meshes):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    upper, _lower = arch_meshes
    # The "real scan": the final planned stage moved by a known rigid transform.
    motion = trimesh.transformations.rotation_matrix(math.radians(3.0), (0.3, 0.8, 0.5))
    motion[:3, 3] = (2.0, -1.5, 3.0)
    final = upper.vertices + np.asarray(UPPER_STEPS[-1])
    scan = trimesh.Trimesh(final @ motion[:3, :3].T + motion[:3, 3], upper.faces, process=False)
    files = [*setup_files(arch_meshes),
             ("scan_upper", ("progress_scan.stl", scan.export(file_type="stl"), "model/stl"))]
    response = client.post(f"/api/v1/patients/{patient}/setups", files=files,
                           data={"label": "ClinCheck 1", "stepLimitMm": "0.25"}, headers=doctor)
    assert response.status_code == 202, response.text
    sim_id = response.json()["id"]
    done = wait_settled(client, doctor, sim_id)
    assert done["status"] == "completed", done["failure"]
    result = done["result"]
    assert result["stage_numbers"] == [1, 2, 3, 4]
    for arch, steps in (("upper", UPPER_STEPS), ("lower", LOWER_STEPS)):
        for k in range(len(steps) - 1):
            step = next(s for s in result["steps"]
                        if s["arch"] == arch and s["from_stage"] == k + 1)
            expected = np.subtract(steps[k + 1], steps[k])
            assert step["method"] == "vertex_correspondence"
            assert step["mean_vector_mm"] == pytest.approx(list(expected), abs=0.05)
            assert step["max_mm"] == pytest.approx(float(np.linalg.norm(expected)), abs=0.05)
    flagged = {(f["arch"], f["from_stage"]) for f in result["flagged_steps"]}
    assert flagged == {("upper", 3)}  # 0.32 mm, over the 0.25 mm guide
    (comparison,) = result["comparisons"]
    registration = comparison["registration"]
    assert registration["rotation_deg"] == pytest.approx(3.0, abs=0.1)
    inverse = np.linalg.inv(motion)
    assert np.linalg.norm(np.array(registration["translation_mm"]) - inverse[:3, 3]) < 0.01
    assert comparison["distance"]["max_mm"] < 0.01
    names = {o["name"] for o in done["outputs"]}
    assert {"strip.png", "movement_upper.png", "movement_lower.png", "comparison_upper.png",
            "stage_1_upper.png", "stage_4_lower.glb"} <= names
    strip = client.get(f"/api/v1/simulations/{sim_id}/outputs/strip.png", headers=doctor)
    assert Image.open(io.BytesIO(strip.content)).size == (4 * 256, 2 * 256 + 20)

    report = client.get(f"/api/v1/simulations/{sim_id}/report.csv", headers=doctor)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    lines = report.text.strip().splitlines()
    assert lines[0].startswith("arch,from,to,method") and len(lines) == 1 + 6 + 2
    pdf = client.get(f"/api/v1/simulations/{sim_id}/report.pdf", headers=doctor)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    exports = [e.kind for e in stored_events(client, AccessRecord.Recorded)
               if str(e.image_id) == sim_id]
    assert "simulation_export:report.csv:clinical" in exports
    assert "simulation_export:report.pdf:clinical" in exports

    # Marketing use needs the patient's consent: refused, and nothing exported.
    refused = client.get(f"/api/v1/simulations/{sim_id}/report.pdf?purpose=marketing",
                         headers=doctor)
    assert refused.status_code == 409 and refused.json()["code"] == "consent_required"
    bad = client.get(f"/api/v1/simulations/{sim_id}/report.pdf?purpose=fun", headers=doctor)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_purpose"
    # Staff without 3D viewing (front desk) cannot read a set-up at all.
    assert client.get(f"/api/v1/simulations/{sim_id}/outputs/strip.png",
                      headers=auth("front_desk")).status_code == 403


@pytest.mark.parametrize(("drop", "extra", "code", "status"), [
    ({"stage_3_lower"}, [], "setup_stages_mismatch", 400),
    ({"stage_2_upper", "stage_2_lower"}, [], "setup_stages_mismatch", 400),
    ({"stage_2_upper", "stage_3_upper", "stage_4_upper", "stage_2_lower", "stage_3_lower",
      "stage_4_lower"}, [], "setup_stages_mismatch", 400),
    (set(), [("upper_final", ("x.stl", b"solid x\nendsolid x\n", "model/stl"))],
     "invalid_setup_file", 400),
    (set(), [("stage_5_upper", ("empty.stl", b"", "model/stl")),
             ("stage_5_lower", ("empty.stl", b"", "model/stl"))], "mesh_empty", 422),
])
def test_bad_setups_store_nothing(client, auth, arch_meshes, drop, extra, code, status):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    before = simulation_count(client)
    blobs_before = {p.name for p in client.app.state.services.settings.blob_dir.glob("*/*")}
    files = [f for f in setup_files(arch_meshes) if f[0] not in drop] + extra
    response = client.post(f"/api/v1/patients/{patient}/setups", files=files, headers=doctor)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert simulation_count(client) == before
    assert {p.name for p in client.app.state.services.settings.blob_dir.glob("*/*")} \
        == blobs_before


def test_unreadable_mesh_is_a_recorded_failure_and_setup_permissions(client, auth, arch_meshes):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    files = [f for f in setup_files(arch_meshes) if not f[0].endswith("lower")]
    files[1] = ("stage_2_upper", ("broken.stl", b"solid broken\nfacet normal 0 0\n", "model/stl"))
    response = client.post(f"/api/v1/patients/{patient}/setups", files=files, headers=doctor)
    assert response.status_code == 202
    done = wait_settled(client, doctor, response.json()["id"])
    assert done["status"] == "failed" and done["failure"]["code"].startswith("mesh_")
    assert done["result"] is None
    # Billing may not import; another clinic's patient is 404 before the body is read.
    denied = client.post(f"/api/v1/patients/{patient}/setups", files=files,
                         headers=auth("billing"))
    assert denied.status_code == 403
    other = auth("doctor", clinic_id=f"other-{uuid.uuid4().hex[:6]}")
    missing = client.post(f"/api/v1/patients/{patient}/setups", files=files, headers=other)
    assert missing.status_code == 404 and missing.json()["code"] == "patient_not_found"


# --- smile design -------------------------------------------------------------------------------

SMILE = f"""mutation($input: SmileDesignInput!) {{ runSmileDesign(input: $input) {{
  {SIM_FIELDS} }} }}"""


def pt(x, y):
    return {"x": x, "y": y}


SMILE_CLICKS = {
    "glabella": pt(320, 50), "subnasale": pt(320, 200), "chin": pt(320, 420),
    "dentalMidline": pt(322, 300),
    "incisalEdges": [pt(290, 300), pt(305, 305), pt(322, 308), pt(339, 305), pt(354, 300)],
    "lowerLip": [pt(285, 320), pt(322, 335), pt(359, 320)],
    # Widths from the dental midline (x = 322): central 16, lateral 10, canine 6 px per side.
    "rightContacts": [pt(306, 300), pt(296, 300), pt(290, 300)],
    "leftContacts": [pt(338, 300), pt(348, 300), pt(354, 300)],
}


def test_smile_design_is_recorded_as_an_annotation_layer(client, auth):
    staff = auth("clinical_staff")  # annotating is theirs too
    patient = register_patient(client, staff)
    photo = upload(client, staff, patient, jpeg_bytes(640, 480, seed=7),
                   fields={"view": "EV19", "category": "extraoral"}).json()["id"]
    answer = graphql(client, staff, SMILE, {"input": {
        "patientId": patient, "photoImageId": photo, **SMILE_CLICKS}})
    assert "errors" not in answer, answer
    sim = answer["data"]["runSmileDesign"]
    assert sim["kind"] == "SMILE_DESIGN" and sim["isPrediction"] is False
    result = sim["result"]
    assert result["midline"]["tilt_deg"] == pytest.approx(0.0)
    assert result["midline"]["dental_midline_offset"] == pytest.approx(2.0)  # patient's left
    right = next(p for p in result["proportions"] if p["side"] == "right")
    assert (right["central_width"], right["lateral_width"], right["canine_width"]) == \
        pytest.approx((16.0, 10.0, 6.0))
    assert right["central_to_lateral"] == pytest.approx(1.6)
    assert right["red_lateral_pct"] == pytest.approx(62.5)
    assert result["smile_arc"]["classification"] == "consonant"
    assert {line["kind"] for line in result["annotations"]["lines"]} >= {"facial_midline"}
    pdf = client.get(f"/api/v1/simulations/{sim['id']}/report.pdf", headers=staff)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    before = simulation_count(client)
    two = graphql(client, staff, SMILE, {"input": {
        "patientId": patient, "photoImageId": photo, **SMILE_CLICKS,
        "rightContacts": SMILE_CLICKS["rightContacts"][:2]}})
    assert error_of(two) == {"code": "invalid_smile_points", "status": 400}
    red = graphql(client, staff, SMILE, {"input": {
        "patientId": patient, "photoImageId": photo, **SMILE_CLICKS, "redTargetPct": 20}})
    assert error_of(red)["code"] == "invalid_proportion"
    denied = graphql(client, auth("front_desk"), SMILE, {"input": {
        "patientId": patient, "photoImageId": photo, **SMILE_CLICKS}})
    assert error_of(denied)["status"] == 403
    assert simulation_count(client) == before


# --- set-ups from scans already in the gallery --------------------------------------------------

ANALYSE = f"""mutation($input: SetupFromScansInput!) {{ analyseSetup(input: $input) {{
  {SIM_FIELDS} }} }}"""


def upload_scan(client, headers, patient, data, arch, name="scan.stl"):
    response = client.post(f"/api/v1/patients/{patient}/scans",
                           files={"file": (name, data, "model/stl")}, data={"arch": arch},
                           headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_setup_from_uploaded_scans(client, auth, arch_meshes):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    upper, _lower = arch_meshes
    ids = [upload_scan(client, doctor, patient, stl(upper, UPPER_STEPS[k]), "upper",
                       f"stage{k + 1}.stl") for k in range(3)]
    answer = graphql(client, doctor, ANALYSE, {"input": {
        "patientId": patient, "label": "from scans",
        "stages": [{"number": k + 1, "upperImageId": i} for k, i in enumerate(ids)]}})
    assert "errors" not in answer, answer
    done = wait_settled(client, doctor, answer["data"]["analyseSetup"]["id"])
    assert done["status"] == "completed", done["failure"]
    steps = done["result"]["steps"]
    for k in range(2):
        expected = np.subtract(UPPER_STEPS[k + 1], UPPER_STEPS[k])
        assert steps[k]["mean_vector_mm"] == pytest.approx(list(expected), abs=0.05)

    before = simulation_count(client)

    def analyse(stages, **extra):
        return graphql(client, doctor, ANALYSE, {"input": {
            "patientId": patient, "stages": stages, **extra}})

    gap = analyse([{"number": 1, "upperImageId": ids[0]}, {"number": 3, "upperImageId": ids[1]}])
    assert error_of(gap) == {"code": "setup_stages_mismatch", "status": 400}
    photo = upload(client, doctor, patient, jpeg_bytes(64, 48, seed=9)).json()["id"]
    not_mesh = analyse([{"number": 1, "upperImageId": ids[0]}, {"number": 2,
                                                                "upperImageId": photo}])
    assert error_of(not_mesh) == {"code": "not_a_mesh", "status": 400}
    other = register_patient(client, doctor)
    theirs = upload_scan(client, doctor, other, stl(upper, (1, 0, 0)), "upper")
    mixed = analyse([{"number": 1, "upperImageId": ids[0]}, {"number": 2,
                                                             "upperImageId": theirs}])
    assert error_of(mixed) == {"code": "image_patient_mismatch", "status": 409}
    elsewhere = auth("doctor", clinic_id=f"other-{uuid.uuid4().hex[:6]}")
    foreign = graphql(client, elsewhere, ANALYSE, {"input": {
        "patientId": patient, "stages": [{"number": 1, "upperImageId": ids[0]},
                                         {"number": 2, "upperImageId": ids[1]}]}})
    assert error_of(foreign) == {"code": "patient_not_found", "status": 404}
    assert simulation_count(client) == before
