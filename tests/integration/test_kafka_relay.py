"""The Kafka relay and the idempotent consumer against a real broker (Tansu) and Postgres."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from eventsourcing.postgres import PostgresTrackingRecorder
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from adapters.cloudevents import TOPICS, CloudEvent, parse_record
from adapters.event_store import PostgresImaging
from adapters.kafka_consumer import IdempotentConsumer, consumer_config
from api.services import tracking_recorder
from conftest import wait_until
from domain.access import AccessKind
from domain.image import ImageCategory
from domain.imaging import NewImage
from domain.patient import ConsentScope
from domain.values import Actor, BlobRef
from workers.kafka_relay import NAME, KafkaRelay

from .conftest import TansuBroker

MARKER = "ZZPHIMARKER"
ALL_TOPICS = sorted(TOPICS.values())


@pytest.fixture
def make_relay(imaging_env: dict[str, Any]) -> Iterator[Callable[..., KafkaRelay]]:
    """Relays with their own app and tracking recorder, as a separate process would have."""
    made: list[KafkaRelay] = []

    def make(bootstrap: str, **options: Any) -> KafkaRelay:
        options = {"lock_poll": 0.1, "idle_wait": 0.2, "ack_timeout": 2.0,
                   "max_backoff": 0.5, **options}
        app = PostgresImaging(env=imaging_env)
        tracking = tracking_recorder(imaging_env, NAME, PostgresTrackingRecorder)
        relay = KafkaRelay(app, tracking, bootstrap, **options)
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.__exit__(None, None, None)
        relay.app.close()
        relay.tracking.datastore.close()


@pytest.fixture
def app(imaging_env: dict[str, Any]) -> Iterator[PostgresImaging]:
    app = PostgresImaging(env=imaging_env)
    yield app
    app.close()


class History:
    """Writes a small clinic history through the application, PHI markers included."""

    def __init__(self, app: PostgresImaging):
        self.app = app
        self.clinic = f"clinic-{uuid.uuid4().hex[:8]}"
        self.actor = Actor(user_id="user-doc", role="doctor", clinic_id=self.clinic)
        self.patient_id = app.register_patient(
            self.actor, external_id=f"EXT-{MARKER}", given_name=f"Given{MARKER}",
            family_name=f"Family{MARKER}", birth_date=date(2011, 4, 1), sex="female",
        ).id
        app.grant_consent(self.actor, self.patient_id, ConsentScope.CLINICAL_PHOTOGRAPHY)
        self.image_id = uuid.uuid4()
        app.capture_image(self.actor, NewImage(
            image_id=self.image_id, patient_id=self.patient_id,
            original=BlobRef(f"{self.image_id}/original", "0" * 64, 10, "image/jpeg"),
            width=640, height=480, category=ImageCategory.INTRAORAL, view="IV07",
            captured_at=datetime.now(UTC), tags=[f"tag{MARKER}"], filename=f"{MARKER}.jpg",
        ))
        self.tag()
        self.access()

    def tag(self) -> None:
        self.app.tag_image(self.actor, self.image_id, f"more {uuid.uuid4().hex[:6]} {MARKER}")

    def access(self) -> None:
        self.app.record_access(self.actor, [(self.image_id, self.patient_id)],
                               AccessKind.ORIGINAL)


def read_records(bootstrap: str, count: int, clinic: str | None = None,
                 timeout: float = 20.0) -> list[ConsumerRecord]:
    """Every record on our topics (of one clinic), read without a consumer group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for topic in ALL_TOPICS
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                found += [r for r in records
                          if clinic is None or json.loads(r.value).get("clinic_id") == clinic]
        # A little longer, so that more records than expected would be noticed.
        for records in consumer.poll(timeout_ms=300).values():
            found += [r for r in records
                      if clinic is None or json.loads(r.value).get("clinic_id") == clinic]
        return found
    finally:
        consumer.close()


def events_of(records: list[ConsumerRecord]) -> list[CloudEvent]:
    return [parse_record(r.headers, r.value) for r in records]


