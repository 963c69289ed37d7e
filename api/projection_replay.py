"""Replaying read models from the event log: after a restore, and for a blue/green rebuild.

A read model is replayed by the same projection code and the same runner as in the live
server (row change and tracking in one transaction), only watched until it has caught up
with the log head, for a progress bar with an ETA.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from psycopg.sql import SQL, Identifier

from api.services import PROJECTIONS, Services
from workers.runner import WorkerRunner

Progress = Callable[[int, int], None]  # (position reached, target position)


@contextmanager
def replaying() -> Iterator[None]:
    """Connections opened meanwhile (by ``restore``, ``projections rebuild``) commit without
    waiting for the disk. A replay cut short by a crash loses whole transactions only (row
    change and tracking together) and resumes from its tracking position."""
    before = os.environ.get("PGOPTIONS")
    if "synchronous_commit" not in (before or ""):
        os.environ["PGOPTIONS"] = f"{before or ''} -c synchronous_commit=off".strip()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PGOPTIONS", None)
        else:
            os.environ["PGOPTIONS"] = before


def projection_named(name: str) -> tuple[type[Any], type[Any]]:
    for projection, view in PROJECTIONS:
        if name in (projection.name, projection.name.removesuffix("_v1"),
                    projection.name.rsplit("_v", 1)[0]):
            return projection, view
    known = ", ".join(projection.name for projection, _ in PROJECTIONS)
    raise KeyError(f"no read model named {name!r} (known: {known})")


def live_view(services: Services, view_class: type[Any]) -> Any:
    """The view object the API queries for this read model."""
    return next(value for value in vars(services).values() if type(value) is view_class)


def log_head(services: Services, topics: tuple[str, ...]) -> int:
    """The position of the newest event the read model follows (0: none yet)."""
    recorder = services.app.recorder
    table = SQL("{}.{}").format(Identifier(recorder.datastore.schema),
                                Identifier(recorder.events_table_name))
    with recorder.datastore.transaction(commit=False) as curs:
        if topics:
            curs.execute(SQL("SELECT max(notification_id) AS head FROM {} WHERE topic = ANY(%s)")
                         .format(table), (list(topics),))
        else:
            curs.execute(SQL("SELECT max(notification_id) AS head FROM {}").format(table))
        row = curs.fetchone()
    return int(row["head"] or 0) if row else 0


def position(services: Services, view: Any) -> int:
    return int(view.max_tracking_id(services.app.name) or 0)


def catch_up(services: Services, projection: type[Any], view: Any,
             progress: Progress = lambda _at, _target: None, *,
             until: Callable[[], int] | None = None) -> int:
    """Run ``projection`` into ``view`` until it has applied everything up to the log head
    (or ``until()``, read again as it moves); returns the position reached."""
    instance = projection(view=view)
    topics = tuple(getattr(instance, "topics", ()))
    target = until() if until else log_head(services, topics)
    runner = WorkerRunner(services.app, view, instance.process_event, topics,
                          owns_tracking=False)
    with runner:
        while True:
            reached = position(services, view)
            progress(reached, target)
            if reached >= target:
                if until is None:
                    return reached
                target = until()
                if reached >= target:
                    return reached
            runner.run_forever(timeout=0.2)  # raises what stopped the runner, if anything


def catch_up_all(services: Services, read_models: list[tuple[type[Any], Any]],
                 progress: Callable[[str, int, int], None] = lambda _n, _at, _target: None
                 ) -> dict[str, int]:
    """Every (projection, view) at once, one runner thread each, as the server runs them
    (their waits on the database overlap); returns the position each reached."""
    with ExitStack() as stack:
        running = []
        for projection, view in read_models:
            instance = projection(view=view)
            topics = tuple(getattr(instance, "topics", ()))
            runner = stack.enter_context(WorkerRunner(
                services.app, view, instance.process_event, topics, owns_tracking=False))
            running.append((projection.name, view, runner, log_head(services, topics)))
        reached: dict[str, int] = {}
        while len(reached) < len(running):
            for name, view, runner, target in running:
                if name in reached:
                    continue
                at = position(services, view)
                progress(name, at, target)
                if at >= target:
                    reached[name] = at
                else:
                    runner.run_forever(timeout=0.05)  # raises what stopped it, if anything
        return reached
