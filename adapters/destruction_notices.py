"""Every process forgets a destroyed subject at once: PostgreSQL NOTIFY on destruction.

``KeyStore.destroy`` sends one notification per destroyed subject on :data:`CHANNEL` in the
transaction that deletes the keys, so it is delivered exactly when the deletion commits.
Each process LISTENs on its own connection (not a pooled one: it is held for the process's
life) and evicts the subject from its key cache and remembers it as destroyed, so a
response already streaming stops before its next chunk. After a broken connection the
listener tells its owner to forget every cached key (notifications sent meanwhile are lost)
and reconnects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from uuid import UUID

import psycopg
import structlog

log = structlog.get_logger("orthovault.key_store")
CHANNEL = "orthovault_subject_destroyed"
RECONNECT_SECONDS = 1.0


class DestructionListener:
    """Calls ``on_destroyed(id)`` for each notice and ``on_reset()`` on every (re)connect."""

    def __init__(self, conninfo: str, on_destroyed: Callable[[UUID], None],
                 on_reset: Callable[[], None]):
        self._conninfo = conninfo
        self._on_destroyed = on_destroyed
        self._on_reset = on_reset
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="destruction-listener")

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        # Keys read before LISTEN took effect are dropped by ``on_reset`` once it has.
        self._listening.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True,
                                     connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._on_reset()
                    self._listening.set()
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=0.2):
                            self._deliver(notice.payload)
            except Exception as error:  # a broken connection: forget everything, retry
                self._on_reset()
                if self._stop.is_set():
                    return
                log.warning("destruction_listener_reconnecting", error=type(error).__name__)
                self._stop.wait(RECONNECT_SECONDS)

    def _deliver(self, payload: str) -> None:
        try:
            subject_id = UUID(payload)
        except ValueError:
            return
        self._on_destroyed(subject_id)
