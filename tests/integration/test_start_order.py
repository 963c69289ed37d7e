"""Start in any order: `orthovault api`, `projections`, `worker` and `relay` started at the
same instant on an empty database (as `docker compose up` does) all come up, and a photo
goes from the api to a thumbnail and to Kafka. Before schema creation took an advisory lock
(adapters/schema_lock.py), the concurrent CREATE TABLE IF NOT EXISTS of the tracking tables
killed some of them with a pg_type unique violation.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from test_postgres_restart import PrivatePostgres, _system_user

from conftest import TEST_MASTER_KEY, bearer, jpeg_bytes, make_settings, token_for
from integration.conftest import free_port, wait_for_port
from integration.test_kafka_relay import read_records
from integration.test_scale_out import Processes

pytestmark = pytest.mark.slow

ROUNDS = 5
COMMANDS = ("api", "projections", "worker", "relay")


@pytest.fixture(scope="module")
def private_server() -> Iterator[PrivatePostgres]:
    """A PostgreSQL of this module's own: the shared test server's 100 connections are
    spent by whatever else runs at the moment, which is not what this test is about."""
    base = Path(tempfile.mkdtemp(prefix="ov-pg-start-"))
    user = _system_user()
    if user is not None:
        shutil.chown(base, user=user)
    server = PrivatePostgres(base, free_port(), user)
    server.init()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _fresh_database(server: PrivatePostgres) -> str:
    name = f"ov_start_{secrets.token_hex(4)}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url.rsplit("/", 1)[0] + "/" + name


def _wait_for(check, timeout: float, what: str, processes: Processes):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in processes.children:
            assert child.poll() is None, f"a process exited ({child.args}): {what}"
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _round(database_url: str, data_dir: Path, bootstrap: str, number: int) -> None:
    settings = make_settings(database_url, data_dir, kafka_bootstrap=bootstrap)
    clinic = f"clinic-start-{number}-{int(time.time())}"
    headers = bearer(token_for(settings, "doctor", clinic))
    port = free_port()
    processes = Processes(settings, data_dir)
    env = {"ORTHOVAULT_KAFKA_BOOTSTRAP": bootstrap, "ORTHOVAULT_PORT": str(port),
           "ORTHOVAULT_KAFKA_GROUP_PREFIX": f"ov-start-{number}",
           "ORTHOVAULT_RATE_LIMIT_REQUESTS": "", "ORTHOVAULT_RATE_LIMIT_WRITES": ""}
    try:
        for command in COMMANDS:  # no waiting in between: the same instant
            processes.start(command, **env)
        wait_for_port(port, timeout=300)  # a loaded 2-core machine imports slowly
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers,
                          timeout=60) as client:
            registered = client.post("/graphql", json={"query": (
                f'mutation {{ registerPatient(input: {{externalId: "START-{number}", '
                'givenName: "Ada", familyName: "Start", birthDate: "2012-04-01", '
                'sex: "female"}) { id } }')})
            assert registered.status_code == 200, registered.text
            patient_id = registered.json()["data"]["registerPatient"]["id"]
            granted = client.post("/graphql", json={"query": (
                f'mutation {{ grantConsent(input: {{patientId: "{patient_id}", scope: '
                'CLINICAL_PHOTOGRAPHY}) { id } }')})
            assert "errors" not in granted.json(), granted.text
            uploaded = client.post(f"/api/v1/patients/{patient_id}/images",
                                   files={"file": ("photo.jpg", jpeg_bytes(seed=number),
                                                   "image/jpeg")})
            assert uploaded.status_code == 201, uploaded.text
            image_id = uploaded.json()["id"]
            thumbnail = _wait_for(
                lambda: (r := client.get(f"/api/v1/images/{image_id}/thumbnail"))
                .status_code == 200 and r, 90, "the thumbnail", processes)
            assert thumbnail.headers["content-type"].startswith("image/")
        records = _wait_for(lambda: read_records(bootstrap, 3, clinic=clinic, timeout=2),
                            90, "the events on Kafka", processes)
        assert any(image_id.encode() in r.value for r in records)
        for child in processes.children:
            assert child.poll() is None, f"{child.args} did not stay up"
    finally:
        processes.close()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("number", range(ROUNDS))
def test_four_processes_started_at_once_on_a_fresh_database_all_come_up(
        number, private_server, tmp_path, kafka_bootstrap):
    _round(_fresh_database(private_server), tmp_path, kafka_bootstrap, number)


def test_a_process_that_cannot_start_says_why_and_exits_non_zero(tmp_path):
    from click.testing import CliRunner

    from api.cli import main

    closed = free_port()  # nothing listens there
    for command in ("projections", "worker", "relay"):
        result = CliRunner().invoke(main, [command, "--data-dir", str(tmp_path)], env={
            "ORTHOVAULT_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed}/none",
            "ORTHOVAULT_MASTER_KEY": TEST_MASTER_KEY, "ORTHOVAULT_KAFKA_BOOTSTRAP": "x:1"})
        assert result.exit_code == 1, result.output
        assert "cannot start: cannot connect to PostgreSQL" in result.output
