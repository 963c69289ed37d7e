"""Photo processing after capture: formats, EXIF, quality flags, categorisation, mirrors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageFilter
from unit.test_photo_quality import colour_cast, synthetic_face

from conftest import graphql, jpeg_bytes, register_patient, stored_events, upload, wait_until
from domain.image import Image

CEPH = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "ceph" / "B1893L12.jpg"
NODE = """query($id: ID!){ image(id: $id){ id category view categorySource thumbnailUrl
    quality { status hints checks { name status value } } } }"""


def _processed(client, headers, image_id):
    def ready():
        node = graphql(client, headers, NODE, {"id": image_id})["data"]["image"]
        return node if node["thumbnailUrl"] and node["quality"] else None
    return wait_until(ready)


def _encode(image: PILImage.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _photo(seed: int = 0) -> PILImage.Image:
    return PILImage.open(io.BytesIO(jpeg_bytes(1600, 1200, seed=seed)))


@pytest.mark.parametrize(("fmt", "filename", "ctype", "options"), [
    ("PNG", "photo.png", "image/png", {}),
    ("TIFF", "photo.tiff", "image/tiff", {"compression": "tiff_lzw"}),
    ("WEBP", "photo.webp", "image/webp", {"quality": 90}),
    ("HEIF", "photo.heic", "image/heic", {"quality": 90}),
])
def test_every_photo_format_is_accepted_and_processed(client, auth, fmt, filename, ctype,
                                                      options):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    data = _encode(_photo(), fmt, **options)
    response = upload(client, headers, patient_id, data, filename=filename, content_type=ctype)
    assert response.status_code == 201, response.text
    node = _processed(client, headers, response.json()["id"])
    thumb = client.get(node["thumbnailUrl"], headers=headers)
    assert PILImage.open(io.BytesIO(thumb.content)).size == (256, 192)
    original = client.get(f"/api/v1/images/{node['id']}/original", headers=headers)
    assert original.content == data  # kept byte for byte


@pytest.mark.parametrize(("data", "filename", "code"), [
    (_encode(PILImage.new("RGB", (64, 64)), "PNG")[:60], "cut.png", "corrupt_image"),
    (_encode(PILImage.new("RGB", (64, 64)), "WEBP")[:40], "cut.webp", "corrupt_image"),
    (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 200, "empty.heic", "corrupt_image"),
    (b"II*\x00" + b"\xff" * 100, "broken.tif", "corrupt_image"),
])
def test_corrupt_files_of_each_format_are_refused(client, auth, data, filename, code):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    response = upload(client, headers, patient_id, data, filename=filename,
                      content_type="application/octet-stream")
    assert response.status_code == 422 and response.json()["code"] == code


def test_camera_metadata_is_extracted_and_capture_time_taken_from_exif(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    exif = PILImage.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS R6"
    exif.get_ifd(0x8769)[0x9003] = "2025:06:01 09:30:00"
    exif.get_ifd(0x8769)[0x829A] = 1 / 125
    exif.get_ifd(0x8769)[0x9209] = 16
    data = _encode(_photo(), "JPEG", exif=exif.tobytes())
    image_id = upload(client, headers, patient_id, data).json()["id"]
    found = [e for e in stored_events(client, Image.MetadataExtracted)
             if str(e.originator_id) == image_id and e.source == "exif"]
    assert found[0].source == "exif"
    assert found[0].metadata["make"] == "Canon" and found[0].metadata["model"] == "EOS R6"
    assert found[0].metadata["exposure_time"] == pytest.approx(0.008)
    captured = [e for e in stored_events(client, Image.Captured)
                if str(e.originator_id) == image_id]
    assert captured[0].captured_at.isoformat().startswith("2025-06-01T09:30:00")


def test_absurd_exif_is_dropped_not_trusted(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    exif = PILImage.Exif()
    exif[0x010F] = "\x00\x01\x02"  # unprintable make
    exif.get_ifd(0x8769)[0x9003] = "9999:99:99 99:99:99"
    response = upload(client, headers, patient_id, _encode(_photo(), "JPEG", exif=exif.tobytes()))
    assert response.status_code == 201


def test_the_real_cephalogram_is_categorised_as_a_radiograph(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    image_id = upload(client, headers, patient_id, CEPH.read_bytes(),
                      filename="B1893L12.jpg").json()["id"]
    node = _processed(client, headers, image_id)
    assert node["category"] == "radiograph" and node["categorySource"] == "auto"


def test_a_human_choice_overrides_and_is_never_overridden(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    image_id = upload(client, headers, patient_id, CEPH.read_bytes(),
                      fields={"category": "document"}).json()["id"]
    node = _processed(client, headers, image_id)
    assert (node["category"], node["categorySource"]) == ("document", "user")
    changed = graphql(client, headers, """mutation($i: CategoriseImageInput!){
        categoriseImage(input: $i){ category view categorySource } }""",
                      {"i": {"imageId": image_id, "category": "radiograph"}})
    assert changed["data"]["categoriseImage"] == {"category": "radiograph", "view": None,
                                                  "categorySource": "user"}
    events = [e for e in stored_events(client, Image.Categorised)
              if str(e.originator_id) == image_id]
    assert [e.source for e in events] == ["user"]


def test_quality_flags_blurred_and_dark_photos(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    sharp = synthetic_face(seed=3).resize((1024, 1280), PILImage.Resampling.LANCZOS)
    variants = {
        "sharp": sharp,
        "blurred": sharp.filter(ImageFilter.GaussianBlur(6)),
        "dark": PILImage.fromarray((np.asarray(sharp) * 0.25).astype("uint8")),
        "cast": colour_cast(sharp, red=1.25, blue=0.75),
    }
    checks = {}
    for name, image in variants.items():
        image_id = upload(client, headers, patient_id, _encode(image, "JPEG", quality=92),
                          fields={"view": "EV15"}).json()["id"]
        node = _processed(client, headers, image_id)
        checks[name] = {c["name"]: c["status"] for c in node["quality"]["checks"]}
        checks[name]["hints"] = node["quality"]["hints"]
    assert checks["sharp"]["sharpness"] == "pass"
    assert checks["blurred"]["sharpness"] == "fail"
    assert checks["dark"]["exposure_level"] != "pass"
    assert checks["cast"]["colour_cast"] != "pass"
    failing = graphql(client, headers, """query($id: ID!){ patient(id: $id){
        images(first: 10, quality: "fail"){ edges { node { id } } } } }""", {"id": patient_id})
    assert len(failing["data"]["patient"]["images"]["edges"]) >= 1


def test_mirror_views_are_flipped_in_derivatives(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    pixels = np.zeros((600, 800, 3), dtype="uint8")
    pixels[:300] = (220, 30, 30)  # red on top
    pixels[300:] = (30, 30, 220)  # blue below
    data = _encode(PILImage.fromarray(pixels), "JPEG", quality=95)
    image_id = upload(client, headers, patient_id, data, fields={"view": "IV24"}).json()["id"]
    node = _processed(client, headers, image_id)
    preview = np.asarray(PILImage.open(io.BytesIO(
        client.get(f"/api/v1/images/{node['id']}/preview", headers=headers).content)))
    top, bottom = preview[:50].mean(axis=(0, 1)), preview[-50:].mean(axis=(0, 1))
    assert top[2] > top[0] and bottom[0] > bottom[2]  # read as a direct view: blue on top
