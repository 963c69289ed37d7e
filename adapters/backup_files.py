"""The files of a backup folder: copies hashed while they are written, and the manifest.

A backup folder holds ``manifest.json`` (written last: a folder without one, or with an
older one, is a backup that did not finish), ``database/`` (one COPY file per table),
``blobs/`` (the blob store's ciphertext, in its own layout) and, only when the operator
asked for it, ``keys/``. The manifest names every file with its size and SHA-256, so a
flipped byte or a missing file is found without restoring anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MANIFEST = "manifest.json"
FORMAT = "orthovault-backup/1"
READ_BYTES = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size}


def sha256_of(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while chunk := source.read(READ_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return FileEntry(digest.hexdigest(), size)


def write_hashed(target: Path, chunks: Iterable[bytes],
                 on_bytes: Callable[[int], None] = lambda _n: None) -> FileEntry:
    """Write ``chunks`` to ``target`` (through a temporary name, renamed at the end)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".partial-{target.name}")
    digest = hashlib.sha256()
    size = 0
    with temporary.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            on_bytes(len(chunk))
    temporary.replace(target)
    return FileEntry(digest.hexdigest(), size)


def read_chunks(source: BinaryIO) -> Iterator[bytes]:
    while chunk := source.read(READ_BYTES):
        yield chunk


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        yield from read_chunks(source)


def write_manifest(dest: Path, manifest: dict[str, Any]) -> None:
    """Everything the manifest names is on disk first (one sync), then the manifest."""
    os.sync()
    temporary = dest / f".partial-{MANIFEST}"
    with temporary.open("w") as out:
        json.dump(manifest, out, indent=1, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    temporary.replace(dest / MANIFEST)


def read_manifest(dest: Path) -> dict[str, Any] | None:
    path = dest / MANIFEST
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not an orthovault backup manifest ({manifest.get('format')})")
    return manifest


def verify_files(dest: Path, manifest: dict[str, Any],
                 on_file: Callable[[str, int], None] = lambda _n, _s: None) -> list[str]:
    """Every problem found, each naming its file: missing, wrong size, wrong SHA-256."""
    problems = []
    for name, expected in sorted(manifest["files"].items()):
        path = dest / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        actual = sha256_of(path)
        on_file(name, actual.size)
        if actual.size != expected["size"]:
            problems.append(f"{name}: {actual.size} bytes, the manifest says {expected['size']}")
        elif actual.sha256 != expected["sha256"]:
            problems.append(f"{name}: SHA-256 {actual.sha256} does not match the manifest")
    return problems
