"""Comparisons: automatic alignment on a real radiograph moved by a known similarity,
manual correction with versions, the aligned rendering, tenancy and bad input."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapters.photo_alignment import align
from conftest import graphql, jpeg_bytes, register_patient, upload

CEPH = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "ceph" / "B1893L12.jpg"
CREATE = """mutation($ids: [ID!]!, $label: String!){ createComparison(imageIds: $ids,
    label: $label){ id version label images { index imageId alignedUrl transform { scale
    rotationDeg translateX translateY source quality } } } }"""
CORRECT = """mutation($id: ID!, $v: Int!, $i: Int!){ correctAlignment(comparisonId: $id,
    version: $v, index: $i, scale: 1, rotationDeg: -7.5, translateX: 10, translateY: 20){
    version images { index transform { scale rotationDeg translateX source quality } } } }"""


def _code(result):
    assert "errors" in result, result
    return result["errors"][0]["extensions"]["code"]


def _encode(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.fixture(scope="module")
def moved_pair() -> tuple[bytes, bytes, tuple[float, float, float, float]]:
    """A 600x800 crop of the real ceph and the same region moved by a known similarity:
    p_reference = scale * R(degrees) * p_moving + (tx, ty)."""
    base = Image.open(CEPH).convert("L").resize((1024, 1280))
    origin, size = (212, 240), (600, 800)
    reference = base.crop((*origin, origin[0] + size[0], origin[1] + size[1]))
    degrees, scale, tx, ty = -8.0, 1.1, 15.0, 25.0
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    moving = base.transform(size, Image.Transform.AFFINE,
                            (scale * c, -scale * s, tx + origin[0], scale * s, scale * c,
                             ty + origin[1]), resample=Image.Resampling.BICUBIC)
    return _encode(reference), _encode(moving), (degrees, scale, tx, ty)


@pytest.mark.parametrize(("degrees", "scale", "tx", "ty"), [
    (0.0, 1.0, 0.0, 0.0), (-8.0, 1.1, 15.0, 25.0), (8.0, 1.1, 15.0, 25.0),
    (-5.0, 0.85, 0.0, 0.0), (3.0, 1.2, 30.0, -30.0),
])
def test_alignment_recovers_known_similarities(degrees, scale, tx, ty):
    base = Image.open(CEPH).convert("L").resize((1024, 1280))
    origin, size = (212, 240), (600, 800)
    reference = base.crop((*origin, origin[0] + size[0], origin[1] + size[1]))
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    moving = base.transform(size, Image.Transform.AFFINE,
                            (scale * c, -scale * s, tx + origin[0], scale * s, scale * c,
                             ty + origin[1]), resample=Image.Resampling.BICUBIC)
    found = align(_encode(reference), _encode(moving))
    assert found.rotation_deg == pytest.approx(degrees, abs=0.3)
    assert found.scale == pytest.approx(scale, rel=0.01)
    assert found.translation == pytest.approx((tx, ty), abs=3.0)
    assert found.quality > 0.6


def test_unrelated_pictures_get_a_low_quality():
    noise = jpeg_bytes(600, 800, seed=1)
    ceph = _encode(Image.open(CEPH).convert("L").resize((600, 800)))
    assert align(ceph, noise).quality < 0.3


def test_comparison_over_the_api(client, auth, moved_pair):
    reference, moving, (degrees, scale, tx, ty) = moved_pair
    doctor = auth("doctor")
    patient = register_patient(client, doctor)
    ids = [upload(client, doctor, patient, data, filename=f"{i}.jpg",
                  fields={"category": "radiograph"}).json()["id"]
           for i, data in enumerate((reference, moving))]
    created = graphql(client, doctor, CREATE, {"ids": ids, "label": "before / after"})
    assert "errors" not in created, created
    comparison = created["data"]["createComparison"]
    assert comparison["version"] == 2  # created + one automatic alignment, one transaction
    first, second = comparison["images"]
    assert first["transform"] is None and first["alignedUrl"] is None
    t = second["transform"]
    assert t["source"] == "auto" and t["quality"] > 0.6
    assert t["rotationDeg"] == pytest.approx(degrees, abs=0.3)
    assert t["scale"] == pytest.approx(scale, rel=0.01)
    assert (t["translateX"], t["translateY"]) == pytest.approx((tx, ty), abs=3.0)
    rendered = client.get(second["alignedUrl"] + "?size=400", headers=doctor)
    assert rendered.status_code == 200 and rendered.headers["content-type"] == "image/jpeg"
    side_by_side = Image.open(io.BytesIO(rendered.content))
    assert side_by_side.size == (2 * 300, 400)
    # The aligned half matches the reference half (same anatomy at the same place), away
    # from the wedge on the left where the moved picture has no pixels.
    pixels = np.asarray(side_by_side.convert("L"), dtype=float)
    left, right = pixels[40:-40, 100:280], pixels[40:-40, 400:580]
    assert np.corrcoef(left.ravel(), right.ravel())[0, 1] > 0.8
    blend = client.get(second["alignedUrl"] + "?size=400&mode=blend", headers=doctor)
    assert Image.open(io.BytesIO(blend.content)).size == (300, 400)
    # Manual correction: versioned, recorded as manual.
    corrected = graphql(client, doctor, CORRECT, {"id": comparison["id"], "v": 2, "i": 1})
    assert "errors" not in corrected, corrected
    fixed = corrected["data"]["correctAlignment"]["images"][1]["transform"]
    assert fixed["source"] == "manual" and fixed["rotationDeg"] == -7.5
    assert fixed["quality"] is None
    assert _code(graphql(client, doctor, CORRECT, {"id": comparison["id"], "v": 2,
                                                   "i": 1})) == "stale_version"
    assert _code(graphql(client, doctor, CORRECT, {"id": comparison["id"], "v": 3,
                                                   "i": 0})) == "invalid_comparison"
    # Bad input, other patients and other clinics.
    assert _code(graphql(client, doctor, CREATE, {"ids": ids[:1], "label": ""})) == (
        "invalid_comparison")
    assert _code(graphql(client, doctor, CREATE, {"ids": [ids[0], ids[0]], "label": ""})) == (
        "invalid_comparison")
    other_patient = register_patient(client, doctor)
    foreign = upload(client, doctor, other_patient, jpeg_bytes(), filename="x.jpg").json()["id"]
    assert _code(graphql(client, doctor, CREATE, {"ids": [ids[0], foreign], "label": ""})) == (
        "different_patients")
    other = auth("doctor", clinic_id="other-" + ids[0][:8])
    assert _code(graphql(client, other, "query($id: ID!){ comparison(id: $id){ id } }",
                         {"id": comparison["id"]})) == "comparison_not_found"
    assert client.get(second["alignedUrl"], headers=other).status_code == 404
    assert _code(graphql(client, auth("front_desk"), CREATE, {"ids": ids, "label": ""})) == (
        "permission_denied")
    bad_mode = client.get(second["alignedUrl"] + "?mode=wipe", headers=doctor)
    assert bad_mode.status_code == 400 and bad_mode.json()["code"] == "invalid_mode"
