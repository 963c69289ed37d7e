"""The ``orthovault`` command line."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any
from uuid import UUID

import click
import structlog

from api.settings import Settings


def _settings(data_dir: Path | None, **overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None,
    help="Data directory (default ./var or ORTHOVAULT_DATA_DIR).",
)


# Exit codes (README "Exit codes"): 0 done; 1 done, but some of the work failed (files
# rejected, audit chain broken); 2 usage error (bad option, unknown patient, no installation
# in the data directory); 3 cannot run now (data directory in use, port taken).
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


@click.group()
@click.version_option(package_name="orthovault", prog_name="orthovault")
def main() -> None:
    """orthovault: the imaging backend of an orthodontic practice suite."""


@main.command()
@data_dir_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
def serve(data_dir: Path | None, host: str | None, port: int | None) -> None:
    """Start the API with projections and workers in one process.

    With no configuration this runs an embedded PostgreSQL under the data directory and
    keeps blobs in its blobs/ folder: nothing else to install or start.
    """
    from adapters.data_dir_lock import DataDirInUse, hold_exclusive
    from api.observability import configure_logging

    settings = _settings(data_dir, host=host, port=port)
    configure_logging(settings.log_level)  # every line `serve` writes is JSON
    log = structlog.get_logger("orthovault.serve")
    try:  # before anything starts: a second server must not touch the first one's work
        lock = hold_exclusive(settings.data_dir, "serve")
    except DataDirInUse as error:
        log.error("data_dir_in_use", detail=str(error), holder=error.holder)
        raise SystemExit(EXIT_UNAVAILABLE) from None
    from adapters import embedded_postgres  # the heavy imports only once the lock is ours
    from api.app import create_app
    from api.transport_security import listening_socket, server

    os.environ.setdefault("ORTHOVAULT_DATA_DIR", str(settings.data_dir))
    certfile, keyfile = settings.tls_certfile, settings.tls_keyfile
    scheme = "https" if certfile else "http"
    try:  # bound before start-up: a taken port stops us before projections start
        sock = listening_socket(settings.host, settings.port)
    except OSError as error:
        log.error("cannot_listen", detail=f"cannot listen on {settings.host}:{settings.port}: "
                  f"{error.strerror or error}")
        raise SystemExit(EXIT_UNAVAILABLE) from None
    log.info("serving", data_dir=str(settings.data_dir.resolve()),
             url=f"{scheme}://{settings.host}:{settings.port}")
    try:
        uvicorn_server = server(create_app(settings), settings.host, settings.port,
                                str(certfile) if certfile else None,
                                str(keyfile) if keyfile else None)
    except (ValueError, OSError) as error:  # ssl.SSLError is an OSError
        log.error("cannot_serve_tls", detail=str(error))
        raise SystemExit(EXIT_USAGE) from None
    # SIGTERM before uvicorn listens for it (and the one uvicorn re-raises after its graceful
    # shutdown) ends the process through the finally below, not the default handler.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)
    try:
        uvicorn_server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the clean-up finish
        embedded_postgres.stop()  # the last process to let go stops it
        lock.release()


def _exit_on_signal(_signum: int, _frame: object) -> None:
    raise SystemExit(0)  # a requested stop is a clean exit


@main.command()
@data_dir_option
@click.option("--user", required=True, help="User id (the token's subject).")
@click.option("--clinic", required=True, help="Clinic id the user works in.")
@click.option("--role", required=True, help="One of the practice roles, e.g. doctor.")
@click.option("--ttl", type=int, default=None, help="Lifetime in seconds (default 12 h).")
def token(data_dir: Path | None, user: str, clinic: str, role: str, ttl: int | None) -> None:
    """Print a local bearer token signed with the data directory's key."""
    from adapters.local_secrets import NoInstallation
    from api.auth import TokenLifetimeTooLong, issue_token
    from api.services import token_config

    settings = _settings(data_dir)
    try:  # the key the server of this data directory signs with, never a new one
        config = token_config(settings, existing_key=True)
    except NoInstallation as error:
        raise click.UsageError(str(error)) from None
    try:
        click.echo(issue_token(config, user=user, clinic=clinic, role=role, ttl_seconds=ttl))
    except TokenLifetimeTooLong as error:
        raise click.BadParameter(str(error), param_hint="--ttl") from None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--role") from None


