"""GraphQL for compliance: the audit trail of one clinic, and who viewed a patient."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from api.graphql_context import actor_of, blocking, parse_id
from api.services import Services
from domain.errors import InvalidInput
from domain.permissions import Permission, require
from projections.audit import AuditEntry as Entry


@strawberry.type
class AuditEntry:
    position: int
    occurred_at: datetime | None
    actor_user: str | None
    actor_role: str | None
    request_id: str | None
    action: str
    aggregate_type: str
    aggregate_id: strawberry.ID
    aggregate_version: int
    patient_id: strawberry.ID | None
    image_id: strawberry.ID | None
    reason_category: str | None
    entry_hash: str


@strawberry.type
class AuditPage:
    entries: list[AuditEntry]
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Viewing:
    at: datetime | None
    user_id: str | None
    role: str | None
    kind: str
    image_id: strawberry.ID | None
    request_id: str | None


def _id(value: object) -> strawberry.ID | None:
    return strawberry.ID(str(value)) if value is not None else None


def _entry(e: Entry) -> AuditEntry:
    return AuditEntry(
        position=e.position, occurred_at=e.occurred_at, actor_user=e.actor_user,
        actor_role=e.actor_role, request_id=e.request_id, action=e.action,
        aggregate_type=e.aggregate_type, aggregate_id=strawberry.ID(str(e.aggregate_id)),
        aggregate_version=e.aggregate_version, patient_id=_id(e.patient_id),
        image_id=_id(e.image_id), reason_category=e.reason_category, entry_hash=e.entry_hash,
    )


def _cursor(after: str | None) -> int | None:
    if after is None:
        return None
    if not after.isdigit():
        raise InvalidInput("invalid_cursor", "the cursor is not one this server issued")
    return int(after)


@strawberry.type
class AuditQuery:
    @strawberry.field(description="One clinic's audit trail, filtered; imaging:admin only.")
    async def audit_entries(
        self, info: Info, patient_id: strawberry.ID | None = None,
        user_id: str | None = None, image_id: strawberry.ID | None = None,
        action: str | None = None, since: datetime | None = None,
        until: datetime | None = None, first: int = 100, after: str | None = None,
    ) -> AuditPage:
        actor = actor_of(info)
        require(actor, Permission.ADMIN)
        services: Services = info.context.services
        page = await blocking(
            services.audit.search, actor.clinic_id,
            patient_id=parse_id(patient_id, "patientId") if patient_id else None,
            user_id=user_id, image_id=parse_id(image_id, "imageId") if image_id else None,
            action=action, since=since, until=until, first=first, after=_cursor(after),
        )
        return AuditPage(entries=[_entry(e) for e in page.entries],
                         has_next_page=page.has_next_page,
                         end_cursor=str(page.end_position) if page.end_position else None)

    @strawberry.field(description="Every view of a patient's images between two moments.")
    async def who_viewed(
        self, info: Info, patient_id: strawberry.ID, since: datetime, until: datetime
    ) -> list[Viewing]:
        actor = actor_of(info)
        require(actor, Permission.ADMIN)
        services: Services = info.context.services
        patient = parse_id(patient_id, "patientId")
        # The patient is the subject here, not a filter: another clinic's is 404, not [].
        await blocking(services.app.get_patient, patient, actor)
        views = await blocking(services.audit.who_viewed, actor.clinic_id, patient, since,
                               until)
        return [Viewing(at=v.at, user_id=v.user_id, role=v.role, kind=v.kind,
                        image_id=_id(v.image_id), request_id=v.request_id) for v in views]
