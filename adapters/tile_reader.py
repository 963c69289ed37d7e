"""Reads DeepZoom tiles out of an image's stored pyramid, for the tile routes.

A viewer opening a large image asks for dozens of tiles within a second, so the decrypted
pack of a recently viewed image is kept in memory (bounded by bytes, least recently used
first out) rather than decrypted again per tile. Callers check access before asking; the
cache only saves decryption work.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from uuid import UUID

from adapters.blob_store import EncryptedBlobStore, blob_key
from adapters.deepzoom import PACK_FORMAT
from domain.values import BlobRef

CACHE_BYTES = 96 * 1024 * 1024


class TileReader:
    def __init__(self, blobs: EncryptedBlobStore, cache_bytes: int = CACHE_BYTES):
        self.blobs = blobs
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple[UUID, str], tuple[dict, bytes | None]] = OrderedDict()
        self._lock = threading.Lock()

    def tile(self, image_id: UUID, manifest: BlobRef, name: str) -> tuple[bytes, str] | None:
        """The tile's JPEG bytes and a strong ETag value, or None when there is no such tile."""
        index, pack = self._load(image_id, manifest)
        entry = index.get(name)
        if entry is None:
            return None
        if pack is None:  # pyramids stored before tile packs: one blob per tile
            ref = BlobRef(key=blob_key(image_id, f"tiles/{name}"), sha256=str(entry["sha256"]),
                          size=int(entry["size"]), media_type="image/jpeg")
            return self.blobs.read(image_id, ref), ref.sha256
        offset, length = entry
        return pack[offset:offset + length], f"{manifest.sha256[:32]}-{offset}"

    def _load(self, image_id: UUID, manifest: BlobRef) -> tuple[dict, bytes | None]:
        key = (image_id, manifest.sha256)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        described = json.loads(self.blobs.read(image_id, manifest))
        if described.get("format") == PACK_FORMAT:
            pack_ref = BlobRef(key=blob_key(image_id, "tiles/pack"),
                               sha256=described["pack"]["sha256"],
                               size=int(described["pack"]["size"]),
                               media_type="application/octet-stream")
            loaded: tuple[dict, bytes | None] = (described["tiles"],
                                                 self.blobs.read(image_id, pack_ref))
        else:
            loaded = (described, None)
        with self._lock:
            self._cache[key] = loaded
            while len(self._cache) > 1 and self._cached_bytes() > self.cache_bytes:
                self._cache.popitem(last=False)
        return loaded

    def _cached_bytes(self) -> int:
        return sum(len(pack or b"") for _index, pack in self._cache.values())

