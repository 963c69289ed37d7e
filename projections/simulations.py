"""Read model of simulations: a patient's forecasts, plans, previews and set-ups at a glance.

One row per simulation with its current revision and status; the parameters and results
stay in the (encrypted) events and are read from the aggregate. Rows carry no PHI beyond
the clinician's own label.
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

from domain.simulation import Simulation

MAX_ROWS = 500


@dataclass(frozen=True)
class SimulationRow:
    id: UUID
    clinic_id: str
    patient_id: UUID
    kind: str
    label: str
    status: str
    revision: int
    requested_at: datetime
    updated_at: datetime
    failure_code: str | None


class SimulationsView(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        self.rows = SQL("{}.{}").format(Identifier(self.datastore.schema),
                                        Identifier(f"{prefix}_simulations"))
        self.sql_create_statements.extend([
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (simulation_id uuid PRIMARY KEY,"
                " clinic_id text NOT NULL, patient_id uuid NOT NULL, kind text NOT NULL,"
                " label text NOT NULL, status text NOT NULL, revision integer NOT NULL,"
                " requested_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,"
                " failure_code text)"
            ).format(self.rows),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, patient_id, requested_at)")
            .format(Identifier(f"{prefix}_simulations_by_patient"), self.rows),
        ])

    def apply(self, tracking: Tracking, statement: Any, params: dict[str, Any]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(statement, params)
            self._insert_tracking(curs, tracking)

    def for_patient(self, clinic_id: str, patient_id: UUID, kind: str | None = None
                    ) -> list[SimulationRow]:
        """Newest first; always filtered by the caller's clinic."""
        conditions = [SQL("clinic_id = %(clinic)s"), SQL("patient_id = %(patient)s")]
        params: dict[str, Any] = {"clinic": clinic_id, "patient": patient_id,
                                  "limit": MAX_ROWS}
        if kind is not None:
            conditions.append(SQL("kind = %(kind)s"))
            params["kind"] = kind
        statement = SQL("SELECT * FROM {} WHERE {} ORDER BY requested_at DESC, simulation_id"
                        " LIMIT %(limit)s").format(self.rows, SQL(" AND ").join(conditions))
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            return [SimulationRow(
                id=r["simulation_id"], clinic_id=r["clinic_id"], patient_id=r["patient_id"],
                kind=r["kind"], label=r["label"], status=r["status"], revision=r["revision"],
                requested_at=r["requested_at"], updated_at=r["updated_at"],
                failure_code=r["failure_code"],
            ) for r in curs.fetchall()]


class SimulationsProjection(Projection[SimulationsView]):
    name = "simulations_v1"
    topics = tuple(get_topic(c) for c in (
        Simulation.Requested, Simulation.Revised, Simulation.Completed, Simulation.Failed,
    ))

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)  # shredded placeholders and the like

    @process_event.register
    def _(self, event: Simulation.Requested, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL(
            "INSERT INTO {} (simulation_id, clinic_id, patient_id, kind, label, status,"
            " revision, requested_at, updated_at) VALUES (%(id)s, %(clinic)s, %(patient)s,"
            " %(kind)s, %(label)s, 'pending', 1, %(at)s, %(at)s)").format(self.view.rows), {
            "id": event.originator_id, "clinic": event.clinic_id, "patient": event.patient_id,
            "kind": event.kind, "label": event.label, "at": event.timestamp,
        })

    @process_event.register
    def _(self, event: Simulation.Revised, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL(
            "UPDATE {} SET status = 'pending', revision = %(revision)s, label = %(label)s,"
            " updated_at = %(at)s, failure_code = NULL WHERE simulation_id = %(id)s"
        ).format(self.view.rows), {"id": event.originator_id, "revision": event.revision,
                                   "label": event.label, "at": event.timestamp})

    @process_event.register
    def _(self, event: Simulation.Completed, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL(
            "UPDATE {} SET status = 'completed', updated_at = %(at)s"
            " WHERE simulation_id = %(id)s AND revision = %(revision)s"
        ).format(self.view.rows), {"id": event.originator_id, "revision": event.revision,
                                   "at": event.timestamp})

    @process_event.register
    def _(self, event: Simulation.Failed, tracking: Tracking) -> None:
        self.view.apply(tracking, SQL(
            "UPDATE {} SET status = 'failed', failure_code = %(code)s, updated_at = %(at)s"
            " WHERE simulation_id = %(id)s AND revision = %(revision)s"
        ).format(self.view.rows), {"id": event.originator_id, "revision": event.revision,
                                   "code": event.code, "at": event.timestamp})
