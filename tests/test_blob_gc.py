"""`orthovault gc`: orphans, unfinished writes and shredded ciphertext go; live blobs stay."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

from fastapi.testclient import TestClient

from api.app import create_app
from api.blob_gc import collect_garbage
from conftest import bearer, jpeg_bytes, make_settings, register_patient, token_for, upload


def _folder(settings, subject) -> object:
    return settings.blob_dir / str(subject)[:2] / str(subject)


def test_gc_removes_only_what_no_event_refers_to(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path)
    headers = bearer(token_for(settings, "clinic_admin", "c1"))
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services
        patient_id = register_patient(client, headers)
        live = upload(client, headers, patient_id, jpeg_bytes(seed=1)).json()["id"]
        shredded = upload(client, headers, patient_id, jpeg_bytes(seed=2)).json()["id"]
        # A destruction interrupted after the key was destroyed, before the blobs went.
        services.app.key_store.destroy([uuid.UUID(shredded)])
        orphan = uuid.uuid4()  # an upload that crashed before its event committed
        services.blobs.put_bytes(orphan, "original", b"never acknowledged", "image/jpeg",
                                 owner_id=uuid.uuid4())
        unfinished = settings.blob_dir / str(orphan)[:2] / ".tmp-crashed"
        unfinished.write_bytes(b"half a blob")
        foreign = settings.blob_dir / "zz" / "not-a-subject-id"
        foreign.mkdir(parents=True)
        (foreign / "keep").write_bytes(b"not ours to judge")
        backend = services.blobs.backend

        fresh = collect_garbage(services.app, backend)  # default grace: all too recent
        assert (fresh.orphans, fresh.shredded, fresh.unfinished_writes) == ([], [], 0)
        assert fresh.skipped_recent == fresh.subjects_checked

        dry = collect_garbage(services.app, backend, grace=timedelta(0), dry_run=True)
        assert dry.orphans == [str(orphan)]
        assert dry.shredded == [shredded]
        assert dry.unfinished_writes == 1
        assert dry.skipped_unknown == ["not-a-subject-id"]
        assert _folder(settings, orphan).exists() and unfinished.exists()

    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "gc", "--grace-hours", "0"], capture_output=True,
        text=True, timeout=120, check=True,
        env={"ORTHOVAULT_DATABASE_URL": settings.database_url,
             "ORTHOVAULT_MASTER_KEY": settings.master_key.get_secret_value(),
             "ORTHOVAULT_TOKEN_SECRET": settings.token_secret.get_secret_value(),
             "ORTHOVAULT_DATA_DIR": str(settings.data_dir), "PATH": "/usr/bin:/bin"})
    assert "removed 1 orphaned, 1 destroyed, 1 unfinished writes" in done.stdout
    assert not _folder(settings, orphan).exists()
    assert not _folder(settings, shredded).exists()
    assert not unfinished.exists()
    assert (foreign / "keep").exists()
    with TestClient(create_app(settings)) as client:
        original = client.get(f"/api/v1/images/{live}/original", headers=headers)
        assert (original.status_code, original.content) == (200, jpeg_bytes(seed=1))
