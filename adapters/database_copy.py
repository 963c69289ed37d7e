"""Tables out of and into PostgreSQL with COPY, for backup and restore.

Out: every table in one REPEATABLE READ READ ONLY transaction, so all of them (and the log
position recorded beside them) are one consistent snapshot while the server keeps writing.
Binary COPY, version-independent enough for restoring into the same or a later release
(the column list is kept; a later release's tables are created by its own code first).
In: COPY FROM into the freshly created, empty tables, then the log's sequence set past
the highest restored position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from adapters import schema_lock
from adapters.backup_files import READ_BYTES, FileEntry, write_hashed

EVENTS_TABLE = "imaging_events"


@dataclass(frozen=True)
class TableCopy:
    name: str
    columns: list[str]
    rows: int
    ddl: list[str]
    file: FileEntry


def _table_names(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1",
                        (schema,)).fetchall()
    return [row[0] for row in rows]


def _columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE a.attrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass"
        " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, table)).fetchall()


def table_ddl(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    """CREATE … IF NOT EXISTS statements for a table and its indexes, from the catalog.

    Restore runs them only for tables the release's own code did not create (worker
    state, inbound-message dedup, job ledgers); defaults drawing on sequences are left
    out (those tables are the release's own).
    """
    qualified = SQL("{}.{}").format(Identifier(schema), Identifier(table)).as_string(conn)
    parts = []
    for name, type_name, not_null, default in _columns(conn, schema, table):
        column = f"{Identifier(name).as_string(conn)} {type_name}"
        if default is not None and "nextval(" not in default:
            column += f" DEFAULT {default}"
        if not_null:
            column += " NOT NULL"
        parts.append(column)
    constraints = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid ="
        " (quote_ident(%s) || '.' || quote_ident(%s))::regclass AND contype IN ('p', 'u')"
        " ORDER BY conname", (schema, table)).fetchall()
    parts += [row[0] for row in constraints]
    statements = [f"CREATE TABLE IF NOT EXISTS {qualified} ({', '.join(parts)})"]
    indexes = conn.execute(
        "SELECT indexdef FROM pg_indexes i WHERE schemaname = %s AND tablename = %s AND NOT"
        " EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname) ORDER BY 1",
        (schema, table)).fetchall()
    for (definition,) in indexes:
        statements.append(definition.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
                          .replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX IF NOT EXISTS ",
                                   1))
    return statements


class SnapshotReader:
    """One consistent snapshot of the database, read table by table."""

    def __init__(self, conninfo: str, schema: str = "public"):
        self.schema = schema
        self._conn = psycopg.connect(conninfo)
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self._conn.execute("SELECT 1")  # the snapshot is taken at the first statement

    def close(self) -> None:
        self._conn.rollback()
        self._conn.close()

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tables(self) -> list[str]:
        return _table_names(self._conn, self.schema)

    def log_position(self) -> int:
        query = SQL("SELECT coalesce(max(notification_id), 0) FROM {}.{}").format(
            Identifier(self.schema), Identifier(EVENTS_TABLE))
        return int(self._conn.execute(query).fetchone()[0])  # type: ignore[index]

    def rows(self, table: str) -> int:
        query = SQL("SELECT count(*) FROM {}.{}").format(Identifier(self.schema),
                                                          Identifier(table))
        return int(self._conn.execute(query).fetchone()[0])  # type: ignore[index]

    def copy_to(self, table: str, target: Path,
                on_bytes: Callable[[int], None] = lambda _n: None) -> TableCopy:
        columns = [row[0] for row in _columns(self._conn, self.schema, table)]
        rows = self.rows(table)
        ddl = table_ddl(self._conn, self.schema, table)
        statement = SQL("COPY {}.{} ({}) TO STDOUT (FORMAT binary)").format(
            Identifier(self.schema), Identifier(table),
            SQL(", ").join(Identifier(c) for c in columns))

        def chunks() -> Iterator[bytes]:
            with self._conn.cursor().copy(statement) as copy:
                for data in copy:
                    yield bytes(data)

        return TableCopy(table, columns, rows, ddl, write_hashed(target, chunks(), on_bytes))


def copy_in(conninfo: str, table: str, columns: list[str], ddl: list[str], source: Path,
            schema: str = "public", on_bytes: Callable[[int], None] = lambda _n: None) -> None:
    """Create the table if this release's code has not, and COPY the rows into it."""
    with psycopg.connect(conninfo) as conn, conn.transaction():
        schema_lock.lock_in(conn)
        for statement in ddl:
            conn.execute(statement.encode())
        if conn.execute(SQL("SELECT EXISTS (SELECT 1 FROM {}.{})").format(
                Identifier(schema), Identifier(table))).fetchone()[0]:  # type: ignore[index]
            raise RuntimeError(f"table {table} is not empty: restore only into a new database")
        statement = SQL("COPY {}.{} ({}) FROM STDIN (FORMAT binary)").format(
            Identifier(schema), Identifier(table), SQL(", ").join(Identifier(c) for c in columns))
        with conn.cursor().copy(statement) as copy, source.open("rb") as data:
            while chunk := data.read(READ_BYTES):
                copy.write(chunk)
                on_bytes(len(chunk))
        if table == EVENTS_TABLE:
            conn.execute(SQL(
                "SELECT setval(pg_get_serial_sequence(%s, 'notification_id'),"
                " greatest((SELECT max(notification_id) FROM {}.{}), 1))").format(
                Identifier(schema), Identifier(table)), (f"{schema}.{EVENTS_TABLE}",))


def user_tables(conninfo: str, schema: str = "public") -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return _table_names(conn, schema)
