"""Viewing: annotations, calibration, non-destructive edits, view states, comparisons.

Targets are this area's own patient and images (another area's operations may delete,
destroy or erase the world's shared ones). Operations that change a versioned target either
get a fresh one or let the clinic admin bring the shared one to the same starting state
right before the call (e.g. one edit to undo), reading its current version first, so every
role meets the same situation.
"""

from __future__ import annotations

import uuid
from typing import Any

from conftest import jpeg_bytes, register_patient, upload
from domain.permissions import Grant, Permission
from permission_matrix.spec import Headers, Operation, Outcome, World, rest_outcome

P, G = Permission, Grant

# ---- queries and mutations -----------------------------------------------------------

ANNOTATION = "query($id: ID!){ annotation(id: $id){ id version } }"
IMAGE_ANNOTATIONS = "query($id: ID!){ imageAnnotations(imageId: $id){ id } }"
IMAGE_CALIBRATION = "query($id: ID!){ imageCalibration(imageId: $id){ version } }"
IMAGE_EDITS = "query($id: ID!){ imageEdits(imageId: $id){ version revision } }"
VIEW_STATE = "query($id: ID!){ viewState(imageId: $id){ zoom } }"
COMPARISON = "query($id: ID!){ comparison(id: $id){ id version } }"

ADD = "mutation($i: AddAnnotationInput!){ addAnnotation(input: $i){ id version } }"
EDIT = "mutation($i: EditAnnotationInput!){ editAnnotation(input: $i){ id version } }"
ANNOTATION_STEP = "mutation($id: ID!, $v: Int!){ %s(id: $id, version: $v){ id version } }"
CALIBRATE = "mutation($i: CalibrateImageInput!){ calibrateImage(input: $i){ version } }"
CLEAR_CALIBRATION = """mutation($id: ID!, $v: Int!){ clearImageCalibration(imageId: $id,
    version: $v){ version } }"""
APPLY_EDIT = """mutation($id: ID!, $v: Int!, $e: ImageEditInput!){ applyImageEdit(imageId: $id,
    version: $v, edit: $e){ version } }"""
EDIT_STEP = "mutation($id: ID!, $v: Int!){ %s(imageId: $id, version: $v){ version } }"
SAVE_VIEW = "mutation($i: SaveViewStateInput!){ saveViewState(input: $i){ zoom } }"
CREATE_COMPARISON = """mutation($ids: [ID!]!){ createComparison(imageIds: $ids,
    label: "before / after"){ id version } }"""
CORRECT = """mutation($id: ID!, $v: Int!){ correctAlignment(comparisonId: $id, version: $v,
    index: 1, scale: 1, rotationDeg: -2.5, translateX: 4, translateY: 6){ version } }"""

FLIP = {"op": "flip", "axis": "horizontal"}


# ---- targets -------------------------------------------------------------------------


def _patient(world: World) -> str:
    # This area's own patient: another area's operations may erase the world's patient.
    return world.once("viewing:patient", lambda w: register_patient(w.client, w.admin))


def _image(world: World) -> str:
    """A new photo of this area's patient, with pixels unlike any other upload's."""
    seed = uuid.uuid4().int % 10_000
    response = upload(world.client, world.admin, _patient(world), jpeg_bytes(seed=seed))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _shared_image(world: World, purpose: str) -> str:
    return world.once(f"viewing:image:{purpose}", _image)


def _add(world: World, image_id: str) -> dict[str, Any]:
    """An annotation by the clinic admin (so clinical staff do not own it)."""
    return world.setup_gql(ADD, {"i": {"imageId": image_id, "kind": "line",
                                       "points": [[0, 0], [30, 40]]}})["addAnnotation"]


def _edited_annotation(world: World) -> dict[str, Any]:
    """A fresh annotation with one edit to undo (version 2)."""
    added = _add(world, _shared_image(world, "annotations"))
    return world.setup_gql(EDIT, {"i": {"id": added["id"], "version": added["version"],
                                        "label": "checked"}})["editAnnotation"]


def _edits_version(world: World, image_id: str) -> int:
    return world.setup_gql(IMAGE_EDITS, {"id": image_id})["imageEdits"]["version"]


def _apply(world: World, image_id: str) -> int:
    """The admin appends one edit to the shared image; answers the new version."""
    return world.setup_gql(APPLY_EDIT, {"id": image_id, "v": _edits_version(world, image_id),
                                        "e": FLIP})["applyImageEdit"]["version"]


def _calibration_version(world: World, image_id: str) -> int:
    return world.setup_gql(IMAGE_CALIBRATION, {"id": image_id})["imageCalibration"]["version"]


