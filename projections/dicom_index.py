"""The DICOM index: studies, series and instances per clinic, as DICOMweb and DIMSE ask.

Built from ``Image.Captured`` (the image, its patient, its media type) and
``Image.MetadataExtracted(source="dicom")`` (its UIDs and attributes), plus
``Patient.Registered`` (the external id a modality's PatientID is matched against) and the
reconciliation items' life cycle. Patient demographics here are PHI: they live only in this
read model and in sealed event state. Like the gallery, every row change commits with its
tracking record, and every query filters by clinic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Composed, Identifier

from domain.image import Image, ImageCategory
from domain.patient import Patient
from domain.reconciliation import DICOM_SOURCE, DicomReconciliation, ReconciliationStatus

DICOM_MEDIA_TYPE = "application/dicom"
MAX_RESULTS = 1000


@dataclass(frozen=True)
class IndexedInstance:
    image_id: UUID
    clinic_id: str
    patient_id: UUID
    status: str
    category: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str | None
    transfer_syntax_uid: str | None
    modality: str | None
    rows: int | None
    columns: int | None
    frames: int
    study_date: date | None
    study_description: str | None
    series_description: str | None
    external_id: str | None
    family_name: str | None
    given_name: str | None
    birth_date: date | None
    sex: str | None
    study_time: str | None = None
    accession_number: str | None = None
    series_number: int | None = None
    instance_number: int | None = None


@dataclass(frozen=True)
class PatientDemographics:
    """What a modality worklist shows of a patient (PHI)."""

    patient_id: UUID
    external_id: str
    family_name: str
    given_name: str
    birth_date: date
    sex: str


@dataclass(frozen=True)
class IndexedStudy:
    study_uid: str
    patient_id: UUID
    study_date: date | None
    study_description: str | None
    modalities: list[str]
    series_count: int
    instance_count: int
    external_id: str | None
    family_name: str | None
    given_name: str | None
    birth_date: date | None
    sex: str | None
    study_time: str | None = None
    accession_number: str | None = None


@dataclass(frozen=True)
class IndexedSeries:
    study_uid: str
    series_uid: str
    modality: str | None
    series_description: str | None
    instance_count: int
    series_number: int | None = None


@dataclass(frozen=True)
class StudyQuery:
    """QIDO matching keys, already parsed. Wildcards use DICOM's ``*`` and ``?``."""

    study_uids: list[str] | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    modalities: list[str] | None = None
    accession_number: str | None = None
    study_description: str | None = None
    hide_radiographs: bool = False
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class OpenReconciliation:
    item_id: UUID
    patient_id: UUID | None
    reasons: list[str]
    sop_uid: str | None
    study_uid: str | None
    modality: str | None
    opened_at: datetime


