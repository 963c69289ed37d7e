"""Photo derivatives with 1 vs 2 `orthovault worker` processes sharing the shards.

For each run the same photos are imported into a fresh database while the benchmark holds
every shard's lease; one, or two, worker processes start and join, then the benchmark lets
go and they take the shards at once. The rate is taken from the timestamps of the recorded
``DerivativesGenerated`` events (first to last), so process start-up is not counted.

Needs PostgreSQL on 127.0.0.1:5432 (throw-away databases are created and dropped).
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import psycopg
from PIL import Image

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PHOTOS = 40
SHARDS = 2


def _photos(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(7)
    for n in range(PHOTOS):
        pixels = rng.integers(0, 255, size=(1500, 2000, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=85)
        (folder / f"p{n:03}.jpg").write_bytes(out.getvalue())
    return folder


def _hold_shards(database_url: str) -> object:
    """Takes every derivatives shard, so the workers can start but not yet work."""
    from psycopg.conninfo import conninfo_to_dict

    from workers.derivatives import NAME
    from workers.leases import LeaseBoard, shard_unit

    board = LeaseBoard(conninfo_to_dict(database_url), label="bench")
    units = [shard_unit(NAME, shard, SHARDS) for shard in range(SHARDS)]
    board.attach()
    board.register(NAME, units)
    assert all(board.try_take(NAME, unit) for unit in units)
    return board


def _release_when_joined(board: object, processes: int) -> None:
    """Once every worker is a member, let go of the shards: they take them all at once."""
    from workers.derivatives import NAME

    deadline = time.monotonic() + 120
    while board.members(NAME) < processes + 1:  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not start")
        time.sleep(0.2)
    board.detach()  # type: ignore[attr-defined]


def _rate(photos: Path, data: Path, processes: int) -> float:
    from eventsourcing.utils import get_topic

    from api.folder_import import import_path
    from api.services import Services
    from api.settings import Settings
    from domain.image import Image as ImageAggregate
    from domain.patient import ConsentScope
    from domain.values import Actor

    name = f"ov_bench_{secrets.token_hex(4)}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    workers: list[subprocess.Popen[bytes]] = []
    try:
        settings = Settings(
            data_dir=data, database_url=SERVER.rsplit("/", 1)[0] + "/" + name,
            master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
            token_secret="bench-" + "x" * 40, worker_shards=SHARDS,
        )
        services = Services.build(settings)  # no background jobs: nothing processes yet
        actor = Actor("bench", "clinic_admin", "bench-clinic")
        patient = services.app.register_patient(
            actor, external_id="S-1", given_name="Scale", family_name="Out",
            birth_date=date(2010, 1, 1), sex="female")
        services.app.grant_consent(actor, patient.id, ConsentScope.CLINICAL_PHOTOGRAPHY)
        assert settings.database_url and settings.master_key and settings.token_secret
        import_path(services, actor, patient.id, photos, None)
        board = _hold_shards(settings.database_url)
        env = {**os.environ, "ORTHOVAULT_DATABASE_URL": settings.database_url,
               "ORTHOVAULT_MASTER_KEY": settings.master_key.get_secret_value(),
               "ORTHOVAULT_TOKEN_SECRET": settings.token_secret.get_secret_value(),
               "ORTHOVAULT_DATA_DIR": str(data), "ORTHOVAULT_WORKER_SHARDS": str(SHARDS),
               "ORTHOVAULT_LOG_LEVEL": "WARNING"}
        command = [str(Path(sys.executable).parent / "orthovault"), "worker"]
        workers = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(processes)]
        _release_when_joined(board, processes)
        topic = get_topic(ImageAggregate.DerivativesGenerated)
        deadline = time.monotonic() + 1800
        while True:
            done = services.app.recorder.select_notifications(start=None, limit=10_000,
                                                              topics=[topic])
            if len(done) >= PHOTOS or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        stamps = sorted(services.app.mapper.to_domain_event(n).timestamp for n in done)
        services.close()
        return (len(stamps) - 1) / (stamps[-1] - stamps[0]).total_seconds()
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(tmp: Path) -> dict:
    photos = _photos(tmp / "photos")
    one = _rate(photos, tmp / "one", 1)
    two = _rate(photos, tmp / "two", 2)
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    return {
        "title": f"Photo derivatives, 1 vs 2 worker processes ({PHOTOS} photos of 3 MP, "
                 f"{SHARDS} shards)",
        "columns": ["worker processes", "photos/s", "vs 1 process"],
        "rows": [[1, f"{one:.2f}", "1.00x"], [2, f"{two:.2f}", f"{two / one:.2f}x"]],
        "notes": f"{cores} cores shared with PostgreSQL and the benchmark itself (load average "
                 f"{load:.1f} at the end: other work on the machine skews this). Rate from "
                 "the recorded events' timestamps (first to last); the photos are imported and "
                 "the workers started before the shards are released, so neither import nor "
                 "start-up is counted.",
        "summary": [{
            "what": f"Derivative workers, 2 vs 1 process ({PHOTOS} x 3 MP, {cores} cores)",
            "ours": f"{two:.2f} photos/s",
            "baseline": f"1 process {one:.2f} photos/s",
            "ratio": f"{two / one:.2f}x",
            "target": "more processes add throughput (issue 10): "
                      f"{'met' if two > one else 'NOT met'}",
        }],
    }
