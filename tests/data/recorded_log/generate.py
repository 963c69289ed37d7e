"""Record the upgrade test's event log with the release checked out:

    .venv/bin/python tests/data/recorded_log/generate.py                  # log + expected
    .venv/bin/python tests/data/recorded_log/generate.py --expected-only  # expected only

Runs the product against a fresh database on the test PostgreSQL (127.0.0.1:5432), makes
a practice's worth of history through the public API (tests/installation_support.py:
patients, photos, a DICOM radiograph, an annotation, a cephalometric tracing, an album,
a rendered report, a destroyed image), writes the stored rows of the log and its wrapped
keys to log.json (the master key is the test suite's, in master.key), then replays them
into a second fresh database and writes what every projection, the audit verification and
the Kafka relay make of them to expected.json. Regenerate only deliberately: the point of
the committed files is that later releases must read this very log the same way. After a
deliberate read-model change, ``--expected-only`` replays the committed log.json as it is
and rewrites expected.json alone; review that diff like code.
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
from pathlib import Path

import psycopg

TESTS = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(TESTS), str(TESTS.parent)]

from fastapi.testclient import TestClient  # noqa: E402
from installation_support import populate  # noqa: E402
from recorded_log import DATA, load, record, replay  # noqa: E402

from api.app import create_app  # noqa: E402
from api.services import Services  # noqa: E402
from conftest import TEST_MASTER_KEY, bearer, make_settings, token_for  # noqa: E402

SERVER = "postgresql://postgres@127.0.0.1:5432"


def _database() -> str:
    name = f"ov_record_{secrets.token_hex(4)}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{SERVER}/{name}"


def _drop(url: str) -> None:
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _expected(folder: Path) -> None:
    replayed = _database()
    try:
        services = Services.build(make_settings(replayed, folder / "replayed",
                                                run_background=False))
        try:
            load(replayed)
            expected = replay(services, replayed)
        finally:
            services.close()
    finally:
        _drop(replayed)
    (DATA / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


def main(expected_only: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        if not expected_only:
            recorded = _database()
            try:
                settings = make_settings(recorded, Path(folder) / "recorded")
                with TestClient(create_app(settings)) as client:
                    populate(client, bearer(token_for(settings, "clinic_admin",
                                                      "clinic-recorded")))
                record(recorded)
                (DATA / "master.key").write_text(TEST_MASTER_KEY + "\n")
            finally:
                _drop(recorded)
        _expected(Path(folder))


if __name__ == "__main__":
    main(expected_only="--expected-only" in sys.argv[1:])
