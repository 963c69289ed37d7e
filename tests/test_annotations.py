"""Annotations over GraphQL against PostgreSQL: versions and 409s, undo/redo, calibration,
permissions, bad input (nothing stored, server keeps serving)."""

from __future__ import annotations

import threading

from conftest import (
    bearer,
    graphql,
    jpeg_bytes,
    register_patient,
    stored_events,
    token_for,
    upload,
)
from domain.annotation import Annotation

ADD = """mutation($i: AddAnnotationInput!){ addAnnotation(input: $i){ id version author kind
    points label removed canUndo canRedo measurement { value unit calibrated calibrationSource
    position } } }"""
EDIT = """mutation($i: EditAnnotationInput!){ editAnnotation(input: $i){ id version points label
    removed canUndo canRedo measurement { value unit calibrated calibrationSource } } }"""
STEP = """mutation($id: ID!, $v: Int!){ %s(id: $id, version: $v){ id version points removed
    canUndo canRedo measurement { value unit calibrated } } }"""
LIST = """query($img: ID!, $removed: Boolean, $mm: Boolean, $author: String){
    imageAnnotations(imageId: $img, includeRemoved: $removed, requireMm: $mm, author: $author){
    id kind version author removed measurement { value unit calibrated calibrationSource } } }"""
CALIBRATE = """mutation($i: CalibrateImageInput!){ calibrateImage(input: $i){ version recordedDpi
    effective { mmPerPixel source magnification } recorded { mmPerPixel source } } }"""


def _code(result):
    assert "errors" in result, result
    return result["errors"][0]["extensions"]["code"]


def _data(result, field):
    assert "errors" not in result, result
    return result["data"][field]


def _image(client, headers, width=800, height=600, category=None) -> str:
    patient = register_patient(client, headers)
    fields = {"category": category} if category else {}
    response = upload(client, headers, patient, jpeg_bytes(width, height), fields=fields)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _add(client, headers, image, kind="line", points=((0, 0), (30, 40)), **extra):
    values = {"imageId": image, "kind": kind, "points": [list(p) for p in points], **extra}
    return graphql(client, headers, ADD, {"i": values})


def _list(client, headers, image, **variables):
    return graphql(client, headers, LIST, {"img": image, **variables})


def test_add_edit_and_server_side_measurement(client, auth):
    doctor = auth("doctor")
    image = _image(client, doctor)
    added = _data(_add(client, doctor, image, label="  molar   width "), "addAnnotation")
    assert added["version"] == 1 and added["author"] == "user-doctor"
    assert added["label"] == "molar width"
    assert added["measurement"] == {"value": 50.0, "unit": "px", "calibrated": False,
                                    "calibrationSource": None, "position": None}
    assert added["canUndo"] is False
    edited = _data(graphql(client, doctor, EDIT, {"i": {
        "id": added["id"], "version": 1, "points": [[0, 0], [60, 80]]}}), "editAnnotation")
    assert edited["version"] == 2 and edited["measurement"]["value"] == 100.0
    assert edited["label"] == "molar width"  # unchanged fields stay
    listed = _data(_list(client, doctor, image), "imageAnnotations")
    assert [(a["id"], a["version"]) for a in listed] == [(added["id"], 2)]


