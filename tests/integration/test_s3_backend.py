"""The S3 blob backend against moto's S3 server over real HTTP, under the encrypted store."""

from __future__ import annotations

import io
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from adapters.blob_store import EncryptedBlobStore
from adapters.event_store import PostgresImaging
from adapters.s3_backend import (
    MIN_PART_BYTES,
    READ_BYTES,
    BlobStoreUnavailable,
    RetryPolicy,
    S3Backend,
)

from .conftest import S3Server

FAST = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, connect_timeout=1,
                   read_timeout=5)


def _backend(endpoint: str, **options: Any) -> S3Backend:
    options.setdefault("part_size", MIN_PART_BYTES)
    options.setdefault("retry", FAST)
    backend = S3Backend(endpoint, "testing", "testing", f"ov-{uuid.uuid4().hex[:12]}",
                        secure=False, region="us-east-1", **options)
    backend.ensure_buckets()
    return backend


def _boto(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=f"http://{endpoint}", region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _read(backend: S3Backend, key: str) -> bytes:
    return b"".join(backend.read(key))


@pytest.fixture
def backend(s3_server: S3Server) -> S3Backend:
    return _backend(s3_server.endpoint)


def test_round_trip_through_encrypted_blob_store(s3_server: S3Server,
                                                 imaging_env: dict[str, Any]) -> None:
    backend = _backend(s3_server.endpoint, sse=True)
    app = PostgresImaging(env=imaging_env)
    try:
        store = EncryptedBlobStore(backend, app.key_store)
        subject, owner = uuid.uuid4(), uuid.uuid4()
        large = os.urandom(12 * 1024 * 1024 + 123)  # three parts of 5 MiB: multipart
        small = b"a small thumbnail " * 100  # one part: a single PUT
        large_ref = store.put(subject, "original", io.BytesIO(large), "image/jpeg",
                              owner_id=owner)
        small_ref = store.put_bytes(subject, "thumbnail.jpg", small, "image/jpeg",
                                    owner_id=owner)
        assert store.read(subject, large_ref) == large
        assert store.read(subject, small_ref) == small
        assert large_ref.size == len(large)

        stored = _read(backend, small_ref.key)
        assert small[:18] not in stored  # the backend holds ciphertext only
        head = _boto(s3_server.endpoint).head_object(Bucket=backend.bucket, Key=large_ref.key)
        assert head["ServerSideEncryption"] == "AES256"

        store.delete_subject(subject)
        assert not store.exists(large_ref) and not store.exists(small_ref)
    finally:
        app.close()


def test_missing_key_reads_as_not_found(backend: S3Backend) -> None:
    assert not backend.exists("nobody/nothing")
    with pytest.raises(FileNotFoundError):
        _read(backend, "nobody/nothing")


def test_delete_prefix_deletes_only_that_subject(backend: S3Backend) -> None:
    for key in ("aa/one", "aa/two", "aab/other"):
        backend.write(key, [key.encode()])
    backend.copy_to_archive("aa/one")
    backend.delete_prefix("aa/")
    assert not backend.exists("aa/one") and not backend.exists("aa/two")
    assert not backend.archived("aa/one")
    assert _read(backend, "aab/other") == b"aab/other"
    with pytest.raises(ValueError):
        backend.delete_prefix("")
    with pytest.raises(ValueError):
        backend.delete_prefix("aab")  # not a folder: would also match "aabc/..."


def test_subjects_are_listed_with_their_newest_write(backend: S3Backend) -> None:
    """What `orthovault gc` walks: one entry per subject prefix, newest write time."""
    import time

    before = time.time() - 120  # moto's clock and ours may differ by a little
    for key in ("gc-one/original", "gc-one/preview.jpg", "gc-two/original"):
        backend.write(key, [b"x"])
    listed = dict(backend.subjects())
    assert {"gc-one", "gc-two"} <= set(listed)
    assert all(listed[s] > before for s in ("gc-one", "gc-two"))
    assert list(backend.unfinished_writes()) == []  # S3 writes are atomic


def test_failed_write_leaves_no_object_and_keeps_the_old_one(s3_server: S3Server,
                                                             backend: S3Backend) -> None:
    backend.write("subj/original", [b"the good version"])

    def failing() -> Iterator[bytes]:
        for _ in range(7):  # past the first 5 MiB part: a multipart upload is under way
            yield os.urandom(1024 * 1024)
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        backend.write("subj/original", failing())
    with pytest.raises(RuntimeError, match="source broke"):
        backend.write("subj/fresh", failing())

    assert _read(backend, "subj/original") == b"the good version"
    assert not backend.exists("subj/fresh")
    uploads = _boto(s3_server.endpoint).list_multipart_uploads(Bucket=backend.bucket)
    assert uploads.get("Uploads", []) == []  # aborted, not left to linger


def test_presigned_get_serves_the_stored_bytes(backend: S3Backend) -> None:
    backend.write("subj/blob", [b"sealed ", b"bytes"])
    url = backend.presigned_get("subj/blob")
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.read() == b"sealed bytes"


def test_archive_copy_and_restore(s3_server: S3Server) -> None:
    backend = _backend(s3_server.endpoint, archive_storage_class="STANDARD_IA")
    s3 = _boto(s3_server.endpoint)
    backend.write("subj/original", [b"x" * 1000])
    backend.copy_to_archive("subj/original")
    backend.copy_to_archive("subj/original")  # idempotent
    head = s3.head_object(Bucket=backend.archive_bucket, Key="subj/original")
    assert head["StorageClass"] == "STANDARD_IA"

    s3.delete_object(Bucket=backend.bucket, Key="subj/original")  # hot copy expired
    assert not backend.exists("subj/original") and backend.archived("subj/original")
    backend.restore_from_archive("subj/original")
    assert _read(backend, "subj/original") == b"x" * 1000

    backend.delete_key("subj/original")  # destroying a blob leaves no archived copy
    assert not backend.exists("subj/original") and not backend.archived("subj/original")


def test_outage_is_retried_then_reported_clearly(s3_outage: S3Server) -> None:
    backend = _backend(s3_outage.endpoint)
    backend.write("subj/blob", [b"before the outage"])
    s3_outage.stop()
    started = time.monotonic()
    with pytest.raises(BlobStoreUnavailable, match="unreachable after 3 tries"):
        backend.exists("subj/blob")
    with pytest.raises(BlobStoreUnavailable):
        _read(backend, "subj/blob")
    with pytest.raises(BlobStoreUnavailable):
        backend.write("subj/new", [b"during the outage"])
    assert time.monotonic() - started < 10

    # A server that comes back while the client is still backing off is simply used.
    patient = S3Backend(s3_outage.endpoint, "testing", "testing", backend.bucket,
                        secure=False, region="us-east-1",
                        retry=RetryPolicy(attempts=8, base_delay=0.1, max_delay=0.8,
                                          connect_timeout=1))
    restart = threading.Timer(0.5, s3_outage.start)
    restart.start()
    try:
        assert _read(patient, "subj/blob") == b"before the outage"
    finally:
        restart.join()
    assert not backend.exists("subj/new")


class _SlowDownServer(ThreadingHTTPServer):
    """Answers 503 SlowDown to the first ``slow`` requests, then accepts every PUT/HEAD."""

    def __init__(self, slow: int):
        self.slow = slow
        self.requests: list[tuple[str, int]] = []
        super().__init__(("127.0.0.1", 0), _SlowDownHandler)


class _SlowDownHandler(BaseHTTPRequestHandler):
    server: _SlowDownServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append((self.command, len(body)))
        if len(self.server.requests) <= self.server.slow:
            payload = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
                       b"<Message>Please reduce your request rate.</Message></Error>")
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("ETag", '"0123456789abcdef"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_PUT(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def log_message(self, *args: Any) -> None:
        pass


def _slowdown_backend(slow: int) -> tuple[S3Backend, _SlowDownServer]:
    server = _SlowDownServer(slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = S3Backend(f"127.0.0.1:{server.server_address[1]}", "testing", "testing",
                        "bucket", secure=False, region="us-east-1", retry=FAST)
    return backend, server


def test_slowdown_is_retried_with_the_whole_part() -> None:
    backend, server = _slowdown_backend(slow=2)
    try:
        backend.write("subj/blob", [b"x" * 1000, b"y" * 24])
        assert backend.exists("subj/blob")
    finally:
        server.shutdown()
        server.server_close()
    assert server.requests[:3] == [("PUT", 1024)] * 3  # the body is sent again each time
    assert server.requests[3] == ("HEAD", 0)


def test_persistent_slowdown_ends_in_a_clear_error() -> None:
    backend, server = _slowdown_backend(slow=1000)
    try:
        with pytest.raises(BlobStoreUnavailable):
            backend.write("subj/blob", [b"data"])
    finally:
        server.shutdown()
        server.server_close()
    assert len(server.requests) == FAST.attempts


class _BrokenReadServer(ThreadingHTTPServer):
    """Serves one object, but the first GET breaks off after ``cut`` bytes."""

    def __init__(self, data: bytes, cut: int):
        self.data, self.cut = data, cut
        self.requests: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), _BrokenReadHandler)


class _BrokenReadHandler(BaseHTTPRequestHandler):
    server: _BrokenReadServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.requests.append({k.lower(): v for k, v in self.headers.items()})
        data = self.server.data
        start = int((self.headers.get("Range") or "bytes=0-")[6:].rstrip("-"))
        self.send_response(206 if start else 200)
        self.send_header("ETag", '"v1"')
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if len(self.server.requests) == 1:
            self.wfile.write(data[: self.server.cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def log_message(self, *args: Any) -> None:
        pass


def test_interrupted_read_resumes_where_it_stopped() -> None:
    data = os.urandom(3 * 1024 * 1024)
    server = _BrokenReadServer(data, cut=1024 * 1024 + 17)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = S3Backend(f"127.0.0.1:{server.server_address[1]}", "testing", "testing",
                        "bucket", secure=False, region="us-east-1", retry=FAST)
    try:
        assert _read(backend, "subj/blob") == data
    finally:
        server.shutdown()
        server.server_close()
    first, resumed = server.requests
    assert "range" not in first
    # From the end of what was already handed out, not from the start again.
    assert resumed["range"] == f"bytes={READ_BYTES}-"
    assert resumed["if-match"] == '"v1"'  # and only from the same version
