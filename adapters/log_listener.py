"""One LISTEN connection per process for every subscription to the imaging log.

eventsourcing's ``PostgresSubscription`` holds a pooled connection for its whole life just
to LISTEN for "new events" notifications. A process here runs a subscription per read model
and worker — close to twenty — so that alone exhausted its pool and, across processes, the
server's connection limit. This recorder's subscriptions instead share one listener per
recorder, which wakes all of them on each notification; each then pulls what is new from
its own position, exactly as before. If the listening connection breaks, the listener wakes
everyone (so nothing written meanwhile waits) and reconnects.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import structlog
from eventsourcing.persistence import (
    IntegrityError,
    ListenNotifySubscription,
    StoredEvent,
    Subscription,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

log = structlog.get_logger("orthovault.event_store")
RECONNECT_SECONDS = 1.0


class LogListener:
    """LISTENs on the recorder's channel while at least one subscription is registered."""

    def __init__(self, recorder: PostgresApplicationRecorder):
        self._recorder = recorder
        self._waiters: set[threading.Event] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def register(self, waiter: threading.Event) -> None:
        with self._lock:
            self._waiters.add(waiter)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="log-listener")
                self._thread.start()

    def unregister(self, waiter: threading.Event) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def wake_all(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for waiter in waiters:
            waiter.set()

    def _listening(self) -> bool:
        with self._lock:
            if not self._waiters:
                self._thread = None
                return False
            return True

    def _run(self) -> None:
        while self._listening():
            try:
                with self._recorder.datastore.get_connection() as conn:
                    conn.execute(SQL("LISTEN {0}").format(
                        Identifier(self._recorder.channel_name)))
                    self.wake_all()  # anything written before LISTEN took effect
                    while self._listening():
                        for _ in conn.notifies(timeout=0.2, stop_after=1):
                            self.wake_all()
                return
            except Exception as error:  # a broken connection: retry, never die
                if getattr(self._recorder.datastore.pool, "closed", False):
                    return  # the process is shutting its pool down
                log.warning("log_listener_reconnecting", error=type(error).__name__)
                self.wake_all()
                threading.Event().wait(RECONNECT_SECONDS)


class SharedListenSubscription(ListenNotifySubscription[PostgresApplicationRecorder]):
    def __init__(self, recorder: SharedListenRecorder, gt: int | None = None,
                 topics: Sequence[str] = ()):
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        self._listener = recorder.listener
        self._listener.register(self._has_been_notified)

    def stop(self) -> None:
        self._listener.unregister(self._has_been_notified)
        super().stop()


class SharedListenRecorder(PostgresApplicationRecorder):
    """The imaging log's recorder (named by ``APPLICATION_RECORDER_TOPIC``)."""

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.listener = LogListener(self)

    def insert_events(self, stored_events: Sequence[StoredEvent],
                      **kwargs: Any) -> Sequence[int] | None:
        """eventsourcing retries an insert whose connection broke, even one whose COMMIT went
        through with only its answer lost (PostgreSQL restarting). The retry then conflicts
        with its own rows; callers would take that for a concurrent writer and apply their
        command a second time (a second DerivativesGenerated). Recognise our own rows
        instead: the same ciphertext, whose random nonce no other writer has."""
        try:
            return super().insert_events(stored_events, **kwargs)
        except IntegrityError:
            ids = self._already_stored(stored_events)
            if ids is None:
                raise
            log.warning("insert_found_committed", events=len(ids))
            return ids

    def _already_stored(self, stored_events: Sequence[StoredEvent]) -> list[int] | None:
        if not stored_events:
            return None
        query = SQL("SELECT notification_id, state FROM {}.{} WHERE originator_id = %s"
                    " AND originator_version = %s").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name))
        ids: list[int] = []
        with self.datastore.transaction(commit=False) as curs:
            for event in stored_events:
                curs.execute(query, (event.originator_id, event.originator_version))
                row = curs.fetchone()
                if row is None or bytes(row["state"]) != bytes(event.state):
                    return None
                ids.append(row["notification_id"])
        return ids

    def subscribe(self, gt: int | None = None,
                  topics: Sequence[str] = ()) -> Subscription[PostgresApplicationRecorder]:
        return SharedListenSubscription(self, gt=gt, topics=topics)
