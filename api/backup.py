"""Backup and restore of an installation (docs/deploy.md, "Backups").

What a backup holds: the event log, the wrapped subject keys, the list of destroyed
subjects and every other table that is not a read model (worker positions, inbound
message dedup, job ledgers), all COPYed in one snapshot; and the blob store's ciphertext,
copied incrementally. Read models are not copied: they hold PHI in clear, which a backup
must not carry past a subject's destruction, and they are rebuilt by restore from the
log with the release's own projection code (the same rule as upgrades: read models
change by rebuild). Key material stays out unless asked for; the manifest names it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from adapters import event_store
from adapters.backup_files import (
    FORMAT,
    FileEntry,
    file_chunks,
    read_manifest,
    sha256_of,
    verify_files,
    write_hashed,
    write_manifest,
)
from adapters.database_copy import EVENTS_TABLE, SnapshotReader, copy_in, user_tables
from adapters.destruction_ledger import DestructionLedger
from adapters.key_store import SubjectDestroyed
from api.projection_replay import catch_up_all, live_view
from api.services import PROJECTIONS, Services, database_url, master_key
from api.settings import Settings, eventsourcing_env
from domain.errors import Conflict, Gone, NotFound
from domain.image import Image, ImageStatus
from domain.values import Actor
from projections.audit import VerifyResult, verify_against_log, verify_chain

READ_MODEL_PREFIXES = tuple(f"{projection.name.lower()}_" for projection, _ in PROJECTIONS)
RESTORE_ACTOR = "system:restore"

# (what, done, total): one task of the progress bar (bytes, rows or positions).
Progress = Callable[[str, int, int], None]


def _quiet(_what: str, _done: int, _total: int) -> None:
    return None


class BackupRefused(Exception):
    """A backup or restore that must not go ahead; the message says why."""


def key_fingerprint(master_key_b64: str) -> str:
    """Names a master key without revealing it (the manifest says which key it needs)."""
    key = base64.b64decode(master_key_b64)
    return hashlib.sha256(b"orthovault master key\0" + key).hexdigest()[:32]


def data_tables(tables: list[str]) -> list[str]:
    """Every table except the read models, the event log first."""
    kept = [t for t in tables if not t.startswith(READ_MODEL_PREFIXES)]
    return sorted(kept, key=lambda t: (t != EVENTS_TABLE, t))


@dataclass
class BackupReport:
    log_position: int
    tables: dict[str, int]
    blobs: int
    blobs_transferred: int
    bytes_transferred: int
    blobs_removed: int
    keys_included: bool


def _key_material(settings: Settings, key: str, ledger: DestructionLedger,
                  included: bool) -> dict[str, Any]:
    master_source = ("ORTHOVAULT_MASTER_KEY" if settings.master_key
                     else f"{settings.data_dir / 'secrets' / 'master.key'}")
    return {
        "included": included,
        # Keep these apart from this folder: the data without them reveals nothing.
        "kept_apart": [
            {"name": "master key", "required": True, "source": master_source,
             "fingerprint": key_fingerprint(key),
             "why": "unwraps every subject key in database/subject_keys"},
            {"name": "destruction ledger", "required": True,
             "source": str(ledger.path), "entries_at_backup": len(ledger),
             "why": "restore destroys again every subject destroyed after this backup"},
            {"name": "token signing key", "required": False,
             "source": "ORTHOVAULT_TOKEN_SECRET" if settings.token_secret
             else str(settings.data_dir / "secrets" / "token.key"),
             "why": "without it, tokens issued before are no longer accepted"},
        ],
        # Key-encryption keys per epoch (issue #17) will be listed here, each with its
        # fingerprint and the epoch range whose wrapped keys need it.
        "epoch_keys": [],
    }


def take_backup(settings: Settings, dest: Path, *, include_keys: bool = False,
                progress: Progress = _quiet) -> BackupReport:
    dest.mkdir(parents=True, exist_ok=True)
    previous = read_manifest(dest)
    key = master_key(settings)
    conninfo = event_store.conninfo(eventsourcing_env(database_url(settings), key))
    ledger = DestructionLedger(settings.destruction_ledger_path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    files: dict[str, FileEntry] = {}
    tables: dict[str, dict[str, Any]] = {}
    with SnapshotReader(conninfo) as snapshot:
        log_position = snapshot.log_position()
        names = data_tables(snapshot.tables())
        for number, table in enumerate(names):
            relative = f"database/{stamp}/{table}.copy"
            copied = snapshot.copy_to(table, dest / relative)
            files[relative] = copied.file
            tables[table] = {"file": relative, "rows": copied.rows, "columns": copied.columns,
                             "ddl": copied.ddl}
            progress("database", number + 1, len(names))
    blobs = _backup_blobs(settings, dest, previous, files, progress)
    if include_keys:
        _copy_keys(settings, key, ledger, dest, files)
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "release": _release(),
        "log_position": log_position,
        "database": {"tables": tables},
        "blobs": blobs,
        "read_models": "rebuilt by restore from the log (not copied: they hold PHI in clear)",
        "key_material": _key_material(settings, key, ledger, include_keys),
        "files": {name: entry.as_json() for name, entry in files.items()},
    }
    write_manifest(dest, manifest)
    removed = _remove_unlisted(dest, files)
    return BackupReport(log_position, {t: v["rows"] for t, v in tables.items()},
                        blobs["count"], blobs["transferred"], blobs["transferred_bytes"],
                        removed, include_keys)


def _release() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("orthovault")
    except PackageNotFoundError:
        return "unknown"


def _blob_files(root: Path) -> list[Path]:
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))


def _backup_blobs(settings: Settings, dest: Path, previous: dict[str, Any] | None,
                  files: dict[str, FileEntry], progress: Progress) -> dict[str, Any]:
    """Copy the blobs not already in ``dest``; one already there is kept when its source
    still has the SHA-256 the previous manifest recorded for it."""
    if settings.s3_endpoint:
        return {"store": "s3", "count": 0, "bytes": 0, "transferred": 0,
                "transferred_bytes": 0,
                "note": "blobs stay in the bucket: use its versioning and replication "
                        "(docs/deploy.md)"}
    root = Path(settings.blob_dir)
    sources = _blob_files(root)
    before = (previous or {}).get("files", {})
    total = sum(p.stat().st_size for p in sources)
    done = transferred = transferred_bytes = 0
    for source in sources:
        relative = "blobs/" + source.relative_to(root).as_posix()
        size = source.stat().st_size
        known = before.get(relative)
        kept = dest / relative
        if known and known["size"] == size and kept.is_file() and kept.stat().st_size == size:
            current = sha256_of(source)
            if current.sha256 == known["sha256"]:
                files[relative] = current
                done += size
                progress("blobs", done, total)
                continue
        files[relative] = write_hashed(kept, file_chunks(source))
        transferred += 1
        transferred_bytes += size
        done += size
        progress("blobs", done, total)
    return {"store": "local", "count": len(sources), "bytes": total,
            "transferred": transferred, "transferred_bytes": transferred_bytes}


def _copy_keys(settings: Settings, key: str, ledger: DestructionLedger, dest: Path,
               files: dict[str, FileEntry]) -> None:
    """Only on the operator's explicit request: then this folder alone opens everything."""
    copies = {"keys/master.key": key.encode()}
    token = settings.data_dir / "secrets" / "token.key"
    if token.exists():
        copies["keys/token.key"] = token.read_bytes()
    if ledger.path.exists():
        copies["keys/destructions.jsonl"] = ledger.path.read_bytes()
    for name, data in copies.items():
        files[name] = write_hashed(dest / name, [data])
        (dest / name).chmod(0o600)


