"""The albums read model: each clinic's album tree and the ordered images of each album.

Follows the Album events, and ``Image.Destroyed`` so that a destroyed image leaves every
album at once (the album's own events keep only its id, which is no PHI).
"""

from __future__ import annotations

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

from domain.album import Album
from domain.errors import InvalidInput
from domain.image import Image

MAX_PAGE = 200


@dataclass(frozen=True)
class AlbumRow:
    id: UUID
    clinic_id: str
    name: str
    parent_id: UUID | None
    archived: bool
    image_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AlbumItems:
    image_ids: list[UUID]
    has_next_page: bool
    end_cursor: str | None


class AlbumsView(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        schema = Identifier(self.datastore.schema)
        self.albums = SQL("{}.{}").format(schema, Identifier(f"{prefix}_albums"))
        self.items = SQL("{}.{}").format(schema, Identifier(f"{prefix}_items"))
        self.sql_create_statements.extend([
            SQL("CREATE TABLE IF NOT EXISTS {} (album_id uuid PRIMARY KEY,"
                " clinic_id text NOT NULL, name text NOT NULL, parent_id uuid,"
                " archived boolean NOT NULL DEFAULT false, image_count int NOT NULL DEFAULT 0,"
                " created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"
                ).format(self.albums),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, parent_id, name)").format(
                Identifier(f"{prefix}_albums_by_parent"), self.albums),
            SQL("CREATE TABLE IF NOT EXISTS {} (album_id uuid NOT NULL, image_id uuid NOT NULL,"
                " position int NOT NULL, PRIMARY KEY (album_id, image_id))").format(self.items),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (album_id, position)").format(
                Identifier(f"{prefix}_items_by_position"), self.items),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (image_id)").format(
                Identifier(f"{prefix}_items_by_image"), self.items),
        ])

    def apply(self, tracking: Tracking, *statements: tuple[Any, dict[str, Any]]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for sql, values in statements:
                curs.execute(sql, values)
            self._insert_tracking(curs, tracking)

    # ---- queries (every one filtered by the caller's clinic) ------------------------------

    def album(self, clinic_id: str, album_id: UUID) -> AlbumRow | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT * FROM {} WHERE album_id = %s AND clinic_id = %s").format(
                self.albums), (album_id, clinic_id))
            row = curs.fetchone()
        return _album(row) if row else None

    def children(self, clinic_id: str, parent_id: UUID | None = None, *,
               include_archived: bool = False) -> list[AlbumRow]:
        conditions = [SQL("clinic_id = %(clinic)s"),
                      SQL("parent_id IS NULL") if parent_id is None
                      else SQL("parent_id = %(parent)s")]
        if not include_archived:
            conditions.append(SQL("NOT archived"))
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT * FROM {} WHERE {} ORDER BY lower(name), album_id").format(
                self.albums, SQL(" AND ").join(conditions)),
                {"clinic": clinic_id, "parent": parent_id})
            return [_album(row) for row in curs.fetchall()]

    def albums_of_image(self, clinic_id: str, image_id: UUID) -> list[AlbumRow]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL(
                "SELECT a.* FROM {} a JOIN {} i USING (album_id) WHERE i.image_id = %s"
                " AND a.clinic_id = %s ORDER BY lower(a.name)").format(self.albums, self.items),
                (image_id, clinic_id))
            return [_album(row) for row in curs.fetchall()]

    def image_ids(self, clinic_id: str, album_id: UUID, *, first: int = 50,
                  after: str | None = None) -> AlbumItems:
        """The album's images in their order; the cursor is the position of the last one."""
        if not 1 <= first <= MAX_PAGE:
            raise InvalidInput("invalid_page_size", f"first must be between 1 and {MAX_PAGE}")
        after_position = _position_cursor(after)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL(
                "SELECT i.image_id, i.position FROM {} i JOIN {} a USING (album_id)"
                " WHERE i.album_id = %s AND a.clinic_id = %s AND i.position > %s"
                " ORDER BY i.position LIMIT %s").format(self.items, self.albums),
                (album_id, clinic_id, after_position, first + 1))
            rows = curs.fetchall()
        page = rows[:first]
        return AlbumItems(image_ids=[r["image_id"] for r in page],
                          has_next_page=len(rows) > first,
                          end_cursor=f"p{page[-1]['position']}" if page else None)


