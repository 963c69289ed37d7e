"""A recorded event log (tests/data/recorded_log/) loaded into a fresh database and
replayed through every projection, the audit verification and the Kafka relay's mapping.

The log is the raw stored rows of the events table as a release wrote them (sealed
state, topics, positions) with the wrapped keys they need and the test master key. A later
release must replay it to the same results: an event class that changes needs an
upcaster, a read model that changes needs its expected output regenerated deliberately
(docs/architecture.md, Upgrades).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg

from api.projection_replay import catch_up, live_view
from api.services import PROJECTIONS, Services
from projections.audit import verify_against_log, verify_chain
from workers.kafka_relay import KafkaRelay

DATA = Path(__file__).parent / "data" / "recorded_log"


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(bytes(value)).decode()


def _unb64(value: str | None) -> bytes | None:
    return None if value is None else base64.b64decode(value)


def record(database_url: str, folder: Path = DATA) -> None:
    """Write the stored rows of a database's log and keys into ``folder``."""
    with psycopg.connect(database_url) as conn:
        events = conn.execute("SELECT notification_id, originator_id, originator_version,"
                              " topic, state FROM imaging_events ORDER BY notification_id"
                              ).fetchall()
        keys = conn.execute("SELECT subject_id, owner_id, wrapped_key, created_at FROM"
                            " subject_keys ORDER BY subject_id").fetchall()
        destroyed = conn.execute("SELECT subject_id, destroyed_at FROM destroyed_subjects"
                                 " ORDER BY subject_id").fetchall()
    folder.mkdir(parents=True, exist_ok=True)
    log = {
        "events": [[n, str(o), v, t, _b64(s)] for n, o, v, t, s in events],
        "subject_keys": [[str(s), str(o) if o else None, _b64(w), c.isoformat()]
                         for s, o, w, c in keys],
        "destroyed_subjects": [[str(s), d.isoformat()] for s, d in destroyed],
    }
    (folder / "log.json").write_text(json.dumps(log, indent=0) + "\n")


def load(database_url: str, folder: Path = DATA) -> None:
    """Insert the recorded rows into a database whose tables the release has created."""
    log = json.loads((folder / "log.json").read_text())
    with psycopg.connect(database_url) as conn, conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO imaging_events (notification_id, originator_id,"
                " originator_version, topic, state) VALUES (%s, %s, %s, %s, %s)",
                [(n, UUID(o), v, t, _unb64(s)) for n, o, v, t, s in log["events"]])
            cur.executemany(
                "INSERT INTO subject_keys (subject_id, owner_id, wrapped_key, created_at)"
                " VALUES (%s, %s, %s, %s)",
                [(UUID(s), UUID(o) if o else None, _unb64(w), c)
                 for s, o, w, c in log["subject_keys"]])
            cur.executemany("INSERT INTO destroyed_subjects (subject_id, destroyed_at)"
                            " VALUES (%s, %s)",
                            [(UUID(s), d) for s, d in log["destroyed_subjects"]])
        conn.execute("SELECT setval(pg_get_serial_sequence('imaging_events', 'notification_id'),"
                     " (SELECT max(notification_id) FROM imaging_events))")


def _read_model_rows(database_url: str, prefix: str) -> dict[str, list[str]]:
    with psycopg.connect(database_url) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s"
            " ORDER BY 1", (prefix.replace("_", r"\_") + r"\_%",))]
        return {table: sorted(row[0] for row in conn.execute(
            f'SELECT to_jsonb(t)::text FROM "{table}" t'))
            for table in tables}


def replay(services: Services, database_url: str) -> dict[str, Any]:
    """Every projection from zero, the audit checks and the relay's records, as data."""
    read_models = {}
    for projection, view_class in PROJECTIONS:
        catch_up(services, projection, live_view(services, view_class))
        read_models.update(_read_model_rows(database_url, projection.name.lower()))
    chain = verify_chain(services.audit)
    against = verify_against_log(services.audit, services.app)
    relay = KafkaRelay(services.app, services.gallery, "127.0.0.1:9")  # never connects
    records = []
    for notification in services.app.recorder.select_notifications(start=1, limit=100_000):
        made = relay._record(notification)  # the relay's own mapping, without a broker
        records.append(None if made is None else {
            "topic": made.topic, "key": made.key.decode(), "value": made.value.decode(),
            "headers": sorted([k, v.decode()] for k, v in made.headers)})
    return {
        "read_models": read_models,
        "audit": {"chain": [chain.ok, chain.checked, chain.head_position, chain.head_hash],
                  "against_log": [against.ok, against.checked]},
        "relay": records,
    }
