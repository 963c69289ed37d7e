"""Fill the disk: an upload that does not fit is refused with 507 ``storage_full`` and leaves
nothing behind, what was stored stays intact and served, derivative workers wait instead of
failing images for good, and everything works again once space is freed.

The blob folder lives on a small tmpfs of its own (needs root: skipped otherwise); a filler
file takes up the space, so the test decides exactly how much is left.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.multipart_stream import receive_form
from conftest import (
    GALLERY,
    bearer,
    graphql,
    jpeg_bytes,
    make_settings,
    register_patient,
    stored_events,
    token_for,
    upload,
    wait_until,
)
from domain.errors import StorageFull
from domain.image import Image

pytestmark = pytest.mark.slow

DISK_BYTES = 16 * 1024 * 1024
PAGE = 4096


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_BYTES mounted for this test, unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the disk-full test needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (mount said: {done.stderr.strip()})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def fill(disk: Path, leave: int) -> Path:
    """Takes up all the space but ``leave`` bytes (rounded up to whole pages)."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    block = b"\xa5" * (1 << 20)
    try:
        while True:
            try:
                os.write(descriptor, block)
            except OSError as error:
                assert error.errno == errno.ENOSPC
                break
        size = os.fstat(descriptor).st_size
        os.ftruncate(descriptor, max(size - -(-leave // PAGE) * PAGE, 0))
    finally:
        os.close(descriptor)
    return filler


def free_bytes(disk: Path) -> int:
    stats = os.statvfs(disk)
    return stats.f_bavail * stats.f_frsize


def blob_files(root: Path) -> set[str]:
    """Every file (temp files included) and subject folder under the blob root; the shard
    folders above subjects (at most 256, shared by everyone) are not anyone's data."""
    return {str(path.relative_to(root)) for path in root.rglob("*")
            if path.is_file() or path.parent != root}


def stored_size(data: bytes) -> int:
    """The ciphertext a plaintext becomes: magic, and per 1 MiB chunk a frame header plus
    nonce and tag (generous: only used to leave room for exactly one original)."""
    chunks = max(1, -(-len(data) // (1 << 20)))
    return 4 + len(data) + chunks * 64


def test_full_disk_refuses_upload_cleanly_and_recovers(database_factory, small_disk):
    settings = make_settings(database_factory(), small_disk)
    headers = bearer(token_for(settings, "clinic_admin", "c-full"))
    with TestClient(create_app(settings)) as client:
        patient_id = register_patient(client, headers)
        earlier = {}
        for seed in (1, 2):
            data = jpeg_bytes(800, 600, seed=seed)
            answer = upload(client, headers, patient_id, data)
            assert answer.status_code == 201, answer.text
            earlier[answer.json()["id"]] = data
        for image_id in earlier:  # background writes done before the disk fills up
            wait_until(lambda i=image_id: client.get(
                f"/api/v1/images/{i}/thumbnail", headers=headers).status_code == 200,
                timeout=60)
        blob_root = settings.blob_dir
        before = blob_files(blob_root)
        captured_before = len(stored_events(client, Image.Captured))

        filler = fill(small_disk, leave=64 * 1024)
        photo = jpeg_bytes(1600, 1200, seed=3)
        assert len(photo) > 4 * free_bytes(small_disk)  # it cannot fit, not even half of it
        refused = upload(client, headers, patient_id, photo)

        assert refused.status_code == 507, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "storage_full"
        # Nothing half-stored: no event, no blob, no temp file, no empty folder.
        assert len(stored_events(client, Image.Captured)) == captured_before
        assert blob_files(blob_root) == before
        # No corruption: what was stored reads back byte for byte, and the server serves.
        for image_id, data in earlier.items():
            original = client.get(f"/api/v1/images/{image_id}/original", headers=headers)
            assert (original.status_code, original.content) == (200, data)
            assert client.get(f"/api/v1/images/{image_id}/thumbnail",
                              headers=headers).status_code == 200
        gallery = graphql(client, headers, GALLERY, {"id": patient_id, "first": 10})
        assert "errors" not in gallery, gallery
        listed = {e["node"]["id"] for e in gallery["data"]["patient"]["images"]["edges"]}
        assert listed == set(earlier)
        assert client.get("/readyz").status_code == 200

        filler.unlink()  # space is freed: the same upload now goes through
        accepted = upload(client, headers, patient_id, photo)
        assert accepted.status_code == 201, accepted.text
        image_id = accepted.json()["id"]
        original = client.get(f"/api/v1/images/{image_id}/original", headers=headers)
        assert (original.status_code, original.content) == (200, photo)
        wait_until(lambda: client.get(f"/api/v1/images/{image_id}/thumbnail",
                                      headers=headers).status_code == 200, timeout=60)


def test_derivative_worker_waits_for_space_instead_of_failing_the_image(
        database_factory, small_disk):
    settings = make_settings(database_factory(), small_disk)
    headers = bearer(token_for(settings, "clinic_admin", "c-worker"))
    with TestClient(create_app(settings)) as client:
        services = client.app.state.services
        patient_id = register_patient(client, headers)
        photo = jpeg_bytes(1200, 900, seed=7)
        # Room for the original and one page more: the preview and thumbnail do not fit.
        filler = fill(small_disk, leave=stored_size(photo) + PAGE)
        answer = upload(client, headers, patient_id, photo)
        assert answer.status_code == 201, answer.text
        image_id = answer.json()["id"]

        job = services.supervisor.jobs["derivatives_v1"]
        wait_until(lambda: job.last_error == "StorageFull" and job.restarts >= 1, timeout=60)
        image = services.app.repository.get(uuid.UUID(image_id))
        assert image.processing_failure is None  # not marked broken for good
        assert not image.derivatives
        thumbnail = client.get(f"/api/v1/images/{image_id}/thumbnail", headers=headers)
        assert thumbnail.json()["code"] == "derivative_not_ready"
        assert not [p for p in settings.blob_dir.rglob(".tmp-*")]  # failed writes cleaned up

        filler.unlink()
        wait_until(lambda: client.get(f"/api/v1/images/{image_id}/thumbnail",
                                      headers=headers).status_code == 200, timeout=90)
        image = services.app.repository.get(uuid.UUID(image_id))
        assert image.processing_failure is None and {"thumbnail", "preview"} <= set(
            image.derivatives)
        original = client.get(f"/api/v1/images/{image_id}/original", headers=headers)
        assert (original.status_code, original.content) == (200, photo)


def test_full_spool_disk_is_storage_full_not_a_malformed_upload(small_disk):
    fill(small_disk, leave=0)
    boundary = "disk-full-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
    body += jpeg_bytes(800, 600, seed=4) + f"\r\n--{boundary}--\r\n".encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start:start + 64 * 1024]

    with pytest.raises(StorageFull) as refused:
        asyncio.run(receive_form(f"multipart/form-data; boundary={boundary}", chunks(),
                                 max_bytes=len(body), spool_dir=str(small_disk)))
    assert refused.value.code == "storage_full"
