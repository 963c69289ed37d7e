"""REST download of one clinic's audit trail: CSV, JSON Lines or a FHIR R4 Bundle of
AuditEvent resources (``projections/audit_export.py``), filtered like ``auditEntries``.
``imaging:admin`` only; each entry carries its hash chain fields so the file can be verified
offline (``projections.audit.verify_entries``)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api.rest_images import ActorDep, services_of
from api.services import Services
from domain.errors import Unprocessable
from domain.permissions import Permission, require
from domain.values import Actor
from projections.audit import AuditEntry
from projections.audit_export import to_fhir_bundle, write_csv, write_jsonl

router = APIRouter(prefix="/api/v1", tags=["compliance"])

MAX_EXPORT_ENTRIES = 100_000
_PAGE = 500
_MEDIA = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson",
          "fhir": "application/fhir+json"}
_SUFFIX = {"csv": "csv", "jsonl": "jsonl", "fhir": "json"}


def _entries(services: Services, actor: Actor, filters: dict[str, object]) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    after: int | None = None
    while True:
        page = services.audit.search(actor.clinic_id, first=_PAGE, after=after, **filters)
        entries.extend(page.entries)
        if len(entries) > MAX_EXPORT_ENTRIES:
            raise Unprocessable("export_too_large",
                                f"more than {MAX_EXPORT_ENTRIES} entries: narrow the filters "
                                "(since/until, patientId…)")
        if not page.has_next_page:
            return entries
        after = page.end_position


def _render(entries: list[AuditEntry], fmt: str) -> Iterator[bytes]:
    if fmt == "fhir":
        yield json.dumps(to_fhir_bundle(entries), separators=(",", ":")).encode()
        return
    out = io.StringIO(newline="")
    (write_csv if fmt == "csv" else write_jsonl)(entries, out)
    yield out.getvalue().encode()


@router.get("/audit/export")
async def export_audit(
    request: Request, actor: ActorDep,
    format: Literal["csv", "jsonl", "fhir"] = "jsonl",
    patient_id: Annotated[UUID | None, Query(alias="patientId")] = None,
    image_id: Annotated[UUID | None, Query(alias="imageId")] = None,
    user_id: Annotated[str | None, Query(alias="userId")] = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Response:
    require(actor, Permission.ADMIN)
    services = services_of(request)
    filters = {"patient_id": patient_id, "image_id": image_id, "user_id": user_id,
               "action": action, "since": since, "until": until}
    entries = await run_in_threadpool(_entries, services, actor, filters)
    body = b"".join(_render(entries, format))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(body, media_type=_MEDIA[format], headers={
        "Content-Disposition": f'attachment; filename="audit-{stamp}.{_SUFFIX[format]}"',
        "Cache-Control": "no-store",
        "X-Audit-Entries": str(len(entries)),
    })
