"""The retention job: find images whose retention (or soft-delete recovery window) ended and
destroy them, each exactly once, safely from cron on several machines at once.

Per image, under a Postgres session advisory lock (another machine working on the same image
skips it; a killed process's lock goes with its connection):

1. ``retention_destructions`` ledger row (started), so a rerun finishes what a crash left;
2. tombstone + destruction certificate in one transaction (``Imaging.destroy_image``; the
   legal-hold check sits there too) — skipped when the image is already tombstoned;
3. crypto-shred: delete the data key;
4. delete the blobs (original, derivatives, tiles);
5. ledger row finished.

Steps 3-5 are idempotent, and step 2 runs only while the image is not yet DESTROYED, so a
run killed anywhere and run again destroys every image exactly once and leaves none
half-destroyed. Candidates come from the gallery read model (category, capture date, the
patient's birth date and last activity) and unfinished ledger rows; each is re-checked on
the aggregate (legal hold, still deleted) before anything is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import structlog
from eventsourcing.application import AggregateNotFoundError
from psycopg.sql import SQL
from psycopg_pool import ConnectionPool

from adapters import schema_lock
from adapters.event_store import connection_pool
from api.destruction import subjects_to_shred
from api.services import Services
from domain.errors import Conflict, Gone
from domain.image import ImageStatus
from domain.retention import Basis, ImageFacts, RetentionPolicy, decide
from domain.values import Actor

log = structlog.get_logger("orthovault.retention")

RETENTION_USER = "system:retention"
RETENTION_ROLE = "super_admin"  # the job acts for the clinic whose policy it applies
_LOCK_CLASS = 0x0E7E  # advisory-lock namespace of this job (first int4 of the two-int form)

LEDGER_SQL = """
CREATE TABLE IF NOT EXISTS retention_destructions (
    image_id uuid PRIMARY KEY,
    clinic_id text NOT NULL,
    basis text NOT NULL,
    due text,
    run_id text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
"""

Step = Callable[[str, UUID], None]  # (step name, image id): a hook for progress and tests


@dataclass(frozen=True)
class Candidate:
    image_id: UUID
    clinic_id: str
    patient_id: UUID
    basis: str
    due: str | None
    why: str
    resume: bool = False  # an unfinished destruction from an earlier run


@dataclass
class RunReport:
    run_id: str
    planned: list[Candidate] = field(default_factory=list)
    destroyed: list[UUID] = field(default_factory=list)
    finished: list[UUID] = field(default_factory=list)  # resumed from an earlier run
    held: list[UUID] = field(default_factory=list)  # due, but on legal hold
    busy: list[UUID] = field(default_factory=list)  # another runner holds the lock
    skipped: list[UUID] = field(default_factory=list)  # no longer due when re-checked


def _lock_key(image_id: UUID) -> int:
    return int.from_bytes(image_id.bytes[:4], "big", signed=True)


class RetentionJob:
    def __init__(self, services: Services, *, pool: ConnectionPool | None = None) -> None:
        self.services = services
        self.app = services.app
        self._own_pool = pool is None
        self.pool = pool or connection_pool(services.env, max_size=2)
        with self.pool.connection() as conn, conn.transaction():
            schema_lock.lock_in(conn)
            conn.execute(LEDGER_SQL)
        self._policies: dict[str, RetentionPolicy] = {}

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()

    def __enter__(self) -> RetentionJob:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- planning ------------------------------------------------------------------------

    def _policy(self, clinic_id: str) -> RetentionPolicy:
        if clinic_id not in self._policies:
            self._policies[clinic_id] = self.app.retention_policy(clinic_id)
        return self._policies[clinic_id]

    def _unfinished(self, clinic_id: str | None) -> list[Candidate]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT l.image_id, l.clinic_id, l.basis, l.due FROM retention_destructions l"
                " WHERE l.finished_at IS NULL AND (%(c)s::text IS NULL OR l.clinic_id = %(c)s)"
                " ORDER BY l.started_at", {"c": clinic_id}).fetchall()
        return [Candidate(image_id=r[0], clinic_id=r[1], patient_id=uuid.UUID(int=0),
                          basis=r[2], due=r[3], why="unfinished destruction", resume=True)
                for r in rows]

    def _rows(self, clinic_id: str | None) -> list[tuple[Any, ...]]:
        gallery = self.services.gallery
        query = SQL(
            "SELECT i.image_id, i.clinic_id, i.patient_id, i.category, i.captured_at, i.status,"
            " p.birth_date, max(i.captured_at) OVER (PARTITION BY i.patient_id)"
            " FROM {images} i JOIN {patients} p ON p.patient_id = i.patient_id"
            " WHERE (%(c)s::text IS NULL OR i.clinic_id = %(c)s)"
            " ORDER BY i.clinic_id, i.patient_id, i.image_id"
        ).format(images=gallery.images, patients=gallery.patients)
        with gallery.datastore.transaction(commit=False) as curs:
            curs.execute(query, {"c": clinic_id})
            return [tuple(row.values()) if isinstance(row, dict) else tuple(row)
                    for row in curs.fetchall()]

    def plan(self, now: datetime, clinic_id: str | None = None,
             report: RunReport | None = None) -> list[Candidate]:
        """What would be destroyed now and why (nothing is written)."""
        report = report or RunReport(run_id="plan")
        candidates = self._unfinished(clinic_id)
        seen = {c.image_id for c in candidates}
        for (image_id, clinic, patient_id, category, captured_at, status, birth_date,
             last) in self._rows(clinic_id):
            if image_id in seen:
                continue
            policy = self._policy(clinic)
            deleted_at = (self.app.soft_deleted_at(image_id)
                          if status == ImageStatus.DELETED.value else None)
            facts = ImageFacts(image_id=image_id, clinic_id=clinic, patient_id=patient_id,
                               category=category, captured_on=_day(captured_at),
                               last_activity=_day(last), birth_date=birth_date,
                               deleted_at=deleted_at, on_hold=False)
            decision = decide(policy, facts, now)
            if not decision.destroy:
                continue
            if self.app.on_legal_hold(image_id, patient_id):
                report.held.append(image_id)
                continue
            candidates.append(Candidate(
                image_id=image_id, clinic_id=clinic, patient_id=patient_id,
                basis=decision.basis.value if decision.basis else "",
                due=decision.due.isoformat() if decision.due else None, why=decision.why))
        return candidates

    # ---- running ---------------------------------------------------------------------------

    def run(self, now: datetime | None = None, *, clinic_id: str | None = None,
            dry_run: bool = False, on_step: Step | None = None) -> RunReport:
        now = now or datetime.now(UTC)
        report = RunReport(run_id=uuid.uuid4().hex)
        report.planned = self.plan(now, clinic_id, report)
        if dry_run:
            return report
        step = on_step or (lambda _name, _id: None)
        position = 0
        for candidate in report.planned:
            position = max(position, self._destroy_one(candidate, now, report, step))
        self.services.wait_for_read_models(position)
        log.info("retention_run", run_id=report.run_id, destroyed=len(report.destroyed),
                 finished=len(report.finished), held=len(report.held),
                 busy=len(report.busy), skipped=len(report.skipped))
        return report

    def _destroy_one(self, candidate: Candidate, now: datetime, report: RunReport,
                     step: Step) -> int:
        image_id = candidate.image_id
        with self.pool.connection() as lock_conn:
            locked = lock_conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                       (_LOCK_CLASS, _lock_key(image_id))).fetchone()[0]
            if not locked:
                report.busy.append(image_id)
                return 0
            try:
                return self._destroy_locked(candidate, now, report, step)
            finally:
                lock_conn.execute("SELECT pg_advisory_unlock(%s, %s)",
                                  (_LOCK_CLASS, _lock_key(image_id)))

    def _ledger_state(self, image_id: UUID) -> str | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT finished_at IS NOT NULL FROM retention_destructions"
                               " WHERE image_id = %s", (image_id,)).fetchone()
        return None if row is None else ("finished" if row[0] else "started")

    def _destroy_locked(self, candidate: Candidate, now: datetime, report: RunReport,
                        step: Step) -> int:
        image_id = candidate.image_id
        ledger = self._ledger_state(image_id)
        if ledger == "finished":
            report.skipped.append(image_id)  # another runner finished it meanwhile
            return 0
        actor = Actor(user_id=RETENTION_USER, role=RETENTION_ROLE,
                      clinic_id=candidate.clinic_id, request_id=f"retention-{report.run_id}")
        tombstoned = self._tombstoned(image_id)
        if not tombstoned and not self._still_due(candidate, now, report):
            return 0
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO retention_destructions (image_id, clinic_id, basis, due, run_id)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (image_id) DO NOTHING",
                (image_id, candidate.clinic_id, candidate.basis, candidate.due, report.run_id))
        step("started", image_id)
        position = 0
        if not tombstoned:
            try:
                position = self.app.destroy_image(
                    actor, image_id, "retention_expired", basis=candidate.basis,
                    policy=self._policy(candidate.clinic_id).as_dict(), due=candidate.due,
                ).position
            except Conflict as refused:  # a legal hold placed since the plan was made
                self._forget(image_id)
                if refused.code != "legal_hold":
                    raise
                report.held.append(image_id)
                return 0
            step("tombstoned", image_id)
        self.app.key_store.destroy(subjects_to_shred(self.services, image_id))
        step("key_destroyed", image_id)
        self.services.blobs.delete_subject(image_id)
        step("blobs_deleted", image_id)
        with self.pool.connection() as conn:
            conn.execute("UPDATE retention_destructions SET finished_at = now()"
                         " WHERE image_id = %s", (image_id,))
        (report.finished if candidate.resume or tombstoned else report.destroyed).append(
            image_id)
        step("finished", image_id)
        return position

    def _forget(self, image_id: UUID) -> None:
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM retention_destructions WHERE image_id = %s"
                         " AND finished_at IS NULL", (image_id,))

    def _tombstoned(self, image_id: UUID) -> bool:
        """Whether the tombstone is already written (the key may be gone too)."""
        if self.app.key_store.is_destroyed(image_id):
            return True
        try:
            image = self.app.repository.get(image_id)
        except Gone:
            return True
        except AggregateNotFoundError:
            return False
        return image.status == ImageStatus.DESTROYED.value

    def _still_due(self, candidate: Candidate, now: datetime, report: RunReport) -> bool:
        """Re-check on the aggregate: a restore or a hold since the plan keeps the image."""
        try:
            image = self.app.repository.get(candidate.image_id)
        except AggregateNotFoundError:
            self._forget(candidate.image_id)
            report.skipped.append(candidate.image_id)
            return False
        if self.app.on_legal_hold(image.id, image.patient_id):
            self._forget(candidate.image_id)
            report.held.append(image.id)
            return False
        if candidate.basis == Basis.RECOVERY_WINDOW_ENDED.value and not image.is_deleted:
            self._forget(candidate.image_id)
            report.skipped.append(image.id)  # restored inside its window
            return False
        return True


def _day(value: datetime | date) -> date:
    return value.astimezone(UTC).date() if isinstance(value, datetime) else value
