"""The bad-input corpus against the running app: every hostile file and archive ends in a
clear 4xx with a stable code, nothing of it is stored (no event, no blob), and the server
keeps serving (``/readyz`` and a normal upload work right after).

The app here is configured with small limits (``CorpusLimits``) so oversized cases are cheap.
Hostile strings in text fields: ``tests/test_hostile_strings.py``.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from corpus.build import (
    BadFile,
    BadZip,
    CorpusLimits,
    binary_stl,
    dicom_cases,
    dicom_preamble_cases,
    mesh_cases,
    raster_cases,
    write_corpus,
    zip_cases,
)
from fastapi.testclient import TestClient

from api.app import create_app
from conftest import jpeg_bytes, make_settings, register_patient, token_for, upload

LIMITS = CorpusLimits()
Headers = dict[str, str]


@pytest.fixture(scope="module")
def client(database_factory: Callable[[], str],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The whole app (every job in-process) with small upload and pixel limits."""
    settings = make_settings(database_factory(), tmp_path_factory.mktemp("corpus"),
                             max_upload_bytes=LIMITS.max_upload_bytes,
                             max_image_pixels=LIMITS.max_image_pixels)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def doctor(client: TestClient, clinic: str) -> Headers:
    settings = client.app.state.services.settings
    return {"Authorization": f"Bearer {token_for(settings, 'doctor', clinic)}"}


# ---- what "nothing half-stored" means, measured ------------------------------------------------


def _blob_files(client: TestClient) -> set[Path]:
    root = client.app.state.services.settings.blob_dir
    return {p for p in root.rglob("*") if p.is_file() or (p.is_dir() and p.parent != root)}


def _head(client: TestClient) -> int:
    return client.app.state.services.app.recorder.max_notification_id() or 0


def _events_of_clinic(client: TestClient, clinic: str, after: int) -> list[Any]:
    """Every event stored after ``after`` that a user of ``clinic`` caused."""
    app = client.app.state.services.app
    notifications = app.recorder.select_notifications(start=after + 1, limit=1_000_000)
    events = (app.mapper.to_domain_event(n) for n in notifications)
    return [e for e in events if getattr(getattr(e, "actor", None), "clinic_id", None) == clinic]


class Snapshot:
    """Event-log head and blob files before a refused request; ``assert_untouched`` after."""

    def __init__(self, client: TestClient, clinic: str) -> None:
        self.client, self.clinic = client, clinic
        self.head = _head(client)
        self.blobs = _blob_files(client)

    def new_blobs_outside(self, image_ids: set[UUID]) -> set[Path]:
        """New blob files or folders not belonging to one of ``image_ids``."""
        app = self.client.app.state.services.app
        root = self.client.app.state.services.settings.blob_dir
        stray = set()
        for path in _blob_files(self.client) - self.blobs:
            subject = path.relative_to(root).parts[1]  # <root>/<2 chars>/<subject>/<name...>
            try:
                owner = UUID(subject)
            except ValueError:
                stray.add(path)
                continue
            # Derivatives of earlier, accepted images may land while we look: those are fine.
            if owner not in image_ids and not app.exists(owner):
                stray.add(path)
        return stray

    def assert_untouched(self) -> None:
        events = _events_of_clinic(self.client, self.clinic, self.head)
        assert events == [], [type(e).__qualname__ for e in events]
        assert self.new_blobs_outside(set()) == set()


def _assert_problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code, body
    assert body["status"] == status


def _assert_healthy(client: TestClient, headers: Headers, patient_id: str) -> None:
    assert client.get("/readyz").status_code == 200
    ok = upload(client, headers, patient_id, jpeg_bytes(64, 48, seed=uuid.uuid4().int % 1000))
    assert ok.status_code == 201, ok.text


# ---- single files on the image route (rasters and DICOM, sniffed by their bytes) --------------

IMAGE_ROUTE_CASES = raster_cases(LIMITS) + dicom_cases() + dicom_preamble_cases()


@pytest.mark.parametrize("bad", IMAGE_ROUTE_CASES, ids=[c.case for c in IMAGE_ROUTE_CASES])
def test_image_route_refuses_the_corpus(client: TestClient, doctor: Headers, clinic: str,
                                        bad: BadFile) -> None:
    patient_id = register_patient(client, doctor)
    before = Snapshot(client, clinic)
    response = upload(client, doctor, patient_id, bad.data, filename=bad.filename,
                      content_type=bad.content_type)
    _assert_problem(response, bad.status, bad.code)
    before.assert_untouched()
    _assert_healthy(client, doctor, patient_id)


