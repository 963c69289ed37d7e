"""Read model of capture sessions: the practice's daily list of who still needs photos."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from domain.capture import (
    CaptureSession,
    Completeness,
    PhotoProtocol,
    completeness,
    slot_from_dict,
)


@dataclass(frozen=True)
class SessionRow:
    id: UUID
    clinic_id: str
    patient_id: UUID
    protocol_name: str
    milestone: str
    appointment_id: str | None
    chair: str | None
    scheduled_at: datetime | None
    opened_at: datetime
    closed: bool
    slots: list[dict[str, Any]]
    filled: dict[str, str]

    @property
    def completeness(self) -> Completeness:
        return completeness([slot_from_dict(s) for s in self.slots], set(self.filled))


class CaptureSessionsView(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        self.sessions = SQL("{}.{}").format(Identifier(self.datastore.schema),
                                            Identifier(f"{prefix}_sessions"))
        self.protocols = SQL("{}.{}").format(Identifier(self.datastore.schema),
                                             Identifier(f"{prefix}_protocols"))
        self.sql_create_statements.extend([
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (protocol_id uuid PRIMARY KEY,"
                " clinic_id text NOT NULL, name text NOT NULL, slots jsonb NOT NULL,"
                " retired boolean NOT NULL DEFAULT false)"
            ).format(self.protocols),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (session_id uuid PRIMARY KEY,"
                " clinic_id text NOT NULL, patient_id uuid NOT NULL, protocol_name text NOT NULL,"
                " milestone text NOT NULL, appointment_id text, chair text,"
                " scheduled_at timestamptz, opened_at timestamptz NOT NULL,"
                " closed boolean NOT NULL DEFAULT false, slots jsonb NOT NULL,"
                " filled jsonb NOT NULL DEFAULT '{{}}'::jsonb)"
            ).format(self.sessions),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, (coalesce(scheduled_at,"
                " opened_at)))").format(Identifier(f"{prefix}_sessions_by_day"), self.sessions),
        ])

    def apply(self, tracking: Tracking, statement: Any, params: dict[str, Any]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(statement, params)
            self._insert_tracking(curs, tracking)

    def on_day(self, clinic_id: str, day: date, chair: str | None = None,
               include_closed: bool = False) -> list[SessionRow]:
        start = datetime.combine(day, time.min).astimezone()
        conditions = [SQL("clinic_id = %(clinic)s"),
                      SQL("coalesce(scheduled_at, opened_at) >= %(start)s"),
                      SQL("coalesce(scheduled_at, opened_at) < %(end)s")]
        params: dict[str, Any] = {"clinic": clinic_id, "start": start,
                                  "end": start + timedelta(days=1)}
        if chair is not None:
            conditions.append(SQL("chair = %(chair)s"))
            params["chair"] = chair
        if not include_closed:
            conditions.append(SQL("NOT closed"))
        statement = SQL("SELECT * FROM {} WHERE {} ORDER BY coalesce(scheduled_at, opened_at),"
                        " session_id").format(self.sessions, SQL(" AND ").join(conditions))
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            rows = curs.fetchall()
        return [SessionRow(
            id=r["session_id"], clinic_id=r["clinic_id"], patient_id=r["patient_id"],
            protocol_name=r["protocol_name"], milestone=r["milestone"],
            appointment_id=r["appointment_id"], chair=r["chair"],
            scheduled_at=r["scheduled_at"], opened_at=r["opened_at"], closed=r["closed"],
            slots=r["slots"], filled=r["filled"],
        ) for r in rows]

    def protocol_ids(self, clinic_id: str, include_retired: bool = False) -> list[UUID]:
        statement = SQL("SELECT protocol_id FROM {} WHERE clinic_id = %s{} ORDER BY name"
                        ).format(self.protocols, SQL("" if include_retired else
                                                     " AND NOT retired"))
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, (clinic_id,))
            return [row["protocol_id"] for row in curs.fetchall()]

    def open_session_for_chair(self, clinic_id: str, chair: str, day: date) -> SessionRow | None:
        """The chair's open session of the day (the earliest still incomplete)."""
        for row in self.on_day(clinic_id, day, chair=chair):
            if not row.completeness.complete:
                return row
        return None


class CaptureSessionsProjection(Projection[CaptureSessionsView]):
    name = "capture_sessions_v1"
    topics = tuple(get_topic(c) for c in (
        CaptureSession.Opened, CaptureSession.SlotFilled, CaptureSession.Closed,
        PhotoProtocol.Defined, PhotoProtocol.Revised, PhotoProtocol.Retired,
    ))

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, event: CaptureSession.Opened, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL(
            "INSERT INTO {} (session_id, clinic_id, patient_id, protocol_name, milestone,"
            " appointment_id, chair, scheduled_at, opened_at, slots) VALUES (%(id)s, %(clinic)s,"
            " %(patient)s, %(protocol)s, %(milestone)s, %(appointment)s, %(chair)s,"
            " %(scheduled)s, %(opened)s, %(slots)s::jsonb)").format(self.view.sessions), {
            "id": event.originator_id, "clinic": event.clinic_id, "patient": event.patient_id,
            "protocol": event.protocol_name, "milestone": event.milestone,
            "appointment": event.appointment_id, "chair": event.chair,
            "scheduled": event.scheduled_at, "opened": event.timestamp,
            "slots": json.dumps(event.slots),
        })

    @process_event.register
    def _(self, event: CaptureSession.SlotFilled, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL(
            "UPDATE {} SET filled = filled || jsonb_build_object(%(code)s::text, %(image)s::text)"
            " WHERE session_id = %(id)s").format(self.view.sessions),
            {"id": event.originator_id, "code": event.code, "image": str(event.image_id)})

    @process_event.register
    def _(self, event: CaptureSession.Closed, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL("UPDATE {} SET closed = true WHERE session_id = %(id)s")
                        .format(self.view.sessions), {"id": event.originator_id})

    @process_event.register
    def _(self, event: PhotoProtocol.Defined, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL(
            "INSERT INTO {} (protocol_id, clinic_id, name, slots) VALUES (%(id)s, %(clinic)s,"
            " %(name)s, %(slots)s::jsonb)").format(self.view.protocols), {
            "id": event.originator_id, "clinic": event.clinic_id, "name": event.name,
            "slots": json.dumps(event.slots)})

    @process_event.register
    def _(self, event: PhotoProtocol.Revised, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL(
            "UPDATE {} SET name = %(name)s, slots = %(slots)s::jsonb WHERE protocol_id = %(id)s"
        ).format(self.view.protocols), {"id": event.originator_id, "name": event.name,
                                         "slots": json.dumps(event.slots)})

    @process_event.register
    def _(self, event: PhotoProtocol.Retired, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL("UPDATE {} SET retired = true WHERE protocol_id = %(id)s")
                        .format(self.view.protocols), {"id": event.originator_id})
