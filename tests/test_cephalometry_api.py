"""Cephalometric tracing end to end on a real radiograph (B1893L12, Bolton-Brush study).

The film scan is calibrated from its resolution (512 dpi) and the radiographic
magnification of its acquisition geometry (1611/1524), traced with the 35-point tracing in
tests/data, analysed over GraphQL, and exported as a PDF report, CSV and JSON.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader

from conftest import graphql, register_patient, stored_events, upload
from domain.cephalometry.analyses import analyze
from domain.tracing import Tracing

ROOT = Path(__file__).resolve().parent
CEPH = ROOT.parent.parent / "shared" / "testdata" / "ceph" / "B1893L12.jpg"
TRACING = json.loads((ROOT / "data" / "b1893l12_tracing.json").read_text())
LANDMARKS = TRACING["landmarks"]
MAGNIFICATION = TRACING["source_to_detector_mm"] / TRACING["source_to_patient_mm"]
MM_PER_PX = 25.4 / TRACING["dpi"] / MAGNIFICATION

CALIBRATE = """mutation($i: CalibrateImageInput!){ calibrateImage(input: $i){ version
    effective { mmPerPixel source magnification } } }"""
START = """mutation($img: ID!, $lm: [CephLandmarkInput!]){ startTracing(imageId: $img,
    landmarks: $lm){ id version landmarks { code x y } canUndo reportPdfUrl landmarksCsvUrl
    landmarksJsonUrl } }"""
PLACE = """mutation($id: ID!, $v: Int!, $lm: [CephLandmarkInput!]!){ placeLandmarks(
    tracingId: $id, version: $v, landmarks: $lm){ id version canUndo canRedo
    landmarks { code x y } } }"""
STEP = """mutation($id: ID!, $v: Int!){ %s(tracingId: $id, version: $v){ id version canUndo
    canRedo removed } }"""
ANALYSIS = """query($id: ID!, $a: [String!]){ cephAnalysis(tracingId: $id, analyses: $a){
    tracingVersion normsVersion patientAgeYears patientSex reportPdfUrl analysisCsvUrl
    calibration { mmPerPixel source magnification }
    analyses { key name measurements { key name unit value computable reason missingLandmarks
      deviationSd interpretation norm { mean sd rangeLow rangeHigh source version } } } } }"""
COMPARE = """query($a: ID!, $b: ID!, $m: String!){ compareTracings(firstId: $a, secondId: $b,
    method: $m){ method rotationDeg translationMm rmsResidualMm referencePoints overlayUrl
    displacements { code dxMm dyMm distanceMm } } }"""


def _data(result, field):
    assert "errors" not in result, result
    return result["data"][field]


def _code(result):
    assert "errors" in result, result
    return result["errors"][0]["extensions"]["code"]


def _landmark_input(landmarks):
    return [{"code": c, "x": xy[0], "y": xy[1]} for c, xy in landmarks.items()]


@pytest.fixture
def ceph(client, auth):
    """The real lateral ceph uploaded as a radiograph, calibrated, with a tracing."""
    doctor = auth("doctor")
    patient = register_patient(client, doctor, consent=False)
    response = upload(client, doctor, patient, CEPH.read_bytes(), filename="B1893L12.jpg",
                      fields={"category": "radiograph"})
    assert response.status_code == 201, response.text
    image = response.json()["id"]
    cal = _data(graphql(client, doctor, CALIBRATE, {"i": {
        "imageId": image, "version": 0, "dpi": TRACING["dpi"],
        "magnification": MAGNIFICATION}}), "calibrateImage")
    assert cal["effective"]["source"] == "scan_resolution"
    assert cal["effective"]["mmPerPixel"] == pytest.approx(MM_PER_PX, rel=1e-12)
    tracing = _data(graphql(client, doctor, START, {"img": image,
                                                    "lm": _landmark_input(LANDMARKS)}),
                    "startTracing")
    return {"doctor": doctor, "patient": patient, "image": image, "tracing": tracing}


def test_real_ceph_full_analysis_matches_the_domain_computation(client, ceph):
    doctor, tracing = ceph["doctor"], ceph["tracing"]
    assert len(tracing["landmarks"]) == len(LANDMARKS) >= 35
    report = _data(graphql(client, doctor, ANALYSIS, {"id": tracing["id"]}), "cephAnalysis")
    assert report["calibration"]["source"] == "scan_resolution"
    assert report["calibration"]["magnification"] == pytest.approx(MAGNIFICATION)
    assert report["patientSex"] == "female" and report["patientAgeYears"] > 10
    keys = [a["key"] for a in report["analyses"]]
    assert keys == ["steiner", "downs", "tweed", "mcnamara", "ricketts", "wits",
                    "bjork_jarabak"]
    measurements = [m for a in report["analyses"] for m in a["measurements"]]
    assert len(measurements) == 33
    assert report["normsVersion"] == "2026.1"
    # A full analysis: every measurement is computable from this tracing.
    assert [m["key"] for m in measurements if not m["computable"]] == []
    # The API serves exactly what the pure domain computes for this patient.
    expected = {m.key: m for r in analyze(LANDMARKS, MM_PER_PX, age=report["patientAgeYears"],
                                          sex="female") for m in r.measurements}
    for m in measurements:
        assert m["value"] == pytest.approx(expected[m["key"]].value, abs=1e-9), m["key"]
        assert m["interpretation"] == expected[m["key"]].interpretation
    by_key = {m["key"]: m for m in measurements}
    # Invariants of ORTHODONTICS.md hold on a real tracing.
    assert by_key["anb"]["value"] == pytest.approx(by_key["sna"]["value"]
                                                   - by_key["snb"]["value"], abs=1e-9)
    assert (by_key["fma"]["value"] + by_key["impa"]["value"] + by_key["fmia"]["value"]
            == pytest.approx(180.0))
    # Plausible for a 12-year-old (a loose check on the tracing itself, not on the code).
    assert 70 < by_key["sna"]["value"] < 90 and 70 < by_key["snb"]["value"] < 90
    assert 50 < by_key["co_gn"]["value"] < 140  # mm: the calibration is in the right range
    sna = by_key["sna"]
    assert sna["norm"]["mean"] == 82.0 and sna["norm"]["sd"] == 2.0
    assert sna["deviationSd"] == pytest.approx((sna["value"] - 82.0) / 2.0)
    # Only a subset when asked.
    wits = _data(graphql(client, doctor, ANALYSIS, {"id": tracing["id"], "a": ["wits"]}),
                 "cephAnalysis")
    assert [a["key"] for a in wits["analyses"]] == ["wits"]
    assert _code(graphql(client, doctor, ANALYSIS, {"id": tracing["id"], "a": ["nope"]})) == (
        "unknown_analysis")


def test_pdf_report_has_the_overlay_and_every_value(client, ceph):
    doctor, tracing = ceph["doctor"], ceph["tracing"]
    response = client.get(tracing["reportPdfUrl"], headers=doctor)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["cache-control"].startswith("private")
    reader = PdfReader(io.BytesIO(response.content))
    assert len(reader.pages) == 1
    page = reader.pages[0]
    text = " ".join(page.extract_text().split())
    assert "Cephalometric analysis" in text and tracing["id"] in text
    assert "scan_resolution" in text and "magnification 1.0571" in text
    assert "norms version 2026.1" in text
    report = _data(graphql(client, doctor, ANALYSIS, {"id": tracing["id"]}), "cephAnalysis")
    for analysis in report["analyses"]:
        assert analysis["name"] in text
        for m in analysis["measurements"]:
            assert m["name"] in text, m["name"]
            assert f"{m['value']:.1f}" in text, (m["key"], m["value"])
    images = list(page.images)
    assert len(images) == 1
    overlay = images[0].image
    # The radiograph is portrait (4096x5120) and the overlay keeps its aspect ratio.
    assert overlay.height / overlay.width == pytest.approx(5120 / 4096, rel=0.01)
    # The tracing is drawn: the red landmark dots are in the embedded picture.
    rgb = overlay.convert("RGB")
    colours = rgb.getcolors(maxcolors=1 << 20) or []
    reddish = sum(n for n, (r, g, b) in colours if r > 200 and g < 90 and b < 90)
    assert reddish > 100


def test_exports_csv_json_and_overlay(client, ceph):
    doctor, tracing = ceph["doctor"], ceph["tracing"]
    rows = list(csv.DictReader(io.StringIO(
        client.get(tracing["landmarksCsvUrl"], headers=doctor).text)))
    assert {r["code"]: [float(r["x"]), float(r["y"])] for r in rows} == LANDMARKS
    exported = client.get(tracing["landmarksJsonUrl"], headers=doctor).json()
    assert exported["version"] == tracing["version"]
    assert {lm["code"] for lm in exported["landmarks"]} == set(LANDMARKS)
    analysis = list(csv.DictReader(io.StringIO(client.get(
        f"/api/v1/tracings/{tracing['id']}/analysis.csv", headers=doctor).text)))
    assert len(analysis) == 33 and all(r["computable"] == "True" for r in analysis)
    png = client.get(f"/api/v1/tracings/{tracing['id']}/overlay.png", headers=doctor)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_undo_redo_round_trips_the_analysis(client, ceph):
    doctor, tracing = ceph["doctor"], ceph["tracing"]

    def values():
        report = _data(graphql(client, doctor, ANALYSIS, {"id": tracing["id"]}), "cephAnalysis")
        return {m["key"]: m["value"] for a in report["analyses"] for m in a["measurements"]}

    original = values()
    a = LANDMARKS["A"]
    moved = _data(graphql(client, doctor, PLACE, {"id": tracing["id"], "v": tracing["version"],
                                                  "lm": [{"code": "A", "x": a[0],
                                                          "y": a[1] - 60}]}), "placeLandmarks")
    changed = values()
    assert changed["sna"] > original["sna"] and changed["snb"] == original["snb"]
    undone = _data(graphql(client, doctor, STEP % "undoTracing",
                           {"id": tracing["id"], "v": moved["version"]}), "undoTracing")
    assert values() == original and undone["canRedo"]
    redone = _data(graphql(client, doctor, STEP % "redoTracing",
                           {"id": tracing["id"], "v": undone["version"]}), "redoTracing")
    assert values() == changed and not redone["canRedo"]
    # Stale version: 409, nothing recorded.
    count = len(stored_events(client, Tracing.LandmarksPlaced))
    stale = graphql(client, doctor, PLACE, {"id": tracing["id"], "v": moved["version"],
                                            "lm": [{"code": "B", "x": 1, "y": 1}]})
    assert _code(stale) == "stale_version"
    assert len(stored_events(client, Tracing.LandmarksPlaced)) == count
    # Every step is an event of its own; none was deleted.
    events = [type(e).__name__ for e in client.app.state.services.app.events.get(
        uuid.UUID(tracing["id"]))]
    assert events == ["Started", "LandmarksPlaced", "Undone", "Redone"]


def test_missing_landmarks_are_named_and_bad_input_refused(client, auth, ceph):
    doctor = ceph["doctor"]
    partial = {c: LANDMARKS[c] for c in ("S", "N", "A")}
    t = _data(graphql(client, doctor, START, {"img": ceph["image"],
                                              "lm": _landmark_input(partial)}), "startTracing")
    report = _data(graphql(client, doctor, ANALYSIS, {"id": t["id"], "a": ["steiner"]}),
                   "cephAnalysis")
    by_key = {m["key"]: m for m in report["analyses"][0]["measurements"]}
    assert by_key["sna"]["computable"] and not by_key["snb"]["computable"]
    assert by_key["snb"]["reason"] == "missing_landmarks"
    assert by_key["snb"]["missingLandmarks"] == ["B"]
    assert "missing landmarks B" in by_key["snb"]["interpretation"]
    unknown = graphql(client, doctor, PLACE, {"id": t["id"], "v": t["version"],
                                              "lm": [{"code": "Xx", "x": 1, "y": 1}]})
    assert _code(unknown) == "unknown_landmark"
    outside = graphql(client, doctor, PLACE, {"id": t["id"], "v": t["version"],
                                              "lm": [{"code": "B", "x": 4097, "y": 1}]})
    assert _code(outside) == "coordinates_out_of_bounds"
    twice = graphql(client, doctor, PLACE, {"id": t["id"], "v": t["version"],
                                            "lm": [{"code": "B", "x": 1, "y": 1},
                                                   {"code": "B", "x": 2, "y": 2}]})
    assert _code(twice) == "duplicate_landmark"
    assert _data(graphql(client, doctor, "query($id: ID!){ cephTracing(id: $id){ version } }",
                         {"id": t["id"]}), "cephTracing")["version"] == t["version"]
    # Clinical staff may not run analyses; another clinic sees nothing.
    staff = auth("clinical_staff")
    assert _code(graphql(client, staff, ANALYSIS, {"id": t["id"]})) == "permission_denied"
    assert client.get(f"/api/v1/tracings/{t['id']}/report.pdf", headers=staff).status_code == 403
    other = auth("doctor", clinic_id="elsewhere-" + ceph["patient"][:8])
    assert _code(graphql(client, other, ANALYSIS, {"id": t["id"]})) == "tracing_not_found"
    response = client.get(f"/api/v1/tracings/{t['id']}/report.pdf", headers=other)
    assert response.status_code == 404
    assert response.json()["code"] == "tracing_not_found"
    # The image list shows both tracings; a discarded one disappears.
    listed = graphql(client, doctor, "query($i: ID!){ imageTracings(imageId: $i){ id } }",
                     {"i": ceph["image"]})
    assert {x["id"] for x in _data(listed, "imageTracings")} == {t["id"], ceph["tracing"]["id"]}
    _data(graphql(client, doctor, STEP % "discardTracing", {"id": t["id"], "v": t["version"]}),
          "discardTracing")
    listed = graphql(client, doctor, "query($i: ID!){ imageTracings(imageId: $i){ id } }",
                     {"i": ceph["image"]})
    assert [x["id"] for x in _data(listed, "imageTracings")] == [ceph["tracing"]["id"]]


def test_superimposing_two_tracings_on_sn_at_s(client, auth, ceph):
    doctor, first = ceph["doctor"], ceph["tracing"]
    # A second tracing of the same image with the mandible moved 2 mm forward (-y).
    shift = 2.0 / MM_PER_PX
    moved = {c: [x, y - shift] if c in ("B", "Pog", "Gn", "Me") else [x, y]
             for c, (x, y) in LANDMARKS.items()}
    second = _data(graphql(client, doctor, START, {"img": ceph["image"],
                                                   "lm": _landmark_input(moved)}),
                   "startTracing")
    result = _data(graphql(client, doctor, COMPARE, {"a": first["id"], "b": second["id"],
                                                     "m": "sn_at_s"}), "compareTracings")
    assert result["rmsResidualMm"] == pytest.approx(0.0, abs=1e-9)
    by_code = {d["code"]: d for d in result["displacements"]}
    assert by_code["Pog"]["distanceMm"] == pytest.approx(2.0, rel=1e-9)
    assert by_code["Pog"]["dyMm"] == pytest.approx(-2.0, rel=1e-9)
    assert by_code["S"]["distanceMm"] == pytest.approx(0.0, abs=1e-9)
    png = client.get(result["overlayUrl"], headers=doctor)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    picture = Image.open(io.BytesIO(png.content)).convert("RGB")
    colours = {c for _, c in picture.getcolors(maxcolors=1 << 20) or []}
    assert (0x1F, 0x5F, 0xD6) in colours and (0xD6, 0x27, 0x28) in colours  # both tracings
    assert client.get(result["overlayUrl"], headers=auth("clinical_staff")).status_code == 403
    best = _data(graphql(client, doctor, COMPARE, {"a": first["id"], "b": second["id"],
                                                   "m": "best_fit"}), "compareTracings")
    assert best["referencePoints"] == ["S", "N", "Ba", "Pt"]
    assert _code(graphql(client, doctor, COMPARE, {"a": first["id"], "b": second["id"],
                                                   "m": "warp"})) == "unknown_method"


SUGGEST = """mutation($id: ID!, $v: Int!){ suggestLandmarks(tracingId: $id, version: $v){
    id version landmarks { code } suggestions { code x y } } }"""
CONFIRM = """mutation($id: ID!, $v: Int!){ confirmLandmarks(tracingId: $id, version: $v){
    id version landmarks { code } suggestions { code } } }"""


def test_template_suggestions_from_three_anchors_on_the_real_ceph(client, ceph):
    """The baseline, measured against the by-eye tracing: see docs/cephalometry.md."""
    from domain.landmark_suggestion import ANCHORS, RadialErrors

    doctor = ceph["doctor"]
    anchors = {c: LANDMARKS[c] for c in ANCHORS}
    t = _data(graphql(client, doctor, START, {"img": ceph["image"],
                                              "lm": _landmark_input(anchors)}), "startTracing")
    suggested = _data(graphql(client, doctor, SUGGEST, {"id": t["id"], "v": t["version"]}),
                      "suggestLandmarks")
    assert {lm["code"] for lm in suggested["landmarks"]} == set(ANCHORS)
    positions = {lm["code"]: [lm["x"], lm["y"]] for lm in suggested["suggestions"]}
    assert len(positions) >= 25
    errors = RadialErrors.between(LANDMARKS, positions, MM_PER_PX)
    # A crude template: about 10 mm mean radial error here (state of the art: ~1.2 mm).
    assert errors.mean_mm < 15
    report = _data(graphql(client, doctor, ANALYSIS, {"id": t["id"], "a": ["steiner"]}),
                   "cephAnalysis")
    sna = next(m for m in report["analyses"][0]["measurements"] if m["key"] == "sna")
    assert not sna["computable"] and sna["missingLandmarks"] == ["A"]
    confirmed = _data(graphql(client, doctor, CONFIRM, {"id": t["id"],
                                                        "v": suggested["version"]}),
                      "confirmLandmarks")
    assert confirmed["suggestions"] == []
    assert len(confirmed["landmarks"]) == len(positions) + len(ANCHORS)
    report = _data(graphql(client, doctor, ANALYSIS, {"id": t["id"], "a": ["steiner"]}),
                   "cephAnalysis")
    assert all(m["computable"] for m in report["analyses"][0]["measurements"])


# --- non-square pixels (issue 19) ----------------------------------------------------------

REGISTER_PATIENT = """mutation($i: RegisterPatientInput!){ registerPatient(input: $i){ id } }"""
# A cranial base and face in mm (facing +x, y down), inside a 130 x 140 mm field.
ANATOMY_MM = {
    "S": (40.0, 10.0), "N": (110.0, 10.0), "Ba": (18.0, 52.0), "Pt": (52.0, 32.0),
    "A": (105.0, 60.0), "B": (92.0, 100.0), "Pog": (97.0, 110.0), "Me": (85.0, 127.0),
    "Go": (35.0, 92.0),
}  # fmt: skip
ROW_MM, COLUMN_MM = 0.11, 0.10


def _dicom_ceph(external_id: str) -> bytes:
    from dicom_support import dicom_bytes

    pixels = np.zeros((1300, 1400), np.uint8)
    return dicom_bytes(pixels, modality="DX", patient_id=external_id,
                       PixelSpacing=[ROW_MM, COLUMN_MM])


def test_superimposition_measures_non_square_pixels_per_axis(client, auth):
    doctor = auth("doctor")
    external_id = f"ANISO-{uuid.uuid4().hex[:8]}"
    patient = graphql(client, doctor, REGISTER_PATIENT, {"i": {
        "externalId": external_id, "givenName": "Ada", "familyName": "Lovelace",
        "birthDate": "2012-04-01", "sex": "female"}})["data"]["registerPatient"]["id"]
    # The head turned -7 deg about (65, 70) mm between the films; Pog alone came 3 mm forward.
    later = {}
    for code, (x, y) in ANATOMY_MM.items():
        dx = 3.0 if code == "Pog" else 0.0
        rx, ry = _rotate((x + dx - 65.0, y - 70.0), -7.0)
        later[code] = (rx + 65.0, ry + 70.0)
    tracings = []
    for n, anatomy in enumerate((ANATOMY_MM, later)):
        response = upload(client, doctor, patient, _dicom_ceph(external_id),
                          filename=f"ceph{n}.dcm", content_type="application/dicom")
        assert response.status_code == 201, response.text
        landmarks = [{"code": c, "x": x / COLUMN_MM, "y": y / ROW_MM}
                     for c, (x, y) in anatomy.items()]
        tracings.append(_data(graphql(client, doctor, START, {"img": response.json()["id"],
                                                               "lm": landmarks}),
                              "startTracing"))
    for method in ("sn_at_s", "best_fit"):
        result = _data(graphql(client, doctor, COMPARE, {"a": tracings[0]["id"],
                                                         "b": tracings[1]["id"], "m": method}),
                       "compareTracings")
        # One spacing for both axes gave -6.37 deg and mm of false displacement here.
        assert result["rotationDeg"] == pytest.approx(7.0, abs=1e-6), method
        for d in result["displacements"]:
            expected = (3.0, 0.0) if d["code"] == "Pog" else (0.0, 0.0)
            assert (d["dxMm"], d["dyMm"]) == (pytest.approx(expected[0], abs=1e-6),
                                              pytest.approx(expected[1], abs=1e-6)), d
    # The analyses still refuse such pixels rather than measure them wrongly.
    refused = graphql(client, doctor, ANALYSIS, {"id": tracings[0]["id"]})
    assert refused["errors"][0]["extensions"]["code"] == "anisotropic_pixels"


def _rotate(p, degrees):
    import math

    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return (c * p[0] - s * p[1], s * p[0] + c * p[1])
