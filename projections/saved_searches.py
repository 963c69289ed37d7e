"""The saved searches read model: each clinic's shared saved searches and each user's
private ones (the stored query and filters; results are never stored, search runs them).

Every read is filtered by the caller's clinic and user: another clinic's saved search, or
another user's private one, is never returned. A deleted saved search leaves the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from domain.saved_search import SavedSearch


@dataclass(frozen=True)
class SavedSearchRow:
    id: UUID
    clinic_id: str
    owner_id: str | None
    name: str
    query: str
    filters: dict[str, str]
    created_at: datetime
    updated_at: datetime


class SavedSearchesView(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        self.searches = SQL("{}.{}").format(Identifier(self.datastore.schema),
                                            Identifier(f"{prefix}_searches"))
        self.sql_create_statements.extend([
            SQL("CREATE TABLE IF NOT EXISTS {} (search_id uuid PRIMARY KEY,"
                " clinic_id text NOT NULL, owner_id text, name text NOT NULL,"
                " query text NOT NULL, filters jsonb NOT NULL,"
                " created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"
                ).format(self.searches),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, owner_id)").format(
                Identifier(f"{prefix}_searches_by_clinic"), self.searches),
        ])

    def apply(self, tracking: Tracking, statement: Any, params: dict[str, Any]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(statement, params)
            self._insert_tracking(curs, tracking)

    def visible(self, clinic_id: str, user_id: str) -> list[SavedSearchRow]:
        """The clinic's shared saved searches and the user's own, by name."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT * FROM {} WHERE clinic_id = %s AND (owner_id IS NULL OR"
                             " owner_id = %s) ORDER BY lower(name), search_id").format(
                self.searches), (clinic_id, user_id))
            return [_row(r) for r in curs.fetchall()]

    def one(self, clinic_id: str, user_id: str, search_id: UUID) -> SavedSearchRow | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT * FROM {} WHERE search_id = %s AND clinic_id = %s AND"
                             " (owner_id IS NULL OR owner_id = %s)").format(self.searches),
                         (search_id, clinic_id, user_id))
            row = curs.fetchone()
        return _row(row) if row else None


def _row(row: dict[str, Any]) -> SavedSearchRow:
    return SavedSearchRow(id=row["search_id"], clinic_id=row["clinic_id"],
                          owner_id=row["owner_id"], name=row["name"], query=row["query"],
                          filters=dict(row["filters"]), created_at=row["created_at"],
                          updated_at=row["updated_at"])


class SavedSearchesProjection(Projection[SavedSearchesView]):
    name = "saved_searches_v1"
    topics = tuple(get_topic(cls) for cls in (
        SavedSearch.Created, SavedSearch.Renamed, SavedSearch.QueryChanged,
        SavedSearch.Deleted))

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, event: SavedSearch.Created, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL(
            "INSERT INTO {} (search_id, clinic_id, owner_id, name, query, filters, created_at,"
            " updated_at) VALUES (%(id)s, %(clinic)s, %(owner)s, %(name)s, %(query)s,"
            " %(filters)s, %(at)s, %(at)s) ON CONFLICT (search_id) DO NOTHING").format(
            self.view.searches),
            {"id": event.originator_id, "clinic": event.clinic_id, "owner": event.owner_id,
             "name": event.name, "query": event.query, "filters": json.dumps(event.filters),
             "at": event.timestamp})

    @process_event.register
    def _(self, event: SavedSearch.Renamed, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL(
            "UPDATE {} SET name = %(name)s, updated_at = %(at)s WHERE search_id = %(id)s"
        ).format(self.view.searches),
            {"id": event.originator_id, "name": event.name, "at": event.timestamp})

    @process_event.register
    def _(self, event: SavedSearch.QueryChanged, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL(
            "UPDATE {} SET query = %(query)s, filters = %(filters)s, updated_at = %(at)s"
            " WHERE search_id = %(id)s").format(self.view.searches),
            {"id": event.originator_id, "query": event.query,
             "filters": json.dumps(event.filters), "at": event.timestamp})

    @process_event.register
    def _(self, event: SavedSearch.Deleted, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL("DELETE FROM {} WHERE search_id = %(id)s").format(
            self.view.searches), {"id": event.originator_id})
