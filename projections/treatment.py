"""The treatment read model: milestones per patient, explicit image links, and which
capture session (and so which milestone kind) each image was taken in.

Which phase an image is in is computed per query by ``domain.treatment.assign_phases``
from these rows and the gallery's capture dates, so a milestone recorded late (the
treatment module publishes after the appointment) re-phases older images at once without
rewriting any row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from domain.capture import CaptureSession
from domain.image import Image
from domain.treatment import TreatmentPlan


@dataclass(frozen=True)
class MilestoneRow:
    milestone_id: str
    kind: str
    label: str
    occurred_on: date
    source: str


@dataclass(frozen=True)
class PatientPhases:
    milestones: list[MilestoneRow]
    links: dict[UUID, str]
    sessions: dict[UUID, tuple[str, date | None]]  # image id → (milestone kind, session day)


class TreatmentView(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        schema = Identifier(self.datastore.schema)

        def table(name: str) -> Any:
            return SQL("{}.{}").format(schema, Identifier(f"{prefix}_{name}"))

        self.milestones, self.links = table("milestones"), table("links")
        self.sessions, self.session_images = table("sessions"), table("session_images")
        self.sql_create_statements.extend([
            SQL("CREATE TABLE IF NOT EXISTS {} (plan_id uuid NOT NULL, milestone_id text NOT NULL,"
                " clinic_id text NOT NULL, patient_id uuid NOT NULL, kind text NOT NULL,"
                " label text NOT NULL, occurred_on date NOT NULL, source text NOT NULL,"
                " PRIMARY KEY (plan_id, milestone_id))").format(self.milestones),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, patient_id)").format(
                Identifier(f"{prefix}_milestones_by_patient"), self.milestones),
            SQL("CREATE TABLE IF NOT EXISTS {} (image_id uuid PRIMARY KEY, clinic_id text NOT NULL,"
                " patient_id uuid NOT NULL, milestone_id text NOT NULL)").format(self.links),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, patient_id)").format(
                Identifier(f"{prefix}_links_by_patient"), self.links),
            SQL("CREATE TABLE IF NOT EXISTS {} (session_id uuid PRIMARY KEY,"
                " clinic_id text NOT NULL, patient_id uuid NOT NULL, kind text NOT NULL,"
                " session_on date)").format(self.sessions),
            SQL("CREATE TABLE IF NOT EXISTS {} (image_id uuid PRIMARY KEY,"
                " session_id uuid NOT NULL, clinic_id text NOT NULL, patient_id uuid NOT NULL)"
                ).format(self.session_images),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, patient_id)").format(
                Identifier(f"{prefix}_session_images_by_patient"), self.session_images),
        ])

    def apply(self, tracking: Tracking, *statements: tuple[Any, Any]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for sql, values in statements:
                curs.execute(sql, values)
            self._insert_tracking(curs, tracking)

    def phases_of_patient(self, clinic_id: str, patient_id: UUID) -> PatientPhases:
        params = {"clinic": clinic_id, "patient": patient_id}
        where = SQL("clinic_id = %(clinic)s AND patient_id = %(patient)s")
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT * FROM {} WHERE {} ORDER BY occurred_on, milestone_id")
                         .format(self.milestones, where), params)
            milestones = [MilestoneRow(r["milestone_id"], r["kind"], r["label"],
                                       r["occurred_on"], r["source"]) for r in curs.fetchall()]
            curs.execute(SQL("SELECT image_id, milestone_id FROM {} WHERE {}").format(
                self.links, where), params)
            links = {r["image_id"]: r["milestone_id"] for r in curs.fetchall()}
            curs.execute(SQL(
                "SELECT i.image_id, s.kind, s.session_on FROM {} i JOIN {} s USING (session_id)"
                " WHERE i.clinic_id = %(clinic)s AND i.patient_id = %(patient)s").format(
                self.session_images, self.sessions), params)
            sessions = {r["image_id"]: (r["kind"], r["session_on"]) for r in curs.fetchall()}
        return PatientPhases(milestones, links, sessions)


class TreatmentProjection(Projection[TreatmentView]):
    name = "treatment_v1"
    topics = tuple(get_topic(cls) for cls in (
        TreatmentPlan.MilestoneRecorded, TreatmentPlan.ImageLinked, TreatmentPlan.ImageUnlinked,
        CaptureSession.Opened, CaptureSession.SlotFilled, Image.Destroyed,
    ))

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, event: TreatmentPlan.MilestoneRecorded, tracking: Tracking) -> None:
        # A correction (same milestone id, new date or label) replaces the row.
        self.view.apply(tracking, (SQL(
            "INSERT INTO {} (plan_id, milestone_id, clinic_id, patient_id, kind, label,"
            " occurred_on, source) VALUES (%(plan)s, %(milestone)s, %(clinic)s, %(patient)s,"
            " %(kind)s, %(label)s, %(on)s, %(source)s) ON CONFLICT (plan_id, milestone_id)"
            " DO UPDATE SET kind = excluded.kind, label = excluded.label,"
            " occurred_on = excluded.occurred_on, source = excluded.source").format(
            self.view.milestones), {
            "plan": event.originator_id, "milestone": event.milestone_id,
            "clinic": event.clinic_id, "patient": event.patient_id, "kind": event.kind,
            "label": event.label, "on": event.occurred_on, "source": event.source}))

    @process_event.register
    def _(self, event: TreatmentPlan.ImageLinked, tracking: Tracking) -> None:
        self.view.apply(tracking, (SQL(
            "INSERT INTO {} (image_id, clinic_id, patient_id, milestone_id) VALUES (%(image)s,"
            " %(clinic)s, %(patient)s, %(milestone)s) ON CONFLICT (image_id) DO UPDATE SET"
            " milestone_id = excluded.milestone_id").format(self.view.links), {
            "image": event.image_id, "clinic": event.clinic_id, "patient": event.patient_id,
            "milestone": event.milestone_id}))

    @process_event.register
    def _(self, event: TreatmentPlan.ImageUnlinked, tracking: Tracking) -> None:
        self.view.apply(tracking, (SQL("DELETE FROM {} WHERE image_id = %(image)s").format(
            self.view.links), {"image": event.image_id}))

    @process_event.register
    def _(self, event: CaptureSession.Opened, tracking: Tracking) -> None:
        day = (event.scheduled_at or event.timestamp).date()
        self.view.apply(tracking, (SQL(
            "INSERT INTO {} (session_id, clinic_id, patient_id, kind, session_on) VALUES"
            " (%(id)s, %(clinic)s, %(patient)s, %(kind)s, %(on)s)").format(self.view.sessions), {
            "id": event.originator_id, "clinic": event.clinic_id, "patient": event.patient_id,
            "kind": event.milestone, "on": day}))

    @process_event.register
    def _(self, event: CaptureSession.SlotFilled, tracking: Tracking) -> None:
        self.view.apply(tracking, (SQL(
            "INSERT INTO {} (image_id, session_id, clinic_id, patient_id) SELECT %(image)s,"
            " session_id, clinic_id, patient_id FROM {} WHERE session_id = %(id)s"
            " ON CONFLICT (image_id) DO UPDATE SET session_id = excluded.session_id").format(
            self.view.session_images, self.view.sessions),
            {"id": event.originator_id, "image": event.image_id}))

    @process_event.register
    def _(self, event: Image.Destroyed, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            (SQL("DELETE FROM {} WHERE image_id = %(image)s").format(self.view.links),
             {"image": event.originator_id}),
            (SQL("DELETE FROM {} WHERE image_id = %(image)s").format(self.view.session_images),
             {"image": event.originator_id}),
        )
