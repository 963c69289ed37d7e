"""Non-destructive editing: an edit list of events, revisions, undo/redo round-tripping the
rendered derivative byte for byte, the original untouched."""

from __future__ import annotations

import hashlib
import io
import uuid

import pytest
from PIL import Image

from adapters.image_edit_renderer import render
from conftest import graphql, jpeg_bytes, register_patient, stored_events, upload
from domain.errors import InvalidInput
from domain.image_edits import ImageEdits, edits_id, size_after, validate_operation

EDITS = """query($id: ID!){ imageEdits(imageId: $id){ version revision revisions operations
    canUndo canRedo renderUrl } }"""
APPLY = """mutation($id: ID!, $v: Int!, $e: ImageEditInput!){ applyImageEdit(imageId: $id,
    version: $v, edit: $e){ version revision revisions operations canUndo canRedo renderUrl } }"""
STEP = """mutation($id: ID!, $v: Int!){ %s(imageId: $id, version: $v){ version revision
    revisions operations canUndo canRedo renderUrl } }"""


def _data(result, field):
    assert "errors" not in result, result
    return result["data"][field]


def _code(result):
    assert "errors" in result, result
    return result["errors"][0]["extensions"]["code"]


def _pixels(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


# ---- pure parts --------------------------------------------------------------------


def test_rendering_applies_operations_in_order():
    source = Image.new("RGB", (400, 200), "black")
    source.paste((255, 0, 0), (0, 0, 100, 200))  # a red band on the left
    buffer = io.BytesIO()
    source.save(buffer, "PNG")
    data = buffer.getvalue()
    ops = [validate_operation({"op": "rotate", "degrees": 90}, (400, 200))]
    rotated = _pixels(render(data, (400, 200), ops, 1000))
    assert rotated.size == (200, 400)
    assert rotated.getpixel((100, 20))[0] > 200  # clockwise: the left band is now on top
    ops.append(validate_operation({"op": "crop", "x": 0, "y": 0, "width": 200, "height": 100},
                                  size_after((400, 200), ops)))
    cropped = _pixels(render(data, (400, 200), ops, 1000))
    assert cropped.size == (200, 100) and cropped.getpixel((100, 50))[0] > 200
    # Rendered smaller, the crop box scales with the decode.
    assert _pixels(render(data, (400, 200), ops, 50)).size == (50, 25)
    windowed = [validate_operation({"op": "window", "center": 128, "width": 2}, (400, 200))]
    assert _pixels(render(data, (400, 200), windowed, 1000)).getpixel((300, 100)) == (0, 0, 0)


@pytest.mark.parametrize("raw", [
    {"op": "zoom"}, {"op": "rotate", "degrees": 0}, {"op": "rotate", "degrees": "90"},
    {"op": "flip", "axis": "diagonal"}, {"op": "crop", "x": 0, "y": 0, "width": 0, "height": 5},
    {"op": "crop", "x": 300, "y": 0, "width": 200, "height": 5},
    {"op": "crop", "x": 0.5, "y": 0, "width": 20, "height": 5},
    {"op": "gamma", "gamma": 0}, {"op": "contrast", "factor": float("nan")},
    {"op": "window", "center": 10, "width": 0},
])
def test_bad_operations(raw):
    with pytest.raises(InvalidInput) as err:
        validate_operation(raw, (400, 200))
    assert err.value.code == "invalid_edit"


# ---- over the API ------------------------------------------------------------------


def test_edit_list_undo_redo_round_trips_the_derivative(client, auth):
    staff = auth("clinical_staff")
    patient = register_patient(client, staff)
    response = upload(client, staff, patient, jpeg_bytes(800, 600))
    assert response.status_code == 201, response.text
    image = response.json()["id"]
    original = client.get(f"/api/v1/images/{image}/original", headers=staff).content

    def rendering(url):
        got = client.get(url + ("&" if "?" in url else "?") + "size=400", headers=staff)
        assert got.status_code == 200, got.text
        return got.content

    empty = _data(graphql(client, staff, EDITS, {"id": image}), "imageEdits")
    assert (empty["version"], empty["revision"], empty["operations"]) == (0, 1, [])
    v1 = rendering(empty["renderUrl"])
    assert _pixels(v1).size == (400, 300)
    rotated = _data(graphql(client, staff, APPLY, {"id": image, "v": 0, "e": {
        "op": "rotate", "degrees": 90}}), "applyImageEdit")
    assert rotated["revision"] == 2 and rotated["operations"] == [{"op": "rotate",
                                                                   "degrees": 90.0}]
    # The crop box is in the rotated (600x800) space: 800 wide would not fit.
    too_wide = graphql(client, staff, APPLY, {"id": image, "v": rotated["version"], "e": {
        "op": "crop", "x": 0, "y": 0, "width": 800, "height": 100}})
    assert _code(too_wide) == "invalid_edit"
    cropped = _data(graphql(client, staff, APPLY, {"id": image, "v": rotated["version"], "e": {
        "op": "crop", "x": 100, "y": 200, "width": 400, "height": 400}}), "applyImageEdit")
    v3 = rendering(cropped["renderUrl"])
    assert _pixels(v3).size == (400, 400)
    v2 = rendering(rotated["renderUrl"])
    assert _pixels(v2).size == (300, 400)
    undone = _data(graphql(client, staff, STEP % "undoImageEdit",
                           {"id": image, "v": cropped["version"]}), "undoImageEdit")
    assert undone["revision"] == 2 and undone["canRedo"]
    assert rendering(undone["renderUrl"]) == v2  # same bytes as before the crop
    redone = _data(graphql(client, staff, STEP % "redoImageEdit",
                           {"id": image, "v": undone["version"]}), "redoImageEdit")
    assert rendering(redone["renderUrl"]) == v3
    reset = _data(graphql(client, staff, STEP % "resetImageEdits",
                          {"id": image, "v": redone["version"]}), "resetImageEdits")
    assert reset["operations"] == [] and rendering(reset["renderUrl"]) == v1
    # Older revisions stay addressable; the ETag answers 304.
    first = client.get(f"/api/v1/images/{image}/edited?revision=3&size=400", headers=staff)
    assert first.content == v3
    cached = client.get(f"/api/v1/images/{image}/edited?revision=3&size=400",
                        headers={**staff, "If-None-Match": first.headers["etag"]})
    assert cached.status_code == 304
    # Stale version: 409 and nothing recorded. The original never changed.
    count = len(stored_events(client, ImageEdits.Edited))
    stale = graphql(client, staff, APPLY, {"id": image, "v": rotated["version"],
                                           "e": {"op": "flip", "axis": "horizontal"}})
    assert _code(stale) == "stale_version"
    assert len(stored_events(client, ImageEdits.Edited)) == count
    again = client.get(f"/api/v1/images/{image}/original", headers=staff).content
    assert hashlib.sha256(again).digest() == hashlib.sha256(original).digest()
    events = [type(e).__name__ for e in client.app.state.services.app.events.get(
        edits_id(uuid.UUID(image)))]
    assert events == ["Opened", "Edited", "Edited", "Undone", "Redone", "Reset"]
    # Permissions and tenancy.
    assert _code(graphql(client, auth("front_desk"), APPLY, {"id": image, "v": reset["version"],
                 "e": {"op": "flip", "axis": "vertical"}})) == "permission_denied"
    other = auth("doctor", clinic_id="other-" + image[:8])
    assert _code(graphql(client, other, EDITS, {"id": image})) == "image_not_found"
    assert client.get(f"/api/v1/images/{image}/edited", headers=other).status_code == 404
    bad = client.get(f"/api/v1/images/{image}/edited?revision=99", headers=staff)
    assert bad.status_code == 404 and bad.json()["code"] == "revision_not_found"


SAVE_VIEW = """mutation($i: SaveViewStateInput!){ saveViewState(input: $i){ imageId zoom panX panY
    rotation windowCenter windowWidth visibleLayers editRevision } }"""
VIEW = """query($id: ID!){ viewState(imageId: $id){ zoom panX panY visibleLayers } }"""


def test_saved_view_states_are_per_user(client, auth, clinic, shared_settings):
    from conftest import bearer, token_for

    doctor = auth("doctor")
    colleague = bearer(token_for(shared_settings, "doctor", clinic, user="dr-2"))
    patient = register_patient(client, doctor)
    image = upload(client, doctor, patient, jpeg_bytes(800, 600)).json()["id"]
    assert _data(graphql(client, doctor, VIEW, {"id": image}), "viewState") is None
    saved = _data(graphql(client, doctor, SAVE_VIEW, {"i": {
        "imageId": image, "zoom": 2.5, "panX": 400, "panY": 300, "windowCenter": 128,
        "windowWidth": 200, "visibleLayers": ["user-doctor", "dr-2", "dr-2"],
        "editRevision": 1}}), "saveViewState")
    assert saved["visibleLayers"] == ["user-doctor", "dr-2"]
    _data(graphql(client, doctor, SAVE_VIEW, {"i": {"imageId": image, "zoom": 4, "panX": 10,
                                                    "panY": 20}}), "saveViewState")
    mine = _data(graphql(client, doctor, VIEW, {"id": image}), "viewState")
    assert mine == {"zoom": 4.0, "panX": 10.0, "panY": 20.0, "visibleLayers": []}
    assert _data(graphql(client, colleague, VIEW, {"id": image}), "viewState") is None
    for bad in ({"zoom": 0}, {"panX": 9000}, {"windowCenter": 5}, {"zoom": 1e9}):
        values = {"imageId": image, "zoom": 1, "panX": 0, "panY": 0, **bad}
        result = graphql(client, doctor, SAVE_VIEW, {"i": values})
        assert _code(result) == "invalid_view_state", result
    assert _code(graphql(client, auth("front_desk"), VIEW, {"id": image})) == (
        "permission_denied")
    other = auth("doctor", clinic_id="other-" + image[:8])
    assert _code(graphql(client, other, VIEW, {"id": image})) == "image_not_found"