def _remove_unlisted(dest: Path, files: dict[str, FileEntry]) -> int:
    """Drop what the new manifest no longer names: older database copies, blobs of
    destroyed subjects, key copies of an earlier --include-keys run."""
    removed = 0
    for folder in ("database", "blobs", "keys"):
        for path in sorted((dest / folder).rglob("*"), reverse=True):
            relative = path.relative_to(dest).as_posix()
            if path.is_file() and relative not in files:
                path.unlink()
                removed += folder == "blobs"
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return removed


def verify_backup(dest: Path, progress: Progress = _quiet) -> list[str]:
    """Every problem with the backup in ``dest``, each naming its file (empty: sound)."""
    try:
        manifest = read_manifest(dest)
    except ValueError as error:
        return [str(error)]
    if manifest is None:
        return [f"{dest / 'manifest.json'}: missing (not a finished backup)"]
    total = sum(entry["size"] for entry in manifest["files"].values())
    done = 0

    def counted(_name: str, size: int) -> None:
        nonlocal done
        done += size
        progress("verify", done, total)

    return verify_files(dest, manifest, counted)


@dataclass
class RestoreReport:
    log_position: int
    tables: dict[str, int]
    blobs: int
    destructions_reapplied: list[UUID]
    read_models: dict[str, int]
    audit: VerifyResult
    audit_against_log: VerifyResult
    warnings: list[str] = field(default_factory=list)