def _run_jobs(data_dir: Path | None, names: set[str]) -> None:
    """Run background jobs in the foreground until SIGINT/SIGTERM."""
    import signal
    import threading

    from api.observability import configure_logging
    from api.services import Services

    settings = _settings(data_dir, run_background=False)
    configure_logging(settings.log_level)
    try:
        services = Services.build(settings)
    except Exception as error:  # say why in one line and exit 1: the orchestrator restarts
        raise click.ClickException(f"cannot start: {error}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    services.start_background(only=names)
    click.echo(f"orthovault: running {', '.join(sorted(names))}", err=True)
    try:
        stop.wait()
    finally:
        services.close()


@main.group(invoke_without_command=True)
@data_dir_option
@click.pass_context
def projections(ctx: click.Context, data_dir: Path | None) -> None:
    """Run the read-model projections (distributed mode: one process per deployment);
    `projections rebuild NAME` rebuilds one read model blue/green."""
    from api.services import PROJECTIONS

    if ctx.invoked_subcommand is not None:
        return
    _run_jobs(data_dir, {projection.name for projection, _view in PROJECTIONS})


@main.command()
@data_dir_option
def worker(data_dir: Path | None) -> None:
    """Run the pixel workers (photo derivatives, DICOM renders, CBCT volumes, mesh renders,
    tile pyramids, reports, simulations)."""
    from workers import (
        cbct_assembly,
        derivatives,
        dicom_derivatives,
        mesh_derivatives,
        report_renderer,
        simulations,
        tiles,
    )

    _run_jobs(data_dir, {derivatives.NAME, dicom_derivatives.NAME, cbct_assembly.NAME,
                         mesh_derivatives.NAME, tiles.NAME, report_renderer.NAME,
                         simulations.NAME})


@main.command()
@data_dir_option
def relay(data_dir: Path | None) -> None:
    """Publish every event to Kafka as a CloudEvent (needs ORTHOVAULT_KAFKA_BOOTSTRAP).

    Run several for availability: one holds the leader lock and publishes, the others wait.
    """
    import os as _os

    from workers import kafka_relay

    if not _os.environ.get("ORTHOVAULT_KAFKA_BOOTSTRAP"):
        raise click.UsageError("set ORTHOVAULT_KAFKA_BOOTSTRAP=host:port")
    _run_jobs(data_dir, {kafka_relay.NAME})


@main.command()
@data_dir_option
def consumers(data_dir: Path | None) -> None:
    """Consume the suite's topics (booking, CRM, treatment; needs ORTHOVAULT_KAFKA_BOOTSTRAP).

    Replicas form one Kafka consumer group and share the topics' partitions.
    """
    from api.scale_out import CONSUMERS

    if not os.environ.get("ORTHOVAULT_KAFKA_BOOTSTRAP"):
        raise click.UsageError("set ORTHOVAULT_KAFKA_BOOTSTRAP=host:port")
    _run_jobs(data_dir, set(CONSUMERS))


@main.command()
@data_dir_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
def api(data_dir: Path | None, host: str | None, port: int | None) -> None:
    """Serve only the API; projections and workers run as their own processes."""
    import uvicorn

    from api.app import create_app

    settings = _settings(data_dir, host=host, port=port, run_background=False)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_config=None, access_log=False)


def _cli_actor(clinic: str, user: str | None, role: str) -> object:
    import getpass

    from domain.values import Actor

    return Actor(user_id=user or f"cli:{getpass.getuser()}", role=role, clinic_id=clinic)


