"""The gallery read model: patients and their images as the frontend lists them.

Each event's row change and its tracking record commit in one transaction, so every event
is applied exactly once and a restarted runner resumes where it stopped. Rebuilding means
bumping ``GalleryProjection.name``: the new name gets fresh tables and replays from zero.
"""

from __future__ import annotations

import base64
import binascii
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
from psycopg.sql import SQL, Identifier, Literal

from domain.capture import CaptureSession
from domain.cbct import VOLUME_SOURCE
from domain.errors import InvalidInput
from domain.events import ShreddedEvent
from domain.image import Image
from domain.patient import Patient

MAX_PAGE = 200


@dataclass(frozen=True)
class GalleryImage:
    id: UUID
    clinic_id: str
    patient_id: UUID
    status: str
    category: str
    view: str | None
    tags: list[str]
    captured_at: datetime
    uploaded_at: datetime
    width: int
    height: int
    media_type: str
    has_derivatives: bool
    processing_failure: str | None
    quality: dict[str, Any] | None = None
    category_source: str = "user"


@dataclass(frozen=True)
class GalleryPatient:
    id: UUID
    clinic_id: str
    external_id: str
    given_name: str
    family_name: str
    birth_date: str
    sex: str
    consents: dict[str, Any]
    image_count: int


@dataclass(frozen=True)
class ImagePage:
    images: list[GalleryImage]
    has_next_page: bool
    end_cursor: str | None