def test_relay_publishes_thin_cloudevents(app: PostgresImaging, make_relay: Any,
                                         kafka_bootstrap: str) -> None:
    history = History(app)
    relay = make_relay(kafka_bootstrap)
    with relay:
        wait_until(lambda: relay.lag() == 0, timeout=20)
        relay.run_forever(timeout=0)  # still healthy

    records = read_records(kafka_bootstrap, 5, history.clinic)
    assert len(records) == 5
    by_type = {parse_record(r.headers, r.value).type: r for r in records}
    assert set(by_type) == {
        "orthovault.patient.registered.v1", "orthovault.patient.consent_granted.v1",
        "orthovault.image.captured.v1", "orthovault.image.tagged.v1",
        "orthovault.access.recorded.v1",
    }
    captured = by_type["orthovault.image.captured.v1"]
    assert captured.topic == "imaging.image.v1"
    assert captured.key == str(history.image_id).encode()
    headers = dict(captured.headers)
    assert headers["content-type"] == b"application/json"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_source"] == b"orthovault/imaging"
    assert headers["ce_id"] == f"{history.image_id}:1".encode()
    assert headers["ce_subject"] == str(history.image_id).encode()
    assert headers["ce_type"] == b"orthovault.image.captured.v1"
    assert datetime.fromisoformat(headers["ce_time"].decode().replace("Z", "+00:00"))
    assert json.loads(captured.value) == {
        "image_id": str(history.image_id), "clinic_id": history.clinic,
        "patient_id": str(history.patient_id), "version": 1,
        "actor": {"user_id": "user-doc", "role": "doctor"},
        "category": "intraoral", "view": "IV07", "tag_count": 1, "status": "active",
    }
    tagged = json.loads(by_type["orthovault.image.tagged.v1"].value)
    assert tagged["patient_id"] == str(history.patient_id)  # filled in by the relay
    assert by_type["orthovault.patient.registered.v1"].topic == "imaging.patient.v1"
    assert by_type["orthovault.access.recorded.v1"].topic == "imaging.access.v1"
    for record in records:
        raw = record.value + b"".join(v for _, v in record.headers)
        assert MARKER.encode() not in raw and b"2011" not in raw


def _pool(env: dict[str, Any]) -> ConnectionPool:
    conninfo = make_conninfo(dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"],
                             port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                             password=env["POSTGRES_PASSWORD"])
    return ConnectionPool(conninfo, min_size=1, max_size=2, open=True)


def test_resend_after_crash_is_applied_once(app: PostgresImaging, make_relay: Any,
                                           kafka_broker: TansuBroker,
                                           imaging_env: dict[str, Any]) -> None:
    History(app)
    crashing = make_relay(kafka_broker.bootstrap)

    def crash(notification_id: int) -> None:
        raise RuntimeError("killed between the broker's ack and the tracking write")

    crashing._track = crash  # type: ignore[method-assign]
    with crashing, pytest.raises(RuntimeError, match="killed between"):
        crashing.run_forever(timeout=20)
    assert crashing.published == 5 and crashing.position() == 0

    restarted = make_relay(kafka_broker.bootstrap)
    with restarted:
        wait_until(lambda: restarted.lag() == 0, timeout=20)
    records = read_records(kafka_broker.bootstrap, 10)
    ids = [e.id for e in events_of(records)]
    assert len(ids) == 10 and len(set(ids)) == 5  # every event arrived twice

    pool = _pool(imaging_env)
    try:
        with pool.connection() as conn:
            conn.execute("CREATE TABLE applied (ce_id text, type text)")
        attempts: dict[str, int] = {}

        def handler(event: CloudEvent, conn: psycopg.Connection[Any]) -> None:
            attempts[event.id] = attempts.get(event.id, 0) + 1
            conn.execute("INSERT INTO applied VALUES (%s, %s)", (event.id, event.type))
            if event.type.endswith("image.captured.v1") and attempts[event.id] == 1:
                raise ConnectionError("the side effect failed once")

        consumer = IdempotentConsumer("test-consumer", KafkaConsumer(**consumer_config(
            kafka_broker.bootstrap, f"group-{uuid.uuid4().hex[:6]}",
            max_poll_interval_ms=3000, session_timeout_ms=3000, heartbeat_interval_ms=300,
        )), pool, handler)
        consumer.create_schema()
        consumer.consumer.subscribe(ALL_TOPICS)
        failures = 0
        deadline = time.monotonic() + 30
        while _committed(consumer.consumer) < 10 and time.monotonic() < deadline:
            try:
                consumer.poll_once(timeout_ms=300)
            except ConnectionError:
                failures += 1
        consumer.consumer.close()

        with pool.connection() as conn:
            rows = conn.execute("SELECT ce_id, count(*) FROM applied GROUP BY ce_id").fetchall()
        assert failures == 1
        assert {ce_id: n for ce_id, n in rows} == dict.fromkeys(set(ids), 1)
        assert all(consumer.seen("orthovault/imaging", ce_id) for ce_id in ids)
    finally:
        pool.close()