@main.command("import")
@data_dir_option
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--patient", "patient_id", required=True,
              help="The patient: its id (UUID) or its external id (e.g. P-1001).")
@click.option("--clinic", required=True, help="The patient's clinic.")
@click.option("--session", "session_id", default=None, help="Capture session to fill.")
@click.option("--user", default=None, help="Who imports (default cli:<login>).")
@click.option("--role", default="clinical_staff", show_default=True)
def import_command(data_dir: Path | None, path: Path, patient_id: str, clinic: str,
                   session_id: str | None, user: str | None, role: str) -> None:
    """Import a folder (or file, or zip) of images for one patient, with progress.

    Exit 0: every file imported (or already there); 1: some files were rejected;
    2: usage error (unknown patient, clinic or option)."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from api.folder_import import files_under, import_path
    from api.services import Services

    services = Services.build(_settings(data_dir, run_background=False))
    console = Console(stderr=True)
    actor = _cli_actor(clinic, user, role)
    try:
        # The patient is known (and in this clinic) before a single file is read.
        patient = _patient_of(services, actor, patient_id)
        session = _uuid_option(session_id, "--session") if session_id else None
        total = sum(1 for _ in files_under(path))
        with Progress(console=console) as progress:
            task = progress.add_task("importing", total=total)
            results = import_path(
                services, actor, patient, path, session,
                progress=lambda _name: progress.advance(task),
            )
    finally:
        services.close()
    table = Table(title=f"{path}: {len(results)} files")
    for column in ("file", "result", "image / reason"):
        table.add_column(column)
    for r in results:
        detail = str(r.image_id) if r.image_id else f"{r.code}: {r.detail}"
        table.add_row(r.filename, r.status, detail)
    console.print(table)
    counts = {s: sum(r.status == s for r in results) for s in ("accepted", "duplicate",
                                                               "rejected")}
    click.echo(f"accepted {counts['accepted']}, duplicates {counts['duplicate']}, "
               f"rejected {counts['rejected']}")
    if counts["rejected"]:
        raise SystemExit(EXIT_SOME_FAILED)


def _uuid_option(value: str, option: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an id", param_hint=option) from None


def _patient_of(services: Any, actor: Any, given: str) -> UUID:
    """A patient named by its id or by its external id (as people type it), checked to
    exist in the actor's clinic; a usage error (exit 2) otherwise."""
    from domain.errors import OrthovaultError

    try:
        patient_id = UUID(given)
    except ValueError:
        patient_id = services.app.patient_by_external_id(actor, given.strip())
        if patient_id is None:  # registered before external ids were claimed
            found = services.dicom_index.patients_by_external_id(actor.clinic_id,
                                                                 given.strip())
            patient_id = found[0] if len(found) == 1 else None
    try:
        if patient_id is None:
            raise LookupError
        services.app.get_patient(patient_id, actor)
    except (LookupError, OrthovaultError):
        raise click.BadParameter(f"no patient {given!r} in clinic {actor.clinic_id}",
                                 param_hint="--patient") from None
    return patient_id


@main.command()
@data_dir_option
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--clinic", required=True, help="The clinic the chair belongs to.")
@click.option("--chair", required=True, help="The chair whose open session files fill.")
@click.option("--settle", type=float, default=2.0, show_default=True,
              help="Seconds a file must stop growing before it is imported.")