def encode_cursor(image: GalleryImage) -> str:
    raw = json.dumps([image.captured_at.isoformat(), str(image.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        captured_at, image_id = json.loads(raw)
        return datetime.fromisoformat(captured_at), UUID(image_id)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise InvalidInput("invalid_cursor", "the cursor is not one this server issued") from None


class GalleryView(PostgresTrackingRecorder):
    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        schema = Identifier(self.datastore.schema)
        self.patients = SQL("{}.{}").format(schema, Identifier(f"{prefix}_patients"))
        self.images = SQL("{}.{}").format(schema, Identifier(f"{prefix}_images"))
        index = Identifier(f"{prefix}_images_by_patient")
        self.sql_create_statements.extend([
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " patient_id uuid PRIMARY KEY, clinic_id text NOT NULL, external_id text NOT NULL,"
                " given_name text NOT NULL, family_name text NOT NULL, birth_date date NOT NULL,"
                " sex text NOT NULL, consents jsonb NOT NULL DEFAULT '{{}}'::jsonb,"
                " image_count int NOT NULL DEFAULT 0)"
            ).format(self.patients),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " image_id uuid PRIMARY KEY, clinic_id text NOT NULL, patient_id uuid NOT NULL,"
                " status text NOT NULL, category text NOT NULL, view text,"
                " tags text[] NOT NULL DEFAULT '{{}}', captured_at timestamptz NOT NULL,"
                " uploaded_at timestamptz NOT NULL, width int NOT NULL, height int NOT NULL,"
                " media_type text NOT NULL, has_derivatives boolean NOT NULL DEFAULT false,"
                " processing_failure text, quality_status text, quality jsonb,"
                " category_source text NOT NULL DEFAULT 'user', sha256 text, dhash bigint)"
            ).format(self.images),
            SQL(
                "CREATE INDEX IF NOT EXISTS {} ON {} "
                "(clinic_id, patient_id, captured_at DESC, image_id DESC)"
            ).format(index, self.images),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (clinic_id, patient_id, sha256)").format(
                Identifier(f"{prefix}_images_by_hash"), self.images),
            # The slices of an assembled CBCT volume (domain/cbct.py) show as the volume.
            SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS volume_id uuid").format(self.images),
        ])

    # ---- writes (each with its tracking record, in one transaction) --------------------

    def apply(self, tracking: Tracking, statement: Any, params: dict[str, Any],
              *more: tuple[Any, dict[str, Any]]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            for sql, values in ((statement, params), *more):
                curs.execute(sql, values)
            self._insert_tracking(curs, tracking)

    # ---- queries -------------------------------------------------------------------------

    def patient(self, clinic_id: str, patient_id: UUID) -> GalleryPatient | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT * FROM {} WHERE patient_id = %s AND clinic_id = %s").format(
                    self.patients
                ),
                (patient_id, clinic_id),
            )
            row = curs.fetchone()
        if row is None:
            return None
        return GalleryPatient(
            id=row["patient_id"], clinic_id=row["clinic_id"], external_id=row["external_id"],
            given_name=row["given_name"], family_name=row["family_name"],
            birth_date=row["birth_date"].isoformat(), sex=row["sex"], consents=row["consents"],
            image_count=row["image_count"],
        )

    def image(self, clinic_id: str, image_id: UUID) -> GalleryImage | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT * FROM {} WHERE image_id = %s AND clinic_id = %s").format(self.images),
                (image_id, clinic_id),
            )
            row = curs.fetchone()
        return _image(row) if row else None

    def images_by_id(self, clinic_id: str, image_ids: list[UUID]) -> dict[UUID, GalleryImage]:
        """Many images in one query (search hits, album pages): no N+1."""
        if not image_ids:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT * FROM {} WHERE image_id = ANY(%s) AND clinic_id = %s")
                         .format(self.images), (image_ids, clinic_id))
            return {row["image_id"]: _image(row) for row in curs.fetchall()}

    def tag_counts(self, clinic_id: str) -> dict[str, int]:
        """How many active images carry each tag."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT t, count(*) AS n FROM {}, unnest(tags) t WHERE"
                             " clinic_id = %s AND status = 'active' GROUP BY t").format(
                             self.images), (clinic_id,))
            return {row["t"]: row["n"] for row in curs.fetchall()}

    def capture_times(self, clinic_id: str, patient_id: UUID,
                      categories: list[str] | None = None) -> list[tuple[UUID, datetime]]:
        """(image id, captured at) of the patient's active images, newest first."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT image_id, captured_at, category FROM {} WHERE clinic_id = %s"
                             " AND patient_id = %s AND status = 'active' AND volume_id IS NULL"
                             " ORDER BY captured_at DESC, image_id DESC").format(
                             self.images), (clinic_id, patient_id))
            return [(row["image_id"], row["captured_at"]) for row in curs.fetchall()
                    if categories is None or row["category"] in categories]

    def same_file(self, clinic_id: str, patient_id: UUID, sha256: str) -> UUID | None:
        """An existing, not destroyed image of the patient with exactly these bytes."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT image_id FROM {} WHERE clinic_id = %s AND patient_id = %s"
                             " AND sha256 = %s LIMIT 1").format(self.images),
                         (clinic_id, patient_id, sha256))
            row = curs.fetchone()
        return row["image_id"] if row else None

    def near_duplicates(self, clinic_id: str, patient_id: UUID, dhash: int,
                        max_distance: int = 6) -> list[UUID]:
        """The patient's images whose dHash is within ``max_distance`` bits."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL(
                "SELECT image_id FROM {} WHERE clinic_id = %s AND patient_id = %s"
                " AND dhash IS NOT NULL AND bit_count((dhash # %s)::bit(64)) <= %s"
                " ORDER BY captured_at DESC LIMIT 20").format(self.images),
                (clinic_id, patient_id, dhash, max_distance))
            return [row["image_id"] for row in curs.fetchall()]

    def images_of_patient(
        self,
        clinic_id: str,
        patient_id: UUID,
        *,
        first: int = 50,
        after: str | None = None,
        include_deleted: bool = False,
        categories: list[str] | None = None,
        category: str | None = None,
        view: str | None = None,
        quality: str | None = None,
        tag: str | None = None,
        captured_from: datetime | None = None,
        captured_to: datetime | None = None,
    ) -> ImagePage:
        if not 1 <= first <= MAX_PAGE:
            raise InvalidInput("invalid_page_size", f"first must be between 1 and {MAX_PAGE}")
        conditions = [SQL("clinic_id = %(clinic)s"), SQL("patient_id = %(patient)s")]
        params: dict[str, Any] = {"clinic": clinic_id, "patient": patient_id, "limit": first + 1}
        conditions.append(SQL("volume_id IS NULL"))
        if not include_deleted:
            conditions.append(SQL("status = 'active'"))
        if categories is not None:
            conditions.append(SQL("category = ANY(%(categories)s)"))
            params["categories"] = categories
        for column, value in (("category", category), ("view", view),
                              ("quality_status", quality)):
            if value is not None:
                conditions.append(SQL("{} = %({})s").format(Identifier(column), SQL(column)))
                params[column] = value
        for condition, name, value in (
                ("%(tag)s = ANY(tags)", "tag", tag),
                ("captured_at >= %(captured_from)s", "captured_from", captured_from),
                ("captured_at < %(captured_to)s", "captured_to", captured_to)):
            if value is not None:
                conditions.append(SQL(condition))
                params[name] = value
        if after:
            params["after_at"], params["after_id"] = decode_cursor(after)
            conditions.append(SQL("(captured_at, image_id) < (%(after_at)s, %(after_id)s)"))
        statement = SQL(
            "SELECT * FROM {} WHERE {} ORDER BY captured_at DESC, image_id DESC LIMIT %(limit)s"
        ).format(self.images, SQL(" AND ").join(conditions))
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(statement, params)
            rows = curs.fetchall()
        images = [_image(row) for row in rows[:first]]
        return ImagePage(
            images=images,
            has_next_page=len(rows) > first,
            end_cursor=encode_cursor(images[-1]) if images else None,
        )


