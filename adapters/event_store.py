"""The event store: eventsourcing on Postgres with per-subject encryption of event state.

Stored layout of an event's ``state`` column (the rest of the row — ids, version, topic —
is eventsourcing's own and stays in the clear):

- ``b"P" + json``: a PHI-free event (access record, tombstone), kept readable for the audit.
- ``b"E" + u16 header length + header json + AES-GCM(state)``: everything else. The header
  holds only the time, the actor (ids and role) and pseudonymous ids (patient, clinic), so
  the audit can still say who did what to whom and when after the subject's key is gone.
  Associated data binds the ciphertext to ``originator_id|version|topic|header``.

When the subject's key is gone the mapper returns a :class:`ShreddedEvent` instead of
raising, so projections and workers keep running past destroyed subjects.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic, resolve_topic
from psycopg.conninfo import make_conninfo
from psycopg.sql import SQL, Identifier
from psycopg_pool import ConnectionPool

from adapters import schema_lock
from adapters.destruction_ledger import DestructionLedger
from adapters.key_store import KeyStore, SubjectDestroyed
from adapters.subject_cipher import open_sealed, seal
from domain.events import PhiFree, ShreddedEvent
from domain.imaging import Imaging
from domain.values import Actor

CLEAR = b"P"
SEALED = b"E"
MASTER_KEY_ENV = "ORTHOVAULT_MASTER_KEY"
LEDGER_ENV = "ORTHOVAULT_DESTRUCTION_LEDGER"


def _associated_data(originator_id: UUID, version: int, topic: str, header: bytes) -> bytes:
    return b"|".join((originator_id.bytes, str(version).encode(), topic.encode(), header))


def _header(event_state: dict[str, Any]) -> dict[str, Any]:
    """The clear part of a sealed event: time, actor, and pseudonymous ids. No PHI."""
    actor = event_state.get("actor")
    timestamp = event_state.get("timestamp")
    header: dict[str, Any] = {}
    for name in ("patient_id", "clinic_id"):
        value = event_state.get(name)
        if isinstance(value, UUID | str):
            header[name] = str(value)
    if isinstance(timestamp, datetime):
        header["ts"] = timestamp.isoformat()
    if isinstance(actor, Actor):
        header["actor"] = {
            "user_id": actor.user_id,
            "role": actor.role,
            "clinic_id": actor.clinic_id,
            "request_id": actor.request_id,
        }
    return header


class SubjectEncryptingMapper(Mapper[UUID]):
    def __init__(self, transcoder: Transcoder, key_store: KeyStore):
        super().__init__(transcoder)
        self.key_store = key_store

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        topic = get_topic(type(domain_event))
        event_state = dict(vars(domain_event))
        originator_id: UUID = event_state.pop("originator_id")
        originator_version: int = event_state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            event_state["class_version"] = class_version
        if isinstance(domain_event, PhiFree):
            state = CLEAR + self.transcoder.encode(event_state)
        else:
            header = json.dumps(_header(event_state), separators=(",", ":")).encode()
            owner = event_state.get("patient_id")
            key = self.key_store.key_for(
                originator_id, owner_id=owner if isinstance(owner, UUID) else originator_id
            )
            sealed = seal(
                key,
                self.transcoder.encode(event_state),
                _associated_data(originator_id, originator_version, topic, header),
            )
            state = SEALED + struct.pack(">H", len(header)) + header + sealed
        return StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=topic,
            state=state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        raw = bytes(stored_event.state)
        originator_id = UUID(str(stored_event.originator_id))
        if raw[:1] == CLEAR:
            plain = raw[1:]
        elif raw[:1] == SEALED:
            (length,) = struct.unpack(">H", raw[1:3])
            header = raw[3 : 3 + length]
            try:
                key = self.key_store.existing_key(originator_id)
            except SubjectDestroyed:
                return self._shredded(stored_event, originator_id, header)
            plain = open_sealed(
                key,
                raw[3 + length :],
                _associated_data(
                    originator_id, stored_event.originator_version, stored_event.topic, header
                ),
            )
        else:
            raise ValueError(f"unknown stored event format for {originator_id}")
        return self._construct(stored_event, originator_id, self.transcoder.decode(plain))

    @staticmethod
    def _shredded(stored_event: StoredEvent, originator_id: UUID, header: bytes) -> ShreddedEvent:
        values = json.loads(header) if header else {}
        timestamp = values.get("ts")
        return ShreddedEvent(
            originator_id=originator_id,
            originator_version=stored_event.originator_version,
            topic=stored_event.topic,
            timestamp=datetime.fromisoformat(timestamp) if timestamp else None,
            header=values,
        )

    @staticmethod
    def _construct(stored_event: StoredEvent, originator_id: UUID, state: dict[str, Any]) -> Any:
        cls = resolve_topic(stored_event.topic)
        state["originator_id"] = originator_id
        state["originator_version"] = stored_event.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", state)
        return domain_event


def master_key_from_env(env: Any) -> bytes:
    value = env.get(MASTER_KEY_ENV)
    if not value:
        raise RuntimeError(f"{MASTER_KEY_ENV} is not set")
    key = base64.b64decode(value)
    if len(key) != 32:
        raise RuntimeError(f"{MASTER_KEY_ENV} must be 32 bytes, base64-encoded")
    return key


def _conninfo(env: Any) -> str:
    return make_conninfo(
        **{
            name: env.get("POSTGRES_" + name.upper(), default)
            for name, default in (("dbname", "postgres"), ("host", "127.0.0.1"),
                                  ("port", "5432"), ("user", "postgres"), ("password", ""))
        }
    )


def conninfo(env: Any) -> str:
    """libpq connection string of the database the event store uses."""
    return _conninfo(env)


def connection_pool(env: Any, *, max_size: int = 8) -> ConnectionPool:
    """A small pool on the same database the event store uses (configured alike)."""
    return ConnectionPool(_conninfo(env), min_size=1, max_size=max_size, open=True,
                          kwargs={"autocommit": True}, name="orthovault-keys",
                          # Replace connections a PostgreSQL restart dropped before use.
                          check=ConnectionPool.check_connection)


def check_connection(env: Any) -> None:
    """Connect once, so a wrong address, password or TLS setting (libpq's PGSSLMODE…) is
    reported as PostgreSQL says it, not as a pool timeout half a minute later."""
    try:
        psycopg.connect(_conninfo(env), connect_timeout=10).close()
    except psycopg.OperationalError as error:
        reason = " ".join(str(error).split())
        raise RuntimeError(f"cannot connect to PostgreSQL: {reason}") from None


class PostgresImaging(Imaging):
    """The imaging application bound to Postgres, with per-subject encryption."""

    name = Imaging.name  # keeps table names and tracking ids "imaging", not the class name

    def construct_mapper(self) -> Mapper[UUID]:
        ledger = self.env.get(LEDGER_ENV)
        master_key = master_key_from_env(self.env)
        self.external_id_key = hmac.new(master_key, b"orthovault external-id claims",
                                        hashlib.sha256).digest()
        self.key_store = KeyStore(connection_pool(self.env), master_key,
                                  ledger=DestructionLedger(Path(ledger)) if ledger else None)
        self.key_store.create_schema()
        self.key_store.verify_master_key()
        self.key_store.listen()
        return SubjectEncryptingMapper(self.construct_transcoder(), self.key_store)

    def construct_recorder(self) -> Any:
        # The event table, its composite type and insert function are created in several
        # transactions: hold the schema lock across all of them (adapters/schema_lock.py).
        with schema_lock.held(_conninfo(self.env)):
            return super().construct_recorder()
    def destroyed_among(self, subject_ids: list[UUID]) -> set[UUID]:
        return self.key_store.destroyed_among(subject_ids) if subject_ids else set()

    def nudge_subscribers(self) -> None:
        """NOTIFY the log's channel, as an insert would.

        A subscription that starts while an event is being written can miss that event's
        notification (its first read and its LISTEN race); it would then wait for the next
        write. A periodic nudge bounds that wait.
        """
        with self.recorder.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("NOTIFY {}").format(Identifier(self.recorder.channel_name)))

    def close(self) -> None:
        super().close()
        self.key_store.close()