def _committed(consumer: KafkaConsumer) -> int:
    return sum(consumer.committed(tp) or 0 for tp in consumer.assignment())


def test_broker_outage_loses_nothing(app: PostgresImaging, make_relay: Any,
                                     kafka_broker: TansuBroker) -> None:
    history = History(app)
    relay = make_relay(kafka_broker.bootstrap, ack_timeout=1.0, max_backoff=0.5)
    with relay:
        wait_until(lambda: relay.lag() == 0, timeout=20)
        kafka_broker.stop()
        history.tag()
        history.access()
        history.tag()
        time.sleep(2.5)  # several failed attempts
        assert relay.lag() == 3
        relay.run_forever(timeout=0)  # waiting it out, not failed
        kafka_broker.start()  # memory storage: the restarted broker is empty
        wait_until(lambda: relay.lag() == 0, timeout=30)

    events = events_of(read_records(kafka_broker.bootstrap, 3))
    # At least once: a send that timed out may still have landed, so compare ids as a set.
    assert {e.id for e in events if e.subject == str(history.image_id)} == {
        f"{history.image_id}:3", f"{history.image_id}:4"}
    assert {e.type for e in events} == {"orthovault.image.tagged.v1",
                                        "orthovault.access.recorded.v1"}
    assert len({e.id for e in events}) == 3


def test_one_leader_publishes_and_a_follower_takes_over(
    app: PostgresImaging, make_relay: Any, kafka_bootstrap: str
) -> None:
    first = make_relay(kafka_bootstrap)
    second = make_relay(kafka_bootstrap)
    with first:
        wait_until(lambda: first.is_leader, timeout=10)
        with second:
            history = History(app)
            wait_until(lambda: first.lag() == 0, timeout=20)
            assert not second.is_leader
            assert (first.published, second.published) == (5, 0)

            first.__exit__(None, None, None)  # the leader stops; its lock goes with it
            wait_until(lambda: second.is_leader, timeout=10)
            history.tag()
            history.access()
            wait_until(lambda: second.lag() == 0, timeout=20)
            assert second.published == 2
            assert first.published == 5

    ids = {e.id for e in events_of(read_records(kafka_bootstrap, 7, history.clinic))}
    assert len(ids) == 7


def _lock_holder(conn: psycopg.Connection[Any]) -> int | None:
    row = conn.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    return row[0] if row else None


def test_leader_whose_connection_dies_contends_again(
    app: PostgresImaging, make_relay: Any, kafka_bootstrap: str, imaging_env: dict[str, Any]
) -> None:
    history = History(app)
    relay = make_relay(kafka_bootstrap)
    pool = _pool(imaging_env)
    try:
        with relay, pool.connection() as conn:
            conn.autocommit = True
            wait_until(lambda: relay.lag() == 0, timeout=20)
            holder = _lock_holder(conn)
            assert holder is not None
            conn.execute("SELECT pg_terminate_backend(%s)", (holder,))
            wait_until(lambda: _lock_holder(conn) not in (None, holder), timeout=10)
            history.tag()
            wait_until(lambda: relay.lag() == 0, timeout=20)
            relay.run_forever(timeout=0)
    finally:
        pool.close()
    assert relay.published >= 6


def test_stop_is_prompt_while_the_broker_is_down(make_relay: Any, app: PostgresImaging,
                                                 kafka_broker: TansuBroker) -> None:
    History(app)
    kafka_broker.stop()
    relay = make_relay(kafka_broker.bootstrap, ack_timeout=0.5, max_backoff=5.0)
    with relay:
        time.sleep(1.5)
        # every event of the history is pending (the registration's external-id claim too)
        assert relay.lag() == app.recorder.max_notification_id()
        started = time.monotonic()
        stopper = threading.Thread(target=relay.__exit__, args=(None, None, None))
        stopper.start()
        stopper.join(timeout=10)
    assert time.monotonic() - started < 5
    assert relay.position() == 0  # nothing was acknowledged, so nothing was tracked
