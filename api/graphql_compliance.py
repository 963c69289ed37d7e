"""GraphQL for compliance: consent reporting, delete-with-approval, retention policies and
legal holds. Reports, policies and holds need ``imaging:admin``."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import strawberry
from strawberry.types import Info

from api.graphql_context import actor_of, blocking, parse_id
from api.graphql_gallery import ConsentScope, PageInfo
from api.services import Services
from domain.deletion_requests import DeletionRequest
from domain.errors import Gone, InvalidInput
from domain.patient import ConsentScope as DomainConsentScope
from domain.permissions import Permission, require
from domain.retention import RetentionPolicy
from domain.values import Actor
from projections.consent_report import consent_gaps


@strawberry.type
class ConsentGap:
    patient_id: strawberry.ID
    external_id: str
    status: str = strawberry.field(description="missing (never granted or revoked), expired")
    expired_at: datetime | None
    photograph_count: int
    photograph_ids: list[strawberry.ID]


@strawberry.type
class ConsentReport:
    scope: ConsentScope
    patients: list[ConsentGap]
    page_info: PageInfo


@strawberry.type
class DeletionRequestNode:
    id: strawberry.ID
    image_id: strawberry.ID
    status: str
    round: int
    requested_by: str | None
    decided_by: str | None


def _request_node(request: DeletionRequest) -> DeletionRequestNode:
    return DeletionRequestNode(
        id=strawberry.ID(str(request.id)), image_id=strawberry.ID(str(request.image_id)),
        status=request.status, round=request.round,
        requested_by=request.requested_by.user_id if request.requested_by else None,
        decided_by=request.decided_by.user_id if request.decided_by else None)


@strawberry.type
class CategoryYears:
    category: str
    years: int


@strawberry.type
class RetentionPolicyNode:
    years_by_category: list[CategoryYears]
    age_of_majority: int
    years_after_majority: int
    recovery_days: int


def _policy_node(policy: RetentionPolicy) -> RetentionPolicyNode:
    return RetentionPolicyNode(
        years_by_category=[CategoryYears(category=c, years=y)
                           for c, y in sorted(policy.years_by_category.items())],
        age_of_majority=policy.age_of_majority,
        years_after_majority=policy.years_after_majority, recovery_days=policy.recovery_days)


@strawberry.type
class LegalHoldNode:
    subject_id: strawberry.ID
    active: bool


@strawberry.input
class RequestImageDeletionInput:
    image_id: strawberry.ID
    reason: str


@strawberry.input
class DecideImageDeletionInput:
    image_id: strawberry.ID
    note: str = ""


@strawberry.input
class CategoryYearsInput:
    category: str
    years: int


@strawberry.input
class RetentionPolicyInput:
    years_by_category: list[CategoryYearsInput] = strawberry.field(default_factory=list)
    age_of_majority: int = 18
    years_after_majority: int = 7
    recovery_days: int = 30


@strawberry.input
class LegalHoldInput:
    subject_id: strawberry.ID = strawberry.field(description="A patient or an image id.")
    reason: str = ""


def _pending_requests(services: Services, actor: Actor, first: int) -> list[DeletionRequest]:
    """Pending requests of the clinic, oldest first: the audit names every request ever made
    (``deletion_request.requested``); each request aggregate says whether it still waits."""
    require(actor, Permission.ADMIN)
    first = max(1, min(first, 200))
    seen: set[UUID] = set()
    pending: list[DeletionRequest] = []
    after: int | None = None
    while len(pending) < first:
        page = services.audit.search(actor.clinic_id, action="deletion_request.requested",
                                     first=500, after=after)
        for entry in page.entries:
            if entry.aggregate_id in seen:
                continue
            seen.add(entry.aggregate_id)
            try:
                request = services.app.repository.get(entry.aggregate_id)
            except Gone:
                continue  # its image was destroyed meanwhile
            if request.is_pending and request.clinic_id == actor.clinic_id:
                pending.append(request)
        if not page.has_next_page:
            break
        after = page.end_position
    return pending[:first]


async def _request_after(services: Services, actor: Actor, image_id: UUID,
                         position: int) -> DeletionRequestNode:
    await blocking(services.wait_for_read_models, position)
    return _request_node(await blocking(services.app.deletion_request, actor, image_id))


@strawberry.type
class ComplianceQuery:
    @strawberry.field(description="Patients lacking an active consent of one scope, with the "
                                  "photographs affected; imaging:admin only.")
    async def consent_report(self, info: Info, scope: ConsentScope,
                             only_with_images: bool = False, first: int = 100,
                             after: str | None = None) -> ConsentReport:
        actor = actor_of(info)
        require(actor, Permission.ADMIN)
        services: Services = info.context.services
        gaps, more = await blocking(
            consent_gaps, services.gallery, actor.clinic_id, DomainConsentScope(scope.value),
            datetime.now(UTC), only_with_images=only_with_images, first=first,
            after=parse_id(after, "after") if after else None)
        nodes = [ConsentGap(
            patient_id=strawberry.ID(str(g.patient_id)), external_id=g.external_id,
            status=g.status, expired_at=g.expired_at, photograph_count=g.photograph_count,
            photograph_ids=[strawberry.ID(str(i)) for i in g.photograph_ids]) for g in gaps]
        return ConsentReport(scope=scope, patients=nodes, page_info=PageInfo(
            has_next_page=more, end_cursor=str(gaps[-1].patient_id) if gaps else None))

    @strawberry.field(description="The image's deletion request (delete with approval).")
    async def deletion_request(self, info: Info, image_id: strawberry.ID) -> DeletionRequestNode:
        actor, services = actor_of(info), info.context.services
        return _request_node(await blocking(services.app.deletion_request, actor,
                                            parse_id(image_id, "imageId")))

    @strawberry.field(description="Deletion requests waiting for a clinic admin; "
                                  "imaging:admin only.")
    async def pending_deletion_requests(self, info: Info, first: int = 50
                                        ) -> list[DeletionRequestNode]:
        actor, services = actor_of(info), info.context.services
        return [_request_node(r) for r in
                await blocking(_pending_requests, services, actor, first)]

    @strawberry.field(description="The clinic's retention policy (the defaults until set).")
    async def retention_policy(self, info: Info) -> RetentionPolicyNode:
        actor, services = actor_of(info), info.context.services
        require(actor, Permission.ADMIN)
        return _policy_node(await blocking(services.app.retention_policy, actor.clinic_id))

    @strawberry.field(description="Whether a legal hold is in place on a patient or image.")
    async def legal_hold(self, info: Info, subject_id: strawberry.ID) -> LegalHoldNode:
        actor, services = actor_of(info), info.context.services
        require(actor, Permission.ADMIN)
        active = await blocking(services.app.legal_hold_active, actor,
                                parse_id(subject_id, "subjectId"))
        return LegalHoldNode(subject_id=subject_id, active=active)


@strawberry.type
class ComplianceMutation:
    @strawberry.mutation(description="Delete an image with approval: a doctor's delete waits "
                                     "for a clinic admin.")
    async def request_image_deletion(self, info: Info, input: RequestImageDeletionInput
                                     ) -> DeletionRequestNode:
        actor, services = actor_of(info), info.context.services
        image_id = parse_id(input.image_id, "imageId")
        written = await blocking(services.app.request_image_deletion, actor, image_id,
                                 input.reason)
        return await _request_after(services, actor, image_id, written.position)

    @strawberry.mutation(description="Approve a pending deletion request: soft-deletes.")
    async def approve_image_deletion(self, info: Info, input: DecideImageDeletionInput
                                     ) -> DeletionRequestNode:
        actor, services = actor_of(info), info.context.services
        image_id = parse_id(input.image_id, "imageId")
        written = await blocking(services.app.approve_image_deletion, actor, image_id)
        return await _request_after(services, actor, image_id, written.position)

    @strawberry.mutation(description="Decline a pending deletion request.")
    async def decline_image_deletion(self, info: Info, input: DecideImageDeletionInput
                                     ) -> DeletionRequestNode:
        actor, services = actor_of(info), info.context.services
        image_id = parse_id(input.image_id, "imageId")
        await blocking(services.app.decline_image_deletion, actor, image_id, input.note)
        return _request_node(await blocking(services.app.deletion_request, actor, image_id))

    @strawberry.mutation(description="Set the clinic's retention policy; imaging:admin only.")
    async def set_retention_policy(self, info: Info, input: RetentionPolicyInput
                                   ) -> RetentionPolicyNode:
        actor, services = actor_of(info), info.context.services
        years = {y.category: y.years for y in input.years_by_category}
        if len(years) != len(input.years_by_category):
            raise InvalidInput("invalid_policy", "a category is listed twice")
        base = RetentionPolicy()
        policy = RetentionPolicy(
            years_by_category={**base.years_by_category, **years},
            age_of_majority=input.age_of_majority,
            years_after_majority=input.years_after_majority, recovery_days=input.recovery_days)
        await blocking(services.app.set_retention_policy, actor, policy)
        return _policy_node(await blocking(services.app.retention_policy, actor.clinic_id))

    @strawberry.mutation(description="Place a legal hold on a patient or image: blocks "
                                     "destruction until released.")
    async def place_legal_hold(self, info: Info, input: LegalHoldInput) -> LegalHoldNode:
        actor, services = actor_of(info), info.context.services
        await blocking(services.app.place_legal_hold, actor,
                       parse_id(input.subject_id, "subjectId"), input.reason)
        return LegalHoldNode(subject_id=input.subject_id, active=True)

    @strawberry.mutation(description="Release a legal hold.")
    async def release_legal_hold(self, info: Info, input: LegalHoldInput) -> LegalHoldNode:
        actor, services = actor_of(info), info.context.services
        await blocking(services.app.release_legal_hold, actor,
                       parse_id(input.subject_id, "subjectId"), input.reason)
        return LegalHoldNode(subject_id=input.subject_id, active=False)

