"""The blob store port: encrypted, hash-verified blobs on a pluggable backend.

Encryption happens here, once, for every backend: blobs are split into 1 MiB chunks, each
sealed with the subject's data key and bound to (subject, name, index, last-flag). The
backend only ever sees ciphertext. Originals are written once and never modified.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol
from uuid import UUID

from adapters.key_store import KeyStore, SubjectDestroyed
from adapters.subject_cipher import chunk_associated_data, open_sealed, seal
from domain.errors import Gone
from domain.values import BlobRef

MAGIC = b"OVB1"
CHUNK_BYTES = 1 << 20
_FRAME = struct.Struct(">I")


class BlobCorrupted(Exception):
    """A stored blob failed authentication, was truncated, or does not match its hash."""


class BlobBackend(Protocol):
    """Where ciphertext lives. Writes are atomic: a reader sees all of a blob or none."""

    def write(self, key: str, chunks: Iterable[bytes]) -> None: ...

    def read(self, key: str) -> Iterator[bytes]: ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def delete_key(self, key: str) -> None: ...

    def subjects(self) -> Iterator[tuple[str, float]]: ...

    def unfinished_writes(self) -> Iterator[tuple[str, float]]: ...

    def remove_unfinished(self, path: str) -> None: ...


def _frames(pieces: Iterable[bytes], name: str) -> Iterator[bytes]:
    """Splits the stored stream back into sealed chunks."""
    buffer = bytearray()
    magic_seen = False
    for piece in pieces:
        buffer += piece
        if not magic_seen:
            if len(buffer) < len(MAGIC):
                continue
            if buffer[: len(MAGIC)] != MAGIC:
                raise BlobCorrupted(f"{name}: not an orthovault blob")
            del buffer[: len(MAGIC)]
            magic_seen = True
        while len(buffer) >= _FRAME.size:
            (length,) = _FRAME.unpack_from(buffer)
            if len(buffer) < _FRAME.size + length:
                break
            yield bytes(buffer[_FRAME.size : _FRAME.size + length])
            del buffer[: _FRAME.size + length]
    if buffer or not magic_seen:
        raise BlobCorrupted(f"{name}: truncated")


def blob_key(subject_id: UUID, name: str) -> str:
    return f"{subject_id}/{name}"


class EncryptedBlobStore:
    def __init__(self, backend: BlobBackend, key_store: KeyStore):
        self.backend = backend
        self.key_store = key_store

    def put(
        self,
        subject_id: UUID,
        name: str,
        source: BinaryIO,
        media_type: str,
        *,
        owner_id: UUID | None = None,
    ) -> BlobRef:
        key = self.key_store.key_for(subject_id, owner_id=owner_id)
        context = blob_key(subject_id, name).encode()
        digest = hashlib.sha256()
        size = 0

        def frames() -> Iterator[bytes]:
            nonlocal size
            yield MAGIC
            index = 0
            pending = source.read(CHUNK_BYTES)
            while True:
                following = source.read(CHUNK_BYTES) if pending else b""
                last = not following
                digest.update(pending)
                size += len(pending)
                sealed = seal(key, pending, chunk_associated_data(context, index, last))
                yield _FRAME.pack(len(sealed)) + sealed
                if last:
                    return
                pending, index = following, index + 1

        self.backend.write(blob_key(subject_id, name), frames())
        return BlobRef(
            key=blob_key(subject_id, name),
            sha256=digest.hexdigest(),
            size=size,
            media_type=media_type,
        )

    def put_bytes(
        self, subject_id: UUID, name: str, data: bytes, media_type: str, *,
        owner_id: UUID | None = None,
    ) -> BlobRef:
        return self.put(subject_id, name, io.BytesIO(data), media_type, owner_id=owner_id)

    def open(self, subject_id: UUID, ref: BlobRef) -> Iterator[bytes]:
        """Plaintext chunks, authenticated one by one; the hash is checked at the end."""
        try:
            key = self.key_store.existing_key(subject_id)
        except SubjectDestroyed:
            raise Gone("subject_destroyed", "the image was destroyed") from None
        context = ref.key.encode()
        digest = hashlib.sha256()
        last = False
        for index, sealed in enumerate(_frames(self.backend.read(ref.key), ref.key)):
            if last:
                raise BlobCorrupted(f"{ref.key}: data after the last chunk")
            plain, last = self._open_chunk(key, sealed, context, index)
            digest.update(plain)
            if index and not self.key_store.still_live(subject_id):
                # Destroyed by any process while streaming: not one more chunk (the first
                # one follows the key lookup just made).
                raise Gone("subject_destroyed", "the image was destroyed")
            yield plain
        if not last:
            raise BlobCorrupted(f"{ref.key}: truncated")
        if digest.hexdigest() != ref.sha256:
            raise BlobCorrupted(f"{ref.key}: SHA-256 mismatch")

    @staticmethod
    def _open_chunk(key: bytes, sealed: bytes, context: bytes, index: int) -> tuple[bytes, bool]:
        for last in (False, True):
            try:
                return open_sealed(key, sealed, chunk_associated_data(context, index, last)), last
            except Exception:  # noqa: S112 - the other flag is tried, then we give up
                continue
        raise BlobCorrupted(f"chunk {index} failed authentication")

    def read(self, subject_id: UUID, ref: BlobRef) -> bytes:
        return b"".join(self.open(subject_id, ref))

    def exists(self, ref: BlobRef) -> bool:
        return self.backend.exists(ref.key)

    def delete_subject(self, subject_id: UUID) -> None:
        self.backend.delete_prefix(f"{subject_id}/")
