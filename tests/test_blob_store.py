"""The encrypted blob store on a local folder, with a real key store on Postgres."""

from __future__ import annotations

import io
import os
import uuid

import pytest

from adapters.blob_store import CHUNK_BYTES, BlobCorrupted, EncryptedBlobStore
from adapters.file_types import check_claims, sniff
from adapters.local_folder import LocalFolderBackend
from domain.errors import Gone, UnsupportedMedia


@pytest.fixture
def store(client, tmp_path):
    key_store = client.app.state.services.app.key_store
    return EncryptedBlobStore(LocalFolderBackend(tmp_path / "blobs"), key_store)


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, 2 * CHUNK_BYTES + 17])
def test_round_trip_is_exact_and_encrypted(store, tmp_path, size):
    data = os.urandom(size)
    subject = uuid.uuid4()
    ref = store.put(subject, "original", io.BytesIO(data), "application/octet-stream")
    assert ref.size == size
    assert store.read(subject, ref) == data
    on_disk = next((tmp_path / "blobs").rglob("original")).read_bytes()
    if size >= 32:
        assert data[:32] not in on_disk
    assert not list((tmp_path / "blobs").rglob(".tmp-*"))  # atomic: no leftovers


def test_tampering_truncation_and_swaps_are_detected(store, tmp_path):
    subject = uuid.uuid4()
    data = os.urandom(3 * CHUNK_BYTES // 2)
    ref = store.put(subject, "original", io.BytesIO(data), "image/jpeg")
    path = next((tmp_path / "blobs").rglob("original"))
    pristine = path.read_bytes()

    flipped = bytearray(pristine)
    flipped[100] ^= 1
    path.write_bytes(bytes(flipped))
    with pytest.raises(BlobCorrupted):
        store.read(subject, ref)

    path.write_bytes(pristine[: len(pristine) // 2])
    with pytest.raises(BlobCorrupted):
        store.read(subject, ref)

    # A blob copied under another subject does not open there.
    other = uuid.uuid4()
    other_ref = store.put(other, "original", io.BytesIO(b"x"), "image/jpeg")
    other_path = next(p for p in (tmp_path / "blobs").rglob("original") if str(other) in str(p))
    other_path.write_bytes(pristine)
    with pytest.raises(BlobCorrupted):
        store.read(other, other_ref)


def test_shredded_subject_cannot_be_read(store):
    subject = uuid.uuid4()
    ref = store.put(subject, "original", io.BytesIO(b"secret pixels"), "image/jpeg")
    store.key_store.destroy([subject])
    with pytest.raises(Gone):
        store.read(subject, ref)
    with pytest.raises(Exception, match=str(subject)):
        store.put(subject, "again", io.BytesIO(b"x"), "image/jpeg")  # no new key, ever


def test_concurrent_key_creation_yields_one_key(client):
    from concurrent.futures import ThreadPoolExecutor

    key_store = client.app.state.services.app.key_store
    subject = uuid.uuid4()
    with ThreadPoolExecutor(4) as pool:
        keys = set(pool.map(lambda _: key_store.key_for(subject), range(8)))
    assert len(keys) == 1


@pytest.mark.parametrize(("head", "expected"), [
    (b"\xff\xd8\xff\xe0", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"\x00\x00\x00\x18ftypheic", "image/heic"), (b"\x00" * 128 + b"DICM", "application/dicom"),
    (b"%PDF-1.7", "application/pdf"), (b"PK\x03\x04", "application/zip"), (b"hello", None),
])
def test_sniffing(head, expected):
    assert sniff(head) == expected


def test_claims_must_match_bytes():
    assert check_claims("image/jpeg", "a.JPG", "image/jpeg") == "image/jpeg"
    assert check_claims("image/jpeg", "noextension", "application/octet-stream") == "image/jpeg"
    assert check_claims("image/heic", "a.heif", "image/heif") == "image/heic"
    for filename, ctype in [("a.png", "image/jpeg"), ("a.jpg", "image/png")]:
        with pytest.raises(UnsupportedMedia):
            check_claims("image/jpeg" if filename.endswith("png") else "image/png", filename, ctype)
