"""`orthovault projections rebuild NAME`: a blue/green rebuild of one read model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from api.cli_backup import data_dir_option


@click.command("rebuild")
@data_dir_option
@click.argument("name")
@click.option("--keep-old", is_flag=True,
              help="Keep the replaced tables as <name>_previous_* instead of dropping them.")
def rebuild(data_dir: Path | None, name: str, keep_old: bool) -> None:
    """Build the read model NAME (e.g. gallery_v1, or gallery) anew beside the live one,
    then switch reads over; the live one keeps serving meanwhile."""
    from api.cli import _settings
    from api.projection_replay import projection_named, replaying
    from api.services import Services

    try:
        projection_named(name)
    except KeyError as error:
        raise click.BadParameter(str(error.args[0]), param_hint="NAME") from None
    with replaying():
        services = Services.build(_settings(data_dir, run_background=False))
        try:
            report = _rebuild_with_progress(services, name, keep_old)
        finally:
            services.close()
    kept = " (old tables kept as *_previous_*)" if report.kept_old else ""
    click.echo(f"{report.name} rebuilt to log position {report.position} in "
               f"{report.seconds:.1f} s and switched over{kept}: {', '.join(report.tables)}")


def _rebuild_with_progress(services: Any, name: str, keep_old: bool) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from api.projection_rebuild import rebuild as rebuild_read_model

    with Progress(TextColumn(f"rebuilding {name}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task("replay", total=None)

        def progress(at: int, target: int) -> None:
            bar.update(task, completed=at, total=max(target, at, 1))

        return rebuild_read_model(services, name, keep_old=keep_old, progress=progress)
