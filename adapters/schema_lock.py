"""Schema creation under one PostgreSQL advisory lock.

``CREATE TABLE IF NOT EXISTS`` is not safe under concurrency: two sessions that both see
the table missing both insert its row type, and the loser fails with ``duplicate key value
violates unique constraint "pg_type_typname_nsp_index"``. ``docker compose up`` starts the
api, projections, worker and relay processes at the same instant on an empty database, so
every path that creates tables, indexes or types takes this one lock first: the first
process creates, the others wait a moment and find everything there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from eventsourcing.persistence import IntegrityError
from psycopg.sql import SQL, Composed, Literal

# One bigint key for the whole installation's schema ("ovschema" in ASCII).
SCHEMA_LOCK_KEY = 0x6F76736368656D61

# Taken inside a DDL transaction: held until that transaction ends.
LOCK_IN_TRANSACTION: Composed = SQL("SELECT pg_advisory_xact_lock({})").format(
    Literal(SCHEMA_LOCK_KEY))


def lock_first(recorder: Any) -> Any:
    """Make an eventsourcing recorder's create_table take the schema lock first.

    Its CREATE TABLE/INDEX statements run in one transaction; the lock statement goes at
    the head of that list, so it is held until they are committed.
    """
    statements = recorder.sql_create_statements
    if not statements or statements[0] is not LOCK_IN_TRANSACTION:
        statements.insert(0, LOCK_IN_TRANSACTION)
    return recorder


def create_tables(recorder: Any) -> Any:
    """``recorder.create_table()`` under the schema lock.

    eventsourcing's tracking recorder looks for its table before creating it (outside any
    lock) and, when it found none, records its "migrated" row after creating it: a process
    that looked while another was creating finds that row already there (IntegrityError).
    Looking again, now that the table exists, is all it takes.
    """
    lock_first(recorder)
    try:
        recorder.create_table()
    except IntegrityError:
        recorder.create_table()
    return recorder


def lock_in(connection: psycopg.Connection[Any]) -> None:
    """Take the schema lock in ``connection``'s current transaction."""
    connection.execute(LOCK_IN_TRANSACTION)


@contextmanager
def held(conninfo: str) -> Iterator[None]:
    """The schema lock on a connection of its own, for code that creates tables in several
    transactions (eventsourcing creates the event table's composite type in one of its own).
    """
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(SQL("SELECT pg_advisory_lock({})").format(Literal(SCHEMA_LOCK_KEY)))
        try:
            yield
        finally:
            conn.execute(SQL("SELECT pg_advisory_unlock({})").format(
                Literal(SCHEMA_LOCK_KEY)))
