"""Cephalometric tracings, their analyses, superimpositions and exports.

Classification (ARCHITECTURE.md table, docs/cephalometry.md):
- reading a tracing's landmarks is clinical content on a radiograph: ``imaging:view`` at FULL
  only (front desk never sees radiographs, billing no pixels or clinical content);
- anything that computes analysis values or a superimposition is performing cephalometric
  analysis: ``imaging:view`` + ``imaging:cephalometric``;
- every tracing edit (start, place, remove, suggest, confirm, undo, redo, discard) is the
  cephalometric act itself: ``imaging:cephalometric``;
- downloads (PDF, PNG, CSV, JSON) are ``imaging:export`` on top of what their content needs;
- registering a landmark model and reading one are part of the cephalometric work (the model
  places a tracing's landmarks): ``imaging:cephalometric``.

Targets live on a small calibrated radiograph of a patient of this area's own, traced with
the real B1893L12 tracing scaled down 4x (so the PDF and overlays render quickly).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from onnx_models import centroid_model

from conftest import jpeg_bytes, register_patient, upload
from domain.landmark_suggestion import ANCHORS
from domain.permissions import Permission
from permission_matrix.spec import Headers, Operation, Outcome, World, any_role, rest_outcome

P = Permission

_DATA = Path(__file__).resolve().parents[1] / "data" / "b1893l12_tracing.json"
_TRACING = json.loads(_DATA.read_text())
# The scan is 4096x5120 px; a quarter of it keeps every landmark inside the small image.
_SCALE = 0.25
_WIDTH, _HEIGHT = 1024, 1280
LANDMARKS: dict[str, list[float]] = {
    code: [x * _SCALE, y * _SCALE] for code, (x, y) in _TRACING["landmarks"].items()}
_MAGNIFICATION = _TRACING["source_to_detector_mm"] / _TRACING["source_to_patient_mm"]

CALIBRATE = """mutation($i: CalibrateImageInput!){ calibrateImage(input: $i){ version } }"""
START = """mutation($img: ID!, $lm: [CephLandmarkInput!]){ startTracing(imageId: $img,
    landmarks: $lm){ id version } }"""
PLACE = """mutation($id: ID!, $v: Int!, $lm: [CephLandmarkInput!]!){ placeLandmarks(
    tracingId: $id, version: $v, landmarks: $lm){ id version } }"""
REMOVE = """mutation($id: ID!, $v: Int!, $c: [String!]!){ removeLandmarks(tracingId: $id,
    version: $v, codes: $c){ id version } }"""
STEP = """mutation($id: ID!, $v: Int!){ %s(tracingId: $id, version: $v){ id version } }"""
TRACING = "query($id: ID!){ cephTracing(id: $id){ id version landmarks { code x y } } }"
IMAGE_TRACINGS = "query($i: ID!){ imageTracings(imageId: $i){ id } }"
CATALOGUE = "{ cephLandmarkCatalogue { code name group } }"
ANALYSIS = """query($id: ID!){ cephAnalysis(tracingId: $id){ tracingVersion
    analyses { key measurements { key value computable } } } }"""
COMPARE = """query($a: ID!, $b: ID!){ compareTracings(firstId: $a, secondId: $b,
    method: "sn_at_s"){ rmsResidualMm displacements { code distanceMm } } }"""


def _landmark_input(landmarks: dict[str, list[float]]) -> list[dict[str, Any]]:
    return [{"code": c, "x": xy[0], "y": xy[1]} for c, xy in landmarks.items()]


# ---- targets (built as the clinic admin) ----------------------------------------------


def _radiograph(world: World) -> str:
    """A calibrated radiograph of this area's own patient (so no other area's fixture
    changes under it)."""

    def build(w: World) -> str:
        patient = register_patient(w.client, w.admin)
        response = upload(w.client, w.admin, patient, jpeg_bytes(_WIDTH, _HEIGHT, seed=7),
                          filename="ceph.jpg", fields={"category": "radiograph"})
        assert response.status_code == 201, response.text
        image = response.json()["id"]
        # Scan resolution scaled with the image, so millimetres match the real film.
        w.setup_gql(CALIBRATE, {"i": {"imageId": image, "version": 0,
                                      "dpi": _TRACING["dpi"] * _SCALE,
                                      "magnification": _MAGNIFICATION}})
        return image

    return world.once("ceph:radiograph", build)


def _start(world: World, landmarks: dict[str, list[float]]) -> tuple[str, int]:
    started = world.setup_gql(START, {"img": _radiograph(world),
                                      "lm": _landmark_input(landmarks)})["startTracing"]
    return started["id"], started["version"]


def _tracing(world: World) -> str:
    """The shared, complete tracing that read-only operations use."""
    return world.once("ceph:tracing", lambda w: _start(w, LANDMARKS)[0])


def _second_tracing(world: World) -> str:
    """A second tracing of the same patient, mandible 2 mm forward, to superimpose."""
    shift = 2.0 / (25.4 / (_TRACING["dpi"] * _SCALE) / _MAGNIFICATION)
    moved = {c: [x, y - shift] if c in ("B", "Pog", "Gn", "Me") else [x, y]
             for c, (x, y) in LANDMARKS.items()}
    return world.once("ceph:second-tracing", lambda w: _start(w, moved)[0])


def _edited(world: World, tracing_id: str, version: int) -> int:
    """Moves A once as the admin, so undo has something to undo; returns the new version."""
    a = LANDMARKS["A"]
    placed = world.setup_gql(PLACE, {"id": tracing_id, "v": version,
                                     "lm": [{"code": "A", "x": a[0], "y": a[1] - 15}]})
    return placed["placeLandmarks"]["version"]


def _step(world: World, command: str, tracing_id: str, version: int) -> int:
    return world.setup_gql(STEP % command, {"id": tracing_id, "v": version})[command]["version"]


# ---- calls --------------------------------------------------------------------------


def _ceph_tracing(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, TRACING, {"id": _tracing(world)})


def _image_tracings(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, IMAGE_TRACINGS, {"i": _radiograph(world)})


def _catalogue(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, CATALOGUE)


def _analysis(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, ANALYSIS, {"id": _tracing(world)})


def _compare(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, COMPARE, {"a": _tracing(world), "b": _second_tracing(world)})


def _start_tracing(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, START, {"img": _radiograph(world),
                                      "lm": _landmark_input(LANDMARKS)})


def _place(world: World, headers: Headers) -> Outcome:
    tracing_id, version = _start(world, LANDMARKS)
    b = LANDMARKS["B"]
    return world.gql(headers, PLACE, {"id": tracing_id, "v": version,
                                      "lm": [{"code": "B", "x": b[0] + 5, "y": b[1]}]})


def _remove(world: World, headers: Headers) -> Outcome:
    tracing_id, version = _start(world, LANDMARKS)
    return world.gql(headers, REMOVE, {"id": tracing_id, "v": version, "c": ["A"]})


def _suggest(world: World, headers: Headers) -> Outcome:
    tracing_id, version = _start(world, {c: LANDMARKS[c] for c in ANCHORS})
    return world.gql(headers, STEP % "suggestLandmarks", {"id": tracing_id, "v": version})


def _confirm(world: World, headers: Headers) -> Outcome:
    tracing_id, version = _start(world, {c: LANDMARKS[c] for c in ANCHORS})
    version = _step(world, "suggestLandmarks", tracing_id, version)
    return world.gql(headers, STEP % "confirmLandmarks", {"id": tracing_id, "v": version})


def _undo(world: World, headers: Headers) -> Outcome:
    tracing_id, version = _start(world, LANDMARKS)
    version = _edited(world, tracing_id, version)
    return world.gql(headers, STEP % "undoTracing", {"id": tracing_id, "v": version})


def _redo(world: World, headers: Headers) -> Outcome:
    tracing_id, version = _start(world, LANDMARKS)
    version = _step(world, "undoTracing", tracing_id, _edited(world, tracing_id, version))
    return world.gql(headers, STEP % "redoTracing", {"id": tracing_id, "v": version})


def _discard(world: World, headers: Headers) -> Outcome:
    tracing_id, version = _start(world, LANDMARKS)
    return world.gql(headers, STEP % "discardTracing", {"id": tracing_id, "v": version})


def _download(suffix: str, media_type: str):
    """A GET of one export of the shared tracing; a success must carry the right bytes."""

    def call(world: World, headers: Headers) -> Outcome:
        response = world.client.get(f"/api/v1/tracings/{_tracing(world)}/{suffix}",
                                    headers=headers)
        if response.status_code < 400:
            assert response.headers["content-type"].startswith(media_type), response.headers
        return rest_outcome(response)

    return call


def _superimposition(world: World, headers: Headers) -> Outcome:
    response = world.client.get(
        f"/api/v1/tracings/{_tracing(world)}/superimposition/{_second_tracing(world)}.png",
        params={"method": "sn_at_s"}, headers=headers)
    if response.status_code < 400:
        assert response.content[:8] == b"\x89PNG\r\n\x1a\n"
    return rest_outcome(response)


_MODEL = """query($id: ID!){ landmarkModel(id: $id){ id name version } }"""


def _register_model(world: World, headers: Headers) -> Any:
    return world.client.post(
        "/api/v1/landmark-models", headers=headers,
        files={"file": ("m.onnx", centroid_model(32, 32, [(1.0, 1.0)]), "application/onnx")},
        data={"name": f"matrix-{uuid.uuid4().hex[:8]}", "version": "1", "inputWidth": "32",
              "inputHeight": "32", "landmarks": "A", "pixelSpacingMm": "0.5"})


def _model(world: World) -> str:
    def build(w: World) -> str:
        response = _register_model(w, w.admin)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    return world.once("ceph:model", build)


def _landmark_model(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, _MODEL, {"id": _model(world)})


def _post_model(world: World, headers: Headers) -> Outcome:
    return rest_outcome(_register_model(world, headers))


# Reading a tracing's landmarks (or listing an image's tracings) is clinical content on a
# radiograph: FULL view only. Analysis values and superimpositions are the cephalometric
# analysis itself, so they need imaging:cephalometric as well (clinical staff: denied).
READ_TRACING = {P.VIEW: ()}
ANALYSE = {P.VIEW: (), P.CEPHALOMETRIC: ()}
# Tracing edits, including discard: the doctor's own analysis work, undoable like an
# annotation removal, not a soft delete of an image (so no imaging:delete / approval).
TRACE = {P.CEPHALOMETRIC: ()}

OPERATIONS = [
    Operation("query cephTracing", READ_TRACING, _ceph_tracing),
    Operation("query imageTracings", READ_TRACING, _image_tracings),
    # Static reference data (landmark definitions), no patient or clinic content: any
    # authenticated member, and nothing of a clinic to hide from another one.
    Operation("query cephLandmarkCatalogue", any_role(), _catalogue, takes_id=False),
    Operation("query cephAnalysis", ANALYSE, _analysis),
    Operation("query compareTracings", ANALYSE, _compare),
    Operation("mutation startTracing", TRACE, _start_tracing),
    Operation("mutation placeLandmarks", TRACE, _place),
    Operation("mutation removeLandmarks", TRACE, _remove),
    Operation("mutation suggestLandmarks", TRACE, _suggest),
    Operation("mutation confirmLandmarks", TRACE, _confirm),
    Operation("mutation undoTracing", TRACE, _undo),
    Operation("mutation redoTracing", TRACE, _redo),
    Operation("mutation discardTracing", TRACE, _discard),
    Operation("query landmarkModel", TRACE, _landmark_model),
    Operation("POST /api/v1/landmark-models", TRACE, _post_model, takes_id=False),
    # The report and the analysis table carry analysis values: export + cephalometric.
    Operation("GET /api/v1/tracings/{tracing_id}/report.pdf",
              {P.EXPORT: (), **ANALYSE}, _download("report.pdf", "application/pdf")),
    Operation("GET /api/v1/tracings/{tracing_id}/analysis.csv",
              {P.EXPORT: (), **ANALYSE}, _download("analysis.csv", "text/csv")),
    # Landmarks and the overlay are the tracing itself, no analysis values: export + view.
    Operation("GET /api/v1/tracings/{tracing_id}/overlay.png",
              {P.EXPORT: (), **READ_TRACING}, _download("overlay.png", "image/png")),
    Operation("GET /api/v1/tracings/{tracing_id}/landmarks.csv",
              {P.EXPORT: (), **READ_TRACING}, _download("landmarks.csv", "text/csv")),
    Operation("GET /api/v1/tracings/{tracing_id}/landmarks.json",
              {P.EXPORT: (), **READ_TRACING}, _download("landmarks.json", "application/json")),
    Operation("GET /api/v1/tracings/{first_id}/superimposition/{second_id}.png",
              {P.EXPORT: (), **ANALYSE}, _superimposition),
]

__all__ = ["LANDMARKS", "OPERATIONS"]
