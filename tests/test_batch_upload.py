"""Batch uploads and zip imports: per-file results, hostile archives, duplicates."""

from __future__ import annotations

import io
import zipfile

from conftest import blob_subjects, graphql, jpeg_bytes, register_patient, upload


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _batch(client, headers, patient_id, files, data=None):
    return client.post(f"/api/v1/patients/{patient_id}/image-batches",
                       files=[("files", f) for f in files], data=data or {}, headers=headers)


def _count(client, headers, patient_id):
    result = graphql(client, headers, """query($id: ID!){ patient(id: $id){
        images(first: 100){ edges { node { id view } } } } }""", {"id": patient_id})
    return result["data"]["patient"]["images"]["edges"]


def test_a_batch_reports_each_file_and_keeps_the_good_ones(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    before = blob_subjects(client)
    response = _batch(client, headers, patient_id, [
        ("IV07_front.jpg", jpeg_bytes(seed=1), "image/jpeg"),
        ("empty.jpg", b"", "image/jpeg"),
        ("notes.txt", b"not an image at all", "text/plain"),
        ("EV19 smile.jpg", jpeg_bytes(seed=2), "image/jpeg"),
        ("truncated.jpg", jpeg_bytes(seed=3)[:3000], "image/jpeg"),
    ])
    assert response.status_code == 200, response.text
    body = response.json()
    outcome = {r["filename"]: (r["status"], r["code"]) for r in body["results"]}
    assert outcome == {
        "IV07_front.jpg": ("accepted", None), "empty.jpg": ("rejected", "empty_file"),
        "notes.txt": ("rejected", "unsupported_media_type"),
        "EV19 smile.jpg": ("accepted", None), "truncated.jpg": ("rejected", "corrupt_image"),
    }
    assert (body["accepted"], body["rejected"]) == (2, 3)
    views = sorted(e["node"]["view"] for e in _count(client, headers, patient_id))
    assert views == ["EV19", "IV07"]  # read from the file names
    assert len(blob_subjects(client) - before) == 2  # nothing half-stored for the rejects


def test_zip_import_is_safe_against_slip_and_bombs(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.jpg", b"\x00" * (300 * 1024 * 1024))
    archive_bytes = _zip({
        "series/IV01_right.jpg": jpeg_bytes(seed=11),
        "../../etc/evil.jpg": jpeg_bytes(seed=12),
        "/abs/evil.jpg": jpeg_bytes(seed=13),
        "series/zero.jpg": b"",
        "series/IV18_left.jpg": jpeg_bytes(seed=14),
    })
    response = _batch(client, headers, patient_id, [
        ("visit.zip", archive_bytes, "application/zip"),
        ("bomb.zip", bomb.getvalue(), "application/zip"),
        ("broken.zip", b"PK\x03\x04" + b"\x00" * 50, "application/zip"),
    ])
    assert response.status_code == 200, response.text
    outcome = {r["filename"]: (r["status"], r["code"]) for r in response.json()["results"]}
    assert outcome["IV01_right.jpg"] == ("accepted", None)
    assert outcome["IV18_left.jpg"] == ("accepted", None)
    assert outcome["../../etc/evil.jpg"] == ("rejected", "unsafe_path")
    assert outcome["/abs/evil.jpg"] == ("rejected", "unsafe_path")
    assert outcome["zero.jpg"] == ("rejected", "empty_file")
    assert outcome["bomb.jpg"] == ("rejected", "zip_member_too_large")
    assert outcome["broken.zip"] == ("rejected", "corrupt_zip")
    assert len(_count(client, headers, patient_id)) == 2
    assert client.get("/healthz").status_code == 200


def test_exact_and_near_duplicates(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    original = jpeg_bytes(1200, 900, seed=21)
    first = upload(client, headers, patient_id, original)
    assert first.status_code == 201
    again = upload(client, headers, patient_id, original)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["id"] == first.json()["id"]
    # The same photo re-encoded smaller: stored, but reported as a near-duplicate.
    from PIL import Image

    smaller = io.BytesIO()
    Image.open(io.BytesIO(original)).resize((600, 450)).save(smaller, "JPEG", quality=70)
    near = upload(client, headers, patient_id, smaller.getvalue())
    assert near.status_code == 201
    assert near.json()["nearDuplicates"] == [first.json()["id"]]
    mirrored = io.BytesIO()
    Image.open(io.BytesIO(original)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        mirrored, "JPEG")
    different = upload(client, headers, patient_id, mirrored.getvalue())
    assert different.json()["nearDuplicates"] == []
    assert len(_count(client, headers, patient_id)) == 3