def wildcard_to_like(pattern: str) -> str:
    """DICOM wildcard matching (``*`` any run, ``?`` one character) as SQL LIKE."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


class DicomIndexView(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        schema = Identifier(self.datastore.schema)
        self.patients_table = SQL("{}.{}").format(schema, Identifier(f"{prefix}_patients"))
        self.instances_table = SQL("{}.{}").format(schema, Identifier(f"{prefix}_instances"))
        self.items_table = SQL("{}.{}").format(schema, Identifier(f"{prefix}_reconciliations"))
        self.sql_create_statements.extend([
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " patient_id uuid PRIMARY KEY, clinic_id text NOT NULL, external_id text NOT NULL,"
                " family_name text NOT NULL, given_name text NOT NULL, birth_date date NOT NULL,"
                " sex text NOT NULL)"
            ).format(self.patients_table),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, external_id)").format(
                Identifier(f"{prefix}_patients_by_external_id"), self.patients_table
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " image_id uuid PRIMARY KEY, clinic_id text NOT NULL, patient_id uuid NOT NULL,"
                " status text NOT NULL, category text NOT NULL, captured_at timestamptz NOT NULL,"
                " study_uid text, series_uid text, sop_uid text, sop_class_uid text,"
                " transfer_syntax_uid text, modality text, rows int, columns int,"
                " frames int NOT NULL DEFAULT 1, study_date date, study_description text,"
                " series_description text)"
            ).format(self.instances_table),
            # Added after the table: rows filed before stay NULL until the index is rebuilt.
            SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS study_time text,"
                " ADD COLUMN IF NOT EXISTS accession_number text,"
                " ADD COLUMN IF NOT EXISTS series_number int,"
                " ADD COLUMN IF NOT EXISTS instance_number int").format(self.instances_table),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, study_uid, series_uid)").format(
                Identifier(f"{prefix}_instances_by_study"), self.instances_table
            ),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, sop_uid)").format(
                Identifier(f"{prefix}_instances_by_sop"), self.instances_table
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " item_id uuid PRIMARY KEY, clinic_id text NOT NULL, patient_id uuid,"
                " status text NOT NULL, reasons text[] NOT NULL, sop_uid text, study_uid text,"
                " modality text, opened_at timestamptz NOT NULL)"
            ).format(self.items_table),
        ])

    def apply(self, tracking: Tracking, statement: Any, params: dict[str, Any]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(statement, params)
            self._insert_tracking(curs, tracking)

    # ---- queries ---------------------------------------------------------------------

    def patients_by_external_id(self, clinic_id: str, external_id: str) -> list[UUID]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT patient_id FROM {} WHERE clinic_id = %s AND external_id = %s"
                    " ORDER BY patient_id").format(self.patients_table),
                (clinic_id, external_id.strip()),
            )
            return [row["patient_id"] for row in curs.fetchall()]

    def demographics(self, clinic_id: str,
                     patient_ids: list[UUID]) -> dict[UUID, PatientDemographics]:
        if not patient_ids:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT patient_id, external_id, family_name, given_name, birth_date, sex"
                    " FROM {} WHERE clinic_id = %s AND patient_id = ANY(%s)"
                    ).format(self.patients_table),
                (clinic_id, list(patient_ids)),
            )
            return {row["patient_id"]: PatientDemographics(**row) for row in curs.fetchall()}

    def _joined(self) -> Composed:
        return SQL("{} i LEFT JOIN {} p ON p.patient_id = i.patient_id").format(
            self.instances_table, self.patients_table
        )

    def _conditions(self, clinic_id: str, query: StudyQuery) -> tuple[list[Any], dict[str, Any]]:
        conditions: list[Any] = [
            SQL("i.clinic_id = %(clinic)s"), SQL("i.status = 'active'"),
            SQL("i.sop_uid IS NOT NULL"),
        ]
        params: dict[str, Any] = {"clinic": clinic_id}
        if query.hide_radiographs:
            # Every X-ray counts: projection radiographs and CBCT volumes alike.
            conditions.append(SQL("i.category <> ALL(%(xray)s)"))
            params["xray"] = [ImageCategory.RADIOGRAPH.value, ImageCategory.SCAN.value]
        if query.study_uids:
            conditions.append(SQL("i.study_uid = ANY(%(studies)s)"))
            params["studies"] = query.study_uids
        if query.patient_id:
            conditions.append(SQL("p.external_id LIKE %(pid)s"))
            params["pid"] = wildcard_to_like(query.patient_id)
        if query.patient_name:
            conditions.append(SQL("(p.family_name || '^' || p.given_name) ILIKE %(name)s"))
            params["name"] = wildcard_to_like(query.patient_name)
        if query.accession_number:
            conditions.append(SQL("i.accession_number LIKE %(accession)s"))
            params["accession"] = wildcard_to_like(query.accession_number)
        if query.study_description:
            conditions.append(SQL("i.study_description ILIKE %(description)s"))
            params["description"] = wildcard_to_like(query.study_description)
        if query.date_from:
            conditions.append(SQL("i.study_date >= %(from)s"))
            params["from"] = query.date_from
        if query.date_to:
            conditions.append(SQL("i.study_date <= %(to)s"))
            params["to"] = query.date_to
        return conditions, params

    def studies(self, clinic_id: str, query: StudyQuery) -> list[IndexedStudy]:
        conditions, params = self._conditions(clinic_id, query)
        having = SQL("")
        if query.modalities:
            having = SQL(" HAVING array_agg(DISTINCT i.modality) && %(modalities)s::text[]")
            params["modalities"] = query.modalities
        params["limit"], params["offset"] = min(query.limit, MAX_RESULTS), query.offset
        statement = SQL(
            "SELECT i.study_uid, min(i.patient_id::text)::uuid AS patient_id,"
            " min(i.study_date) AS study_date, min(i.study_description) AS study_description,"
            " array_remove(array_agg(DISTINCT i.modality), NULL) AS modalities,"
            " count(DISTINCT i.series_uid) AS series_count, count(*) AS instance_count,"
            " min(p.external_id) AS external_id, min(p.family_name) AS family_name,"
            " min(p.given_name) AS given_name, min(p.birth_date) AS birth_date,"
            " min(p.sex) AS sex, min(i.study_time) AS study_time,"
            " min(i.accession_number) AS accession_number"
            " FROM {} WHERE {} GROUP BY i.study_uid{}"
            " ORDER BY min(i.study_date) DESC NULLS LAST, i.study_uid"
            " LIMIT %(limit)s OFFSET %(offset)s"
        ).format(self._joined(), SQL(" AND ").join(conditions), having)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            rows = curs.fetchall()
        return [
            IndexedStudy(
                study_uid=r["study_uid"], patient_id=r["patient_id"], study_date=r["study_date"],
                study_description=r["study_description"], modalities=sorted(r["modalities"]),
                series_count=r["series_count"], instance_count=r["instance_count"],
                external_id=r["external_id"], family_name=r["family_name"],
                given_name=r["given_name"], birth_date=r["birth_date"], sex=r["sex"],
                study_time=r["study_time"], accession_number=r["accession_number"],
            )
            for r in rows
        ]

    def series(self, clinic_id: str, study_uid: str | None, *, hide_radiographs: bool = False,
               modality: str | None = None, limit: int = 100, offset: int = 0,
               query: StudyQuery | None = None, series_uids: list[str] | None = None
               ) -> list[IndexedSeries]:
        """One study's series, or (``study_uid`` None) every series matching ``query``."""
        conditions, params = self._conditions(clinic_id, _within(
            query, study_uid, hide_radiographs))
        _narrow(conditions, params, modality=modality, series_uids=series_uids)
        params["limit"], params["offset"] = min(limit, MAX_RESULTS), offset
        statement = SQL(
            "SELECT i.study_uid, i.series_uid, min(i.modality) AS modality,"
            " min(i.series_description) AS series_description, count(*) AS instance_count,"
            " min(i.series_number) AS series_number"
            " FROM {} WHERE {} GROUP BY i.study_uid, i.series_uid"
            " ORDER BY i.study_uid, min(i.series_number) NULLS LAST, i.series_uid"
            " LIMIT %(limit)s OFFSET %(offset)s"
        ).format(self._joined(), SQL(" AND ").join(conditions))
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            return [IndexedSeries(**row) for row in curs.fetchall()]

    def instances(self, clinic_id: str, study_uid: str | None, series_uid: str | None = None,
                  sop_uid: str | None = None, *, hide_radiographs: bool = False,
                  limit: int = MAX_RESULTS, offset: int = 0,
                  query: StudyQuery | None = None, modality: str | None = None,
                  series_uids: list[str] | None = None, sop_uids: list[str] | None = None
                  ) -> list[IndexedInstance]:
        """Instances of a study (or of every study ``query`` matches, ``study_uid`` None)."""
        conditions, params = self._conditions(clinic_id, _within(
            query, study_uid, hide_radiographs))
        _narrow(conditions, params, modality=modality, series_uids=series_uids,
                sop_uids=sop_uids)
        if series_uid is not None:
            conditions.append(SQL("i.series_uid = %(series)s"))
            params["series"] = series_uid
        if sop_uid is not None:
            conditions.append(SQL("i.sop_uid = %(sop)s"))
            params["sop"] = sop_uid
        params["limit"], params["offset"] = min(limit, MAX_RESULTS), offset
        statement = SQL(
            "SELECT i.*, p.external_id, p.family_name, p.given_name, p.birth_date, p.sex"
            " FROM {} WHERE {} ORDER BY i.study_uid, i.series_uid, i.instance_number NULLS LAST,"
            " i.captured_at, i.sop_uid"
            " LIMIT %(limit)s OFFSET %(offset)s"
        ).format(self._joined(), SQL(" AND ").join(conditions))
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            rows = curs.fetchall()
        return [_instance(row) for row in rows]

    def instance_by_sop(self, clinic_id: str, sop_uid: str) -> IndexedInstance | None:
        statement = SQL(
            "SELECT i.*, p.external_id, p.family_name, p.given_name, p.birth_date, p.sex"
            " FROM {} WHERE i.clinic_id = %s AND i.sop_uid = %s"
        ).format(self._joined())
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, (clinic_id, sop_uid))
            row = curs.fetchone()
        return _instance(row) if row else None

    def open_reconciliations(self, clinic_id: str, limit: int = 100) -> list[OpenReconciliation]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT * FROM {} WHERE clinic_id = %s AND status = %s"
                    " ORDER BY opened_at, item_id LIMIT %s").format(self.items_table),
                (clinic_id, ReconciliationStatus.OPEN.value, min(limit, MAX_RESULTS)),
            )
            rows = curs.fetchall()
        return [
            OpenReconciliation(
                item_id=r["item_id"], patient_id=r["patient_id"], reasons=list(r["reasons"]),
                sop_uid=r["sop_uid"], study_uid=r["study_uid"], modality=r["modality"],
                opened_at=r["opened_at"],
            )
            for r in rows
        ]


