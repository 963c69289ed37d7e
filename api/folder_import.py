"""Bringing files in from disk: a one-off folder import, and a watched device folder.

Both go through ``store_file`` like every upload. The watched folder never loses or
double-imports a file across restarts: a file is imported under an idempotency key made
from its content, and only then moved to ``done/`` (or to ``failed/`` with a reason
file); a restart between the two re-imports as a replay of the same image.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import structlog

from api.batch_upload import FileResult, view_from_name, zip_members
from api.image_upload import UploadFields, store_file
from api.multipart_stream import ReceivedFile
from api.services import Services
from domain.errors import OrthovaultError
from domain.values import Actor

log = structlog.get_logger("orthovault.folder_import")
SKIP_NAMES = {".DS_Store", "Thumbs.db"}


def received_from_path(path: Path, name: str | None = None) -> ReceivedFile:
    handle = path.open("rb")
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    handle.seek(0)
    return ReceivedFile(field_name="file", filename=name or path.name, content_type="",
                        handle=handle, size=size, sha256=digest.hexdigest())


def files_under(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in SKIP_NAMES and not path.name.startswith("."):
            yield path


def import_one(services: Services, actor: Actor, patient_id: UUID, received: ReceivedFile,
               fields: UploadFields, idempotency_key: str | None = None
               ) -> tuple[FileResult, int]:
    """The file's result and the log position of its write (0 when nothing was written)."""
    try:
        result = store_file(services, actor, patient_id, received, fields, idempotency_key,
                            wait=False)
    except OrthovaultError as error:
        return FileResult(received.filename, "rejected", code=error.code,
                          detail=error.message), 0
    status = "duplicate" if result.duplicate_of else "accepted"
    return FileResult(received.filename, status, image_id=result.image_id,
                      near_duplicates=result.near_duplicates), result.position


def import_path(services: Services, actor: Actor, patient_id: UUID, root: Path,
                session_id: UUID | None = None,
                progress: Callable[[str], None] = lambda _name: None) -> list[FileResult]:
    """Every file under ``root`` (zip archives unpacked), one result each."""
    results: list[FileResult] = []
    for path in files_under(root):
        received = received_from_path(path)
        try:
            if received.head(4) == b"PK\x03\x04":
                members = zip_members(received, services.settings.max_upload_bytes)
            else:
                members = [received]
            for member in members:
                if isinstance(member, FileResult):
                    results.append(member)
                    continue
                fields = UploadFields(view=view_from_name(member.filename),
                                      session_id=session_id)
                results.append(import_one(services, actor, patient_id, member, fields)[0])
                if member is not received:
                    member.handle.close()
        finally:
            received.handle.close()
        progress(path.name)
    return results


@dataclass
class DeviceFolder:
    """A folder an intraoral camera or tethering software writes into, for one chair."""

    services: Services
    actor: Actor
    root: Path
    chair: str
    settle_seconds: float = 2.0
    _seen: dict[Path, tuple[int, float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for sub in ("done", "failed"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def pending(self) -> list[Path]:
        return [p for p in sorted(self.root.iterdir())
                if p.is_file() and p.name not in SKIP_NAMES and not p.name.startswith(".")]

    def stable(self, path: Path, now: float) -> bool:
        """A file counts as complete once its size and mtime stop changing for a while."""
        stat = path.stat()
        previous = self._seen.get(path)
        if previous is None or previous[:2] != (stat.st_size, stat.st_mtime):
            self._seen[path] = (stat.st_size, stat.st_mtime, now)
            return False
        return now - previous[2] >= self.settle_seconds

    def poll(self, now: float | None = None) -> list[FileResult]:
        now = time.monotonic() if now is None else now
        results = []
        for path in self.pending():
            if self.stable(path, now):
                results.append(self.ingest(path))
                self._seen.pop(path, None)
        return results

    def ingest(self, path: Path) -> FileResult:
        session = self.services.sessions.open_session_for_chair(
            self.actor.clinic_id, self.chair, datetime.now(UTC).astimezone().date())
        if session is None:
            return self._finish(path, FileResult(path.name, "rejected", code="no_open_session",
                                                 detail=f"no open capture session on chair "
                                                        f"{self.chair} today"))
        view = view_from_name(path.name) or next(iter(
            session.completeness.missing_required + session.completeness.missing_optional),
            None)
        received = received_from_path(path)
        try:
            result, position = import_one(
                self.services, self.actor, session.patient_id, received,
                UploadFields(view=view, session_id=session.id),
                idempotency_key=f"device-folder:{received.sha256}",
            )
        finally:
            received.handle.close()
        # The next file picks its slot from the session's read model: let it catch up.
        self.services.wait_for_read_models(position, self.services.sessions)
        return self._finish(path, result, patient_id=session.patient_id, slot=view,
                            session_id=session.id)

    def _finish(self, path: Path, result: FileResult, *, patient_id: UUID | None = None,
                slot: str | None = None, session_id: UUID | None = None) -> FileResult:
        target = self.root / ("failed" if result.status == "rejected" else "done") / path.name
        if result.status == "rejected":
            reason = {"file": path.name, "code": result.code, "detail": result.detail,
                      "at": datetime.now(UTC).isoformat()}
            target.with_name(path.name + ".reason.json").write_text(json.dumps(reason, indent=2))
        shutil.move(path, target)
        # Ids, the view code and the name the device gave the file: never the patient's name.
        log.info("device_file", file=path.name, chair=self.chair, status=result.status,
                 code=result.code, patient_id=str(patient_id) if patient_id else None,
                 slot=slot, session_id=str(session_id) if session_id else None,
                 image_id=str(result.image_id) if result.image_id else None)
        return result
