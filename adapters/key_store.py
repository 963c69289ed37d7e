"""Per-subject data keys in Postgres, wrapped by the master key (crypto-shredding).

Destroying a subject deletes its wrapped key and remembers only that it was destroyed;
from then on nothing sealed under that key can be opened, wherever copies of it lie. The
deletion NOTIFYs every other process (``adapters.destruction_notices``), which drops the key
from its cache as the deletion commits.
"""

from __future__ import annotations

import threading
import time
from uuid import UUID

from psycopg_pool import ConnectionPool

from adapters import schema_lock
from adapters.destruction_ledger import DestructionLedger
from adapters.destruction_notices import CHANNEL, DestructionListener
from adapters.subject_cipher import DecryptionFailed, new_data_key, open_sealed, seal

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS subject_keys (
    subject_id uuid PRIMARY KEY,
    owner_id uuid,
    wrapped_key bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS subject_keys_owner ON subject_keys (owner_id);
CREATE TABLE IF NOT EXISTS destroyed_subjects (
    subject_id uuid PRIMARY KEY,
    destroyed_at timestamptz NOT NULL DEFAULT now()
);
"""


class SubjectDestroyed(Exception):
    """The subject's key has been destroyed; its data is gone for good."""


class KeyStore:
    """Creates, unwraps, caches and destroys subject keys.

    Unwrapped keys are cached for ``cache_seconds`` so hot paths (projections decrypting
    every event) do not hit the database each time. A destroy evicts the local cache at
    once; other processes evict it when its NOTIFY arrives (:meth:`listen`), and a process
    whose listening connection broke forgets every cached key.
    """

    def __init__(self, pool: ConnectionPool, master_key: bytes, cache_seconds: float = 30.0,
                 ledger: DestructionLedger | None = None):
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes (AES-256)")
        self._pool = pool
        self._master_key = master_key
        self._cache_seconds = cache_seconds
        self._cache: dict[UUID, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self.ledger = ledger
        # Destroyed here or announced by another process: refused even before the next
        # database read, so a stream in progress stops at its next chunk.
        self._forgotten: set[UUID] = set()
        self._listener: DestructionListener | None = None

    def listen(self) -> None:
        """Start honouring destructions committed by other processes (one connection)."""
        if self._listener is None:
            self._listener = DestructionListener(self._pool.conninfo, self._forget,
                                                 self._forget_all)
            self._listener.start()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
        self._pool.close()

    def _forget(self, subject_id: UUID) -> None:
        with self._lock:
            self._cache.pop(subject_id, None)
            if len(self._forgotten) > 1_000_000:
                self._forgotten.clear()
            self._forgotten.add(subject_id)

    def _forget_all(self) -> None:
        with self._lock:
            self._cache.clear()

    def forgotten(self, subject_id: UUID) -> bool:
        """Whether this process has seen the subject destroyed (memory only, no query)."""
        with self._lock:
            return subject_id in self._forgotten

    def create_schema(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            schema_lock.lock_in(conn)
            conn.execute(SCHEMA_SQL)

    def verify_master_key(self) -> None:
        """Refuse to start with a master key that does not open this installation's keys.

        Otherwise a mistyped key would start a server that answers every read with a 500
        and wraps new subjects' keys under the wrong master key.
        """
        with self._pool.connection() as conn:
            row = conn.execute("SELECT subject_id, wrapped_key FROM subject_keys "
                               "ORDER BY created_at LIMIT 1").fetchone()
        if row is not None:
            self._unwrap(row[0], bytes(row[1]))

    def _wrap(self, subject_id: UUID, key: bytes) -> bytes:
        return seal(self._master_key, key, subject_id.bytes)

    def _unwrap(self, subject_id: UUID, wrapped: bytes) -> bytes:
        try:
            return open_sealed(self._master_key, wrapped, subject_id.bytes)
        except DecryptionFailed:
            raise RuntimeError(
                "a subject key does not open with the configured master key: "
                "ORTHOVAULT_MASTER_KEY is not the key this data was written with"
            ) from None

    def _cached(self, subject_id: UUID) -> bytes | None:
        with self._lock:
            if subject_id in self._forgotten:
                raise SubjectDestroyed(str(subject_id))
            hit = self._cache.get(subject_id)
            if hit and hit[1] > time.monotonic():
                return hit[0]
        return None

    def _remember(self, subject_id: UUID, key: bytes) -> bytes:
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[subject_id] = (key, time.monotonic() + self._cache_seconds)
        return key

    def key_for(self, subject_id: UUID, *, owner_id: UUID | None = None) -> bytes:
        """The subject's key, created (and committed) on first use."""
        key = self._cached(subject_id)
        if key is not None:
            return key
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT wrapped_key FROM subject_keys WHERE subject_id = %s", (subject_id,)
            ).fetchone()
            if row is None:
                if conn.execute(
                    "SELECT 1 FROM destroyed_subjects WHERE subject_id = %s", (subject_id,)
                ).fetchone():
                    raise SubjectDestroyed(str(subject_id))
                # Two writers may race to create the key; the first insert wins and both
                # read back the same row.
                conn.execute(
                    "INSERT INTO subject_keys (subject_id, owner_id, wrapped_key) "
                    "VALUES (%s, %s, %s) ON CONFLICT (subject_id) DO NOTHING",
                    (subject_id, owner_id, self._wrap(subject_id, new_data_key())),
                )
                row = conn.execute(
                    "SELECT wrapped_key FROM subject_keys WHERE subject_id = %s", (subject_id,)
                ).fetchone()
        return self._remember(subject_id, self._unwrap(subject_id, bytes(row[0])))

    def existing_key(self, subject_id: UUID) -> bytes:
        """The subject's key; SubjectDestroyed if it was destroyed or never existed."""
        key = self._cached(subject_id)
        if key is not None:
            return key
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT wrapped_key FROM subject_keys WHERE subject_id = %s", (subject_id,)
            ).fetchone()
        if row is None:
            raise SubjectDestroyed(str(subject_id))
        return self._remember(subject_id, self._unwrap(subject_id, bytes(row[0])))

    def destroy(self, subject_ids: list[UUID]) -> None:
        """Delete the keys for good (in one transaction) and remember the destruction (in
        the table, and first in the ledger outside the data when one is configured); every
        listening process is notified when the transaction commits."""
        if self.ledger is not None:
            self.ledger.append(subject_ids)
        with self._pool.connection() as conn, conn.transaction():
            for subject_id in subject_ids:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(subject_id)))
                conn.execute("DELETE FROM subject_keys WHERE subject_id = %s", (subject_id,))
                conn.execute(
                    "INSERT INTO destroyed_subjects (subject_id) VALUES (%s) "
                    "ON CONFLICT DO NOTHING",
                    (subject_id,),
                )
        for subject_id in subject_ids:
            self._forget(subject_id)

    def still_live(self, subject_id: UUID) -> bool:
        """Asks the store (one primary-key lookup): for a stream between its chunks, so not
        one more chunk goes out once the key's deletion has committed anywhere."""
        if self.forgotten(subject_id):
            return False
        with self._pool.connection() as conn:
            live = conn.execute("SELECT 1 FROM subject_keys WHERE subject_id = %s",
                                (subject_id,)).fetchone() is not None
        if not live:
            self._forget(subject_id)
        return live

    def destroyed_among(self, subject_ids: list[UUID]) -> set[UUID]:
        """Which of these subjects are destroyed: known here, or committed anywhere."""
        with self._lock:
            known = {i for i in subject_ids if i in self._forgotten}
        rest = list({i for i in subject_ids if i not in known})
        if not rest:
            return known
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT subject_id FROM destroyed_subjects"
                                " WHERE subject_id = ANY(%s)", (rest,)).fetchall()
        return known | {row[0] for row in rows}

    def is_destroyed(self, subject_id: UUID) -> bool:
        with self._pool.connection() as conn:
            return bool(
                conn.execute(
                    "SELECT 1 FROM destroyed_subjects WHERE subject_id = %s", (subject_id,)
                ).fetchone()
            )
