"""A clinic's ONNX landmark model end to end: register, suggest, confirm, analyse.

The model is built by the test (tests/onnx_models.py): it finds the brightness centroid of
its input and answers each landmark at a fixed offset from it. The radiograph is black with
one white 40 px square centred at (220, 320), calibrated at 0.2 mm/px; the model expects
0.4 mm/px, so the film is halved (200 x 250 px) and laid top-left into its 256 x 256 input,
where the square's centre is (110, 160). Landmark i therefore comes back at
((110, 160) + offset_i) * 2 in image pixels: the offsets are chosen so that this is a
designed tracing, and the analysis of the confirmed points is compared with the angles
computed here from that tracing. Garbage models (not ONNX, wrong shape, NaN, off the film)
are refused with their codes, nothing is recorded, and the template fit still works.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from onnx_models import centroid_model, constant_model
from PIL import Image

from conftest import graphql, register_patient, stored_events, upload
from domain.landmark_model import LandmarkModel
from domain.tracing import Tracing

WIDTH, HEIGHT = 400, 500
MM_PER_PX = 0.2
MODEL_SPACING = 0.4
INPUT = 256
CENTRE_IN_INPUT = (110.0, 160.0)

# The tracing the model should find (image pixels, patient facing +x).
DESIGNED = {
    "S": (60.0, 120.0), "N": (300.0, 100.0), "A": (290.0, 260.0), "B": (262.0, 380.0),
    "U1": (296.0, 330.0), "U1_apex": (270.0, 250.0), "L1": (290.0, 322.0),
    "L1_apex": (240.0, 400.0), "Go": (70.0, 360.0), "Gn": (270.0, 450.0),
    "Me": (240.0, 470.0),
}  # fmt: skip
CODES = list(DESIGNED)
OFFSETS = [(x / 2 - CENTRE_IN_INPUT[0], y / 2 - CENTRE_IN_INPUT[1])
           for x, y in DESIGNED.values()]

START = """mutation($img: ID!, $lm: [CephLandmarkInput!]){ startTracing(imageId: $img,
    landmarks: $lm){ id version } }"""
SUGGEST = """mutation($id: ID!, $v: Int!, $m: ID){ suggestLandmarks(tracingId: $id, version: $v,
    modelId: $m){ id version suggestions { code x y }
    suggestedBy { source modelId modelName modelVersion } } }"""
CONFIRM = """mutation($id: ID!, $v: Int!){ confirmLandmarks(tracingId: $id, version: $v){
    version landmarks { code x y } suggestions { code } suggestedBy { source } } }"""
ANALYSIS = """query($id: ID!){ cephAnalysis(tracingId: $id, analyses: ["steiner"]){
    analyses { measurements { key value computable } } } }"""
MODEL = """query($id: ID!){ landmarkModel(id: $id){ id name version inputWidth inputHeight
    landmarks pixelSpacingMm sha256 size } }"""
CALIBRATE = """mutation($i: CalibrateImageInput!){ calibrateImage(input: $i){ version } }"""


def _film(marker: int = 0) -> bytes:
    """The black film with its white square; ``marker`` makes another file of it."""
    pixels = np.zeros((HEIGHT, WIDTH), np.uint8)
    pixels[300:340, 200:240] = 255
    pixels[0, 0] = marker
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def register(client, headers, model: bytes, *, name="centroid", version="1.0.0",
             codes=CODES, spacing=MODEL_SPACING, size=INPUT):
    return client.post("/api/v1/landmark-models", headers=headers,
                       files={"file": ("model.onnx", model, "application/octet-stream")},
                       data={"name": name, "version": version, "inputWidth": str(size),
                             "inputHeight": str(size), "landmarks": ",".join(codes),
                             "pixelSpacingMm": str(spacing)})


@pytest.fixture
def ceph(client, auth):
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    response = upload(client, doctor, patient, _film(), filename="ceph.png",
                      content_type="image/png", fields={"category": "radiograph"})
    assert response.status_code == 201, response.text
    image = response.json()["id"]
    calibrated = graphql(client, doctor, CALIBRATE, {"i": {"imageId": image, "version": 0,
                                                           "mmPerPixel": MM_PER_PX}})
    assert "errors" not in calibrated, calibrated
    return doctor, patient, image


def _start(client, doctor, image, landmarks=None):
    lm = [{"code": c, "x": x, "y": y} for c, (x, y) in (landmarks or {}).items()]
    started = graphql(client, doctor, START, {"img": image, "lm": lm})
    assert "errors" not in started, started
    return started["data"]["startTracing"]


def _angle(p, v, q) -> float:
    a = math.atan2(p[1] - v[1], p[0] - v[0]) - math.atan2(q[1] - v[1], q[0] - v[0])
    a = abs(math.degrees(a)) % 360
    return min(a, 360 - a)


def _error(answer) -> dict:
    assert answer.get("errors"), answer
    return answer["errors"][0]["extensions"]


def test_register_suggest_confirm_analyse(client, auth, ceph):
    doctor, _patient, image = ceph
    model_bytes = centroid_model(INPUT, INPUT, OFFSETS)
    registered = register(client, doctor, model_bytes)
    assert registered.status_code == 201, registered.text
    model = registered.json()
    assert model["landmarks"] == CODES and model["pixelSpacingMm"] == MODEL_SPACING
    shown = graphql(client, doctor, MODEL, {"id": model["id"]})["data"]["landmarkModel"]
    assert shown["name"] == "centroid" and shown["version"] == "1.0.0"
    assert shown["size"] == len(model_bytes)
    # Recorded as an event like every other change; the file in the encrypted blob store.
    events = [e for e in stored_events(client, LandmarkModel.Registered)
              if str(e.originator_id) == model["id"]]
    assert len(events) == 1 and events[0].name == "centroid"
    stored = client.app.state.services.blobs.read(events[0].originator_id, events[0].file)
    assert stored == model_bytes

    tracing = _start(client, doctor, image)
    answer = graphql(client, doctor, SUGGEST, {"id": tracing["id"], "v": tracing["version"],
                                               "m": model["id"]})
    assert "errors" not in answer, answer
    suggested = answer["data"]["suggestLandmarks"]
    assert suggested["suggestedBy"] == {"source": "onnx_model", "modelId": model["id"],
                                        "modelName": "centroid", "modelVersion": "1.0.0"}
    got = {s["code"]: (s["x"], s["y"]) for s in suggested["suggestions"]}
    assert set(got) == set(DESIGNED)
    for code, (x, y) in DESIGNED.items():
        assert got[code] == (pytest.approx(x, abs=0.01), pytest.approx(y, abs=0.01)), code
    recorded = [e for e in stored_events(client, Tracing.LandmarksSuggested)
                if str(e.originator_id) == tracing["id"]]
    assert recorded[-1].source == "onnx_model"
    assert recorded[-1].model == {"id": model["id"], "name": "centroid", "version": "1.0.0"}

    confirmed = graphql(client, doctor, CONFIRM, {"id": tracing["id"],
                                                  "v": suggested["version"]})
    assert "errors" not in confirmed, confirmed
    assert confirmed["data"]["confirmLandmarks"]["suggestions"] == []
    analysis = graphql(client, doctor, ANALYSIS, {"id": tracing["id"]})
    values = {m["key"]: m["value"] for a in analysis["data"]["cephAnalysis"]["analyses"]
              for m in a["measurements"]}
    d = DESIGNED
    assert values["sna"] == pytest.approx(_angle(d["S"], d["N"], d["A"]), abs=0.01)
    assert values["snb"] == pytest.approx(_angle(d["S"], d["N"], d["B"]), abs=0.01)

    # The same name and version again: refused, the first one stays.
    assert register(client, doctor, model_bytes).json()["code"] == "model_exists"


@pytest.mark.parametrize(("model", "status", "code"), [
    (b"this is not an onnx file", 422, "model_load_failed"),
    (constant_model(INPUT, INPUT, np.zeros((1, len(CODES), 3))), 422, "model_mismatch"),
    (constant_model(INPUT, INPUT, np.zeros((1, 4, 2))), 422, "model_mismatch"),
    (centroid_model(INPUT, INPUT, OFFSETS), 400, "unknown_landmark"),
])
def test_registration_refuses_what_cannot_run(client, auth, model, status, code):
    doctor = auth("doctor")
    before = len(stored_events(client, LandmarkModel.Registered))
    codes = ["S", "XX", *CODES[2:]] if code == "unknown_landmark" else CODES
    response = register(client, doctor, model, name=f"bad-{code}", codes=codes)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert len(stored_events(client, LandmarkModel.Registered)) == before


@pytest.mark.parametrize(("answer", "why"), [
    (np.full((1, len(CODES), 2), np.nan), "NaN"),
    (np.full((1, len(CODES), 2), 5000.0), "outside the image"),
])
def test_garbage_answers_are_refused_and_the_template_still_works(client, auth, ceph, answer,
                                                                  why):
    doctor, _patient, image = ceph
    registered = register(client, doctor, constant_model(INPUT, INPUT, answer),
                          name=f"garbage-{why}")
    assert registered.status_code == 201, registered.text
    anchors = {c: DESIGNED[c] for c in ("S", "N", "Me")}
    tracing = _start(client, doctor, image, anchors)
    refused = graphql(client, doctor, SUGGEST, {"id": tracing["id"], "v": tracing["version"],
                                                "m": registered.json()["id"]})
    ext = _error(refused)
    assert (ext["code"], ext["status"]) == ("model_output_invalid", 422)
    assert why in refused["errors"][0]["message"]
    assert not [e for e in stored_events(client, Tracing.LandmarksSuggested)
                if str(e.originator_id) == tracing["id"]]
    # The template fit still answers, on the same version.
    fallback = graphql(client, doctor, SUGGEST, {"id": tracing["id"],
                                                 "v": tracing["version"], "m": None})
    assert "errors" not in fallback, fallback
    assert fallback["data"]["suggestLandmarks"]["suggestedBy"]["source"] == (
        "template_from_anchors")
    assert fallback["data"]["suggestLandmarks"]["suggestions"]


def test_models_are_the_clinics_own_and_need_a_calibration(client, auth, ceph):
    doctor, patient, _image = ceph
    registered = register(client, doctor, centroid_model(INPUT, INPUT, OFFSETS),
                          name="tenancy")
    model_id = registered.json()["id"]
    elsewhere = auth("doctor", clinic_id="clinic-elsewhere")
    assert _error(graphql(client, elsewhere, MODEL, {"id": model_id}))["code"] == (
        "landmark_model_not_found")
    # Their own tracing, our model: 404 as if it did not exist.
    other_patient = register_patient(client, elsewhere)
    other_image = upload(client, elsewhere, other_patient, _film(marker=2), filename="c.png",
                         content_type="image/png", fields={"category": "radiograph"}).json()
    theirs = _start(client, elsewhere, other_image["id"])
    ext = _error(graphql(client, elsewhere, SUGGEST, {"id": theirs["id"],
                                                      "v": theirs["version"], "m": model_id}))
    assert ext["code"] == "landmark_model_not_found"
    # An uncalibrated film cannot be brought to the model's spacing.
    uncalibrated = upload(client, doctor, patient, _film(marker=1), filename="u.png",
                          content_type="image/png", fields={"category": "radiograph"})
    assert uncalibrated.status_code == 201, uncalibrated.text
    tracing = _start(client, doctor, uncalibrated.json()["id"])
    ext = _error(graphql(client, doctor, SUGGEST, {"id": tracing["id"],
                                                   "v": tracing["version"], "m": model_id}))
    assert (ext["code"], ext["status"]) == ("calibration_required", 422)
