"""`orthovault import` and the watched device folder, across a restart."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from uuid import UUID

from api.folder_import import DeviceFolder, import_one, received_from_path
from api.image_upload import UploadFields
from conftest import graphql, jpeg_bytes, register_patient
from domain.values import Actor

IMAGES = """query($id: ID!){ patient(id: $id){ images(first: 50){ edges { node {
    id view } } } } }"""
OPEN = """mutation($i: OpenCaptureSessionInput!){ openCaptureSession(input: $i){ id } }"""
SESSION = """query($id: ID!){ captureSession(id: $id){ filled { code imageId } } }"""


def _images(client, headers, patient_id):
    return graphql(client, headers, IMAGES, {"id": patient_id})["data"]["patient"]["images"][
        "edges"]


def test_import_command_reports_every_file(client, auth, clinic, shared_settings, tmp_path):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    folder = tmp_path / "visit"
    (folder / "sub").mkdir(parents=True)
    (folder / "IV07_front.jpg").write_bytes(jpeg_bytes(seed=31))
    (folder / "sub" / "photo2.jpg").write_bytes(jpeg_bytes(seed=32)[:100])
    (folder / "photo3.png").write_bytes(jpeg_bytes(seed=33))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("IV01_right.jpg", jpeg_bytes(seed=34))
    (folder / "more.zip").write_bytes(archive.getvalue())
    (folder / "EV15.jpg").write_bytes(jpeg_bytes(seed=35))
    env = {**os.environ, "ORTHOVAULT_DATABASE_URL": shared_settings.database_url,
           "ORTHOVAULT_MASTER_KEY": shared_settings.master_key.get_secret_value(),
           "ORTHOVAULT_DATA_DIR": str(shared_settings.data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "import", str(folder), "--patient", patient_id,
         "--clinic", clinic], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stderr  # some files were rejected (exit 1)
    assert "accepted 3, duplicates 0, rejected 2" in done.stdout
    assert "media_type_mismatch" in done.stderr and "corrupt_image" in done.stderr
    views = sorted(e["node"]["view"] or "-" for e in _images(client, headers, patient_id))
    assert views == ["EV15", "IV01", "IV07"]


def test_device_folder_fills_the_chairs_session_and_survives_a_restart(client, auth, clinic,
                                                                       tmp_path, capsys):
    headers = auth("clinical_staff")
    patient_id = register_patient(client, headers)
    session_id = graphql(client, headers, OPEN, {"i": {
        "patientId": patient_id, "chair": "7", "scheduledAt": datetime.now(UTC).isoformat()}})[
        "data"]["openCaptureSession"]["id"]
    services = client.app.state.services
    actor = Actor("device:7", "clinical_staff", clinic)
    device = DeviceFolder(services, actor, tmp_path, "7", settle_seconds=1.0)

    growing = tmp_path / "IMG_0001.jpg"
    data = jpeg_bytes(seed=41)
    growing.write_bytes(data[: len(data) // 2])
    assert device.poll(now=0.0) == []  # first sight
    growing.write_bytes(data)  # still being written
    assert device.poll(now=0.5) == []
    assert device.poll(now=1.0) == []  # changed since: the clock restarts
    results = device.poll(now=2.5)
    assert [(r.filename, r.status) for r in results] == [("IMG_0001.jpg", "accepted")]
    assert (tmp_path / "done" / "IMG_0001.jpg").exists() and not growing.exists()
    filled = graphql(client, headers, SESSION, {"id": session_id})["data"]["captureSession"][
        "filled"]
    assert [f["code"] for f in filled] == ["EV15"]  # the first missing slot of the series
    # The watcher logs which file went to which patient and slot: ids, never names.
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()
              if '"device_file"' in line]
    assert [(e["file"], e["patient_id"], e["slot"], e["chair"], e["status"])
            for e in logged] == [("IMG_0001.jpg", patient_id, "EV15", "7", "accepted")]

    # A crash after the import but before the move: the restarted watcher replays it.
    second = tmp_path / "IV07.jpg"
    second.write_bytes(jpeg_bytes(seed=42))
    received = received_from_path(second)
    first_result, _ = import_one(services, actor, UUID(patient_id), received,
                                 UploadFields(view="IV07", session_id=UUID(session_id)),
                                 idempotency_key=f"device-folder:{received.sha256}")
    received.handle.close()
    restarted = DeviceFolder(services, actor, tmp_path, "7", settle_seconds=0.0)
    restarted.poll(now=10.0)
    replayed = restarted.poll(now=11.0)
    assert [r.image_id for r in replayed] == [first_result.image_id]
    assert (tmp_path / "done" / "IV07.jpg").exists()
    assert len(_images(client, headers, patient_id)) == 2  # not imported twice

    elsewhere = DeviceFolder(services, actor, tmp_path / "chair8", "8", settle_seconds=0.0)
    stray = tmp_path / "chair8" / "IMG_0002.jpg"
    stray.write_bytes(jpeg_bytes(seed=43))
    elsewhere.poll(now=0.0)
    rejected = elsewhere.poll(now=1.0)
    assert [(r.status, r.code) for r in rejected] == [("rejected", "no_open_session")]
    reason = json.loads((tmp_path / "chair8" / "failed" / "IMG_0002.jpg.reason.json").read_text())
    assert reason["code"] == "no_open_session"
    assert (tmp_path / "chair8" / "failed" / "IMG_0002.jpg").exists()
