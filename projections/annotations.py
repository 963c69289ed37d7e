"""Read model of annotations and cephalometric tracings per image.

Rows hold the current geometry (each event carries the resulting content, so a row is one
upsert per event), the aggregate version a client must name to edit, and who changed it
last. Measurements and analyses are not stored: the API computes them from these rows and
the image's calibration on every read, so a recalibration or an undo never leaves a stale
number behind. A destroyed image takes its rows with it.
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

from domain.annotation import ANNOTATION_EVENTS, Annotation, AnnotationKind, shape_of
from domain.image import Image
from domain.measurement import Shape
from domain.tracing import TRACING_EVENTS, Tracing


@dataclass(frozen=True)
class AnnotationRow:
    id: UUID
    clinic_id: str
    patient_id: UUID
    image_id: UUID
    author: str
    kind: str
    points: list[list[float]]
    label: str
    text: str
    known_length_mm: float | None
    removed: bool
    version: int
    updated_at: datetime
    updated_by: str

    @property
    def content(self) -> dict[str, Any]:
        return {"kind": self.kind, "points": self.points, "label": self.label,
                "text": self.text, "known_length_mm": self.known_length_mm,
                "removed": self.removed}


@dataclass(frozen=True)
class TracingRow:
    id: UUID
    clinic_id: str
    patient_id: UUID
    image_id: UUID
    author: str
    landmarks: dict[str, list[float]]
    suggestions: dict[str, list[float]]
    removed: bool
    version: int
    started_at: datetime
    updated_at: datetime
    updated_by: str


class AnnotationsView(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        schema = Identifier(self.datastore.schema)
        self.annotations = SQL("{}.{}").format(schema, Identifier(f"{prefix}_annotations"))
        self.tracings = SQL("{}.{}").format(schema, Identifier(f"{prefix}_tracings"))
        # Ids only (no PHI), kept after the image is destroyed: destruction reads it to
        # destroy the keys of every annotation and tracing ever made on the image, also
        # when it is rerun after a crash that came after the rows above were deleted.
        self.subjects = SQL("{}.{}").format(schema, Identifier(f"{prefix}_image_subjects"))
        self.sql_create_statements.extend([
            SQL("CREATE TABLE IF NOT EXISTS {} (subject_id uuid PRIMARY KEY,"
                " image_id uuid NOT NULL)").format(self.subjects),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (image_id)").format(
                Identifier(f"{prefix}_image_subjects_by_image"), self.subjects),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (annotation_id uuid PRIMARY KEY,"
                " clinic_id text NOT NULL, patient_id uuid NOT NULL, image_id uuid NOT NULL,"
                " author text NOT NULL, kind text NOT NULL, points jsonb NOT NULL,"
                " label text NOT NULL, text text NOT NULL, known_length_mm double precision,"
                " removed boolean NOT NULL, version int NOT NULL,"
                " updated_at timestamptz NOT NULL, updated_by text NOT NULL)"
            ).format(self.annotations),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, image_id, updated_at)").format(
                Identifier(f"{prefix}_annotations_by_image"), self.annotations),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (tracing_id uuid PRIMARY KEY,"
                " clinic_id text NOT NULL, patient_id uuid NOT NULL, image_id uuid NOT NULL,"
                " author text NOT NULL, landmarks jsonb NOT NULL,"
                " suggestions jsonb NOT NULL DEFAULT '{{}}'::jsonb, removed boolean NOT NULL,"
                " version int NOT NULL, started_at timestamptz NOT NULL,"
                " updated_at timestamptz NOT NULL, updated_by text NOT NULL)"
            ).format(self.tracings),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, image_id)").format(
                Identifier(f"{prefix}_tracings_by_image"), self.tracings),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, patient_id)").format(
                Identifier(f"{prefix}_tracings_by_patient"), self.tracings),
        ])

    def apply(self, tracking: Tracking, *statements: tuple[Any, dict[str, Any]]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for sql, values in statements:
                curs.execute(sql, values)
            self._insert_tracking(curs, tracking)

    def subjects_of_image(self, image_id: UUID) -> list[UUID]:
        """Every annotation and tracing ever made on the image (removed or destroyed too)."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT subject_id FROM {} WHERE image_id = %(id)s"
                             " ORDER BY subject_id").format(self.subjects), {"id": image_id})
            return [row["subject_id"] for row in curs.fetchall()]

    # ---- queries (every one filtered by the caller's clinic) ---------------------------

    def annotations_of_image(self, clinic_id: str, image_id: UUID, *,
                             include_removed: bool = False,
                             author: str | None = None) -> list[AnnotationRow]:
        conditions = [SQL("clinic_id = %(clinic)s"), SQL("image_id = %(image)s")]
        params: dict[str, Any] = {"clinic": clinic_id, "image": image_id}
        if not include_removed:
            conditions.append(SQL("NOT removed"))
        if author is not None:
            conditions.append(SQL("author = %(author)s"))
            params["author"] = author
        statement = SQL("SELECT * FROM {} WHERE {} ORDER BY updated_at, annotation_id").format(
            self.annotations, SQL(" AND ").join(conditions))
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            return [_annotation(r) for r in curs.fetchall()]

    def calibration_ruler(self, clinic_id: str, image_id: UUID) -> Shape | None:
        """The image's most recently drawn or edited calibration ruler, if any."""
        statement = SQL(
            "SELECT * FROM {} WHERE clinic_id = %(clinic)s AND image_id = %(image)s"
            " AND kind = %(kind)s AND NOT removed ORDER BY updated_at DESC, annotation_id"
            " LIMIT 1").format(self.annotations)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, {"clinic": clinic_id, "image": image_id,
                                     "kind": AnnotationKind.RULER.value})
            row = curs.fetchone()
        return shape_of(_annotation(row).content) if row else None

    def tracings_of_image(self, clinic_id: str, image_id: UUID) -> list[TracingRow]:
        return self._tracings(SQL("image_id = %(id)s"), clinic_id, image_id)

    def tracings_of_patient(self, clinic_id: str, patient_id: UUID) -> list[TracingRow]:
        return self._tracings(SQL("patient_id = %(id)s"), clinic_id, patient_id)

    def _tracings(self, condition: Any, clinic_id: str, value: UUID) -> list[TracingRow]:
        statement = SQL("SELECT * FROM {} WHERE clinic_id = %(clinic)s AND {} AND NOT removed"
                        " ORDER BY started_at, tracing_id").format(self.tracings, condition)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, {"clinic": clinic_id, "id": value})
            return [_tracing(r) for r in curs.fetchall()]


