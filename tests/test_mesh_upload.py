"""Intraoral scans through the REST upload: every shared mesh imported or refused clearly.

Real files from ../shared/testdata/meshes (numpy-stl's and trimesh's test models) go through
the real path: multipart upload, validation, sealed original, ``Image.Captured`` with the
mesh statistics, then the worker's rendered thumbnail and binary glTF.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.utils import get_topic
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from conftest import blob_subjects, register_patient, wait_until
from domain.image import Image

TESTDATA = Path(
    os.environ.get("ORTHOVAULT_TESTDATA", Path(__file__).resolve().parents[2] / "shared/testdata")
)
MESHES = TESTDATA / "meshes"
# Why each refused file is refused (the rest must import).
EXPECTED_REFUSALS = {
    "trimesh/empty.stl": "mesh_empty",
    "trimesh/emptyIO/ply_empty_header.ply": "mesh_empty",
    "trimesh/emptyIO/stl_empty_ascii.stl": "mesh_empty",
    "trimesh/emptyIO/stl_empty_bin.stl": "mesh_empty",
}
Headers = Callable[..., dict[str, str]]




def _scan(client: TestClient, headers: dict[str, str], patient: str, data: bytes,
          filename: str, **fields: str) -> Any:
    return client.post(f"/api/v1/patients/{patient}/scans",
                       files={"file": (filename, data, "application/octet-stream")},
                       data=fields, headers=headers)


def _image(client: TestClient, image_id: str) -> Any:
    return client.app.state.services.app.repository.get(UUID(image_id))


def _event_count(client: TestClient) -> int:
    """Images captured so far: what a refused upload must not add. (Not every event: the
    session's background workers keep recording other tests' derivatives meanwhile.)"""
    recorder = client.app.state.services.app.recorder
    return len(recorder.select_notifications(start=None, limit=1_000_000,
                                             topics=[get_topic(Image.Captured)]))


def _binary_stl(triangles: list[list[tuple[float, float, float]]], count: int | None = None
                ) -> bytes:
    records = b"".join(struct.pack("<3f", 0, 0, 0)
                       + b"".join(struct.pack("<3f", *corner) for corner in triangle) + b"\0\0"
                       for triangle in triangles)
    return b"test".ljust(80, b" ") + struct.pack("<I", count or len(triangles)) + records


TETRA = [[(0, 0, 0), (10, 0, 0), (0, 10, 0)], [(0, 0, 0), (0, 0, 10), (10, 0, 0)],
         [(0, 0, 0), (0, 10, 0), (0, 0, 10)], [(10, 0, 0), (0, 0, 10), (0, 10, 0)]]


def test_every_shared_mesh_is_imported_or_refused_with_its_reason(
    client: TestClient, auth: Headers,
) -> None:
    paths = sorted(p for p in MESHES.rglob("*")
                   if p.is_file() and p.suffix.lower() in {".stl", ".ply", ".obj"})
    assert len(paths) >= 28, f"test meshes missing under {MESHES}"
    headers = auth("doctor")
    patient = register_patient(client, auth())
    imported: dict[str, str] = {}
    refused: dict[str, str] = {}
    seen: dict[str, str] = {}
    for path in paths:
        name = path.relative_to(MESHES).as_posix()
        data = path.read_bytes()
        before = (_event_count(client), blob_subjects(client))
        response = _scan(client, headers, patient, data, path.name)
        if response.status_code >= 400:
            assert response.status_code in (413, 415, 422), (name, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            refused[name] = response.json()["code"]
            assert (_event_count(client), blob_subjects(client)) == before, name
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:  # the same bytes under two names: reported, not stored twice
            assert response.status_code == 200 and response.json()["duplicate"], name
            continue
        assert response.status_code == 201, (name, response.text)
        body = response.json()
        stats = body["stats"]
        assert stats["triangles"] > 0 and stats["surface_area_mm2"] > 0, name
        assert len(stats["size_mm"]) == 3 and stats["units"] == "mm", name
        imported[name] = seen[digest] = body["id"]
    assert refused == EXPECTED_REFUSALS
    assert len(imported) >= 20

    def rendered() -> bool:
        return all(_image(client, i).derivatives or _image(client, i).processing_failure
                   for i in imported.values())

    wait_until(rendered, timeout=300, interval=0.5)
    failures = {n: _image(client, i).processing_failure for n, i in imported.items()
                if _image(client, i).processing_failure}
    assert failures == {}
    for name, image_id in imported.items():
        image = _image(client, image_id)
        assert image.category == "scan" and image.metadata["mesh"]["format"], name
        thumb = client.get(f"/api/v1/images/{image_id}/thumbnail", headers=headers)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png", name
        assert PILImage.open(io.BytesIO(thumb.content)).size == (256, 256)
        model = client.get(f"/api/v1/images/{image_id}/model.glb", headers=headers)
        assert model.status_code == 200 and model.content[:4] == b"glTF", name
    # The gallery lists them like any image, with the scan category.
    gallery = client.app.state.services.gallery.images_of_patient(
        _clinic_of(client, patient), UUID(patient), first=100)
    assert {str(i.id) for i in gallery.images} == set(imported.values())
    assert {i.category for i in gallery.images} == {"scan"}


def _clinic_of(client: TestClient, patient: str) -> str:
    return client.app.state.services.app.repository.get(UUID(patient)).clinic_id


def test_bad_meshes_are_refused_and_nothing_is_kept(client: TestClient, auth: Headers) -> None:
    headers = auth("doctor")
    patient = register_patient(client, auth())
    cases = {
        "claims-more.stl": (_binary_stl(TETRA, count=40), 422, "mesh_truncated"),
        "cut.stl": (_binary_stl(TETRA)[:-30], 422, "mesh_truncated"),
        "empty.stl": (b"", 422, "mesh_empty"),
        "nan.stl": (_binary_stl([[(float("nan"), 0, 0), (1, 0, 0), (0, 1, 0)]]), 422,
                    "mesh_invalid"),  # nothing finite left to show
        "bad-index.obj": (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", 422, "mesh_invalid"),
        "notes.txt": (b"this is not a mesh at all\n" * 10, 415, "mesh_unsupported_format"),
    }
    for filename, (data, status, code) in cases.items():
        before = (_event_count(client), blob_subjects(client))
        response = _scan(client, headers, patient, data, filename)
        assert (response.status_code, response.json().get("code")) == (status, code), \
            (filename, response.text)
        assert (_event_count(client), blob_subjects(client)) == before, filename
    bad_arch = _scan(client, headers, patient, _binary_stl(TETRA), "t.stl", arch="left")
    assert (bad_arch.status_code, bad_arch.json()["code"]) == (400, "invalid_arch")
    # The server keeps serving: a good file right after is stored.
    assert _scan(client, headers, patient, _binary_stl(TETRA), "tetra.stl").status_code == 201


def test_who_may_upload_and_view_scans(client: TestClient, auth: Headers) -> None:
    patient = register_patient(client, auth())
    data = _binary_stl(TETRA)
    for role, code in (("front_desk", "capture_limited"), ("read_only", "permission_denied")):
        response = _scan(client, auth(role), patient, data, "tetra.stl")
        assert (response.status_code, response.json()["code"]) == (403, code), role
    foreign = _scan(client, auth("doctor", "clinic-elsewhere"), patient, data, "tetra.stl")
    assert (foreign.status_code, foreign.json()["code"]) == (404, "patient_not_found")

    stored = _scan(client, auth("doctor"), patient, data, "tetra.stl")
    assert stored.status_code == 201
    image_id = stored.json()["id"]
    wait_until(lambda: _image(client, image_id).derivatives, timeout=60)
    stats = stored.json()["stats"]
    assert stats["watertight"] and stats["volume_mm3"] == pytest.approx(1000 / 6, rel=1e-6)
    assert client.get(f"/api/v1/images/{image_id}/model.glb",
                      headers=auth("clinical_staff")).status_code == 200
    denied = client.get(f"/api/v1/images/{image_id}/model.glb", headers=auth("read_only"))
    assert (denied.status_code, denied.json()["code"]) == (403, "permission_denied")
    hidden = client.get(f"/api/v1/images/{image_id}/model.glb",
                        headers=auth("doctor", "clinic-elsewhere"))
    assert (hidden.status_code, hidden.json()["code"]) == (404, "image_not_found")


def test_arches_pair_and_resends_replay(client: TestClient, auth: Headers) -> None:
    headers = auth("doctor")
    patient = register_patient(client, auth())
    upper = _scan(client, headers, patient, _binary_stl(TETRA), "Patient_UpperJaw.stl")
    assert upper.status_code == 201 and upper.json()["arch"] == "upper"
    assert upper.json()["pairedWith"] is None
    lower_bytes = _binary_stl([[(x + 1, y, z) for x, y, z in t] for t in TETRA])
    keyed = {**headers, "Idempotency-Key": "scan-lower-1"}
    response = client.post(f"/api/v1/patients/{patient}/scans", headers=keyed,
                           files={"file": ("scan.stl", lower_bytes, "model/stl")},
                           data={"arch": "lower"})
    assert response.status_code == 201, response.text
    lower = response.json()
    assert lower["arch"] == "lower" and lower["pairedWith"] == upper.json()["id"]
    assert _image(client, upper.json()["id"]).metadata["mesh"]["paired_with"] == lower["id"]
    query = """query($id: ID!) { meshScan(imageId: $id) { format arch pairedWith stats } }"""
    scan = client.post("/graphql", json={"query": query, "variables": {"id": lower["id"]}},
                       headers=headers).json()["data"]["meshScan"]
    assert scan["format"] == "stl_binary" and scan["arch"] == "lower"
    assert scan["pairedWith"] == upper.json()["id"]
    assert scan["stats"]["triangles"] == 4 and scan["stats"]["watertight"] is True

    again = client.post(f"/api/v1/patients/{patient}/scans", headers=keyed,
                        files={"file": ("scan.stl", lower_bytes, "model/stl")},
                        data={"arch": "lower"})
    assert again.status_code == 200 and again.json()["replayed"]
    assert again.json()["id"] == lower["id"]
    other = client.post(f"/api/v1/patients/{patient}/scans", headers=keyed,
                        files={"file": ("scan.stl", _binary_stl(TETRA[:3]), "model/stl")})
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
