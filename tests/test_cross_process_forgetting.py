"""Every process forgets at once (issue 17): a destruction committed by one process is
honoured by a running server in another before its next read of that subject: the next
request answers 404, a download already streaming stops before its next chunk, and no view
is recorded after the destruction entry. No waiting: the server learns it from the store
and from PostgreSQL NOTIFY, not from a cache expiring."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys

import httpx
import numpy as np
import pytest
from eventsourcing.utils import get_topic
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from api.app import create_app
from conftest import bearer, jpeg_bytes, make_settings, register_patient, token_for, wait_until
from domain.access import AccessRecord
from domain.image import Image

pytestmark = pytest.mark.slow

DESTROY = """mutation($i: DestroyImageInput!){ destroyImage(input: $i){ id } }"""
IMAGE = """query($id: ID!){ image(id: $id){ id } }"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(settings, port: int) -> subprocess.Popen:
    env = {**os.environ, "ORTHOVAULT_DATABASE_URL": settings.database_url,
           "ORTHOVAULT_MASTER_KEY": settings.master_key.get_secret_value(),
           "ORTHOVAULT_TOKEN_SECRET": settings.token_secret.get_secret_value(),
           "ORTHOVAULT_DATA_DIR": str(settings.data_dir)}
    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=60, interval=0.2)
    return server


def _large_png() -> bytes:
    """About 24 MB that does not compress: far more than the sockets between us buffer."""
    pixels = np.random.default_rng(17).integers(0, 256, size=(2900, 2900, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, "PNG", compress_level=1)
    return out.getvalue()


def _upload(http: httpx.Client, headers: dict, patient: str, data: bytes, name: str,
            media_type: str) -> str:
    response = http.post(f"/api/v1/patients/{patient}/images", headers=headers,
                         files={"file": (name, data, media_type)},
                         data={"category": "document"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_a_destruction_elsewhere_is_honoured_at_once(database_factory, tmp_path):
    settings = make_settings(database_factory(), tmp_path)
    admin = bearer(token_for(settings, "clinic_admin", "c1"))
    port = _free_port()
    server = _serve(settings, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http, \
                TestClient(create_app(settings.model_copy(
                    update={"run_background": False}))) as elsewhere:
            patient = register_patient(http, admin)
            small = _upload(http, admin, patient, jpeg_bytes(seed=5), "small.jpg",
                            "image/jpeg")
            large = _upload(http, admin, patient, _large_png(), "large.png", "image/png")
            # The server has the keys in its cache.
            assert http.get(f"/api/v1/images/{small}/original", headers=admin).content
            stream = http.stream("GET", f"/api/v1/images/{large}/original", headers=admin)
            with stream as streaming:
                assert streaming.status_code == 200
                size = int(streaming.headers["content-length"])
                chunks = streaming.iter_raw(1 << 16)
                received = len(next(chunks))

                for image in (small, large):  # by another process on the same database
                    done = elsewhere.post("/graphql", headers=admin, json={
                        "query": DESTROY, "variables": {"i": {"imageId": image,
                                                              "reason": "duplicate"}}})
                    assert "errors" not in done.json(), done.json()

                # At once, without waiting for anything: the next read is refused...
                for kind in ("original", "thumbnail", "preview"):
                    gone = http.get(f"/api/v1/images/{small}/{kind}", headers=admin)
                    assert gone.status_code in (404, 410), (kind, gone.status_code)
                node = http.post("/graphql", headers=admin,
                                 json={"query": IMAGE, "variables": {"id": small}}).json()
                assert node["errors"][0]["extensions"]["code"] == "image_not_found"
                # ...and the download in flight stops before its next chunk.
                try:
                    for chunk in chunks:
                        received += len(chunk)
                except httpx.HTTPError:
                    pass
                assert received < size
            app = elsewhere.app.state.services.app
            destroyed = [n.id for n in app.recorder.select_notifications(
                start=None, limit=100, topics=[get_topic(Image.Destroyed)])]
            views_after = [app.mapper.to_domain_event(n) for n in
                           app.recorder.select_notifications(
                               start=min(destroyed), limit=1000,
                               topics=[get_topic(AccessRecord.Recorded)])]
            assert len(destroyed) == 2
            assert [v for v in views_after if str(v.image_id) in (small, large)] == []
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
