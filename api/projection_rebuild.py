"""Blue/green rebuild of a read model while the live one keeps serving.

The new copy is built beside the live one under ``<name>_next_*`` tables with a tracking
table of their own, replayed from the start of the log by the projection's own code. When
it has caught up with the live copy, one transaction locks both, checks the new copy is
not behind, and renames: the live tables go (dropped, or kept as ``<name>_previous_*``),
the new ones take their names. Readers and the running projection address tables by
name, so the running server reads the new copy from its next query on; its projection
runner, still positioned where the old copy was, finds its next event already tracked in
the new copy (eventsourcing refuses the duplicate, rolling back its row change), is
restarted by the supervisor and resumes from the new copy's position: exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import OperationalError
from psycopg.sql import SQL, Identifier

from adapters import schema_lock
from api.projection_replay import Progress, catch_up, live_view, position, projection_named
from api.services import Services

SWITCH_ATTEMPTS = 50


@dataclass(frozen=True)
class RebuildReport:
    name: str
    position: int
    seconds: float
    tables: list[str]
    kept_old: bool


class _Behind(Exception):
    """The live copy moved on while the switch waited for its locks."""


def _tables(curs: Any, schema: str, prefix: str) -> list[str]:
    """The read model's tables under ``prefix`` (not another copy's, not a longer name)."""
    curs.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE %s"
                 " ORDER BY 1", (schema, prefix.replace("_", r"\_") + r"\_%"))
    others = (f"{prefix}_next_", f"{prefix}_previous_")
    return [row["tablename"] for row in curs.fetchall()
            if not row["tablename"].startswith(others)]


def _indexes(curs: Any, schema: str, tables: list[str]) -> list[str]:
    curs.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s AND"
                 " tablename = ANY(%s) ORDER BY 1", (schema, tables))
    return [row["indexname"] for row in curs.fetchall()]


def _drop(curs: Any, schema: str, tables: list[str]) -> None:
    for table in tables:
        curs.execute(SQL("DROP TABLE IF EXISTS {}.{} CASCADE").format(Identifier(schema),
                                                                      Identifier(table)))


def _rename(curs: Any, schema: str, kind: str, names: list[str], old: str, new: str) -> None:
    for name in names:
        if name.startswith(old):
            curs.execute(SQL("ALTER " + kind + " {}.{} RENAME TO {}").format(
                Identifier(schema), Identifier(name), Identifier(new + name[len(old):])))


def _switch(services: Services, live: str, keep_old: bool) -> list[str]:
    datastore = services.app.recorder.datastore
    schema = datastore.schema
    following = f"{live}_next"
    previous = f"{live}_previous"
    with datastore.transaction(commit=True) as curs:
        curs.execute("SET LOCAL lock_timeout = '5s'")
        old_tables = _tables(curs, schema, live)
        new_tables = _tables(curs, schema, following)
        curs.execute(SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(SQL(", ").join(
            SQL("{}.{}").format(Identifier(schema), Identifier(t))
            for t in (*old_tables, *new_tables))))
        curs.execute(SQL("SELECT (SELECT coalesce(max(notification_id), 0) FROM {}.{}) AS old,"
                         " (SELECT coalesce(max(notification_id), 0) FROM {}.{}) AS new")
                     .format(Identifier(schema), Identifier(f"{live}_tracking"),
                             Identifier(schema), Identifier(f"{following}_tracking")))
        row = curs.fetchone()
        if row["new"] < row["old"]:
            raise _Behind
        old_indexes = _indexes(curs, schema, old_tables)
        new_indexes = _indexes(curs, schema, new_tables)
        if keep_old:
            _drop(curs, schema, _tables(curs, schema, previous))
            _rename(curs, schema, "INDEX", old_indexes, live, previous)
            _rename(curs, schema, "TABLE", old_tables, live, previous)
        else:
            _drop(curs, schema, old_tables)
        _rename(curs, schema, "INDEX", new_indexes, following, live)
        _rename(curs, schema, "TABLE", new_tables, following, live)
    return [live + t[len(following):] for t in new_tables]


def rebuild(services: Services, name: str, *, keep_old: bool = False,
            progress: Progress = lambda _at, _target: None,
            before_switch: Callable[[], None] = lambda: None) -> RebuildReport:
    """Rebuild the read model ``name`` beside the live one, then switch reads over."""
    started = time.monotonic()
    projection, view_class = projection_named(name)
    live = projection.name.lower()
    datastore = services.app.recorder.datastore
    with datastore.transaction(commit=True) as curs:  # leftovers of an interrupted rebuild
        curs.execute(schema_lock.LOCK_IN_TRANSACTION)
        _drop(curs, datastore.schema, _tables(curs, datastore.schema, f"{live}_next"))
    building = view_class(datastore=datastore, tracking_table_name=f"{live}_next_tracking")
    schema_lock.create_tables(building)
    serving = live_view(services, view_class)
    reached = catch_up(services, projection, building, progress)
    before_switch()
    for _attempt in range(SWITCH_ATTEMPTS):
        # Catch up with wherever the live copy has got to, then switch under the locks.
        reached = catch_up(services, projection, building, progress,
                           until=lambda: position(services, serving))
        try:
            tables = _switch(services, live, keep_old)
        except (_Behind, OperationalError):  # moved on, or a deadlock/lock timeout
            time.sleep(0.2)
            continue
        return RebuildReport(projection.name, reached, time.monotonic() - started, tables,
                             keep_old)
    raise RuntimeError(f"could not switch {projection.name} over: the live copy kept moving")
