"""Upload: the happy path end to end, idempotency, consent, and every kind of bad input."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image as PILImage

from conftest import (
    GALLERY,
    blob_subjects,
    graphql,
    jpeg_bytes,
    make_settings,
    register_patient,
    stored_events,
    token_for,
    upload,
    wait_until,
)
from domain.image import Image


def _gallery(client, headers, patient_id, first=50):
    result = graphql(client, headers, GALLERY, {"id": patient_id, "first": first})
    assert "errors" not in result, result
    return result["data"]["patient"]["images"]


def test_upload_event_derivative_gallery_thumbnail(client, auth):
    headers = auth("clinical_staff")
    patient_id = register_patient(client, headers)
    response = upload(client, headers, patient_id, jpeg_bytes(3000, 2000),
                      fields={"view": "IV07", "tags": "Initial, smile",
                              "captured_at": "2026-01-02T10:00:00+00:00"})
    assert response.status_code == 201, response.text
    image_id = response.json()["id"]

    # The event is in the log, encrypted at rest but readable through the mapper.
    captured = [e for e in stored_events(client, Image.Captured)
                if str(e.originator_id) == image_id]
    assert len(captured) == 1
    assert captured[0].view == "IV07" and captured[0].category == "intraoral"
    assert captured[0].original.size > 0 and len(captured[0].original.sha256) == 64

    # Read-your-writes: the 201 came after the gallery applied the capture.
    node = _gallery(client, headers, patient_id)["edges"][0]["node"]
    assert node["id"] == image_id
    assert node["tags"] == ["initial", "smile"]
    assert node["capturedAt"].startswith("2026-01-02T10:00:00")

    # The worker records DerivativesGenerated; the gallery then links the thumbnail.
    wait_until(lambda: _gallery(client, headers, patient_id)["edges"][0]["node"]["thumbnailUrl"])
    thumb = client.get(f"/api/v1/images/{image_id}/thumbnail", headers=headers)
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/jpeg"
    assert thumb.headers["etag"].strip('"') and "private" in thumb.headers["cache-control"]
    assert max(PILImage.open(io.BytesIO(thumb.content)).size) == 256
    preview = client.get(f"/api/v1/images/{image_id}/preview", headers=headers)
    assert max(PILImage.open(io.BytesIO(preview.content)).size) == 1600
    original = client.get(f"/api/v1/images/{image_id}/original", headers=headers)
    assert original.content == jpeg_bytes(3000, 2000)  # byte for byte, never modified

    again = client.get(f"/api/v1/images/{image_id}/thumbnail",
                       headers={**headers, "If-None-Match": thumb.headers["etag"]})
    assert again.status_code == 304


def test_gallery_pagination_with_cursor(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    ids = []
    for day in range(1, 6):
        r = upload(client, headers, patient_id, jpeg_bytes(64, 48, seed=day),
                   fields={"captured_at": f"2026-03-0{day}T09:00:00+00:00"})
        ids.append(r.json()["id"])
    seen = []
    after = None
    while True:
        result = graphql(client, headers, GALLERY, {"id": patient_id, "first": 2, "after": after})
        page = result["data"]["patient"]["images"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == list(reversed(ids))  # newest capture first, each exactly once
    bad = graphql(client, headers, GALLERY, {"id": patient_id, "first": 2, "after": "nonsense"})
    assert bad["errors"][0]["extensions"]["code"] == "invalid_cursor"


def test_idempotency_key_returns_the_same_image(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    data = jpeg_bytes(seed=7)
    first = upload(client, headers, patient_id, data, extra_headers={"Idempotency-Key": "abc-1"})
    second = upload(client, headers, patient_id, data, extra_headers={"Idempotency-Key": "abc-1"})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert len(_gallery(client, headers, patient_id)["edges"]) == 1
    captured = [e for e in stored_events(client, Image.Captured)
                if str(e.patient_id) == patient_id]
    assert len(captured) == 1

    other = upload(client, headers, patient_id, jpeg_bytes(seed=8),
                   extra_headers={"Idempotency-Key": "abc-1"})
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"


def test_photography_needs_clinical_photography_consent(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers, consent=False)
    refused = upload(client, headers, patient_id, jpeg_bytes())
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "consent_required"
    # A radiograph is not photography: no photo consent needed.
    xray = upload(client, headers, patient_id, jpeg_bytes(seed=1),
                  fields={"category": "radiograph"})
    assert xray.status_code == 201

    graphql(client, headers,
            """mutation($i: GrantConsentInput!){ grantConsent(input: $i){ id } }""",
            {"i": {"patientId": patient_id, "scope": "CLINICAL_PHOTOGRAPHY"}})
    assert upload(client, headers, patient_id, jpeg_bytes(seed=2)).status_code == 201
    revoked = graphql(client, headers, """mutation($i: RevokeConsentInput!){
        revokeConsent(input: $i){ consents { scope } } }""",
                      {"i": {"patientId": patient_id, "scope": "CLINICAL_PHOTOGRAPHY"}})
    assert revoked["data"]["revokeConsent"]["consents"] == []
    assert upload(client, headers, patient_id,
                  jpeg_bytes(seed=3)).json()["code"] == "consent_required"


def _png_header_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims an enormous canvas."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


BAD_INPUTS = [
    ("empty file", b"", "photo.jpg", "image/jpeg", 422, "empty_file"),
    ("truncated jpeg", jpeg_bytes(800, 600)[:4000], "photo.jpg", "image/jpeg", 422,
     "corrupt_image"),
    ("corrupt jpeg body", jpeg_bytes(800, 600)[:600] + b"\x00" * 30000 + b"\xff\xd9",
     "photo.jpg", "image/jpeg", 422, "corrupt_image"),
    ("not an image at all", b"hello, this is plain text\n" * 20, "photo.jpg", "image/jpeg",
     415, "unsupported_media_type"),
    ("jpeg named png", jpeg_bytes(), "photo.png", "image/png", 415, "media_type_mismatch"),
    ("jpeg declared as png", jpeg_bytes(), "photo", "image/png", 415, "media_type_mismatch"),
    ("decompression bomb", _png_header_bomb(60000, 60000), "bomb.png", "image/png", 413,
     "image_too_many_pixels"),
    ("pdf document", b"%PDF-1.4\n%...\n", "letter.pdf", "application/pdf", 415,
     "unsupported_media_type"),
]


@pytest.mark.parametrize(("name", "data", "filename", "ctype", "status", "code"), BAD_INPUTS,
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_refused_and_nothing_is_stored(client, auth, name, data, filename, ctype,
                                                    status, code):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    subjects_before = blob_subjects(client)
    response = upload(client, headers, patient_id, data, filename=filename, content_type=ctype)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert [e for e in stored_events(client, Image.Captured)
            if str(e.patient_id) == patient_id] == []
    assert blob_subjects(client) == subjects_before
    assert _gallery(client, headers, patient_id)["edges"] == []
    # ... and the server keeps serving.
    assert client.get("/healthz").status_code == 200
    assert upload(client, headers, patient_id, jpeg_bytes()).status_code == 201


def test_malformed_requests(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    no_file = client.post(f"/api/v1/patients/{patient_id}/images", data={"view": "IV07"},
                          files={"other": ("x.jpg", jpeg_bytes(), "image/jpeg")}, headers=headers)
    assert no_file.json()["code"] == "file_required"
    not_multipart = client.post(f"/api/v1/patients/{patient_id}/images", content=jpeg_bytes(),
                                headers={**headers, "Content-Type": "image/jpeg"})
    assert not_multipart.status_code == 400 and not_multipart.json()["code"] == "invalid_request"
    for fields, code in [({"view": "XX99"}, "unknown_view"),
                         ({"category": "selfie"}, "invalid_category"),
                         ({"captured_at": "yesterday"}, "invalid_captured_at"),
                         ({"captured_at": "2999-01-01T00:00:00"}, "invalid_captured_at")]:
        r = upload(client, headers, patient_id, jpeg_bytes(), fields=fields)
        assert (r.status_code, r.json()["code"]) == (400, code)
    bad_key = upload(client, headers, patient_id, jpeg_bytes(),
                     extra_headers={"Idempotency-Key": "k" * 300})
    assert bad_key.json()["code"] == "invalid_idempotency_key"


def test_unknown_patient_is_404(client, auth):
    headers = auth("doctor")
    r = upload(client, headers, "00000000-0000-4000-8000-000000000000", jpeg_bytes())
    assert r.status_code == 404 and r.json()["code"] == "patient_not_found"
    r = upload(client, headers, "not-a-uuid", jpeg_bytes())
    assert r.status_code == 400


def test_upload_over_the_size_limit_is_refused_while_streaming(database_factory, tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app

    settings = make_settings(database_factory(), tmp_path, max_upload_bytes=200_000)
    with TestClient(create_app(settings)) as small:
        headers = {"Authorization": "Bearer " + token_for(settings, "doctor", "c1")}
        patient_id = register_patient(small, headers)
        big = jpeg_bytes(2000, 2000, seed=3)
        assert len(big) > 200_000
        r = upload(small, headers, patient_id, big)
        assert r.status_code == 413 and r.json()["code"] == "upload_too_large"
        assert stored_events(small, Image.Captured) == []
        assert blob_subjects(small) == set()
        assert upload(small, headers, patient_id, jpeg_bytes(100, 100)).status_code == 201
