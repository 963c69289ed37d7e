"""One data directory, one owner: the process that runs an installation holds its lock.

``orthovault serve`` runs the projections, the workers and the embedded PostgreSQL of its
data directory; a second one on the same directory would fight it for the projection leases
and stop its database on the way out. So the owner takes an exclusive POSIX record lock
(``fcntl.lockf``) on ``<data dir>/orthovault.lock`` and writes its pid and command into it;
whoever comes second is told at once who holds it.

A record lock belongs to the process: the kernel drops it when the process ends, however it
ends (a crash or SIGKILL leaves no stale lock), and forked children (the decoder pool) do
not inherit it. Short CLI commands take no lock: they work beside the running server
through its database, whose transactions keep them apart.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO

LOCK_FILE = "orthovault.lock"


class DataDirInUse(Exception):
    """Another process owns the data directory."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        super().__init__(f"the data directory {data_dir} is in use by {holder}; stop that "
                         "process first, or give this one another --data-dir")
        self.holder = holder


def _holder(handle: IO[str]) -> str:
    handle.seek(0)
    try:
        record = json.loads(handle.read() or "{}")
    except ValueError:
        record = {}
    pid, command = record.get("pid"), record.get("command")
    if not pid:
        return "another orthovault process"
    return f"`orthovault {command}` (pid {pid})" if command else f"pid {pid}"


class DataDirLock:
    """Held for the life of the process (or until ``release``)."""

    def __init__(self, handle: IO[str], path: Path) -> None:
        self._handle: IO[str] | None = handle
        self.path = path

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the record lock
            self._handle = None


def hold_exclusive(data_dir: Path, command: str) -> DataDirLock:
    """Take the data directory for this process, or raise DataDirInUse at once."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    handle = path.open("a+", encoding="utf-8")  # held for the life of the process
    try:
        fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _holder(handle)
        handle.close()
        raise DataDirInUse(data_dir.resolve(), holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "command": command}))
    handle.flush()
    return DataDirLock(handle, path)
