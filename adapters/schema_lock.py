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
from psycopg.sql import SQL, Composed, Literal

# One bigint key for the whole installation's schema ("ovschema" in ASCII).
SCHEMA_LOCK_KEY = 0x6F76736368656D61

# Taken inside a DDL transaction: held until that transaction ends.
LOCK_IN_TRANSACTION: Composed = SQL("SELECT pg_advisory_xact_lock({})").format(
    Literal(SCHEMA_LOCK_KEY))


def create_tables(recorder: Any) -> Any:
    """``recorder.create_table()`` with the schema lock held throughout.

    Throughout, not only around the DDL: eventsourcing's tracking recorder first looks for
    its table and, when it found none, records a "migrated" row after creating it; a
    process that looked while another was creating would find that row there already.
    """
    pool = recorder.datastore.pool
    with held(pool.conninfo, **pool.kwargs):
        recorder.create_table()
    return recorder


def lock_in(connection: psycopg.Connection[Any]) -> None:
    """Take the schema lock in ``connection``'s current transaction."""
    connection.execute(LOCK_IN_TRANSACTION)


@contextmanager
def held(conninfo: str = "", **connect_kwargs: Any) -> Iterator[None]:
    """The schema lock on a connection of its own, for code that creates tables in several
    transactions (eventsourcing creates the event table's composite type in one of its own).
    Never nest a transaction-level lock (``lock_in``) inside: that would wait for itself.
    """
    with psycopg.connect(conninfo, **{**connect_kwargs, "autocommit": True}) as conn:
        conn.execute(SQL("SELECT pg_advisory_lock({})").format(Literal(SCHEMA_LOCK_KEY)))
        try:
            yield
        finally:
            conn.execute(SQL("SELECT pg_advisory_unlock({})").format(
                Literal(SCHEMA_LOCK_KEY)))