def _annotation(r: dict[str, Any]) -> AnnotationRow:
    return AnnotationRow(
        id=r["annotation_id"], clinic_id=r["clinic_id"], patient_id=r["patient_id"],
        image_id=r["image_id"], author=r["author"], kind=r["kind"], points=r["points"],
        label=r["label"], text=r["text"], known_length_mm=r["known_length_mm"],
        removed=r["removed"], version=r["version"], updated_at=r["updated_at"],
        updated_by=r["updated_by"])


def _tracing(r: dict[str, Any]) -> TracingRow:
    return TracingRow(
        id=r["tracing_id"], clinic_id=r["clinic_id"], patient_id=r["patient_id"],
        image_id=r["image_id"], author=r["author"], landmarks=r["landmarks"],
        suggestions=r["suggestions"], removed=r["removed"], version=r["version"],
        started_at=r["started_at"],
        updated_at=r["updated_at"], updated_by=r["updated_by"])


class AnnotationsProjection(Projection[AnnotationsView]):
    name = "annotations_v1"
    topics = tuple(get_topic(c) for c in (*ANNOTATION_EVENTS, *TRACING_EVENTS, Image.Destroyed))

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        # Includes ShreddedEvent placeholders: their rows went with the image or patient.
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, event: Annotation.Added, tracking: Tracking) -> None:
        c = event.content
        self.view.apply(tracking, (SQL(
            "INSERT INTO {} (annotation_id, clinic_id, patient_id, image_id, author, kind,"
            " points, label, text, known_length_mm, removed, version, updated_at, updated_by)"
            " VALUES (%(id)s, %(clinic)s, %(patient)s, %(image)s, %(author)s, %(kind)s,"
            " %(points)s::jsonb, %(label)s, %(text)s, %(length)s, %(removed)s, %(version)s,"
            " %(at)s, %(author)s)").format(self.view.annotations), {
            "id": event.originator_id, "clinic": event.clinic_id, "patient": event.patient_id,
            "image": event.image_id, "author": event.actor.user_id, "kind": c["kind"],
            "points": json.dumps(c["points"]), "label": c["label"], "text": c["text"],
            "length": c["known_length_mm"], "removed": c["removed"],
            "version": event.originator_version, "at": event.timestamp}),
            self._subject(event))

    def _subject(self, event: Any) -> tuple[Any, dict[str, Any]]:
        return (SQL("INSERT INTO {} (subject_id, image_id) VALUES (%(id)s, %(image)s)"
                    " ON CONFLICT DO NOTHING").format(self.view.subjects),
                {"id": event.originator_id, "image": event.image_id})

    def _content_changed(self, event: Any, tracking: Tracking) -> None:
        c = event.content
        self.view.apply(tracking, (SQL(
            "UPDATE {} SET points = %(points)s::jsonb, label = %(label)s, text = %(text)s,"
            " known_length_mm = %(length)s, removed = %(removed)s, version = %(version)s,"
            " updated_at = %(at)s, updated_by = %(by)s WHERE annotation_id = %(id)s"
        ).format(self.view.annotations), {
            "id": event.originator_id, "points": json.dumps(c["points"]), "label": c["label"],
            "text": c["text"], "length": c["known_length_mm"], "removed": c["removed"],
            "version": event.originator_version, "at": event.timestamp,
            "by": event.actor.user_id}))

    @process_event.register
    def _(self, event: Annotation.Edited, tracking: Tracking) -> None:
        self._content_changed(event, tracking)

    @process_event.register
    def _(self, event: Annotation.Removed, tracking: Tracking) -> None:
        self._content_changed(event, tracking)

    @process_event.register
    def _(self, event: Annotation.Undone, tracking: Tracking) -> None:
        self._content_changed(event, tracking)

    @process_event.register
    def _(self, event: Annotation.Redone, tracking: Tracking) -> None:
        self._content_changed(event, tracking)

    @process_event.register
    def _(self, event: Tracing.Started, tracking: Tracking) -> None:
        self.view.apply(tracking, (SQL(
            "INSERT INTO {} (tracing_id, clinic_id, patient_id, image_id, author, landmarks,"
            " removed, version, started_at, updated_at, updated_by) VALUES (%(id)s,"
            " %(clinic)s, %(patient)s, %(image)s, %(author)s, %(landmarks)s::jsonb, false,"
            " %(version)s, %(at)s, %(at)s, %(author)s)").format(self.view.tracings), {
            "id": event.originator_id, "clinic": event.clinic_id, "patient": event.patient_id,
            "image": event.image_id, "author": event.actor.user_id,
            "landmarks": json.dumps(event.landmarks), "version": event.originator_version,
            "at": event.timestamp}), self._subject(event))

    def _landmarks_changed(self, event: Any, tracking: Tracking, removed: bool) -> None:
        self.view.apply(tracking, (SQL(
            "UPDATE {} SET landmarks = %(landmarks)s::jsonb,"
            " suggestions = %(suggestions)s::jsonb, removed = %(removed)s,"
            " version = %(version)s, updated_at = %(at)s, updated_by = %(by)s"
            " WHERE tracing_id = %(id)s").format(self.view.tracings), {
            "id": event.originator_id, "landmarks": json.dumps(event.landmarks),
            "suggestions": json.dumps(event.suggestions), "removed": removed,
            "version": event.originator_version, "at": event.timestamp,
            "by": event.actor.user_id}))

    @process_event.register
    def _(self, event: Tracing.LandmarksPlaced, tracking: Tracking) -> None:
        self._landmarks_changed(event, tracking, removed=False)

    @process_event.register
    def _(self, event: Tracing.LandmarksRemoved, tracking: Tracking) -> None:
        self._landmarks_changed(event, tracking, removed=False)

    @process_event.register
    def _(self, event: Tracing.LandmarksSuggested, tracking: Tracking) -> None:
        self._landmarks_changed(event, tracking, removed=False)

    @process_event.register
    def _(self, event: Tracing.LandmarksConfirmed, tracking: Tracking) -> None:
        self._landmarks_changed(event, tracking, removed=False)

    @process_event.register
    def _(self, event: Tracing.Discarded, tracking: Tracking) -> None:
        self._landmarks_changed(event, tracking, removed=True)

    @process_event.register
    def _(self, event: Tracing.Undone, tracking: Tracking) -> None:
        self._landmarks_changed(event, tracking, removed=event.removed)

    @process_event.register
    def _(self, event: Tracing.Redone, tracking: Tracking) -> None:
        self._landmarks_changed(event, tracking, removed=event.removed)

    @process_event.register
    def _(self, event: Image.Destroyed, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            (SQL("DELETE FROM {} WHERE image_id = %(id)s").format(self.view.annotations),
             {"id": event.originator_id}),
            (SQL("DELETE FROM {} WHERE image_id = %(id)s").format(self.view.tracings),
             {"id": event.originator_id}),
        )
