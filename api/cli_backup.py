"""`orthovault backup DEST`, `orthovault backup verify DEST`, `orthovault restore DEST`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None,
    help="Data directory (default ./var or ORTHOVAULT_DATA_DIR).",
)


def _settings(data_dir: Path | None, **overrides: Any) -> Any:
    from api.cli import _settings as settings

    return settings(data_dir, **overrides)


@contextmanager
def _progress() -> Iterator[Any]:
    """A rich progress bar with one task per phase (bytes, tables or log positions)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    tasks: dict[str, Any] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:

        def advance(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=max(total, 1))
            bar.update(tasks[what], completed=done if total else 1, total=max(total, 1))

        yield advance


class _BackupGroup(click.Group):
    """`backup DEST` takes a backup; `backup verify DEST` checks one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["take", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_BackupGroup)
def backup() -> None:
    """Back up the installation into a folder: `orthovault backup DEST`.

    The event log, the wrapped subject keys and worker state in one consistent snapshot,
    plus the blobs not already in DEST, with a manifest of every file's SHA-256. Read
    models are rebuilt on restore. The master key and the destruction ledger stay out of
    DEST unless --include-keys: keep them apart (docs/deploy.md).
    """


@backup.command("take", hidden=True)
@data_dir_option
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--include-keys", is_flag=True,
              help="Also copy the master key, token key and destruction ledger into DEST "
                   "(then DEST alone opens every patient's data).")
def take(data_dir: Path | None, dest: Path, include_keys: bool) -> None:
    from api.backup import BackupRefused, take_backup

    settings = _settings(data_dir, run_background=False)
    try:
        with _progress() as progress:
            report = take_backup(settings, dest, include_keys=include_keys, progress=progress)
    except (BackupRefused, ValueError, OSError) as error:
        raise click.ClickException(f"backup failed: {error}") from None
    rows = ", ".join(f"{table} {count}" for table, count in report.tables.items())
    click.echo(f"backup in {dest}: log position {report.log_position}; rows: {rows}")
    click.echo(f"blobs: {report.blobs} ({report.blobs_transferred} transferred, "
               f"{report.bytes_transferred} bytes; {report.blobs_removed} removed)")
    if report.keys_included:
        click.echo("key material INCLUDED in the backup: this folder alone opens every "
                   "patient's data; store it like the master key")
    else:
        click.echo("key material not included: keep the master key and the destruction "
                   "ledger apart (manifest.json, key_material)")


@backup.command("verify")
@click.argument("dest", type=click.Path(exists=True, file_okay=False, path_type=Path))
def verify(dest: Path) -> None:
    """Check every file of the backup in DEST against its manifest, without restoring."""
    from api.backup import verify_backup

    with _progress() as progress:
        problems = verify_backup(dest, progress)
    if problems:
        for problem in problems:
            click.echo(f"DAMAGED {problem}", err=True)
        raise SystemExit(1)
    click.echo(f"backup in {dest} is intact")


@click.command()
@click.argument("dest", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data-dir", type=click.Path(path_type=Path), required=True,
              help="The new, empty data directory.")
@click.option("--master-key-file", type=click.Path(exists=True, dir_okay=False,
                                                    path_type=Path), default=None,
              help="The master key kept apart (else ORTHOVAULT_MASTER_KEY, else keys/ of "
                   "a backup taken with --include-keys).")
@click.option("--destruction-ledger", type=click.Path(exists=True, dir_okay=False,
                                                       path_type=Path), default=None,
              help="The destruction ledger kept apart: every subject it records is "
                   "destroyed again.")
@click.option("--without-destruction-ledger", is_flag=True,
              help="Restore without one: subjects destroyed after the backup come back.")
def restore(dest: Path, data_dir: Path, master_key_file: Path | None,
            destruction_ledger: Path | None, without_destruction_ledger: bool) -> None:
    """Rebuild a working installation from the backup in DEST into an empty data
    directory (and an empty ORTHOVAULT_DATABASE_URL database, if one is configured), then
    verify the audit chain."""
    from api.backup import BackupRefused, restore_backup
    from api.projection_replay import replaying

    if destruction_ledger is None and not without_destruction_ledger:
        included = dest / "keys" / "destructions.jsonl"
        if not included.exists():
            raise click.UsageError("pass --destruction-ledger (the copy kept apart), or "
                                   "--without-destruction-ledger to accept that subjects "
                                   "destroyed after the backup come back")
        destruction_ledger = included
    settings = _settings(data_dir, run_background=False)
    try:
        with replaying(), _progress() as progress:
            report = restore_backup(settings, dest, master_key_file=master_key_file,
                                    ledger_path=destruction_ledger, progress=progress)
    except BackupRefused as error:
        raise click.ClickException(f"restore refused: {error}") from None
    click.echo(f"restored log position {report.log_position}, {report.blobs} blobs into "
               f"{data_dir}")
    click.echo(f"destructions re-applied: {len(report.destructions_reapplied)}")
    for warning in report.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    audit = report.audit_against_log
    if not audit.ok:
        click.echo(f"audit chain BROKEN at position {audit.first_broken_position}: "
                   f"{audit.reason}", err=True)
        raise SystemExit(1)
    click.echo(f"audit chain intact: {audit.checked} entries, head position "
               f"{audit.head_position}, head hash {audit.head_hash}")