def _comparison(world: World) -> dict[str, Any]:
    """Two photos of one patient, the second aligned onto the first automatically."""
    ids = [_shared_image(world, "compare-0"), _shared_image(world, "compare-1")]
    return world.setup_gql(CREATE_COMPARISON, {"ids": ids})["createComparison"]


def _shared_comparison(world: World) -> dict[str, Any]:
    return world.once("viewing:comparison", _comparison)


# ---- calls ---------------------------------------------------------------------------


def _annotation(world: World, headers: Headers) -> Outcome:
    target = world.once("viewing:annotation",
                        lambda w: _add(w, _shared_image(w, "annotations")))
    return world.gql(headers, ANNOTATION, {"id": target["id"]})


def _image_annotations(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, IMAGE_ANNOTATIONS, {"id": _shared_image(world, "annotations")})


def _image_calibration(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, IMAGE_CALIBRATION, {"id": _shared_image(world, "calibration")})


def _image_edits(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, IMAGE_EDITS, {"id": _shared_image(world, "edits")})


def _view_state(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, VIEW_STATE, {"id": _shared_image(world, "view")})


def _comparison_query(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, COMPARISON, {"id": _shared_comparison(world)["id"]})


def _add_annotation(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, ADD, {"i": {"imageId": _shared_image(world, "annotations"),
                                          "kind": "angle",
                                          "points": [[10, 10], [60, 10], [60, 70]]}})


def _edit_annotation(world: World, headers: Headers) -> Outcome:
    target = _add(world, _shared_image(world, "annotations"))
    return world.gql(headers, EDIT, {"i": {"id": target["id"], "version": target["version"],
                                           "points": [[0, 0], [60, 80]]}})


def _remove_annotation(world: World, headers: Headers) -> Outcome:
    target = _add(world, _shared_image(world, "annotations"))
    return world.gql(headers, ANNOTATION_STEP % "removeAnnotation",
                     {"id": target["id"], "v": target["version"]})


def _undo_annotation(world: World, headers: Headers) -> Outcome:
    # Undoing an edit (not a removal): clinical staff may, on anyone's annotation.
    target = _edited_annotation(world)
    return world.gql(headers, ANNOTATION_STEP % "undoAnnotation",
                     {"id": target["id"], "v": target["version"]})


def _redo_annotation(world: World, headers: Headers) -> Outcome:
    target = _edited_annotation(world)
    undone = world.setup_gql(ANNOTATION_STEP % "undoAnnotation",
                             {"id": target["id"], "v": target["version"]})["undoAnnotation"]
    return world.gql(headers, ANNOTATION_STEP % "redoAnnotation",
                     {"id": undone["id"], "v": undone["version"]})


def _calibrate_image(world: World, headers: Headers) -> Outcome:
    image = _shared_image(world, "calibration")
    return world.gql(headers, CALIBRATE, {"i": {
        "imageId": image, "version": _calibration_version(world, image), "dpi": 300,
        "magnification": 1.1}})


def _clear_calibration(world: World, headers: Headers) -> Outcome:
    image = _shared_image(world, "calibration-clear")
    recorded = world.setup_gql(CALIBRATE, {"i": {
        "imageId": image, "version": _calibration_version(world, image),
        "mmPerPixel": 0.1}})["calibrateImage"]
    return world.gql(headers, CLEAR_CALIBRATION, {"id": image, "v": recorded["version"]})


def _apply_image_edit(world: World, headers: Headers) -> Outcome:
    image = _shared_image(world, "edits")
    return world.gql(headers, APPLY_EDIT, {"id": image, "v": _edits_version(world, image),
                                           "e": {"op": "rotate", "degrees": 90}})


def _undo_image_edit(world: World, headers: Headers) -> Outcome:
    image = _shared_image(world, "edits")
    return world.gql(headers, EDIT_STEP % "undoImageEdit",
                     {"id": image, "v": _apply(world, image)})


def _redo_image_edit(world: World, headers: Headers) -> Outcome:
    image = _shared_image(world, "edits")
    undone = world.setup_gql(EDIT_STEP % "undoImageEdit",
                             {"id": image, "v": _apply(world, image)})["undoImageEdit"]
    return world.gql(headers, EDIT_STEP % "redoImageEdit", {"id": image, "v": undone["version"]})


def _reset_image_edits(world: World, headers: Headers) -> Outcome:
    image = _shared_image(world, "edits")
    return world.gql(headers, EDIT_STEP % "resetImageEdits",
                     {"id": image, "v": _apply(world, image)})


def _save_view_state(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, SAVE_VIEW, {"i": {
        "imageId": _shared_image(world, "view"), "zoom": 2.0, "panX": 100, "panY": 80,
        "windowCenter": 128, "windowWidth": 200}})