def _within(query: StudyQuery | None, study_uid: str | None,
            hide_radiographs: bool) -> StudyQuery:
    """``query``'s study-level keys, narrowed to one study when ``study_uid`` is given."""
    query = query or StudyQuery()
    return replace(query, hide_radiographs=hide_radiographs,
                   study_uids=[study_uid] if study_uid is not None else query.study_uids)


def _narrow(conditions: list[Any], params: dict[str, Any], *, modality: str | None = None,
            series_uids: list[str] | None = None, sop_uids: list[str] | None = None) -> None:
    """Series- and instance-level matching keys, in SQL so limit and offset stay exact."""
    if modality:
        conditions.append(SQL("i.modality = %(modality)s"))
        params["modality"] = modality
    if series_uids:
        conditions.append(SQL("i.series_uid = ANY(%(series_uids)s)"))
        params["series_uids"] = series_uids
    if sop_uids:
        conditions.append(SQL("i.sop_uid = ANY(%(sop_uids)s)"))
        params["sop_uids"] = sop_uids


def _instance(row: dict[str, Any]) -> IndexedInstance:
    return IndexedInstance(
        image_id=row["image_id"], clinic_id=row["clinic_id"], patient_id=row["patient_id"],
        status=row["status"], category=row["category"], study_uid=row["study_uid"],
        series_uid=row["series_uid"], sop_uid=row["sop_uid"],
        sop_class_uid=row["sop_class_uid"], transfer_syntax_uid=row["transfer_syntax_uid"],
        modality=row["modality"], rows=row["rows"], columns=row["columns"],
        frames=row["frames"], study_date=row["study_date"],
        study_description=row["study_description"],
        series_description=row["series_description"], external_id=row["external_id"],
        family_name=row["family_name"], given_name=row["given_name"],
        birth_date=row["birth_date"], sex=row["sex"], study_time=row.get("study_time"),
        accession_number=row.get("accession_number"), series_number=row.get("series_number"),
        instance_number=row.get("instance_number"),
    )


