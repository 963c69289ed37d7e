"""The audit chain's head, published where database write access cannot rewrite it.

An attacker who can write to PostgreSQL can cut the audit chain's tail and roll its
tracking row back: the chain then verifies. So the head (position and entry hash) is also
published outside the database, signed:

* a head file, ``DATA_DIR/secrets/audit_head.json`` by default, HMAC-SHA256-signed with a
  key derived from the master key (which lives outside PostgreSQL); rewritten atomically at
  most once per ``interval`` while the audit projection advances, and at shutdown;
* when Kafka is configured, a PHI-free CloudEvent ``orthovault.audit.head_published.v1``
  (position and hash only) on ``imaging.audit.v1``: a copy the operator's side keeps.

``orthovault audit verify --against-head FILE`` checks the chain against a head file and
refuses a file whose signature does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from adapters.cloudevents import CloudEvent, KafkaRecord

log = structlog.get_logger("orthovault.audit_head")
HEAD_FILE = "audit_head.json"
KAFKA_TOPIC = "imaging.audit.v1"
EVENT_TYPE = "orthovault.audit.head_published.v1"
_KEY_LABEL = b"orthovault audit head v1"


class HeadRefused(Exception):
    """The head file is unreadable or its signature does not verify (forged or altered)."""


@dataclass(frozen=True)
class AuditHead:
    position: int
    entry_hash: str

    def signed_text(self) -> bytes:
        return f"{self.position}:{self.entry_hash}".encode("ascii")


def head_key(master_key: bytes) -> bytes:
    """The signing key: derived from the master key, so it is never stored anywhere."""
    return hmac.new(master_key, _KEY_LABEL, hashlib.sha256).digest()


def _signature(key: bytes, head: AuditHead) -> str:
    return hmac.new(key, head.signed_text(), hashlib.sha256).hexdigest()


def write_head(path: Path, head: AuditHead, key: bytes) -> None:
    """Atomically replace the head file (owner-only), durable before it is renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"position": head.position, "entry_hash": head.entry_hash,
                "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "signature": _signature(key, head)}
    temporary = path.with_name(f".{path.name}.tmp")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w") as out:
        json.dump(document, out)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(path)


def read_head(path: Path, key: bytes) -> AuditHead:
    try:
        document = json.loads(path.read_text())
        head = AuditHead(int(document["position"]), str(document["entry_hash"]))
        signature = str(document["signature"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise HeadRefused(f"unreadable head file: {type(error).__name__}") from None
    if not hmac.compare_digest(signature, _signature(key, head)):
        raise HeadRefused("the head file's signature does not verify: it was not written "
                          "by this installation (forged or altered)")
    return head


def head_record(head: AuditHead) -> KafkaRecord:
    """The head as a binary-mode CloudEvent record: position and hash, nothing else."""
    event = CloudEvent(id=f"audit-head:{head.position}", type=EVENT_TYPE, subject="audit",
                       time=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                       data={"position": head.position, "entryHash": head.entry_hash})
    attributes = {"specversion": event.specversion, "id": event.id, "source": event.source,
                  "type": event.type, "time": event.time, "subject": event.subject}
    headers = [("content-type", event.datacontenttype.encode())]
    headers += [(f"ce_{k}", str(v).encode()) for k, v in attributes.items()]
    return KafkaRecord(topic=KAFKA_TOPIC, key=b"audit",
                       value=json.dumps(event.data, sort_keys=True).encode(), headers=headers)


class HeadPublisher:
    """Takes every appended head in memory; a thread publishes the newest one at most once
    per ``interval`` (never one file write per event) and :meth:`close` publishes the last.
    A failing Kafka send is logged and retried with the next head; the file still moves."""

    def __init__(self, path: Path, key: bytes, *, interval: float = 1.0,
                 send: Callable[[KafkaRecord], Any] | None = None):
        self.path = path
        self._key = key
        self._interval = interval
        self._send = send
        self._latest: AuditHead | None = None
        self._published: AuditHead | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def advance(self, position: int, entry_hash: str) -> None:
        with self._lock:
            self._latest = AuditHead(position, entry_hash)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="audit-head")
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.publish()

    def publish(self) -> None:
        with self._lock:
            head = self._latest
            if head is None or head == self._published:
                return
            try:
                write_head(self.path, head, self._key)
            except OSError as error:
                log.warning("audit_head_not_written", error=type(error).__name__)
                return
            self._published = head
        if self._send is not None:
            try:
                self._send(head_record(head))
            except Exception as error:  # the broker is optional to the head file
                log.warning("audit_head_not_sent", error=type(error).__name__)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.publish()
        close_sender = getattr(self._send, "close", None)
        if close_sender is not None:
            close_sender()


class KafkaHeadSender:
    """Sends head records on one lazily made producer; rebuilt after a failed send."""

    def __init__(self, bootstrap_servers: str, security: dict[str, Any],
                 timeout: float = 10.0):
        self._config = {"bootstrap_servers": bootstrap_servers, "acks": "all",
                        "client_id": "orthovault-audit-head",
                        "max_block_ms": int(timeout * 1000),
                        "request_timeout_ms": int(timeout * 1000), **security}
        self._timeout = timeout
        self._producer: Any = None

    def __call__(self, record: KafkaRecord) -> None:
        from kafka import KafkaProducer

        try:
            if self._producer is None:
                self._producer = KafkaProducer(**self._config)
            self._producer.send(record.topic, key=record.key, value=record.value,
                                headers=record.headers)
            self._producer.flush(timeout=self._timeout)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=self._timeout)