def test_concurrent_edits_of_one_annotation_one_wins_one_gets_409(client, auth):
    doctor, staff = auth("doctor"), auth("clinical_staff")
    image = _image(client, doctor)
    added = _data(_add(client, doctor, image), "addAnnotation")
    barrier = threading.Barrier(2)
    results: dict[str, dict] = {}

    def edit(name, headers, x):
        barrier.wait()
        results[name] = graphql(client, headers, EDIT, {"i": {
            "id": added["id"], "version": added["version"], "points": [[0, 0], [x, 0]]}})

    threads = [threading.Thread(target=edit, args=("a", doctor, 100)),
               threading.Thread(target=edit, args=("b", staff, 200))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = sorted("errors" in r for r in results.values())
    assert outcomes == [False, True], results
    loser = next(r for r in results.values() if "errors" in r)
    winner = next(r for r in results.values() if "errors" not in r)["data"]["editAnnotation"]
    assert _code(loser) == "stale_version"
    assert loser["errors"][0]["extensions"]["status"] == 409
    # Exactly one edit was recorded, and it is the winner's.
    edits = [e for e in stored_events(client, Annotation.Edited)
             if str(e.originator_id) == added["id"]]
    assert len(edits) == 1 and edits[0].content["points"] == winner["points"]
    # The loser reloads and edits the new version: accepted.
    retried = graphql(client, doctor, EDIT, {"i": {"id": added["id"], "version": 2,
                                                   "label": "after reload"}})
    assert _data(retried, "editAnnotation")["version"] == 3


def test_undo_redo_round_trip_measurements_as_new_events(client, auth):
    doctor = auth("doctor")
    image = _image(client, doctor)
    a = _data(_add(client, doctor, image, points=((0, 0), (10, 0))), "addAnnotation")
    e = _data(graphql(client, doctor, EDIT, {"i": {"id": a["id"], "version": 1,
                                                   "points": [[0, 0], [0, 25]]}}),
              "editAnnotation")
    u = _data(graphql(client, doctor, STEP % "undoAnnotation", {"id": a["id"], "v": e["version"]}),
              "undoAnnotation")
    assert u["measurement"]["value"] == 10 and u["canRedo"] and u["version"] == 3
    assert _data(_list(client, doctor, image), "imageAnnotations")[0]["measurement"][
        "value"] == 10
    r = _data(graphql(client, doctor, STEP % "redoAnnotation", {"id": a["id"], "v": u["version"]}),
              "redoAnnotation")
    assert r["measurement"]["value"] == 25 and not r["canRedo"]
    nothing = graphql(client, doctor, STEP % "redoAnnotation", {"id": a["id"], "v": r["version"]})
    assert _code(nothing) == "nothing_to_redo"
    # Remove, then undo the removal: it comes back with its geometry.
    gone = _data(graphql(client, doctor, STEP % "removeAnnotation",
                         {"id": a["id"], "v": r["version"]}), "removeAnnotation")
    assert gone["removed"] and _data(_list(client, doctor, image), "imageAnnotations") == []
    assert len(_data(_list(client, doctor, image, removed=True), "imageAnnotations")) == 1
    back = _data(graphql(client, doctor, STEP % "undoAnnotation",
                         {"id": a["id"], "v": gone["version"]}), "undoAnnotation")
    assert not back["removed"] and back["measurement"]["value"] == 25


def test_calibration_sources_and_mm(client, auth):
    doctor = auth("doctor")
    image = _image(client, doctor)
    line = _data(_add(client, doctor, image, points=((0, 0), (300, 400))), "addAnnotation")
    assert _code(_list(client, doctor, image, mm=True)) == "calibration_required"
    # A ruler of known length calibrates the image: 200 px = 10 mm.
    _data(_add(client, doctor, image, kind="ruler", points=((0, 10), (200, 10)),
               knownLengthMm=10.0), "addAnnotation")
    listed = {a["id"]: a for a in _data(_list(client, doctor, image, mm=True),
                                        "imageAnnotations")}
    assert listed[line["id"]]["measurement"] == {"value": 25.0, "unit": "mm",
                                                 "calibrated": True, "calibrationSource": "ruler"}
    # A scan resolution with its magnification outranks the ruler.
    cal = _data(graphql(client, doctor, CALIBRATE, {"i": {
        "imageId": image, "version": 0, "dpi": 254, "magnification": 1.1}}), "calibrateImage")
    assert cal["version"] == 1 and cal["effective"]["source"] == "scan_resolution"
    assert abs(cal["effective"]["mmPerPixel"] - 0.1 / 1.1) < 1e-12
    listed = {a["id"]: a for a in _data(_list(client, doctor, image), "imageAnnotations")}
    assert abs(listed[line["id"]]["measurement"]["value"] - 500 * 0.1 / 1.1) < 1e-9
    stale = graphql(client, doctor, CALIBRATE, {"i": {"imageId": image, "version": 0,
                                                      "mmPerPixel": 0.2}})
    assert _code(stale) == "stale_version"
    bad = graphql(client, doctor, CALIBRATE, {"i": {"imageId": image, "version": 1, "dpi": -3}})
    assert _code(bad) == "invalid_calibration"


def test_bad_input_is_refused_with_codes_and_nothing_is_stored(client, auth):
    doctor = auth("doctor")
    image = _image(client, doctor, 800, 600)
    before = len(stored_events(client, Annotation.Added))
    cases = [
        (_add(client, doctor, image, points=((0, 0), (801, 5))), "coordinates_out_of_bounds"),
        (_add(client, doctor, image, points=((5, 5), (5, 5))), "degenerate_geometry"),
        (_add(client, doctor, image, kind="angle", points=((0, 0), (5, 5), (10, 10))),
         "degenerate_geometry"),
        (_add(client, doctor, image, kind="hexagon"), "unknown_annotation_kind"),
        (_add(client, doctor, image, kind="ruler"), "invalid_calibration"),
        (_add(client, doctor, image, kind="polygon"), "invalid_shape"),
        (graphql(client, doctor, EDIT, {"i": {"id": "not-an-id", "version": 1}}), "invalid_id"),
    ]
    for result, code in cases:
        assert _code(result) == code
    assert len(stored_events(client, Annotation.Added)) == before
    assert _data(_list(client, doctor, image), "imageAnnotations") == []
    # The server keeps serving.
    assert "errors" not in _add(client, doctor, image)


def test_permissions_tenancy_and_deleted_images(client, auth, clinic):
    doctor, staff = auth("doctor"), auth("clinical_staff")
    staff2 = bearer(token_for(client.app.state.services.settings, "clinical_staff", clinic,
                              user="nurse-2"))
    image = _image(client, doctor)
    theirs = _data(_add(client, staff2, image), "addAnnotation")
    mine = _data(_add(client, staff, image), "addAnnotation")
    edited = _data(graphql(client, staff, EDIT, {"i": {"id": theirs["id"], "version": 1,
                                                       "label": "checked"}}), "editAnnotation")
    refused = graphql(client, staff, STEP % "removeAnnotation",
                      {"id": theirs["id"], "v": edited["version"]})
    assert _code(refused) == "not_own_annotation"
    assert refused["errors"][0]["extensions"]["status"] == 403
    assert "errors" not in graphql(client, staff, STEP % "removeAnnotation",
                                   {"id": mine["id"], "v": 1})
    # Layers: one author's annotations.
    layer = _data(_list(client, doctor, image, author="nurse-2"), "imageAnnotations")
    assert [a["id"] for a in layer] == [theirs["id"]]
    assert _code(_add(client, auth("front_desk"), image)) == "permission_denied"
    assert _code(_list(client, auth("billing"), image)) == "permission_denied"
    # Another clinic: not found, never forbidden.
    other = auth("doctor", clinic_id=clinic + "-other")
    assert _code(_add(client, other, image)) == "image_not_found"
    assert _code(graphql(client, other, EDIT, {"i": {"id": theirs["id"], "version": 2,
                                                     "label": "x"}})) == "annotation_not_found"
    assert _code(_list(client, other, image)) == "image_not_found"
    # A deleted image takes no new marks and no edits.
    deleted = graphql(client, auth("clinic_admin"), """mutation($id: ID!){
        deleteImage(input: {imageId: $id, reason: "test"}){ id } }""", {"id": image})
    assert "errors" not in deleted, deleted
    assert _code(_add(client, doctor, image)) == "image_deleted"
    assert _code(graphql(client, doctor, EDIT, {"i": {"id": theirs["id"], "version": 2,
                                                      "label": "y"}})) == "image_deleted"


DESTROY = """mutation($i: DestroyImageInput!){ destroyImage(input: $i){ id } }"""


def test_destroying_an_image_shreds_its_annotations_and_calibration(client, auth):
    """Annotations, tracings' kin and calibrations are subjects of their own; destroying the
    image must destroy their keys too, or their content (labels, measurements) outlives it."""
    import uuid

    import pytest

    from conftest import wait_until
    from domain.errors import Gone
    from domain.image_calibration import calibration_id

    doctor, admin = auth("doctor"), auth("clinic_admin")
    image = _image(client, doctor)
    note = _data(_add(client, doctor, image, kind="text", points=((5, 5),),
                      text="PHI-MARKER-ANNOTATION"), "addAnnotation")
    line = _data(_add(client, doctor, image), "addAnnotation")
    _data(graphql(client, doctor, CALIBRATE, {"i": {"imageId": image, "version": 0,
                                                    "mmPerPixel": 0.1}}), "calibrateImage")
    services = client.app.state.services
    subjects = {uuid.UUID(note["id"]), uuid.UUID(line["id"])}
    wait_until(lambda: subjects <= set(services.annotations.subjects_of_image(
        uuid.UUID(image))))
    result = graphql(client, admin, DESTROY, {"i": {"imageId": image, "reason": "erasure"}})
    assert "errors" not in result, result
    app = services.app
    for subject in (*subjects, calibration_id(uuid.UUID(image))):
        assert app.key_store.is_destroyed(subject)
        with pytest.raises(Gone):
            app.repository.get(subject)
    assert _code(_list(client, doctor, image)) in {"image_not_found", "image_destroyed"}
