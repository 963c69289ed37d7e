"""Blob backend on S3 or MinIO (the ``minio`` client), for the distributed deployment.

The backend only ever sees ciphertext: :class:`adapters.blob_store.EncryptedBlobStore` seals
every chunk before it gets here. Server-side encryption (SSE-S3, ``sse=True``) can be asked
for on top, for operators whose policy demands encryption at rest by the provider as well.

Writes are atomic. A blob of unknown length is streamed with ``put_object(length=-1)``: at
most one part (``part_size``, default 16 MiB) is held in memory; a blob that fits one part
is a single PUT, a larger one a multipart upload. S3 makes an object visible only when the
PUT or the CompleteMultipartUpload succeeds, so a write that fails (the source raises, the
server goes away) leaves no object, and an existing object under the key stays untouched.
The client aborts the multipart upload on failure; when even the abort cannot reach the
server, the parts stay behind invisible until a bucket lifecycle rule
(``AbortIncompleteMultipartUpload``, e.g. after 1 day) removes them: configure one.

Transient failures are retried per HTTP request by urllib3 with exponential backoff
(``RetryPolicy``): connection errors, read errors, and 500/502/503/504 answers, which cover
S3's ``SlowDown`` (503) and ``InternalError`` (500); a ``Retry-After`` header is honoured.
Retrying per request is what makes a streamed write retryable at all: the source iterable can
be read only once, but each request body (one part) is in memory. A read interrupted mid-
stream resumes from the byte it reached with a ranged GET pinned to the object's ETag. When
the retries run out the caller gets :class:`BlobStoreUnavailable`, never a raw client error.

Archive: ``copy_to_archive(key)`` copies an object server-side into the archive bucket (the
primary bucket's name + ``-archive`` unless configured), optionally in a cheaper storage
class; pick one that stays readable without a restore request (``STANDARD_IA``,
``GLACIER_IR``), because ``restore_from_archive(key)`` is a plain copy back. Both are
idempotent; neither deletes the source, so moving is copy then ``delete_key``. Deleting a key
or a prefix deletes it from both buckets, so a destroyed subject leaves no archived copy.

``presigned_get(key, expires)`` signs a time-limited GET of the *stored* object: that is
ciphertext, useful for replication or backup tools, never a way to hand plaintext to a
browser (bytes for users are served through the API, which decrypts and audits).

Buckets are expected to exist (``ensure_buckets()`` creates missing ones, for development
and tests) and to have versioning off: with versioning on, deletes leave old versions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error, ServerError
from minio.sse import SseS3
from urllib3.exceptions import HTTPError as TransportError
from urllib3.util import Retry, Timeout

READ_BYTES = 1 << 20
DEFAULT_PART_BYTES = 16 << 20
MIN_PART_BYTES = 5 << 20  # S3's minimum for every part but the last
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys per request
_MISSING = frozenset({"NoSuchKey", "NotFound", "ResourceNotFound"})
_TRANSIENT = frozenset({"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"})
_T = TypeVar("_T")


class BlobStoreUnavailable(Exception):
    """The object store did not answer usably after all retries; the operation did nothing
    visible (a write left no object). Safe to retry later."""


@dataclass(frozen=True)
class RetryPolicy:
    """Per-request retries: ``attempts`` tries in all, delays doubling up to ``max_delay``."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0
    connect_timeout: float = 5.0
    read_timeout: float = 60.0

    def delay(self, failures: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** max(0, failures - 1))

    def urllib3_retry(self) -> Retry:
        retries = max(0, self.attempts - 1)
        return Retry(
            total=retries, connect=retries, read=retries, status=retries, other=0,
            backoff_factor=self.base_delay, backoff_max=self.max_delay,
            status_forcelist=(500, 502, 503, 504),
            allowed_methods=None,  # PUT parts and POST CompleteMultipartUpload are idempotent
            respect_retry_after_header=True, raise_on_redirect=False,
        )