def test_polyglot_jpeg_zip_is_kept_as_a_jpeg_and_served_inert(client: TestClient,
                                                               doctor: Headers) -> None:
    """A JPEG with a zip appended is a valid JPEG (cameras append trailers too): it is kept
    bit-exact, typed by its leading bytes, and served only as an attachment with nosniff."""
    from corpus.build import raster, zip_of

    patient_id = register_patient(client, doctor)
    polyglot = raster("jpeg", seed=50) + zip_of([("payload.html", b"<script>1</script>")])
    created = upload(client, doctor, patient_id, polyglot, filename="poly.jpg")
    assert created.status_code == 201, created.text
    served = client.get(f"/api/v1/images/{created.json()['id']}/original", headers=doctor)
    assert served.status_code == 200
    assert served.content == polyglot
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["content-disposition"].startswith("attachment")


# ---- the same DICOM corpus through STOW-RS -----------------------------------------------------

STOW_CASES = [c for c in dicom_cases() + dicom_preamble_cases() if c.status != 413]


def _stow(client: TestClient, headers: Headers, parts: list[bytes]) -> Any:
    boundary = "corpus-" + uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part
                    + b"\r\n" for part in parts) + f"--{boundary}--\r\n".encode()
    return client.post("/dicomweb/studies", content=body, headers={
        **headers, "Content-Type":
            f'multipart/related; type="application/dicom"; boundary={boundary}'})


@pytest.mark.parametrize("bad", STOW_CASES, ids=[c.case for c in STOW_CASES])
def test_stow_refuses_the_dicom_corpus(client: TestClient, doctor: Headers, clinic: str,
                                       bad: BadFile) -> None:
    before = Snapshot(client, clinic)
    response = _stow(client, doctor, [bad.data])
    assert response.status_code == 409, response.text  # PS3.18: no instance stored
    failed = response.json()["00081198"]["Value"]
    assert [item["00091010"]["Value"][0] for item in failed] == [bad.code]
    before.assert_untouched()
    assert client.get("/readyz").status_code == 200


def test_stow_garbage_bodies(client: TestClient, doctor: Headers, clinic: str) -> None:
    before = Snapshot(client, clinic)
    related = 'multipart/related; type="application/dicom"; boundary=xyz'
    for content_type, body, status, code in [
        (related, b"no boundary anywhere", 400, "invalid_multipart"),
        (related, b"--xyz\r\nContent-Type: application/dicom\r\n\r\nDICM", 400,
         "invalid_multipart"),
        ('multipart/related; type="application/dicom"', b"x", 400, "invalid_multipart"),
        ("application/dicom", b"DICM", 415, "dicomweb_unsupported_media_type"),
        ('multipart/related; type="image/jpeg"; boundary=xyz', b"--xyz--", 415,
         "dicomweb_unsupported_media_type"),
        (related, b"--xyz\r\nContent-Type: application/dicom\r\n\r\n"
         + b"\0" * (LIMITS.max_upload_bytes + 1), 413, "upload_too_large"),
    ]:
        response = client.post("/dicomweb/studies", content=body,
                               headers={**doctor, "Content-Type": content_type})
        _assert_problem(response, status, code)
    before.assert_untouched()


# ---- meshes --------------------------------------------------------------------------------

MESH_CASES = mesh_cases(LIMITS)


def _scan(client: TestClient, headers: Headers, patient_id: str, data: bytes, filename: str,
          **fields: str) -> Any:
    return client.post(f"/api/v1/patients/{patient_id}/scans",
                       files={"file": (filename, data, "application/octet-stream")},
                       data=fields, headers=headers)


@pytest.mark.parametrize("bad", MESH_CASES, ids=[c.case for c in MESH_CASES])
def test_scan_route_refuses_the_corpus(client: TestClient, doctor: Headers, clinic: str,
                                       bad: BadFile) -> None:
    patient_id = register_patient(client, doctor)
    before = Snapshot(client, clinic)
    response = _scan(client, doctor, patient_id, bad.data, bad.filename)
    _assert_problem(response, bad.status, bad.code)
    before.assert_untouched()
    assert client.get("/readyz").status_code == 200
    ok = _scan(client, doctor, patient_id, binary_stl(), "IV_upper.stl")
    assert ok.status_code == 201, ok.text


# ---- malicious zips on the batch route --------------------------------------------------------

ZIP_CASES = zip_cases(LIMITS)