def _restore_master_key(settings: Settings, dest: Path, manifest: dict[str, Any],
                        master_key_file: Path | None) -> str:
    if master_key_file is not None:
        key = master_key_file.read_text().strip()
    elif settings.master_key:
        key = settings.master_key.get_secret_value()
    elif (dest / "keys" / "master.key").exists():
        key = (dest / "keys" / "master.key").read_text().strip()
    else:
        raise BackupRefused("the backup needs its master key: pass --master-key-file (the "
                            "copy kept apart) or set ORTHOVAULT_MASTER_KEY")
    wanted = manifest["key_material"]["kept_apart"][0]["fingerprint"]
    try:
        fingerprint = key_fingerprint(key)
    except ValueError:
        fingerprint = ""
    if fingerprint != wanted:
        raise BackupRefused(f"this master key (fingerprint {fingerprint or 'invalid'}) is not "
                            f"the one the backup needs (fingerprint {wanted})")
    return key


def _check_empty_target(settings: Settings) -> None:
    if settings.data_dir.exists() and any(settings.data_dir.iterdir()):
        raise BackupRefused(f"{settings.data_dir} is not empty: restore only into a new, "
                            "empty data directory")
    if settings.database_url:
        env = eventsourcing_env(settings.database_url, base64.b64encode(bytes(32)).decode())
        existing = user_tables(event_store.conninfo(env))
        if existing:
            raise BackupRefused(f"the database already has tables ({', '.join(existing[:3])}"
                                f"…): restore only into an empty database")


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "wb") as out:
        out.write(data)


def restore_backup(settings: Settings, dest: Path, *, master_key_file: Path | None = None,
                   ledger_path: Path | None = None, progress: Progress = _quiet
                   ) -> RestoreReport:
    """Rebuild a working installation from ``dest`` into the empty ``settings.data_dir``
    (and, when configured, the empty external database), then verify the audit chain.

    ``ledger_path``: the destruction ledger kept apart (None: the operator said there is
    none, and subjects destroyed after the backup come back; the report warns).
    """
    manifest = read_manifest(dest)
    if manifest is None:
        raise BackupRefused(f"{dest}: no manifest.json (not a finished backup)")
    problems = verify_backup(dest, progress)
    if problems:
        raise BackupRefused("the backup is damaged:\n  " + "\n  ".join(problems))
    _check_empty_target(settings)
    key = _restore_master_key(settings, dest, manifest, master_key_file)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secrets = settings.data_dir / "secrets"
    if not settings.master_key:
        _write_secret(secrets / "master.key", key.encode())
    if not settings.token_secret and (dest / "keys" / "token.key").exists():
        _write_secret(secrets / "token.key", (dest / "keys" / "token.key").read_bytes())
    services = Services.build(settings.model_copy(update={"run_background": False}))
    try:
        return _restore_into(services, dest, manifest, ledger_path, progress)
    finally:
        services.close()


