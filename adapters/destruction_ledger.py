"""The destruction ledger: every crypto-shredding, appended to a file kept with the key
material, outside the data and its backups.

A backup holds the wrapped keys of every subject alive when it was taken. Restoring it
after a subject was destroyed would bring that subject back, so ``orthovault restore``
reads this ledger and destroys again everything recorded in it (docs/deploy.md, Backups
and destruction). Each line is one JSON object with the time and the subject ids: ids are
random UUIDs, no PHI, so the ledger may be copied as freely as the master key may not.

The line is written and fsynced before the keys are deleted: a destruction that fails
after its line was written is finished by running it again, and a restore would finish it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID


@dataclass(frozen=True)
class Destruction:
    at: datetime
    subjects: tuple[UUID, ...]


class DestructionLedger:
    def __init__(self, path: Path):
        self.path = path

    def append(self, subjects: Iterable[UUID]) -> None:
        line = json.dumps({"at": datetime.now(UTC).isoformat(),
                           "subjects": [str(s) for s in subjects]}, separators=(",", ":"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(handle, (line + "\n").encode())
            os.fsync(handle)
        finally:
            os.close(handle)

    def entries(self) -> Iterator[Destruction]:
        """Every recorded destruction, oldest first; a torn last line (a crash mid-write,
        before the keys were touched) is skipped."""
        if not self.path.exists():
            return
        with self.path.open() as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                    yield Destruction(datetime.fromisoformat(entry["at"]),
                                      tuple(UUID(s) for s in entry["subjects"]))
                except (ValueError, KeyError, TypeError):
                    continue

    def __len__(self) -> int:
        return sum(1 for _ in self.entries())
