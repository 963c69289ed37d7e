"""The module fixture ``dicom_stack``: orthovault with the DICOM parts wired in.

A real PostgreSQL database of its own, a real blob folder, real runners, and a uvicorn server
on a free port for clients that speak real HTTP (dicomweb-client). Test modules load it with
``pytest_plugins = ("dicom_fixtures",)`` and import helpers from ``dicom_support``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from dicom_support import DICOM_JOBS, DicomStack, build_dicom_services, dicom_app
from fastapi.testclient import TestClient

from conftest import make_settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def dicom_stack(database_factory: Callable[[], str], tmp_path_factory: pytest.TempPathFactory,
                request: pytest.FixtureRequest) -> Iterator[DicomStack]:
    # Only the jobs these tests read from, and per module rather than per session: a stack
    # holds a dozen connections, and the rest of the suite needs them afterwards.
    # A module may set DICOM_STACK_SETTINGS (say, the CORS origins its browser pages use).
    settings = make_settings(database_factory(), tmp_path_factory.mktemp("dicom-data"),
                             in_process_jobs=",".join(DICOM_JOBS),
                             cbct_stable_seconds=2.0,
                             **getattr(request.module, "DICOM_STACK_SETTINGS", {}))
    services = build_dicom_services(settings)
    services.start_background()
    port = _free_port()
    # Two apps on one Services: each registers its own metrics on its own lifespan.
    config = uvicorn.Config(dicom_app(settings, services), host="127.0.0.1", port=port,
                            log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="uvicorn-dicomweb")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        with TestClient(dicom_app(settings, services)) as client:
            yield DicomStack(settings, services, client, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        services.close()


