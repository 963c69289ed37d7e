"""Consent reporting over the gallery read model: which patients of a clinic lack an active
consent of a scope (never granted, revoked, or expired), and which of their photographs
are affected (taken under a consent that has since been revoked or has expired).

A query only: the gallery projection (``projections/gallery.py``) keeps each patient's
current consents (revocation removes one; expiry is compared with ``now`` here).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from psycopg.sql import SQL

from domain.image import ImageCategory
from domain.patient import ConsentScope
from projections.gallery import GalleryView

MAX_PAGE = 500
MAX_IMAGE_IDS = 100
PHOTOGRAPHS = [c.value for c in ImageCategory if c.is_photograph]


@dataclass(frozen=True)
class ConsentGap:
    patient_id: UUID
    external_id: str
    status: str  # "missing" (never granted or revoked) or "expired"
    expired_at: datetime | None
    photograph_count: int  # photographs not destroyed (deleted ones included)
    photograph_ids: list[UUID]  # the first MAX_IMAGE_IDS of them


def consent_gaps(gallery: GalleryView, clinic_id: str, scope: ConsentScope, now: datetime, *,
                 only_with_images: bool = False, first: int = 100,
                 after: UUID | None = None) -> tuple[list[ConsentGap], bool]:
    """One page of the clinic's patients without an active ``scope`` consent, by id."""
    first = max(1, min(first, MAX_PAGE))
    query = SQL(
        "SELECT p.patient_id, p.external_id, p.consents -> %(scope)s ->> 'expires_at' AS ends,"
        " count(i.image_id) AS photos,"
        " (array_agg(i.image_id ORDER BY i.captured_at DESC, i.image_id)"
        "    FILTER (WHERE i.image_id IS NOT NULL))[1:%(ids)s] AS ids"
        " FROM {patients} p LEFT JOIN {images} i ON i.patient_id = p.patient_id"
        "   AND i.clinic_id = p.clinic_id AND i.category = ANY(%(photos)s)"
        " WHERE p.clinic_id = %(clinic)s"
        "   AND (%(after)s::uuid IS NULL OR p.patient_id > %(after)s)"
        "   AND (NOT p.consents ? %(scope)s"
        "        OR (p.consents -> %(scope)s ->> 'expires_at')::timestamptz <= %(now)s)"
        " GROUP BY p.patient_id"
        " HAVING NOT %(only)s OR count(i.image_id) > 0"
        " ORDER BY p.patient_id LIMIT %(limit)s"
    ).format(patients=gallery.patients, images=gallery.images)
    params = {"scope": scope.value, "ids": MAX_IMAGE_IDS, "photos": PHOTOGRAPHS,
              "clinic": clinic_id, "after": after, "now": now, "only": only_with_images,
              "limit": first + 1}
    with gallery.datastore.transaction(commit=False) as curs:
        curs.execute(query, params)
        rows = curs.fetchall()
    gaps = [
        ConsentGap(
            patient_id=row["patient_id"], external_id=row["external_id"],
            status="expired" if row["ends"] else "missing",
            expired_at=datetime.fromisoformat(row["ends"]) if row["ends"] else None,
            photograph_count=int(row["photos"]), photograph_ids=list(row["ids"] or []),
        )
        for row in rows[:first]
    ]
    return gaps, len(rows) > first
