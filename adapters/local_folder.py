"""Blob backend on a local folder: atomic, durable writes (temp file, fsync, rename)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from domain.errors import StorageFull

READ_BYTES = 1 << 20
# "No space left" and "quota exceeded" both mean: free space, then try again.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class LocalFolderBackend:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        subject, _, name = key.partition("/")
        if not subject or not name or ".." in key or key.startswith("/"):
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / subject[:2] / subject / name

    def write(self, key: str, chunks: Iterable[bytes]) -> None:
        target = self._path(key)
        created_folder = not target.parent.exists()
        try:
            self._write(target, chunks)
        except OSError as error:
            if error.errno not in DISK_FULL:
                raise
            if created_folder:
                # Leave no trace of a refused write: the subject folder made for it goes too
                # (rmdir only succeeds while it is empty).
                with contextlib.suppress(OSError):
                    target.parent.rmdir()
            raise StorageFull("storage_full",
                              "the blob store is out of space; nothing was stored") from None

    @staticmethod
    def _write(target: Path, chunks: Iterable[bytes]) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            Path(temp_name).replace(target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        # The rename is durable only once the directory entry is on disk too.
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def read(self, key: str) -> Iterator[bytes]:
        with self._path(key).open("rb") as source:
            while chunk := source.read(READ_BYTES):
                yield chunk

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete_prefix(self, prefix: str) -> None:
        subject = prefix.rstrip("/")
        if not subject or "/" in subject or ".." in subject:
            raise ValueError(f"invalid blob prefix {prefix!r}")
        shutil.rmtree(self.root / subject[:2] / subject, ignore_errors=True)

    def delete_key(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def subjects(self) -> Iterator[tuple[str, float]]:
        """Every subject folder with the newest modification time (epoch seconds) in it."""
        for shard in sorted(self.root.iterdir()):
            if not shard.is_dir():
                continue
            for folder in sorted(shard.iterdir()):
                if folder.is_dir():
                    times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()]
                    yield folder.name, max(times, default=folder.stat().st_mtime)

    def unfinished_writes(self) -> Iterator[tuple[str, float]]:
        """Temporary files a crash left behind mid-write (path, modification time)."""
        for path in self.root.rglob(".tmp-*"):
            yield str(path), path.stat().st_mtime

    def remove_unfinished(self, path: str) -> None:
        target = Path(path)
        if target.name.startswith(".tmp-") and self.root in target.parents:
            target.unlink(missing_ok=True)
