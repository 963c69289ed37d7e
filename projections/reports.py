"""The reports read model: every report of a patient, and which images each one shows.

Row change and tracking commit in one transaction (exactly once). The projection also
follows the image events that can make a report stale, applying nothing for them, so
that its position passes them: the report worker waits for this view to reach an image
change before asking which reports show that image.
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

from domain.image import Image
from domain.report import Report, ReportStatus

# Image changes that make a report showing the image out of date.
STALE_TOPICS = tuple(get_topic(c) for c in (
    Image.Categorised, Image.DerivativesGenerated, Image.SoftDeleted, Image.Restored,
))


@dataclass(frozen=True)
class ReportRow:
    id: UUID
    clinic_id: str
    patient_id: UUID
    layout: str
    purpose: str
    fmt: str
    status: str
    versions: int
    failure: str | None
    requested_at: datetime
    updated_at: datetime


class ReportsView(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        schema = Identifier(self.datastore.schema)
        self.reports = SQL("{}.{}").format(schema, Identifier(f"{prefix}_reports"))
        self.images = SQL("{}.{}").format(schema, Identifier(f"{prefix}_images"))
        self.sql_create_statements.extend([
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (report_id uuid PRIMARY KEY,"
                " clinic_id text NOT NULL, patient_id uuid NOT NULL, layout text NOT NULL,"
                " purpose text NOT NULL, fmt text NOT NULL, status text NOT NULL,"
                " versions integer NOT NULL DEFAULT 0, failure text,"
                " requested_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"
            ).format(self.reports),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, patient_id, requested_at)"
                ).format(Identifier(f"{prefix}_reports_by_patient"), self.reports),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (report_id uuid NOT NULL, image_id uuid NOT NULL,"
                " image_version integer NOT NULL, PRIMARY KEY (image_id, report_id))"
            ).format(self.images),
        ])

    def apply(self, tracking: Tracking, *statements: tuple[Any, dict[str, Any]]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for statement, params in statements:
                curs.execute(statement, params)
            self._insert_tracking(curs, tracking)

    # ---- queries -------------------------------------------------------------------------

    def reports_of_patient(self, clinic_id: str, patient_id: UUID) -> list[ReportRow]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT * FROM {} WHERE clinic_id = %s AND patient_id = %s"
                             " ORDER BY requested_at DESC, report_id").format(self.reports),
                         (clinic_id, patient_id))
            rows = curs.fetchall()
        return [ReportRow(
            id=r["report_id"], clinic_id=r["clinic_id"], patient_id=r["patient_id"],
            layout=r["layout"], purpose=r["purpose"], fmt=r["fmt"], status=r["status"],
            versions=r["versions"], failure=r["failure"], requested_at=r["requested_at"],
            updated_at=r["updated_at"]) for r in rows]

    def reports_showing(self, image_id: UUID, older_than: int) -> list[UUID]:
        """Reports whose latest version shows ``image_id`` at a version below ``older_than``."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT report_id FROM {} WHERE image_id = %s"
                             " AND image_version < %s ORDER BY report_id").format(self.images),
                         (image_id, older_than))
            return [row["report_id"] for row in curs.fetchall()]


class ReportsProjection(Projection[ReportsView]):
    name = "reports_v1"
    topics = tuple(get_topic(c) for c in (
        Report.Requested, Report.Rendered, Report.RenderFailed, Report.Superseded,
    )) + STALE_TOPICS

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    def _status(self, event: Any, status: str, tracking: Tracking, *more: Any,
                extra: str = "") -> None:
        self.view.apply(tracking, (SQL(
            "UPDATE {} SET status = %(status)s, updated_at = %(at)s" + extra
            + " WHERE report_id = %(id)s").format(self.view.reports),
            {"status": status, "at": event.timestamp, "id": event.originator_id,
             **(more[0] if more else {})}), *more[1:])

    @process_event.register
    def _(self, event: Report.Requested, tracking: Tracking) -> None:
        spec = event.spec
        self.view.apply(tracking, (SQL(
            "INSERT INTO {} (report_id, clinic_id, patient_id, layout, purpose, fmt, status,"
            " requested_at, updated_at) VALUES (%(id)s, %(clinic)s, %(patient)s, %(layout)s,"
            " %(purpose)s, %(fmt)s, %(status)s, %(at)s, %(at)s)").format(self.view.reports), {
            "id": event.originator_id, "clinic": event.clinic_id, "patient": event.patient_id,
            "layout": spec["layout"], "purpose": spec["purpose"], "fmt": spec["fmt"],
            "status": ReportStatus.REQUESTED.value, "at": event.timestamp,
        }))

    @process_event.register
    def _(self, event: Report.Rendered, tracking: Tracking) -> None:
        report = {"id": event.originator_id}
        images = [(SQL("INSERT INTO {} (report_id, image_id, image_version) VALUES"
                       " (%(id)s, %(image)s, %(version)s)").format(self.view.images),
                   {**report, "image": UUID(image_id), "version": version})
                  for image_id, version in event.image_versions.items()]
        self._status(event, ReportStatus.RENDERED.value, tracking,
                     {"versions": event.version},
                     (SQL("DELETE FROM {} WHERE report_id = %(id)s").format(self.view.images),
                      report),
                     *images, extra=", versions = %(versions)s, failure = NULL")

    @process_event.register
    def _(self, event: Report.RenderFailed, tracking: Tracking) -> None:
        self._status(event, ReportStatus.FAILED.value, tracking, {"failure": event.code},
                     extra=", failure = %(failure)s")

    @process_event.register
    def _(self, event: Report.Superseded, tracking: Tracking) -> None:
        self._status(event, ReportStatus.SUPERSEDED.value, tracking)


@dataclass(frozen=True)
class PatientMilestones:
    """Which milestone each image was captured for, and when each milestone was."""

    of_image: dict[str, str]
    dates: dict[str, Any]


def patient_milestones(sessions: Any, clinic_id: str, patient_id: UUID) -> PatientMilestones:
    """From the capture-sessions read model (``projections/capture_sessions.py``): an image
    uploaded into a session belongs to that session's milestone; the milestone's date is the
    session's (the latest session when a milestone was photographed twice)."""
    with sessions.datastore.transaction(commit=False) as curs:
        curs.execute(SQL("SELECT milestone, filled, coalesce(scheduled_at, opened_at) AS at"
                         " FROM {} WHERE clinic_id = %s AND patient_id = %s ORDER BY at"
                         ).format(sessions.sessions), (clinic_id, patient_id))
        rows = curs.fetchall()
    of_image: dict[str, str] = {}
    dates: dict[str, Any] = {}
    for row in rows:
        dates[row["milestone"]] = row["at"].date()
        for image_id in (row["filled"] or {}).values():
            of_image[str(image_id)] = row["milestone"]
    return PatientMilestones(of_image, dates)
