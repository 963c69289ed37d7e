"""The ``orthovault`` command line."""

from __future__ import annotations

import os
from pathlib import Path

import click

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


@click.group()
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
    import uvicorn

    from api.app import create_app

    settings = _settings(data_dir, host=host, port=port)
    os.environ.setdefault("ORTHOVAULT_DATA_DIR", str(settings.data_dir))
    click.echo(f"orthovault: data in {settings.data_dir.resolve()}, "
               f"serving on http://{settings.host}:{settings.port}", err=True)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_config=None, access_log=False)


@main.command()
@data_dir_option
@click.option("--user", required=True, help="User id (the token's subject).")
@click.option("--clinic", required=True, help="Clinic id the user works in.")
@click.option("--role", required=True, help="One of the practice roles, e.g. doctor.")
@click.option("--ttl", type=int, default=None, help="Lifetime in seconds (default 12 h).")
def token(data_dir: Path | None, user: str, clinic: str, role: str, ttl: int | None) -> None:
    """Print a local bearer token signed with the data directory's key."""
    from api.auth import issue_token
    from api.services import token_config

    settings = _settings(data_dir)
    try:
        click.echo(issue_token(token_config(settings), user=user, clinic=clinic, role=role,
                               ttl_seconds=ttl))
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
    services = Services.build(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    services.start_background(only=names)
    click.echo(f"orthovault: running {', '.join(sorted(names))}", err=True)
    try:
        stop.wait()
    finally:
        services.close()


@main.command()
@data_dir_option
def projections(data_dir: Path | None) -> None:
    """Run the read-model projections (distributed mode: one process per deployment)."""
    from api.services import PROJECTIONS

    _run_jobs(data_dir, {projection.name for projection, _view in PROJECTIONS})


@main.command()
@data_dir_option
def worker(data_dir: Path | None) -> None:
    """Run the pixel workers (derivatives)."""
    from workers import derivatives

    _run_jobs(data_dir, {derivatives.NAME})


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


@main.group()
def audit() -> None:
    """Compliance: verify the tamper-evident audit chain."""


@audit.command("verify")
@data_dir_option
@click.option("--against-log", is_flag=True,
              help="Also rebuild every entry from the event log and compare.")
def audit_verify(data_dir: Path | None, against_log: bool) -> None:
    """Recompute the audit hash chain; name the first broken link (exit 1 if broken)."""
    from api.services import Services
    from projections.audit import verify_against_log, verify_chain

    services = Services.build(_settings(data_dir, run_background=False))
    try:
        result = verify_chain(services.audit)
        if result.ok and against_log:
            result = verify_against_log(services.audit, services.app)
    finally:
        services.close()
    if result.ok:
        click.echo(f"audit chain intact: {result.checked} entries, head position "
                   f"{result.head_position}, head hash {result.head_hash}")
        return
    click.echo(f"audit chain BROKEN at position {result.first_broken_position}: "
               f"{result.reason} ({result.checked} entries checked)", err=True)
    raise SystemExit(1)


if __name__ == "__main__":
    main()