class IterableReader:
    """A read-only file over an iterable of byte chunks; what ``put_object`` reads from."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self._done = False

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._buffer) < size):
            chunk = next(self._chunks, None)
            if chunk is None:
                self._done = True
            else:
                self._buffer += chunk
        take = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        out = bytes(self._buffer[:take])
        del self._buffer[:take]
        return out


def _validate_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/") or "//" in key:
        raise ValueError(f"invalid blob key {key!r}")
    return key


class S3Backend:
    """The :class:`adapters.blob_store.BlobBackend` protocol on an S3 bucket."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = True,
        region: str | None = None,
        sse: bool = False,
        archive_bucket: str | None = None,
        archive_storage_class: str | None = None,
        part_size: int = DEFAULT_PART_BYTES,
        retry: RetryPolicy | None = None,
    ):
        if part_size < MIN_PART_BYTES:
            raise ValueError(f"part_size must be at least {MIN_PART_BYTES} bytes")
        self.bucket = bucket
        self.archive_bucket = archive_bucket or f"{bucket}-archive"
        self.archive_storage_class = archive_storage_class
        self.part_size = part_size
        self.retry = retry or RetryPolicy()
        self._sse = SseS3() if sse else None
        http = urllib3.PoolManager(
            timeout=Timeout(connect=self.retry.connect_timeout, read=self.retry.read_timeout),
            retries=self.retry.urllib3_retry(),
            maxsize=10,
        )
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                             secure=secure, region=region, http_client=http)

    # ---- the BlobBackend protocol ------------------------------------------------------

    def write(self, key: str, chunks: Iterable[bytes]) -> None:
        self._call(
            key,
            lambda: self._client.put_object(
                self.bucket, _validate_key(key), IterableReader(chunks), length=-1,
                part_size=self.part_size, num_parallel_uploads=1, sse=self._sse,
            ),
        )

    def read(self, key: str) -> Iterator[bytes]:
        """Streams the object; an interrupted stream resumes where it stopped."""
        _validate_key(key)
        offset, etag, failures = 0, "", 0
        while True:
            response = self._open(key, offset, etag)
            try:
                etag = etag or response.headers.get("ETag", "")
                for chunk in response.stream(READ_BYTES):
                    offset += len(chunk)
                    failures = 0
                    yield chunk
                return
            except TransportError as error:
                failures += 1
                if failures >= self.retry.attempts:
                    raise BlobStoreUnavailable(
                        f"reading {key} broke off at byte {offset}: {type(error).__name__}"
                    ) from error
                time.sleep(self.retry.delay(failures))
            finally:
                response.close()
                response.release_conn()

    def _open(self, key: str, offset: int, etag: str) -> Any:
        # Pinned to the ETag so a resumed read cannot splice two versions of an object.
        headers = {"If-Match": etag} if etag else None
        return self._call(key, lambda: self._client.get_object(
            self.bucket, key, offset=offset, request_headers=headers))

    def exists(self, key: str) -> bool:
        try:
            self._call(key, lambda: self._client.stat_object(self.bucket, _validate_key(key)))
        except FileNotFoundError:
            return False
        return True

    def delete_key(self, key: str) -> None:
        _validate_key(key)
        for bucket in (self.bucket, self.archive_bucket):
            self._call(key, lambda b=bucket: self._client.remove_object(b, key))

    def delete_prefix(self, prefix: str) -> None:
        if not prefix.endswith("/") or not prefix.strip("/"):
            raise ValueError(f"invalid blob prefix {prefix!r}: must name a folder")
        _validate_key(prefix.rstrip("/"))
        for bucket in (self.bucket, self.archive_bucket):
            if bucket != self.bucket and not self._bucket_exists(bucket):
                continue
            self._delete_listed(bucket, prefix)

    def subjects(self) -> Iterator[tuple[str, float]]:
        """Every subject prefix with its newest object's modification time (epoch seconds)."""
        newest: dict[str, float] = {}
        listed = self._call(self.bucket, lambda: list(self._client.list_objects(
            self.bucket, recursive=True)))
        for item in listed:
            subject, _, _name = (item.object_name or "").partition("/")
            stamp = item.last_modified.timestamp() if item.last_modified else 0.0
            if subject:
                newest[subject] = max(stamp, newest.get(subject, 0.0))
        yield from sorted(newest.items())

    def unfinished_writes(self) -> Iterator[tuple[str, float]]:
        """S3 writes are atomic (an interrupted multipart upload is never an object)."""
        return iter(())

    def remove_unfinished(self, path: str) -> None:
        raise ValueError("S3 has no unfinished writes to remove")

    # ---- beyond the protocol -----------------------------------------------------------

    def ensure_buckets(self, *, archive: bool = True) -> None:
        """Creates the bucket (and the archive bucket) if missing: development and tests."""
        for bucket in (self.bucket, self.archive_bucket) if archive else (self.bucket,):
            if not self._bucket_exists(bucket):
                self._call(bucket, lambda b=bucket: self._client.make_bucket(b))

    def presigned_get(self, key: str, expires: timedelta = timedelta(minutes=15)) -> str:
        """A time-limited URL for the stored (encrypted) bytes; computed locally."""
        return self._client.presigned_get_object(self.bucket, _validate_key(key),
                                                 expires=expires)

    def copy_to_archive(self, key: str) -> None:
        self._copy(self.bucket, self.archive_bucket, key, self.archive_storage_class)

    def restore_from_archive(self, key: str) -> None:
        self._copy(self.archive_bucket, self.bucket, key, None)

    def archived(self, key: str) -> bool:
        try:
            self._call(key, lambda: self._client.stat_object(self.archive_bucket,
                                                             _validate_key(key)))
        except FileNotFoundError:
            return False
        return True

    # ---- internals ---------------------------------------------------------------------

    def _copy(self, source: str, target: str, key: str, storage_class: str | None) -> None:
        metadata = {"x-amz-storage-class": storage_class} if storage_class else None
        self._call(
            key,
            lambda: self._client.copy_object(
                target, _validate_key(key), CopySource(source, key), sse=self._sse,
                metadata=metadata,
            ),
        )

    def _bucket_exists(self, bucket: str) -> bool:
        return self._call(bucket, lambda: self._client.bucket_exists(bucket))

    def _delete_listed(self, bucket: str, prefix: str) -> None:
        names = self._call(
            prefix,
            lambda: [o.object_name for o in self._client.list_objects(
                bucket, prefix=prefix, recursive=True) if o.object_name],
        )
        for start in range(0, len(names), _DELETE_BATCH):
            batch = [DeleteObject(n) for n in names[start : start + _DELETE_BATCH]]
            # remove_objects is lazy: its errors only appear while iterating.
            errors = self._call(prefix, lambda b=batch: list(
                self._client.remove_objects(bucket, b)))
            if errors:
                raise BlobStoreUnavailable(
                    f"deleting under {prefix} failed for {len(errors)} objects: "
                    f"{errors[0].code}"
                )

    def _call(self, what: str, operation: Callable[[], _T]) -> _T:
        """Runs one client call; maps what is left after urllib3's retries to our errors."""
        try:
            return operation()
        except S3Error as error:
            if error.code in _MISSING:
                raise FileNotFoundError(what) from None
            if error.code in _TRANSIENT:
                raise BlobStoreUnavailable(f"{what}: S3 answered {error.code}") from error
            raise
        except ServerError as error:
            raise BlobStoreUnavailable(
                f"{what}: S3 answered HTTP {error.status_code}") from error
        except (TransportError, MinioException) as error:
            raise BlobStoreUnavailable(
                f"{what}: S3 unreachable after {self.retry.attempts} tries "
                f"({type(error).__name__})"
            ) from error