@pytest.mark.parametrize("bad", ZIP_CASES, ids=[c.case for c in ZIP_CASES])
def test_batch_route_refuses_malicious_zips(client: TestClient, doctor: Headers, clinic: str,
                                            bad: BadZip) -> None:
    patient_id = register_patient(client, doctor)
    before = Snapshot(client, clinic)
    response = client.post(f"/api/v1/patients/{patient_id}/image-batches",
                           files=[("files", ("many.zip", bad.data, "application/zip"))],
                           headers=doctor)
    assert response.status_code == 200, response.text
    body = response.json()
    outcomes = {(r["filename"], r["status"], r["code"]) for r in body["results"]}
    assert outcomes == {(name, status, code) for name, (status, code) in bad.outcomes.items()}
    assert body["accepted"] == bad.accepted
    accepted = {UUID(r["id"]) for r in body["results"] if r["status"] == "accepted"}
    captured = {e.originator_id for e in _events_of_clinic(client, clinic, before.head)
                if type(e).__qualname__ == "Image.Captured"}
    assert captured == accepted  # an event for each accepted member, none for the rest
    assert before.new_blobs_outside(accepted) == set()
    _assert_healthy(client, doctor, patient_id)


def test_batch_route_over_the_limit_is_refused_while_streaming(client: TestClient,
                                                               doctor: Headers,
                                                               clinic: str) -> None:
    patient_id = register_patient(client, doctor)
    before = Snapshot(client, clinic)
    big = [("files", (f"f{i}.jpg", jpeg_bytes(700, 500, seed=i), "image/jpeg"))
           for i in range(30)]
    response = client.post(f"/api/v1/patients/{patient_id}/image-batches", files=big,
                           headers=doctor)
    _assert_problem(response, 413, "upload_too_large")
    before.assert_untouched()
    _assert_healthy(client, doctor, patient_id)


# ---- malformed multipart framing on the upload routes ------------------------------------------

MALFORMED_BODIES = [
    ("no-multipart", "image/jpeg", b"\xff\xd8\xff", 400, "invalid_request"),
    ("no-boundary", "multipart/form-data", b"--x\r\n", 400, "invalid_request"),
    ("garbage", "multipart/form-data; boundary=abc", b"\x00\xff garbage", 400,
     "invalid_multipart"),
    ("unterminated-headers", "multipart/form-data; boundary=abc",
     b"--abc\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"", 400,
     "invalid_multipart"),
    ("no-closing-boundary", "multipart/form-data; boundary=abc",
     b"--abc\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
     b"Content-Type: image/jpeg\r\n\r\n" + jpeg_bytes(32, 32, seed=9), 400,
     "invalid_multipart"),
    ("field-too-long", "multipart/form-data; boundary=abc",
     b"--abc\r\nContent-Disposition: form-data; name=\"tags\"\r\n\r\n" + b"t" * 20_000
     + b"\r\n--abc--\r\n", 400, "field_too_long"),
    ("too-many-parts", "multipart/form-data; boundary=abc",
     b"".join(b"--abc\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nv\r\n" % i
              for i in range(80)) + b"--abc--\r\n", 400, "invalid_request"),
    ("two-files", "multipart/form-data; boundary=abc",
     b"".join(b"--abc\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
              b"Content-Type: image/jpeg\r\n\r\n" + jpeg_bytes(32, 32, seed=i) + b"\r\n"
              for i in range(2)) + b"--abc--\r\n", 400, "file_required"),
]


@pytest.mark.parametrize(("name", "ctype", "body", "status", "code"), MALFORMED_BODIES,
                         ids=[m[0] for m in MALFORMED_BODIES])
@pytest.mark.parametrize("route", ["images", "image-batches", "scans"])
def test_malformed_multipart_bodies(client: TestClient, doctor: Headers, clinic: str,
                                    route: str, name: str, ctype: str, body: bytes, status: int,
                                    code: str) -> None:
    patient_id = register_patient(client, doctor)
    before = Snapshot(client, clinic)
    response = client.post(f"/api/v1/patients/{patient_id}/{route}", content=body,
                           headers={**doctor, "Content-Type": ctype})
    if route != "images" and code == "file_required":
        # The batch route reads "files"; a lone "file" part is accepted there, two are two.
        assert response.status_code < 500, response.text
        return
    _assert_problem(response, status, code)
    before.assert_untouched()


# ---- the generator itself ----------------------------------------------------------------


