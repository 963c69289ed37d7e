"""Scale-out for real: `orthovault worker` and `orthovault projections` as separate OS
processes on one database, sharing the work by lease; one is killed with SIGKILL mid-work
and the survivor takes over. Outcomes are checked where users see them: every image gets its
derivatives exactly once, every read-model row and audit entry is applied exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.services import PROJECTIONS, Services
from api.settings import Settings
from conftest import (
    TEST_TOKEN_SECRET,
    bearer,
    jpeg_bytes,
    make_settings,
    register_patient,
    token_for,
    upload,
    wait_until,
)
from domain.image import Image
from projections.audit import verify_chain
from workers import derivatives
from workers.leases import key32, shard_of, shard_unit

pytestmark = pytest.mark.slow

ORTHOVAULT = Path(sys.executable).parent / "orthovault"
SHARDS = 4


class Processes:
    """`orthovault <command>` child processes on the test's database and data directory."""

    def __init__(self, settings: Settings, log_dir: Path):
        self.settings = settings
        self.log_dir = log_dir
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, command: str, **env: str) -> subprocess.Popen[bytes]:
        assert self.settings.database_url and self.settings.master_key
        environment = {
            **os.environ,
            "ORTHOVAULT_DATABASE_URL": self.settings.database_url,
            "ORTHOVAULT_MASTER_KEY": self.settings.master_key.get_secret_value(),
            "ORTHOVAULT_TOKEN_SECRET": TEST_TOKEN_SECRET,
            "ORTHOVAULT_DATA_DIR": str(self.settings.data_dir),
            "ORTHOVAULT_WORKER_SHARDS": str(SHARDS),
            **env,
        }
        log = (self.log_dir / f"{command}-{len(self.children)}.log").open("ab")
        child = subprocess.Popen([str(ORTHOVAULT), command], env=environment, stdout=log,
                                 stderr=subprocess.STDOUT)
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[[Settings], Processes]]:
    made: list[Processes] = []

    def make(settings: Settings) -> Processes:
        made.append(Processes(settings, tmp_path))
        return made[-1]

    yield make
    for group in made:
        group.close()


