"""``orthovault retention run [--dry-run] [--clinic ID]``: the retention job from cron."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def retention() -> None:
    """Retention: destroy images whose retention period or recovery window ended."""


@retention.command("run")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Data directory (default ./var or ORTHOVAULT_DATA_DIR).")
@click.option("--dry-run", is_flag=True, help="Only show what would be destroyed and why.")
@click.option("--clinic", default=None, help="Only this clinic (default: every clinic).")
def retention_run(data_dir: Path | None, dry_run: bool, clinic: str | None) -> None:
    """Show what is due and why, then destroy it (idempotent; safe on several machines)."""
    from api.cli import _settings
    from api.observability import configure_logging
    from api.retention_job import RetentionJob
    from api.services import Services

    settings = _settings(data_dir, run_background=False)
    configure_logging(settings.log_level)
    services = Services.build(settings)
    try:
        with RetentionJob(services) as job:
            plan = job.run(clinic_id=clinic, dry_run=True)
            for candidate in plan.planned:
                click.echo(f"due {candidate.image_id} clinic={candidate.clinic_id} "
                           f"basis={candidate.basis} ({candidate.why})")
            for image_id in plan.held:
                click.echo(f"held {image_id} (legal hold)")
            if dry_run:
                click.echo(f"dry run: {len(plan.planned)} due, {len(plan.held)} on legal hold")
                return
            report = job.run(clinic_id=clinic, on_step=lambda name, image_id: click.echo(
                f"destroyed {image_id}") if name == "finished" else None)
    finally:
        services.close()
    click.echo(f"destroyed {len(report.destroyed)}, finished {len(report.finished)}, "
               f"held {len(report.held)}, busy {len(report.busy)}, "
               f"skipped {len(report.skipped)}")
