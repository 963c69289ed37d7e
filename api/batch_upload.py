"""Several files, or one zip, in one request: a result per file, the rest unaffected.

Zip archives are read defensively: members whose names try to leave the archive
(``../``, absolute paths) are refused, every member is decompressed with a hard byte cap
(the declared sizes of a zip bomb lie), and the number of members is capped.
"""

from __future__ import annotations

import hashlib
import lzma
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO
from uuid import UUID

from api.image_upload import UploadFields, store_file
from api.multipart_stream import ReceivedFile, ReceivedForm
from api.services import Services
from domain.errors import InvalidInput, OrthovaultError, TooLarge
from domain.values import Actor
from domain.views import VIEWS

MAX_MEMBERS = 500
_ENCRYPTED = 0x1  # general-purpose flag bit 0
COPY_BYTES = 1 << 20


@dataclass(frozen=True)
class FileResult:
    filename: str
    status: str  # accepted | duplicate | rejected
    image_id: UUID | None = None
    code: str | None = None
    detail: str | None = None
    near_duplicates: tuple[UUID, ...] = ()

    def as_json(self) -> dict[str, object]:
        return {
            "filename": self.filename, "status": self.status,
            "id": str(self.image_id) if self.image_id else None,
            "code": self.code, "detail": self.detail,
            "nearDuplicates": [str(i) for i in self.near_duplicates],
        }


def view_from_name(filename: str) -> str | None:
    """Devices often name files after the view ("IV07_front.jpg"): use it when present."""
    stem = PurePosixPath(filename).stem.upper().replace("-", "_").replace(" ", "_")
    for token in stem.split("_"):
        if token in VIEWS:
            return token
    return None


def _spool(source: IO[bytes], limit: int, name: str) -> ReceivedFile:
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the ReceivedFile
    digest = hashlib.sha256()
    size = 0
    try:
        while chunk := source.read(COPY_BYTES):
            size += len(chunk)
            if size > limit:
                raise TooLarge("zip_member_too_large",
                               f"a zip member inflates beyond {limit} bytes")
            digest.update(chunk)
            handle.write(chunk)
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    return ReceivedFile(field_name="file", filename=name, content_type="", handle=handle,
                        size=size, sha256=digest.hexdigest())


def _safe_member(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return not path.is_absolute() and ".." not in path.parts and ":" not in path.parts[0]


def zip_members(received: ReceivedFile, max_bytes: int) -> list[ReceivedFile | FileResult]:
    """Each member spooled (capped), or a rejection saying why."""
    try:
        archive = zipfile.ZipFile(received.handle)
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError):
        return [FileResult(received.filename, "rejected", code="corrupt_zip",
                           detail="the zip archive cannot be read")]
    if len(infos) > MAX_MEMBERS:
        return [FileResult(received.filename, "rejected", code="zip_too_many_members",
                           detail=f"a zip holds at most {MAX_MEMBERS} files")]
    out: list[ReceivedFile | FileResult] = []
    budget = max_bytes
    for info in infos:
        name = info.filename
        if not _safe_member(name) or stat.S_ISLNK(info.external_attr >> 16):
            out.append(FileResult(name, "rejected", code="unsafe_path",
                                  detail="the member's path leaves the archive or is a link"))
            continue
        if info.flag_bits & _ENCRYPTED:
            out.append(FileResult(name, "rejected", code="zip_member_encrypted",
                                  detail="encrypted zip members cannot be imported"))
            continue
        try:
            with archive.open(info) as member:
                spooled = _spool(member, min(budget, max_bytes), PurePosixPath(name).name)
        except TooLarge as error:
            out.append(FileResult(name, "rejected", code=error.code, detail=error.message))
            continue
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError,
                zlib.error, lzma.LZMAError):  # a corrupt deflate/LZMA stream
            out.append(FileResult(name, "rejected", code="corrupt_zip",
                                  detail="the member cannot be decompressed"))
            continue
        budget -= spooled.size
        out.append(spooled)
    return out


def store_batch(services: Services, actor: Actor, patient_id: UUID, form: ReceivedForm
                ) -> list[FileResult]:
    files = [f for f in form.files if f.field_name in ("files", "file")]
    if not files:
        raise InvalidInput("file_required", "send files in the multipart field 'files'")
    base = UploadFields.from_form({k: v for k, v in form.fields.items() if k != "view"})
    results: list[FileResult] = []
    last_position = 0
    candidates: list[ReceivedFile | FileResult] = []
    for received in files:
        if received.size and received.head(4) == b"PK\x03\x04":
            candidates.extend(zip_members(received, services.settings.max_upload_bytes))
        else:
            candidates.append(received)
    try:
        for item in candidates:
            if isinstance(item, FileResult):
                results.append(item)
                continue
            fields = UploadFields(view=view_from_name(item.filename) or base.view,
                                  session_id=base.session_id, category=base.category,
                                  captured_at=base.captured_at, tags=base.tags)
            try:
                result = store_file(services, actor, patient_id, item, fields, wait=False)
            except OrthovaultError as error:
                results.append(FileResult(item.filename, "rejected", code=error.code,
                                          detail=error.message))
                continue
            last_position = max(last_position, result.position)
            results.append(FileResult(
                item.filename, "duplicate" if result.duplicate_of else "accepted",
                image_id=result.image_id, near_duplicates=result.near_duplicates))
    finally:
        for item in candidates:
            if isinstance(item, ReceivedFile) and item not in files:
                item.handle.close()
    views = (services.gallery, services.sessions) if base.session_id else (services.gallery,)
    services.wait_for_read_models(last_position, *views)
    return results
