"""Relays the imaging notification log to Kafka as thin CloudEvents, at least once.

Order of work for each batch of the log: map every event to its PHI-free record
(``adapters.cloudevents``), send them, wait for the broker's acknowledgement of each
(``acks=all``), and only then advance the relay's own tracking position (table
``kafka_relay_v1_tracking``). A crash between the acknowledgement and the tracking write
sends those events again after a restart: consumers dedupe on ``ce_id``, which is the same
for every resend (see ``adapters.kafka_consumer``).

A broker outage is waited out, never skipped: the producer is rebuilt and the unacknowledged
records are sent again after a capped, doubling pause, for as long as it takes. What was
acknowledged before the failure is tracked first, so a restart during an outage does not
resend it. ``lag()`` tells how far behind the relay is (log head minus tracking position).

One relay publishes at a time. Every relay process holds a dedicated Postgres connection
and tries ``pg_try_advisory_lock`` on it; the holder leads, the others poll every
``lock_poll`` seconds. Postgres drops a session's advisory lock when its connection ends, so
when the leader stops, crashes or loses its connection, a follower takes over and resumes
from the shared tracking position. A leader that finds its lock connection gone stops
publishing at once and contends again. During the hand-over both may publish the same
events for a moment; that is a resend like any other. The same connection LISTENs for the
event store's NOTIFY, so a leader sleeps until there is something to relay.

Runs as a Supervisor job, shaped like :class:`workers.runner.WorkerRunner`: a context
manager with ``run_forever``, ``wait`` and ``stop``. Kafka failures are handled inside;
anything else (the database gone, an event that cannot be mapped) ends ``run_forever`` with
the error, and the Supervisor restarts the relay, which resumes from its tracking.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

import psycopg
import structlog
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, Notification, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from kafka import KafkaProducer
from kafka.errors import KafkaError
from psycopg import sql

from adapters.cloudevents import KafkaRecord, Owner, encode
from domain.errors import Gone
from domain.events import ShreddedEvent
from domain.image import Image
from domain.imaging import Imaging

log = structlog.get_logger("orthovault.kafka_relay")

NAME = "kafka_relay_v1"
_OWNER_CACHE_SIZE = 10_000


class LeadershipLost(Exception):
    """The advisory-lock connection ended, or another relay is ahead: stop publishing."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a relay name."""
    digest = hashlib.sha256(f"orthovault:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class LeaderLock:
    """A session advisory lock on a connection of its own, which also LISTENs for new events.

    Connection parameters are the tracking recorder's, so the lock lives in the database that
    holds the tracking position it protects.
    """

    def __init__(self, connect_kwargs: Mapping[str, Any], key: int):
        self._connect_kwargs = {k: v for k, v in connect_kwargs.items() if k != "row_factory"}
        self._key = key
        self._conn: psycopg.Connection[Any] | None = None
        self.held = False

    def try_acquire(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(**self._connect_kwargs, autocommit=True)
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        self.held = bool(row and row[0])
        return self.held

    def listen(self, channel: str) -> None:
        self._guarded(lambda conn: conn.execute(sql.SQL("LISTEN {}").format(
            sql.Identifier(channel))))

    def check(self) -> None:
        self._guarded(lambda conn: conn.execute("SELECT 1"))

    def wait_for_notify(self, timeout: float) -> None:
        self._guarded(lambda conn: list(conn.notifies(timeout=timeout, stop_after=1)))

    def _guarded(self, action: Callable[[psycopg.Connection[Any]], Any]) -> None:
        if self._conn is None or not self.held:
            raise LeadershipLost("the leader lock is not held")
        try:
            action(self._conn)
        except psycopg.Error as error:
            self.release()
            raise LeadershipLost(f"lock connection lost: {type(error).__name__}") from error

    def release(self) -> None:
        """Closing the session releases the lock; no explicit unlock can be missed."""
        self.held = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                conn.close()


class KafkaRelay:
    def __init__(
        self,
        app: Imaging,
        tracking: PostgresTrackingRecorder,
        bootstrap_servers: str | Sequence[str],
        *,
        batch_size: int = 500,
        ack_timeout: float = 10.0,
        max_backoff: float = 30.0,
        lock_poll: float = 1.0,
        idle_wait: float = 1.0,
        producer_config: Mapping[str, Any] | None = None,
        name: str = NAME,
    ):
        self.app = app
        self.tracking = tracking
        self.name = name
        self.batch_size = batch_size
        self.ack_timeout = ack_timeout
        self.max_backoff = max_backoff
        self.lock_poll = lock_poll
        self.idle_wait = idle_wait
        self.published = 0  # records acknowledged by the broker in this process
        self._producer_config: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": f"orthovault-{name}",
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "max_block_ms": int(ack_timeout * 1000),
            "bootstrap_timeout_ms": int(ack_timeout * 1000),
            "request_timeout_ms": int(ack_timeout * 1000),
            **(producer_config or {}),
        }
        self._producer: KafkaProducer | None = None
        self._lock = LeaderLock(tracking.datastore.pool.kwargs, lock_key(name))
        self._owners: OrderedDict[UUID, Owner] = OrderedDict()
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True, name=name)

    # ---- Supervisor job shape ----------------------------------------------------------

    def __enter__(self) -> KafkaRelay:
        self._thread.start()
        return self

    def run_forever(self, timeout: float | None = None) -> None:
        if self._stopping.wait(timeout) and self._error is not None:
            error, self._error = self._error, None
            raise error

    def wait(self, notification_id: int, timeout: float = 10.0) -> None:
        self.tracking.wait(self.app.name, notification_id, timeout=timeout)

    def stop(self) -> None:
        self._stopping.set()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._thread.ident is not None:  # entered, so there is a thread to wait for
            self._thread.join(timeout=30)

    # ---- observation -------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._lock.held

    def position(self) -> int:
        return self.tracking.max_tracking_id(self.app.name) or 0

    def lag(self) -> int:
        """Events in the log not yet acknowledged by Kafka (head minus tracking position)."""
        return max(0, (self.app.recorder.max_notification_id() or 0) - self.position())

    # ---- the work ----------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                if not self._lock.try_acquire():
                    self._stopping.wait(self.lock_poll)
                    continue
                try:
                    self._lead()
                except LeadershipLost as lost:
                    log.warning("relay_leadership_lost", relay=self.name, reason=str(lost))
                    self._drop_producer()
        except BaseException as error:
            self._error = error
            log.error("relay_failed", relay=self.name, error=type(error).__name__)
        finally:
            self._stopping.set()
            self._drop_producer()
            self._lock.release()

    def _lead(self) -> None:
        position = self.position()
        log.info("relay_leading", relay=self.name, position=position)
        self._lock.listen(self.app.recorder.channel_name)  # type: ignore[attr-defined]
        while not self._stopping.is_set():
            self._lock.check()
            notifications = self.app.recorder.select_notifications(
                start=position, limit=self.batch_size, inclusive_of_start=False
            )
            if not notifications:
                self._lock.wait_for_notify(self.idle_wait)
                continue
            position = self._relay(notifications, position)

    def _relay(self, notifications: Sequence[Notification], position: int) -> int:
        """Publishes one batch; returns the tracking position reached."""
        records = [(n.id, self._record(n)) for n in notifications]
        pending = [(nid, record) for nid, record in records if record is not None]
        failures = 0
        while pending:
            acked = self._send(pending)
            if acked:
                # Everything before the first unacknowledged record is safe to skip on restart.
                ceiling = pending[acked][0] if acked < len(pending) else None
                position = self._advance(notifications, position, ceiling)
                pending = pending[acked:]
            if not pending:
                break
            failures += 1
            delay = min(self.max_backoff, 0.5 * 2 ** (failures - 1))
            log.warning("relay_broker_unavailable", relay=self.name, pending=len(pending),
                        failures=failures, retry_in=delay)
            if self._stopping.wait(delay):
                return position
            self._lock.check()
        return self._advance(notifications, position, None)

    def _send(self, pending: Sequence[tuple[int, KafkaRecord]]) -> int:
        """Sends in log order; returns how many leading records the broker acknowledged."""
        acked = 0
        try:
            if self._producer is None:
                self._producer = KafkaProducer(**self._producer_config)
            futures = [
                self._producer.send(r.topic, key=r.key, value=r.value, headers=r.headers)
                for _, r in pending
            ]
            self._producer.flush(timeout=self.ack_timeout)
            for future in futures:
                future.get(timeout=self.ack_timeout)
                acked += 1
        except KafkaError as error:
            log.warning("relay_send_failed", relay=self.name, error=type(error).__name__)
            # A producer that failed once can stay wedged (seen after a broker restart).
            self._drop_producer()
        self.published += acked
        return acked

    def _advance(
        self, notifications: Sequence[Notification], position: int, ceiling: int | None
    ) -> int:
        """Tracks the last notification below ``ceiling`` (all of them when None)."""
        reached = max(
            (n.id for n in notifications if ceiling is None or n.id < ceiling), default=position
        )
        if reached > position:
            self._track(reached)
        return max(reached, position)

    def _track(self, notification_id: int) -> None:
        try:
            self.tracking.insert_tracking(Tracking(self.app.name, notification_id))
        except IntegrityError:
            raise LeadershipLost("another relay has tracked further") from None

    def _record(self, notification: Notification) -> KafkaRecord | None:
        event = self.app.mapper.to_domain_event(notification)
        return encode(event, notification.id, self._owner(event))

    def _owner(self, event: Any) -> Owner | None:
        """Clinic and patient of an image whose event does not name them (tags, deletes)."""
        is_image = (
            event.topic.startswith(Image.__module__ + ":Image.")
            if isinstance(event, ShreddedEvent)
            else isinstance(event, Image.Event)
        )
        if not is_image:
            return None
        image_id = UUID(str(event.originator_id))
        state = event.header if isinstance(event, ShreddedEvent) else vars(event)
        if state.get("patient_id") and state.get("clinic_id"):
            return self._remember(image_id, Owner(str(state["clinic_id"]),
                                                  str(state["patient_id"])))
        if image_id in self._owners:
            self._owners.move_to_end(image_id)
            return self._owners[image_id]
        if isinstance(event, ShreddedEvent):
            return None
        try:
            image = self.app.repository.get(image_id)
        except (Gone, AggregateNotFoundError):
            return None
        return self._remember(image_id, Owner(image.clinic_id, str(image.patient_id)))

    def _remember(self, image_id: UUID, owner: Owner) -> Owner:
        self._owners[image_id] = owner
        self._owners.move_to_end(image_id)
        if len(self._owners) > _OWNER_CACHE_SIZE:
            self._owners.popitem(last=False)
        return owner

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            close_producer(producer)


def close_producer(producer: KafkaProducer) -> None:
    """Closes at once, dropping unsent records (the relay sends them again).

    kafka-python 3.0's ``close(timeout=0)`` flushes first and raises while records are
    pending (as they are when the broker is down), leaving the sender thread and its sockets
    behind. Force-closing the sender first aborts the pending batches, so close completes.
    """
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(timeout=5)
    with contextlib.suppress(KafkaError):
        producer.close(timeout=0)