def _create_comparison(world: World, headers: Headers) -> Outcome:
    ids = [_shared_image(world, "compare-0"), _shared_image(world, "compare-1")]
    return world.gql(headers, CREATE_COMPARISON, {"ids": ids})


def _correct_alignment(world: World, headers: Headers) -> Outcome:
    target = _shared_comparison(world)
    current = world.setup_gql(COMPARISON, {"id": target["id"]})["comparison"]
    return world.gql(headers, CORRECT, {"id": target["id"], "v": current["version"]})


def _edited_rendering(world: World, headers: Headers) -> Outcome:
    image = _shared_image(world, "edits")
    return rest_outcome(world.client.get(f"/api/v1/images/{image}/edited?size=64",
                                         headers=headers))


def _aligned_rendering(world: World, headers: Headers) -> Outcome:
    target = _shared_comparison(world)
    return rest_outcome(world.client.get(
        f"/api/v1/comparisons/{target['id']}/aligned/1.jpg?size=64", headers=headers))


ANNOTATE_OWN = {P.ANNOTATE: (G.OWN,)}
FULL_VIEW: dict[Permission, tuple[Grant, ...]] = {P.VIEW: ()}

OPERATIONS = [
    # Annotations, calibration, edit lists, view states and comparisons are clinical
    # content, not the image's metadata: front desk and billing see none of them.
    Operation("query annotation", FULL_VIEW, _annotation, not_found="annotation_not_found"),
    Operation("query imageAnnotations", FULL_VIEW, _image_annotations,
              not_found="image_not_found"),
    # Judgement: the effective calibration comes partly from a ruler annotation, so it is
    # measurement content (full view) rather than metadata.
    Operation("query imageCalibration", FULL_VIEW, _image_calibration,
              not_found="image_not_found"),
    Operation("query imageEdits", FULL_VIEW, _image_edits, not_found="image_not_found"),
    # A saved viewer position is only of use to someone who may see the pixels.
    Operation("query viewState", FULL_VIEW, _view_state, not_found="image_not_found"),
    Operation("query comparison", FULL_VIEW, _comparison_query,
              not_found="comparison_not_found"),
    Operation("mutation addAnnotation", ANNOTATE_OWN, _add_annotation,
              not_found="image_not_found"),
    Operation("mutation editAnnotation", ANNOTATE_OWN, _edit_annotation,
              not_found="annotation_not_found"),
    # The target is the clinic admin's: clinical staff (OWN) may remove only their own.
    Operation("mutation removeAnnotation", ANNOTATE_OWN, _remove_annotation,
              overrides={"clinical_staff": "not_own_annotation"},
              not_found="annotation_not_found"),
    Operation("mutation undoAnnotation", ANNOTATE_OWN, _undo_annotation,
              not_found="annotation_not_found"),
    Operation("mutation redoAnnotation", ANNOTATE_OWN, _redo_annotation,
              not_found="annotation_not_found"),
    Operation("mutation calibrateImage", ANNOTATE_OWN, _calibrate_image,
              not_found="image_not_found"),
    Operation("mutation clearImageCalibration", ANNOTATE_OWN, _clear_calibration,
              not_found="image_not_found"),
    Operation("mutation applyImageEdit", ANNOTATE_OWN, _apply_image_edit,
              not_found="image_not_found"),
    Operation("mutation undoImageEdit", ANNOTATE_OWN, _undo_image_edit,
              not_found="image_not_found"),
    Operation("mutation redoImageEdit", ANNOTATE_OWN, _redo_image_edit,
              not_found="image_not_found"),
    Operation("mutation resetImageEdits", ANNOTATE_OWN, _reset_image_edits,
              not_found="image_not_found"),
    # Saving where one left the viewer is part of viewing, so read-only users may.
    Operation("mutation saveViewState", FULL_VIEW, _save_view_state,
              not_found="image_not_found"),
    # Judgement: a comparison is a recorded clinical work product with its alignments
    # (like a measurement), so creating or correcting one is annotating, not viewing.
    Operation("mutation createComparison", ANNOTATE_OWN, _create_comparison,
              not_found="image_not_found"),
    Operation("mutation correctAlignment", ANNOTATE_OWN, _correct_alignment,
              not_found="comparison_not_found"),
    # Renderings are pixels of the original: full view only.
    Operation("GET /api/v1/images/{image_id}/edited", FULL_VIEW, _edited_rendering,
              not_found="image_not_found"),
    Operation("GET /api/v1/comparisons/{comparison_id}/aligned/{index}.jpg", FULL_VIEW,
              _aligned_rendering, not_found="comparison_not_found"),
]