def _image(row: dict[str, Any]) -> GalleryImage:
    return GalleryImage(
        id=row["image_id"], clinic_id=row["clinic_id"], patient_id=row["patient_id"],
        status=row["status"], category=row["category"], view=row["view"], tags=list(row["tags"]),
        captured_at=row["captured_at"], uploaded_at=row["uploaded_at"], width=row["width"],
        height=row["height"], media_type=row["media_type"],
        has_derivatives=row["has_derivatives"], processing_failure=row["processing_failure"],
        quality=row["quality"], category_source=row["category_source"],
    )


class GalleryProjection(Projection[GalleryView]):
    name = "gallery_v1"
    topics = tuple(
        get_topic(cls)
        for cls in (
            Patient.Registered, Patient.ConsentGranted, Patient.ConsentRevoked,
            Patient.DemographicsUpdated,
            Image.Captured, Image.Tagged, Image.Untagged, Image.Categorised,
            Image.DerivativesGenerated, Image.ProcessingFailed, Image.SoftDeleted,
            Image.QualityAssessed, Image.MetadataExtracted,
            Image.Restored, Image.Destroyed,
            # Not shown here, but followed so that the gallery's position passes it and
            # read-your-writes after an upload into a session does not wait in vain.
            CaptureSession.SlotFilled,
        )
    )

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        # Shredded placeholders and anything unknown: nothing to show, but move on.
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, event: Patient.Registered, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            SQL(
                "INSERT INTO {} (patient_id, clinic_id, external_id, given_name, family_name,"
                " birth_date, sex) VALUES (%(id)s, %(clinic)s, %(external)s, %(given)s,"
                " %(family)s, %(birth)s, %(sex)s)"
            ).format(self.view.patients),
            {
                "id": event.originator_id, "clinic": event.clinic_id,
                "external": event.external_id, "given": event.given_name,
                "family": event.family_name, "birth": event.birth_date, "sex": event.sex,
            },
        )

    @process_event.register
    def _(self, event: Patient.DemographicsUpdated, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            SQL(
                "UPDATE {} SET external_id = %(external)s, given_name = %(given)s,"
                " family_name = %(family)s, birth_date = %(birth)s, sex = %(sex)s"
                " WHERE patient_id = %(id)s"
            ).format(self.view.patients),
            {
                "id": event.originator_id, "external": event.external_id,
                "given": event.given_name, "family": event.family_name,
                "birth": event.birth_date, "sex": event.sex,
            },
        )

    @process_event.register
    def _(self, event: Patient.ConsentGranted, tracking: Tracking) -> None:
        consent = {
            "granted_at": event.granted_at.isoformat(),
            "granted_by": event.granted_by,
            "expires_at": event.expires_at.isoformat() if event.expires_at else None,
        }
        self.view.apply(
            tracking,
            SQL(
                "UPDATE {} SET consents = consents || jsonb_build_object(%(scope)s::text,"
                " %(consent)s::jsonb) WHERE patient_id = %(id)s"
            ).format(self.view.patients),
            {"id": event.originator_id, "scope": event.scope, "consent": json.dumps(consent)},
        )

    @process_event.register
    def _(self, event: Patient.ConsentRevoked, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            SQL("UPDATE {} SET consents = consents - %(scope)s::text WHERE patient_id = %(id)s")
            .format(self.view.patients),
            {"id": event.originator_id, "scope": event.scope},
        )

    @process_event.register
    def _(self, event: Image.Captured, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            SQL(
                "INSERT INTO {} (image_id, clinic_id, patient_id, status, category, view, tags,"
                " captured_at, uploaded_at, width, height, media_type, category_source, sha256)"
                " VALUES (%(id)s, %(clinic)s, %(patient)s, 'active', %(category)s, %(view)s,"
                " %(tags)s, %(captured)s, %(uploaded)s, %(width)s, %(height)s, %(media)s,"
                " %(source)s, %(sha256)s)"
            ).format(self.view.images),
            {
                "id": event.originator_id, "clinic": event.clinic_id, "patient": event.patient_id,
                "category": event.category, "view": event.view, "tags": list(event.tags),
                "captured": event.captured_at, "uploaded": event.timestamp,
                "width": event.width, "height": event.height,
                "media": event.original.media_type,
                "source": getattr(event, "category_source", "user"),
                "sha256": event.original.sha256,
            },
            (self._count_images(+1), {"patient": event.patient_id}),
        )

    def _count_images(self, change: int) -> Any:
        return SQL(
            "UPDATE {} SET image_count = image_count + {} WHERE patient_id = %(patient)s"
        ).format(self.view.patients, Literal(change))

    def _update_image(self, tracking: Tracking, image_id: UUID, assignments: str,
                      params: dict[str, Any]) -> None:
        self.view.apply(
            tracking,
            SQL("UPDATE {} SET " + assignments + " WHERE image_id = %(id)s").format(
                self.view.images
            ),
            {"id": image_id, **params},
        )

    @process_event.register
    def _(self, event: Image.Tagged, tracking: Tracking) -> None:
        self._update_image(
            tracking, event.originator_id,
            "tags = array_append(tags, %(tag)s)",
            {"tag": event.tag},
        )

    @process_event.register
    def _(self, event: Image.Untagged, tracking: Tracking) -> None:
        self._update_image(
            tracking, event.originator_id, "tags = array_remove(tags, %(tag)s)", {"tag": event.tag}
        )

    @process_event.register
    def _(self, event: Image.Categorised, tracking: Tracking) -> None:
        self._update_image(
            tracking, event.originator_id,
            "category = %(category)s, view = %(view)s, category_source = %(source)s",
            {"category": event.category, "view": event.view, "source": event.source},
        )

    @process_event.register
    def _(self, event: Image.MetadataExtracted, tracking: Tracking) -> None:
        if event.source == VOLUME_SOURCE:
            self.view.apply(tracking, SQL(
                "UPDATE {} SET volume_id = %(volume)s WHERE image_id = ANY(%(slices)s::uuid[])"
                " AND clinic_id = %(clinic)s").format(self.view.images), {
                "volume": event.originator_id, "clinic": event.actor.clinic_id,
                "slices": event.metadata.get("slice_image_ids", [])})
            return
        dhash = event.metadata.get("dhash") if event.source == "fingerprint" else None
        if dhash is None:
            self.view.insert_tracking(tracking)
            return
        self._update_image(tracking, event.originator_id, "dhash = %(dhash)s",
                           {"dhash": int(dhash)})

    @process_event.register
    def _(self, event: Image.QualityAssessed, tracking: Tracking) -> None:
        self._update_image(
            tracking, event.originator_id,
            "quality_status = %(status)s, quality = %(report)s::jsonb",
            {"status": event.report.get("status"), "report": json.dumps(event.report)},
        )

    @process_event.register
    def _(self, event: Image.DerivativesGenerated, tracking: Tracking) -> None:
        self._update_image(tracking, event.originator_id, "has_derivatives = true", {})

    @process_event.register
    def _(self, event: Image.ProcessingFailed, tracking: Tracking) -> None:
        self._update_image(
            tracking, event.originator_id, "processing_failure = %(failure)s",
            {"failure": f"{event.stage}:{event.code}"},
        )

    @process_event.register
    def _(self, event: Image.SoftDeleted, tracking: Tracking) -> None:
        self._update_image(tracking, event.originator_id, "status = 'deleted'", {})

    @process_event.register
    def _(self, event: Image.Restored, tracking: Tracking) -> None:
        self._update_image(tracking, event.originator_id, "status = 'active'", {})

    @process_event.register
    def _(self, event: Image.Destroyed, tracking: Tracking) -> None:
        self.view.apply(
            tracking,
            SQL("DELETE FROM {} WHERE image_id = %(id)s").format(self.view.images),
            {"id": event.originator_id},
            (self._count_images(-1), {"patient": event.patient_id}),
        )


__all__ = ["GalleryProjection", "GalleryView", "ShreddedEvent"]