def _position_cursor(after: str | None) -> int:
    if not after:
        return 0
    if not after.startswith("p") or not after[1:].isdigit() or len(after) > 12:
        raise InvalidInput("invalid_cursor", "the cursor is not one this server issued")
    return int(after[1:])


def _album(row: dict[str, Any]) -> AlbumRow:
    return AlbumRow(id=row["album_id"], clinic_id=row["clinic_id"], name=row["name"],
                    parent_id=row["parent_id"], archived=row["archived"],
                    image_count=row["image_count"], created_at=row["created_at"],
                    updated_at=row["updated_at"])


class AlbumsProjection(Projection[AlbumsView]):
    name = "albums_v1"
    topics = tuple(get_topic(cls) for cls in (
        Album.Created, Album.Renamed, Album.Moved, Album.ImageAdded, Album.ImageRemoved,
        Album.Reordered, Album.Archived, Image.Destroyed,
    ))

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    def _touch(self, event: Any, assignments: str = "",
               params: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        extra = (", " + assignments) if assignments else ""
        return (SQL("UPDATE {} SET updated_at = %(at)s" + extra + " WHERE album_id = %(id)s")
                .format(self.view.albums),
                {"id": event.originator_id, "at": event.timestamp, **(params or {})})

    @process_event.register
    def _(self, event: Album.Created, tracking: Tracking) -> None:
        self.view.apply(tracking, (SQL(
            "INSERT INTO {} (album_id, clinic_id, name, parent_id, created_at, updated_at)"
            " VALUES (%(id)s, %(clinic)s, %(name)s, %(parent)s, %(at)s, %(at)s)").format(
            self.view.albums), {"id": event.originator_id, "clinic": event.clinic_id,
                                "name": event.name, "parent": event.parent_id,
                                "at": event.timestamp}))

    @process_event.register
    def _(self, event: Album.Renamed, tracking: Tracking) -> None:
        self.view.apply(tracking, self._touch(event, "name = %(name)s", {"name": event.name}))

    @process_event.register
    def _(self, event: Album.Moved, tracking: Tracking) -> None:
        self.view.apply(tracking, self._touch(event, "parent_id = %(parent)s",
                                              {"parent": event.parent_id}))

    @process_event.register
    def _(self, event: Album.Archived, tracking: Tracking) -> None:
        self.view.apply(tracking, self._touch(event, "archived = true"))

    @process_event.register
    def _(self, event: Album.ImageAdded, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            (SQL("INSERT INTO {} (album_id, image_id, position) SELECT %(id)s, %(image)s,"
                 " coalesce(max(position), 0) + 1 FROM {} WHERE album_id = %(id)s").format(
                self.view.items, self.view.items),
             {"id": event.originator_id, "image": event.image_id}),
            self._touch(event, "image_count = image_count + 1"),
        )

    @process_event.register
    def _(self, event: Album.ImageRemoved, tracking: Tracking) -> None:
        # The image may have left already (destroyed): count only a row really removed.
        self.view.apply(
            tracking,
            (SQL("WITH gone AS (DELETE FROM {} WHERE album_id = %(id)s AND image_id ="
                 " %(image)s RETURNING 1) UPDATE {} SET image_count = image_count -"
                 " (SELECT count(*) FROM gone), updated_at = %(at)s WHERE album_id = %(id)s"
                 ).format(self.view.items, self.view.albums),
             {"id": event.originator_id, "image": event.image_id, "at": event.timestamp}),
        )

    @process_event.register
    def _(self, event: Album.Reordered, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            (SQL("UPDATE {} i SET position = o.ord FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY"
                 " AS o(image_id, ord) WHERE i.album_id = %(id)s AND i.image_id = o.image_id"
                 ).format(self.view.items),
             {"id": event.originator_id, "ids": list(event.image_ids)}),
            self._touch(event),
        )

    @process_event.register
    def _(self, event: Image.Destroyed, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            (SQL("UPDATE {} a SET image_count = image_count - 1 FROM {} i"
                 " WHERE i.album_id = a.album_id AND i.image_id = %(image)s").format(
                self.view.albums, self.view.items), {"image": event.originator_id}),
            (SQL("DELETE FROM {} WHERE image_id = %(image)s").format(self.view.items),
             {"image": event.originator_id}),
        )
