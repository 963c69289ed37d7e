"""SIGKILL the server while uploads stream in: every acknowledged upload survives and no
event refers to a missing blob (what the crash left unreferenced is `orthovault gc`'s job,
tested in test_blob_gc.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from conftest import (
    bearer,
    jpeg_bytes,
    make_settings,
    register_patient,
    stored_events,
    token_for,
    wait_until,
)
from domain.image import Image

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(settings) -> dict[str, str]:
    return {**os.environ, "ORTHOVAULT_DATABASE_URL": settings.database_url,
            "ORTHOVAULT_MASTER_KEY": settings.master_key.get_secret_value(),
            "ORTHOVAULT_TOKEN_SECRET": settings.token_secret.get_secret_value(),
            "ORTHOVAULT_DATA_DIR": str(settings.data_dir)}


def _serve(settings, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)], env=_env(settings),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=60, interval=0.2)
    return server


def test_sigkill_during_uploads_loses_no_acknowledged_upload(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path)
    headers = bearer(token_for(settings, "clinic_admin", "c1"))
    port = _free_port()
    server = _serve(settings, port)
    acknowledged: dict[str, bytes] = {}
    stop = threading.Event()
    photos = [jpeg_bytes(2400, 1800, seed=seed) for seed in range(4)]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            patient_id = register_patient(http, headers)

        def uploader(worker: int) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                for round_ in range(1000):
                    if stop.is_set():
                        return
                    # A distinct file each time: a re-sent duplicate would only be reported.
                    data = photos[round_ % len(photos)] + f"{worker}-{round_}".encode()
                    try:
                        answer = http.post(f"/api/v1/patients/{patient_id}/images",
                                           files={"file": ("p.jpg", data, "image/jpeg")},
                                           headers=headers)
                    except httpx.HTTPError:
                        return  # the server died under us: this one was never acknowledged
                    if answer.status_code == 201:
                        acknowledged[answer.json()["id"]] = data

        threads = [threading.Thread(target=uploader, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(acknowledged) >= 6, timeout=120, interval=0.05)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()

    with TestClient(create_app(settings)) as after:
        for image_id, data in acknowledged.items():
            original = after.get(f"/api/v1/images/{image_id}/original", headers=headers)
            assert original.status_code == 200, image_id
            assert original.content == data
        blobs = after.app.state.services.blobs
        for captured in stored_events(after, Image.Captured):
            assert blobs.exists(captured.original), captured.originator_id