def _study_date(value: Any) -> date | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


class DicomIndexProjection(Projection[DicomIndexView]):
    name = "dicom_index_v1"
    topics = tuple(
        get_topic(cls)
        for cls in (
            Patient.Registered, Image.Captured, Image.MetadataExtracted, Image.Categorised,
            Image.SoftDeleted, Image.Restored, Image.Destroyed,
            DicomReconciliation.Opened, DicomReconciliation.Resolved,
            DicomReconciliation.Reassigned, DicomReconciliation.Rejected,
        )
    )

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, event: Patient.Registered, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            SQL(
                "INSERT INTO {} (patient_id, clinic_id, external_id, family_name, given_name,"
                " birth_date, sex) VALUES (%(id)s, %(clinic)s, %(external)s, %(family)s,"
                " %(given)s, %(birth)s, %(sex)s)"
            ).format(self.view.patients_table),
            {
                "id": event.originator_id, "clinic": event.clinic_id,
                "external": event.external_id.strip(), "family": event.family_name,
                "given": event.given_name, "birth": event.birth_date, "sex": event.sex,
            },
        )

    @process_event.register
    def _(self, event: Image.Captured, tracking: Tracking) -> None:
        if event.original.media_type != DICOM_MEDIA_TYPE:
            self.view.insert_tracking(tracking)
            return
        self.view.apply(
            tracking,
            SQL(
                "INSERT INTO {} (image_id, clinic_id, patient_id, status, category, captured_at)"
                " VALUES (%(id)s, %(clinic)s, %(patient)s, 'active', %(category)s, %(at)s)"
            ).format(self.view.instances_table),
            {
                "id": event.originator_id, "clinic": event.clinic_id,
                "patient": event.patient_id, "category": event.category,
                "at": event.captured_at,
            },
        )

    @process_event.register
    def _(self, event: Image.MetadataExtracted, tracking: Tracking) -> None:
        if event.source != DICOM_SOURCE:
            self.view.insert_tracking(tracking)
            return
        m = event.metadata
        # Updates only a row made from a DICOM capture: other images stay out of the index.
        self.view.apply(
            tracking,
            SQL(
                "UPDATE {} SET study_uid = %(study)s, series_uid = %(series)s, sop_uid = %(sop)s,"
                " sop_class_uid = %(sop_class)s, transfer_syntax_uid = %(ts)s,"
                " modality = %(modality)s, rows = %(rows)s, columns = %(columns)s,"
                " frames = %(frames)s, study_date = %(study_date)s,"
                " study_description = %(study_description)s,"
                " series_description = %(series_description)s, study_time = %(study_time)s,"
                " accession_number = %(accession)s, series_number = %(series_number)s,"
                " instance_number = %(instance_number)s WHERE image_id = %(id)s"
            ).format(self.view.instances_table),
            {
                "id": event.originator_id, "study": m.get("study_instance_uid"),
                "series": m.get("series_instance_uid"), "sop": m.get("sop_instance_uid"),
                "sop_class": m.get("sop_class_uid"), "ts": m.get("transfer_syntax_uid"),
                "modality": m.get("modality"), "rows": m.get("rows"),
                "columns": m.get("columns"), "frames": m.get("number_of_frames") or 1,
                "study_date": _study_date(m.get("study_date")),
                "study_description": m.get("study_description"),
                "series_description": m.get("series_description"),
                "study_time": m.get("study_time"), "accession": m.get("accession_number"),
                "series_number": m.get("series_number"),
                "instance_number": m.get("instance_number"),
            },
        )

    def _set(self, tracking: Tracking, image_id: UUID, assignment: str,
             params: dict[str, Any] | None = None) -> None:
        self.view.apply(
            tracking,
            SQL("UPDATE {} SET " + assignment + " WHERE image_id = %(id)s").format(
                self.view.instances_table
            ),
            {"id": image_id, **(params or {})},
        )

    @process_event.register
    def _(self, event: Image.Categorised, tracking: Tracking) -> None:
        self._set(tracking, event.originator_id, "category = %(category)s",
                  {"category": event.category})

    @process_event.register
    def _(self, event: Image.SoftDeleted, tracking: Tracking) -> None:
        self._set(tracking, event.originator_id, "status = 'deleted'")

    @process_event.register
    def _(self, event: Image.Restored, tracking: Tracking) -> None:
        self._set(tracking, event.originator_id, "status = 'active'")

    @process_event.register
    def _(self, event: Image.Destroyed, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            SQL("DELETE FROM {} WHERE image_id = %(id)s").format(self.view.instances_table),
            {"id": event.originator_id},
        )

    @process_event.register
    def _(self, event: DicomReconciliation.Opened, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            SQL(
                "INSERT INTO {} (item_id, clinic_id, patient_id, status, reasons, sop_uid,"
                " study_uid, modality, opened_at) VALUES (%(id)s, %(clinic)s, %(patient)s,"
                " 'open', %(reasons)s, %(sop)s, %(study)s, %(modality)s, %(at)s)"
            ).format(self.view.items_table),
            {
                "id": event.originator_id, "clinic": event.clinic_id,
                "patient": event.patient_id, "reasons": list(event.reasons),
                "sop": event.dicom.get("sop_instance_uid"),
                "study": event.dicom.get("study_instance_uid"),
                "modality": event.dicom.get("modality"), "at": event.timestamp,
            },
        )

    def _close(self, tracking: Tracking, item_id: UUID, status: ReconciliationStatus) -> None:
        self.view.apply(
            tracking,
            SQL("UPDATE {} SET status = %(status)s WHERE item_id = %(id)s").format(
                self.view.items_table
            ),
            {"id": item_id, "status": status.value},
        )

    @process_event.register
    def _(self, event: DicomReconciliation.Resolved, tracking: Tracking) -> None:
        self._close(tracking, event.originator_id, ReconciliationStatus.RESOLVED)

    @process_event.register
    def _(self, event: DicomReconciliation.Reassigned, tracking: Tracking) -> None:
        self._close(tracking, event.originator_id, ReconciliationStatus.REASSIGNED)

    @process_event.register
    def _(self, event: DicomReconciliation.Rejected, tracking: Tracking) -> None:
        self._close(tracking, event.originator_id, ReconciliationStatus.REJECTED)