@click.option("--interval", type=float, default=1.0, show_default=True)
def watch(data_dir: Path | None, folder: Path, clinic: str, chair: str, settle: float,
          interval: float) -> None:
    """Import files a camera writes into FOLDER into the chair's open capture session;
    move each to done/ or failed/ (with a reason file)."""
    import signal
    import threading

    from api.folder_import import DeviceFolder
    from api.observability import configure_logging
    from api.services import Services

    settings = _settings(data_dir, run_background=False)
    configure_logging(settings.log_level)
    services = Services.build(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    device = DeviceFolder(services, _cli_actor(clinic, f"device:{chair}", "clinical_staff"),
                          folder, chair, settle_seconds=settle)
    click.echo(f"orthovault: watching {folder} for chair {chair}", err=True)
    try:
        while not stop.is_set():
            device.poll()
            stop.wait(interval)
    finally:
        services.close()


@main.group()
def audit() -> None:
    """Compliance: verify the tamper-evident audit chain."""


@audit.command("verify")
@data_dir_option
@click.option("--against-log", is_flag=True,
              help="Also rebuild every entry from the event log and compare.")
@click.option("--against-head", "head_file", type=click.Path(path_type=Path), default=None,
              help="Also check the chain still holds this signed head file "
                   "(DATA_DIR/secrets/audit_head.json, or a copy kept elsewhere).")
def audit_verify(data_dir: Path | None, against_log: bool, head_file: Path | None) -> None:
    """Recompute the audit hash chain and check it reaches the end of the event log; name
    the first broken link or the missing positions (exit 1 if broken)."""
    from adapters.audit_head import HeadRefused, head_key, read_head
    from adapters.event_store import master_key_from_env
    from api.services import Services
    from projections.audit import (
        verify_against_head,
        verify_against_log,
        verify_chain,
        verify_tail,
    )

    services = Services.build(_settings(data_dir, run_background=False))
    try:
        published = None
        if head_file is not None:
            try:
                head = read_head(head_file, head_key(master_key_from_env(services.env)))
            except HeadRefused as error:
                click.echo(f"audit head file REFUSED: {error}", err=True)
                raise SystemExit(1) from None
            published = (head.position, head.entry_hash)
        result = chain = verify_chain(services.audit)
        if result.ok:
            result = verify_tail(services.audit, services.app)
        if result.ok and against_log:
            result = verify_against_log(services.audit, services.app)
        if result.ok and published is not None:
            result = verify_against_head(services.audit, published)
    finally:
        services.close()
    if result.ok:
        click.echo(f"audit chain intact: {chain.checked} entries, head position "
                   f"{chain.head_position}, head hash {chain.head_hash}")
        return
    click.echo(f"audit chain BROKEN at position {result.first_broken_position}: "
               f"{result.reason} ({result.checked} entries checked)", err=True)
    raise SystemExit(1)


@main.command()
@data_dir_option
@click.option("--grace-hours", type=float, default=24.0, show_default=True,
              help="Leave blobs written more recently than this (uploads in flight).")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
def gc(data_dir: Path | None, grace_hours: float, dry_run: bool) -> None:
    """Remove blobs no event refers to: orphans of crashed uploads, unfinished writes and
    the ciphertext of destroyed subjects."""
    from datetime import timedelta

    from api.blob_gc import collect_garbage
    from api.services import Services

    services = Services.build(_settings(data_dir, run_background=False))
    try:
        report = collect_garbage(services.app, services.blobs.backend,
                                 grace=timedelta(hours=grace_hours), dry_run=dry_run)
    finally:
        services.close()
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{report.subjects_checked} subjects checked; {verb} "
               f"{len(report.orphans)} orphaned, {len(report.shredded)} destroyed, "
               f"{report.unfinished_writes} unfinished writes; {report.skipped_recent} "
               f"too recent to judge")


def _register_dicom_commands() -> None:
    from api.cli_dicom import dicom_listen
    from api.cli_retention import retention
    from api.ohif_config import ohif_config

    main.add_command(dicom_listen)
    main.add_command(retention)
    main.add_command(ohif_config)


def _register_operations_commands() -> None:
    from api.cli_backup import backup, restore
    from api.cli_projections import rebuild

    main.add_command(backup)
    main.add_command(restore)
    projections.add_command(rebuild)


_register_dicom_commands()
_register_operations_commands()


if __name__ == "__main__":
    main()