def test_the_corpus_can_be_written_to_a_folder(tmp_path: Path) -> None:
    import json

    written = write_corpus(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert len(manifest) == len(written) > 60
    assert all(path.stat().st_size >= 0 for path in written)
    with io.BytesIO((tmp_path / "zip-symlink.zip").read_bytes()) as archive:
        assert archive.read(2) == b"PK"


# ---- hostile text inside files (read models must not be poisoned) ------------------------------


def test_dicom_with_control_characters_in_its_text_does_not_stall_the_index(
        client: TestClient, doctor: Headers) -> None:
    """DICOM text is whatever the device wrote: a NUL in PatientName must neither reach a
    Postgres text column (which refuses NUL and would stall the index for everyone) nor
    stop the next object from being found."""
    from corpus.build import dicom
    from pydicom.uid import generate_uid

    hostile = dicom(patient_id="EVIL\x00ID", patient_name="Ada\x00Evil^\x1b[31mX",
                    StudyDescription="notes\x00\x07\u202eexe.txt")
    first = _stow(client, doctor, [hostile])
    assert first.status_code in (200, 202), first.text
    held = client.get("/api/v1/dicom/reconciliations", headers=doctor)
    assert held.status_code == 200 and len(held.json()) == 1, held.text
    # The next object (a matching patient, so it is filed) is indexed and found.
    patient_id = register_patient(client, doctor)
    external = client.post("/graphql", headers=doctor, json={
        "query": "query($id: ID!) { patient(id: $id) { externalId } }",
        "variables": {"id": patient_id}}).json()["data"]["patient"]["externalId"]
    study = generate_uid()
    good = _stow(client, doctor, [dicom(patient_id=external, study_uid=study)])
    assert good.status_code == 200, good.text
    found = client.get("/dicomweb/studies", params={"StudyInstanceUID": study},
                       headers={**doctor, "Accept": "application/dicom+json"})
    assert found.status_code == 200, found.text
    assert [s["0020000D"]["Value"][0] for s in found.json()] == [study]
    _assert_healthy(client, doctor, patient_id)


# ---- files only a worker judges: a recorded processing failure ----------------------------------

SIM_STATUS = """query($id: ID!) { simulation(id: $id) { status failure { code } } }"""
WORKER_JUDGED = [c for c in MESH_CASES if c.status == 422 and c.data]


@pytest.mark.slow
@pytest.mark.parametrize("bad", WORKER_JUDGED, ids=[c.case for c in WORKER_JUDGED])
def test_setup_import_records_a_failure_for_each_bad_mesh(client: TestClient, doctor: Headers,
                                                           clinic: str, bad: BadFile) -> None:
    """A staged set-up is stored as sent and analysed by a worker: a bad stage mesh ends as
    a failed simulation with the mesh's code, and its stored inputs are the only blobs."""
    from conftest import wait_until

    patient_id = register_patient(client, doctor)
    before = Snapshot(client, clinic)
    response = client.post(f"/api/v1/patients/{patient_id}/setups", headers=doctor, files=[
        ("stage_1_upper", ("s1.stl", binary_stl(), "model/stl")),
        ("stage_2_upper", (bad.filename, bad.data, "model/stl"))])
    assert response.status_code == 202, response.text
    simulation_id = response.json()["id"]

    def settled() -> dict[str, Any] | None:
        answer = client.post("/graphql", headers=doctor, json={
            "query": SIM_STATUS, "variables": {"id": simulation_id}}).json()
        found = answer["data"]["simulation"]
        return found if found["status"] != "pending" else None

    done = wait_until(settled, timeout=120)
    assert done["status"] == "failed", done
    assert done["failure"]["code"].startswith("mesh_"), done
    assert before.new_blobs_outside({UUID(simulation_id)}) == set()
    assert client.get("/readyz").status_code == 200


# ---- live capture guidance frames ---------------------------------------------------------------

FRAME_CASES = [c for c in raster_cases(LIMITS) if c.code in (
    "corrupt_image", "image_too_many_pixels") and c.case != "jpeg-corrupt-scan"]  # (>640 px)
OPEN_SESSION = """mutation($i: OpenCaptureSessionInput!){ openCaptureSession(input: $i){ id } }"""


@pytest.mark.parametrize("bad", FRAME_CASES, ids=[c.case for c in FRAME_CASES])
def test_guidance_frames_from_the_corpus(client: TestClient, doctor: Headers, clinic: str,
                                         bad: BadFile) -> None:
    patient_id = register_patient(client, doctor)
    session_id = client.post("/graphql", headers=doctor, json={
        "query": OPEN_SESSION, "variables": {"i": {"patientId": patient_id}}}).json()[
        "data"]["openCaptureSession"]["id"]
    before = Snapshot(client, clinic)
    response = client.post(f"/api/v1/capture-sessions/{session_id}/guidance", headers=doctor,
                           files={"frame": ("f" + bad.filename, bad.data, bad.content_type)},
                           data={"slot": "EV15"})
    expected = "frame_too_large" if bad.status == 413 else bad.code
    _assert_problem(response, bad.status, expected)
    before.assert_untouched()
    assert client.get("/readyz").status_code == 200