def _restore_into(services: Services, dest: Path, manifest: dict[str, Any],
                  ledger_path: Path | None, progress: Progress) -> RestoreReport:
    conninfo = event_store.conninfo(services.env)
    tables = manifest["database"]["tables"]
    for number, (table, copied) in enumerate(tables.items()):
        copy_in(conninfo, table, copied["columns"], copied["ddl"], dest / copied["file"])
        progress("database", number + 1, len(tables))
    services.app.key_store.verify_master_key()
    blobs = _restore_blobs(services, dest, manifest, progress)
    warnings = []
    reapplied: list[UUID] = []
    target_ledger = DestructionLedger(services.settings.destruction_ledger_path)
    if ledger_path is None:
        warnings.append("no destruction ledger given: subjects destroyed after "
                        f"{manifest['created_at']} are readable again")
    else:
        reapplied = reapply_destructions(services, DestructionLedger(ledger_path))
        if not target_ledger.path.exists() and ledger_path.exists():
            target_ledger.path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ledger_path, target_ledger.path)
    read_models = catch_up_all(
        services, [(projection, live_view(services, view)) for projection, view in PROJECTIONS],
        lambda name, at, target: progress(f"rebuild {name}", at, target))
    audit = verify_chain(services.audit)
    against = verify_against_log(services.audit, services.app) if audit.ok else audit
    return RestoreReport(manifest["log_position"],
                         {t: v["rows"] for t, v in tables.items()}, blobs, reapplied,
                         read_models, audit, against, warnings)


def _restore_blobs(services: Services, dest: Path, manifest: dict[str, Any],
                   progress: Progress) -> int:
    names = sorted(n for n in manifest["files"] if n.startswith("blobs/"))
    total = sum(manifest["files"][n]["size"] for n in names)
    backend = services.blobs.backend
    root = Path(services.settings.blob_dir)
    done = 0
    for name in names:
        relative = Path(name).relative_to("blobs")
        if services.settings.s3_endpoint:
            _shard, subject, blob = relative.parts
            backend.write(f"{subject}/{blob}", file_chunks(dest / name))
        else:
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dest / name, root / relative)
        done += manifest["files"][name]["size"]
        progress("blobs", done, total)
    os.sync()
    return len(names)


def reapply_destructions(services: Services, ledger: DestructionLedger) -> list[UUID]:
    """Destroy again every subject the ledger records whose key the restored data still
    holds: tombstone (when it is an image not yet tombstoned), keys, blobs. The ledger
    itself is not appended to: these destructions are in it already."""
    key_store = services.app.key_store
    reapplied = []
    kept, key_store.ledger = key_store.ledger, None
    try:
        for entry in ledger.entries():
            alive = [s for s in entry.subjects if _has_key(services, s)]
            if not alive:
                continue
            _tombstone(services, entry.subjects[0])
            key_store.destroy(list(entry.subjects))
            for subject in entry.subjects:
                services.blobs.delete_subject(subject)
            reapplied.append(entry.subjects[0])
    finally:
        key_store.ledger = kept
    return reapplied


def _has_key(services: Services, subject: UUID) -> bool:
    try:
        services.app.key_store.existing_key(subject)
    except SubjectDestroyed:
        return False
    return True


def _tombstone(services: Services, image_id: UUID) -> None:
    try:
        image = services.app.repository.get(image_id)
    except (AggregateNotFoundError, Gone):
        return
    if not isinstance(image, Image) or image.status == ImageStatus.DESTROYED.value:
        return
    actor = Actor(user_id=RESTORE_ACTOR, role="super_admin", clinic_id=image.clinic_id)
    # A legal hold placed before the backup and lifted before the destruction: the
    # destruction happened, so the keys go regardless; only the tombstone is left out.
    with contextlib.suppress(Conflict, NotFound):
        services.app.destroy_image(actor, image_id, "destroyed after the backup was taken; "
                                   "re-applied by restore")