def holdings(database_url: str, group: str) -> dict[int, set[int]]:
    """OS pid -> unit lease keys it holds in ``group``, read from pg_locks."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.application_name, l.objid::bigint FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND l.objsubid = 2 AND l.classid::bigint = %s "
            "AND l.objid::bigint <> 0 AND l.database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database())", (key32(group),),
        ).fetchall()
    held: dict[int, set[int]] = {}
    for application_name, unit in rows:
        held.setdefault(int(application_name.rsplit(":", 1)[1]), set()).add(unit)
    return held


def spread_as(database_url: str, group: str, pids: set[int], per_pid: int) -> bool:
    held = holdings(database_url, group)
    return set(held) == pids and all(len(units) == per_pid for units in held.values())


def derivative_events(services: Services) -> dict[str, int]:
    """Image id -> how many DerivativesGenerated events its stream holds."""
    from eventsourcing.utils import get_topic

    counts: dict[str, int] = {}
    for notification in services.app.recorder.select_notifications(
            start=None, limit=1_000_000, topics=[get_topic(Image.DerivativesGenerated)]):
        key = str(notification.originator_id)
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_worker_processes_share_shards_and_a_killed_ones_work_is_redone_once(
        database_factory: Callable[[], str], tmp_path: Path, processes: Any) -> None:
    projections = ",".join(projection.name for projection, _view in PROJECTIONS)
    settings = make_settings(database_factory(), tmp_path, in_process_jobs=projections)
    assert settings.database_url
    group = processes(settings)
    first, second = group.start("worker"), group.start("worker")
    headers = bearer(token_for(settings, "doctor", "clinic-scale"))
    with TestClient(create_app(settings)) as client:
        services: Services = client.app.state.services
        # Two members, four shards: two each.
        wait_until(lambda: spread_as(settings.database_url, derivatives.NAME,
                                     {first.pid, second.pid}, 2), timeout=60)
        mine = holdings(settings.database_url, derivatives.NAME)
        units = {key32(shard_unit(derivatives.NAME, s, SHARDS)): s for s in range(SHARDS)}
        shards_of = {pid: {units[u] for u in held} for pid, held in mine.items()}

        patient_id = register_patient(client, headers)
        images: list[str] = []
        seed = 0

        def upload_one() -> str:
            nonlocal seed
            seed += 1
            response = upload(client, headers, patient_id, jpeg_bytes(320, 240, seed=seed))
            assert response.status_code == 201, response.text
            images.append(response.json()["id"])
            return images[-1]

        # Until every shard has work, so both processes must have done some.
        while {shard_of(i, SHARDS) for i in images} != set(range(SHARDS)):
            upload_one()
        wait_until(lambda: set(derivative_events(services)) >= set(images), timeout=90)
        assert {shard_of(i, SHARDS) for i in images} & shards_of[first.pid]
        assert {shard_of(i, SHARDS) for i in images} & shards_of[second.pid]

        # A burst, and the first worker dies in the middle of it.
        for _ in range(10):
            upload_one()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        for _ in range(4):
            upload_one()

        # The survivor holds every shard and finishes everything.
        wait_until(lambda: spread_as(settings.database_url, derivatives.NAME,
                                     {second.pid}, SHARDS), timeout=30)
        wait_until(lambda: set(derivative_events(services)) >= set(images), timeout=120)
        counts = derivative_events(services)
        assert {i: counts[i] for i in images} == dict.fromkeys(images, 1)
        for image_id in images:
            assert client.get(f"/api/v1/images/{image_id}/thumbnail",
                              headers=headers).status_code == 200
        assert second.poll() is None


def test_projection_processes_split_read_models_and_a_survivor_takes_over(
        database_factory: Callable[[], str], tmp_path: Path, processes: Any) -> None:
    settings = make_settings(database_factory(), tmp_path, in_process_jobs=derivatives.NAME)
    assert settings.database_url
    group = processes(settings)
    first, second = group.start("projections"), group.start("projections")
    headers = bearer(token_for(settings, "doctor", "clinic-scale"))
    share = -(-len(PROJECTIONS) // 2)
    with TestClient(create_app(settings)) as client:
        services: Services = client.app.state.services
        wait_until(lambda: {len(units) for units in holdings(
            settings.database_url, "projections").values()} <= {share, len(PROJECTIONS) - share}
            and set(holdings(settings.database_url, "projections")) == {first.pid, second.pid}
            and sum(map(len, holdings(settings.database_url, "projections").values()))
            == len(PROJECTIONS), timeout=60)
        gallery_key = key32("gallery_v1")
        gallery_holder = next(pid for pid, units in holdings(
            settings.database_url, "projections").items() if gallery_key in units)
        victim = first if gallery_holder == first.pid else second
        survivor = second if victim is first else first

        patients = [register_patient(client, headers) for _ in range(3)]
        assert upload(client, headers, patients[0], jpeg_bytes(seed=1)).status_code == 201

        # Kill the gallery's process while writes keep coming.
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        patients += [register_patient(client, headers) for _ in range(3)]
        assert upload(client, headers, patients[-1], jpeg_bytes(seed=2)).status_code == 201

        wait_until(lambda: spread_as(settings.database_url, "projections", {survivor.pid},
                                     len(PROJECTIONS)), timeout=30)
        head = services.app.recorder.max_notification_id()
        assert head is not None
        services.wait_for_read_models(head, services.gallery, services.audit)

        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            rows = conn.execute("SELECT patient_id::text, image_count FROM "
                                "gallery_v1_patients").fetchall()
        counts = dict(rows)
        assert sorted(counts) == sorted(patients)  # each patient once
        assert counts[patients[0]] == 1 and counts[patients[-1]] == 1  # counters applied once
        audit = verify_chain(services.audit)
        assert audit.ok, audit
        logged = services.app.recorder.select_notifications(start=None, limit=1_000_000)
        assert audit.checked == len(logged)  # one audit entry per event, none twice
