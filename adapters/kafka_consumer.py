"""Idempotent consumption of CloudEvents from Kafka: every event's effect happens once.

Contract, for orthovault's own inbound topics and for other modules that use this helper:

1. Producers may deliver an event more than once (our relay does after a restart), and
   Kafka redelivers everything after the last committed offset. So every record is checked
   against ``consumed_events(consumer, ce_source, ce_id, consumed_at)`` first; CloudEvents
   make ``source`` + ``id`` unique, and our relay's ``ce_id`` is stable across resends.
2. For each new event the dedupe row is inserted and the handler runs **in one database
   transaction**, on the connection passed to the handler. If the handler's effect is a
   write through that connection, effect and dedupe row commit together: exactly once.
   If the handler raises, both roll back and the event is delivered again.
3. An effect outside the database (a call, a file) happens inside that transaction, before
   the commit. If the process dies after the effect but before the commit, the event is
   applied again on redelivery: such effects get at-least-once and must tolerate a repeat
   (use ``ce_id`` as their idempotency key where the other side supports one).
4. Kafka offsets are committed only after the records up to them have been applied or
   recognised as duplicates. On a handler error, the offsets of what was applied are
   committed, the consumer is rewound to the failed record (nothing is skipped, not even
   within this process), and the error propagates: the caller decides to retry or stop.
5. A record that is not a binary-mode CloudEvent raises :class:`InvalidCloudEvent` and is
   treated like a handler error: it blocks its partition until someone acts. Silently
   skipping is not an option for us.
6. Two consumers of one group never hold the same partition; during a rebalance both may
   see a record, and the primary key on ``consumed_events`` makes the second wait for the
   first's transaction and then skip.

Rows in ``consumed_events`` are needed only as long as a redelivery is possible: prune them
with ``forget_before`` once they are older than the topic's retention.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import psycopg
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata, TopicPartition
from psycopg_pool import ConnectionPool

from adapters import schema_lock
from adapters.cloudevents import CloudEvent, parse_record

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS consumed_events (
    consumer text NOT NULL,
    ce_source text NOT NULL,
    ce_id text NOT NULL,
    consumed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, ce_source, ce_id)
);
CREATE INDEX IF NOT EXISTS consumed_events_at ON consumed_events (consumed_at);
"""

Handler = Callable[[CloudEvent, psycopg.Connection[Any]], None]


def consumer_config(bootstrap_servers: str | list[str], group_id: str,
                    **overrides: Any) -> dict[str, Any]:
    """KafkaConsumer settings this helper relies on: manual commits, start at the oldest."""
    return {
        "bootstrap_servers": bootstrap_servers,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        **overrides,
    }


class IdempotentConsumer:
    def __init__(self, name: str, consumer: KafkaConsumer, pool: ConnectionPool,
                 handler: Handler):
        self.name = name
        self.consumer = consumer
        self.pool = pool
        self.handler = handler

    def create_schema(self) -> None:
        with self.pool.connection() as conn, conn.transaction():
            schema_lock.lock_in(conn)
            conn.execute(SCHEMA_SQL)

    def poll_once(self, timeout_ms: int = 1000, max_records: int | None = None) -> int:
        """Applies what one poll returns; returns how many events were new."""
        batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        applied = 0
        done: dict[TopicPartition, int] = {}
        try:
            for partition, records in batches.items():
                for record in records:
                    applied += self._apply(record)
                    done[partition] = record.offset + 1
        except BaseException:
            self._rewind(batches, done)
            self._commit(done)
            raise
        self._commit(done)
        return applied

    def run(self, stop: threading.Event, timeout_ms: int = 1000) -> None:
        while not stop.is_set():
            self.poll_once(timeout_ms)

    def seen(self, source: str, ce_id: str) -> bool:
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT 1 FROM consumed_events WHERE consumer = %s AND ce_source = %s "
                "AND ce_id = %s", (self.name, source, ce_id),
            ).fetchone() is not None

    def forget_before(self, cutoff: datetime) -> int:
        with self.pool.connection() as conn:
            cursor = conn.execute(
                "DELETE FROM consumed_events WHERE consumer = %s AND consumed_at < %s",
                (self.name, cutoff),
            )
            return cursor.rowcount

    def _apply(self, record: ConsumerRecord) -> int:
        event = parse_record(record.headers, record.value)
        with self.pool.connection() as conn, conn.transaction():
            first = conn.execute(
                "INSERT INTO consumed_events (consumer, ce_source, ce_id) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                (self.name, event.source, event.id),
            ).fetchone()
            if first is None:
                return 0
            self.handler(event, conn)
        return 1

    def _rewind(self, batches: dict[TopicPartition, Iterable[ConsumerRecord]],
                done: dict[TopicPartition, int]) -> None:
        """Puts every partition of the batch back at its first unapplied record."""
        for partition, records in batches.items():
            first = next(iter(records), None)
            if first is not None:
                self.consumer.seek(partition, done.get(partition, first.offset))

    def _commit(self, done: dict[TopicPartition, int]) -> None:
        if done:
            self.consumer.commit(
                {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in done.items()}
            )


class TopicConsumer:
    """A supervisor job: one inbound topic, consumed in a consumer group of its own (a
    rebalance of another topic never pauses it), each record applied once."""

    def __init__(self, name: str, topic: str, handler: Handler, bootstrap: str,
                 pool: ConnectionPool, *, group_id: str, **consumer_overrides: Any):
        self._pool = pool
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(topic, **consumer_config(bootstrap, group_id,
                                                                **consumer_overrides))
        self._idempotent = IdempotentConsumer(name, self._consumer, pool, handler)
        self._idempotent.create_schema()

    def __enter__(self) -> TopicConsumer:
        return self

    def run_forever(self, timeout: float | None = None) -> None:
        self._idempotent.run(self._stop, timeout_ms=500)

    def stop(self) -> None:
        self._stop.set()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._consumer.close()
        self._pool.close()
