"""GraphQL at /graphql: patients, their gallery, consents, tags, soft delete.

Every resolver runs its blocking work in a worker thread, asks the domain for permission
decisions, and reads from the gallery read model filtered by the caller's clinic. Every
mutation waits until the gallery has applied its write (read-your-writes).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar
from uuid import UUID

import strawberry
import structlog
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.types import Info

from api.auth import bearer_token, verify_token
from api.destruction import destroy_image
from api.errors import STATUS
from api.services import Services
from domain.access import AccessKind
from domain.errors import InvalidInput, NotFound, OrthovaultError, Unauthenticated
from domain.image import ImageCategory
from domain.imaging import Written
from domain.patient import ConsentScope as DomainConsentScope
from domain.permissions import Grant, Permission, grant, require
from domain.values import Actor
from projections.gallery import GalleryImage, GalleryPatient, encode_cursor

log = structlog.get_logger("orthovault.graphql")
T = TypeVar("T")


class Context(BaseContext):
    def __init__(self, services: Services, actor: Actor | None) -> None:
        super().__init__()
        self.services = services
        self.actor = actor


def _actor(info: Info) -> Actor:
    context: Context = info.context
    if context.actor is None:
        raise Unauthenticated("missing_token", "send Authorization: Bearer <token>")
    return context.actor


async def _blocking(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await run_in_threadpool(func, *args, **kwargs)


def _uuid(value: strawberry.ID | str, what: str) -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidInput("invalid_id", f"{what} is not a valid id") from None


@strawberry.enum
class ConsentScope(enum.Enum):
    CLINICAL_PHOTOGRAPHY = "clinical_photography"
    MARKETING = "marketing"
    EDUCATIONAL = "educational"


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class Consent:
    scope: ConsentScope
    granted_at: datetime
    granted_by: str
    expires_at: datetime | None
    active: bool


@strawberry.type(name="Image")
class ImageNode:
    id: strawberry.ID
    patient_id: strawberry.ID
    status: str
    category: str
    view: str | None
    tags: list[str]
    captured_at: datetime
    uploaded_at: datetime
    width: int
    height: int
    media_type: str
    processing_failure: str | None
    thumbnail_url: str | None
    preview_url: str | None
    original_url: str | None


@strawberry.type
class ImageEdge:
    node: ImageNode
    cursor: str


@strawberry.type
class ImageConnection:
    edges: list[ImageEdge]
    page_info: PageInfo


def _image_node(image: GalleryImage, actor: Actor) -> ImageNode:
    held = grant(actor.role, Permission.VIEW)
    base = f"/api/v1/images/{image.id}"
    pixels = image.has_derivatives and held in (Grant.FULL, Grant.THUMBNAILS)
    full = image.has_derivatives and held is Grant.FULL
    return ImageNode(
        id=strawberry.ID(str(image.id)), patient_id=strawberry.ID(str(image.patient_id)),
        status=image.status, category=image.category, view=image.view, tags=image.tags,
        captured_at=image.captured_at, uploaded_at=image.uploaded_at, width=image.width,
        height=image.height, media_type=image.media_type,
        processing_failure=image.processing_failure,
        thumbnail_url=f"{base}/thumbnail" if pixels else None,
        preview_url=f"{base}/preview" if full else None,
        original_url=f"{base}/original" if held is Grant.FULL else None,
    )


def _visible_categories(actor: Actor) -> list[str] | None:
    """Front desk never sees radiographs; everyone else sees every category."""
    if grant(actor.role, Permission.VIEW) is Grant.THUMBNAILS:
        return [c.value for c in ImageCategory if c is not ImageCategory.RADIOGRAPH]
    return None


@strawberry.type(name="Patient")
class PatientNode:
    id: strawberry.ID
    external_id: str
    given_name: str
    family_name: str
    birth_date: date
    sex: str
    consents: list[Consent]

    @strawberry.field
    async def images(
        self, info: Info, first: int = 50, after: str | None = None,
        include_deleted: bool = False,
    ) -> ImageConnection:
        actor = _actor(info)
        services: Services = info.context.services
        page = await _blocking(
            services.gallery.images_of_patient, actor.clinic_id, UUID(str(self.id)),
            first=first, after=after, include_deleted=include_deleted,
            categories=_visible_categories(actor),
        )
        await _blocking(
            services.app.record_access, actor,
            [(image.id, image.patient_id) for image in page.images], AccessKind.METADATA,
        )
        return ImageConnection(
            edges=[ImageEdge(node=_image_node(i, actor), cursor=encode_cursor(i))
                   for i in page.images],
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )


def _patient_node(patient: GalleryPatient) -> PatientNode:
    now = datetime.now().astimezone()
    consents = []
    for scope, value in sorted(patient.consents.items()):
        expires = datetime.fromisoformat(value["expires_at"]) if value["expires_at"] else None
        consents.append(Consent(
            scope=ConsentScope(scope), granted_at=datetime.fromisoformat(value["granted_at"]),
            granted_by=value["granted_by"], expires_at=expires,
            active=expires is None or now < expires,
        ))
    return PatientNode(
        id=strawberry.ID(str(patient.id)), external_id=patient.external_id,
        given_name=patient.given_name, family_name=patient.family_name,
        birth_date=date.fromisoformat(patient.birth_date), sex=patient.sex, consents=consents,
    )


async def _load_patient(services: Services, actor: Actor, patient_id: UUID) -> PatientNode:
    patient = await _blocking(services.gallery.patient, actor.clinic_id, patient_id)
    if patient is None:
        raise NotFound("patient_not_found", "no such patient")
    return _patient_node(patient)


async def _load_image(services: Services, actor: Actor, image_id: UUID) -> ImageNode:
    image = await _blocking(services.gallery.image, actor.clinic_id, image_id)
    hidden = _visible_categories(actor)
    if image is None or (hidden is not None and image.category not in hidden):
        raise NotFound("image_not_found", "no such image")
    return _image_node(image, actor)


@strawberry.type
class Query:
    @strawberry.field
    async def patient(self, info: Info, id: strawberry.ID) -> PatientNode:
        actor = _actor(info)
        require(actor, Permission.VIEW, Grant.THUMBNAILS, Grant.METADATA)
        return await _load_patient(info.context.services, actor, _uuid(id, "id"))

    @strawberry.field
    async def image(self, info: Info, id: strawberry.ID) -> ImageNode:
        actor = _actor(info)
        require(actor, Permission.VIEW, Grant.THUMBNAILS, Grant.METADATA)
        services: Services = info.context.services
        node = await _load_image(services, actor, _uuid(id, "id"))
        await _blocking(services.app.record_access, actor,
                        [(UUID(str(node.id)), UUID(str(node.patient_id)))], AccessKind.METADATA)
        return node


@strawberry.input
class RegisterPatientInput:
    external_id: str
    given_name: str
    family_name: str
    birth_date: date
    sex: str


@strawberry.input
class GrantConsentInput:
    patient_id: strawberry.ID
    scope: ConsentScope
    granted_by: str = "patient"
    expires_at: datetime | None = None


@strawberry.input
class RevokeConsentInput:
    patient_id: strawberry.ID
    scope: ConsentScope


@strawberry.input
class TagImageInput:
    image_id: strawberry.ID
    tag: str


@strawberry.input
class DeleteImageInput:
    image_id: strawberry.ID
    reason: str = ""


@strawberry.input
class RestoreImageInput:
    image_id: strawberry.ID


@strawberry.input
class DestroyImageInput:
    image_id: strawberry.ID
    reason: str


@strawberry.type
class DestroyedImage:
    id: strawberry.ID


async def _written(services: Services, written: Written) -> None:
    await _blocking(services.wait_for_gallery, written.position)


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def register_patient(self, info: Info, input: RegisterPatientInput) -> PatientNode:
        actor, services = _actor(info), info.context.services
        written = await _blocking(
            services.app.register_patient, actor, external_id=input.external_id,
            given_name=input.given_name, family_name=input.family_name,
            birth_date=input.birth_date, sex=input.sex,
        )
        await _written(services, written)
        return await _load_patient(services, actor, written.id)

    @strawberry.mutation
    async def grant_consent(self, info: Info, input: GrantConsentInput) -> PatientNode:
        actor, services = _actor(info), info.context.services
        written = await _blocking(
            services.app.grant_consent, actor, _uuid(input.patient_id, "patientId"),
            DomainConsentScope(input.scope.value), granted_by=input.granted_by,
            expires_at=input.expires_at,
        )
        await _written(services, written)
        return await _load_patient(services, actor, written.id)

    @strawberry.mutation
    async def revoke_consent(self, info: Info, input: RevokeConsentInput) -> PatientNode:
        actor, services = _actor(info), info.context.services
        written = await _blocking(
            services.app.revoke_consent, actor, _uuid(input.patient_id, "patientId"),
            DomainConsentScope(input.scope.value),
        )
        await _written(services, written)
        return await _load_patient(services, actor, written.id)

    @strawberry.mutation
    async def tag_image(self, info: Info, input: TagImageInput) -> ImageNode:
        actor, services = _actor(info), info.context.services
        written = await _blocking(services.app.tag_image, actor,
                                  _uuid(input.image_id, "imageId"), input.tag)
        await _written(services, written)
        return await _load_image(services, actor, written.id)

    @strawberry.mutation
    async def untag_image(self, info: Info, input: TagImageInput) -> ImageNode:
        actor, services = _actor(info), info.context.services
        written = await _blocking(services.app.untag_image, actor,
                                  _uuid(input.image_id, "imageId"), input.tag)
        await _written(services, written)
        return await _load_image(services, actor, written.id)

    @strawberry.mutation
    async def delete_image(self, info: Info, input: DeleteImageInput) -> ImageNode:
        actor, services = _actor(info), info.context.services
        written = await _blocking(services.app.delete_image, actor,
                                  _uuid(input.image_id, "imageId"), input.reason)
        await _written(services, written)
        return await _load_image(services, actor, written.id)

    @strawberry.mutation
    async def restore_image(self, info: Info, input: RestoreImageInput) -> ImageNode:
        actor, services = _actor(info), info.context.services
        written = await _blocking(services.app.restore_image, actor,
                                  _uuid(input.image_id, "imageId"))
        await _written(services, written)
        return await _load_image(services, actor, written.id)


    @strawberry.mutation(description="Destroy an image for good (crypto-shredding).")
    async def destroy_image(self, info: Info, input: DestroyImageInput) -> DestroyedImage:
        actor, services = _actor(info), info.context.services
        image_id = _uuid(input.image_id, "imageId")
        await _blocking(destroy_image, services, actor, image_id, input.reason)
        return DestroyedImage(id=strawberry.ID(str(image_id)))


class ErrorCodes(MaskErrors):
    """Gives every error a stable ``extensions.code``; hides unexpected errors' details."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda _error: True)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, OrthovaultError):
            message = original.message
            extensions = {"code": original.code, "status": STATUS[original.kind]}
        elif original is None:
            message = error.message
            extensions = {"code": "invalid_query", "status": 400}
        else:
            log.error("graphql_unhandled_error", error=type(original).__name__)
            message = "an unexpected error occurred"
            extensions = {"code": "internal_error", "status": 500}
        return GraphQLError(message=message, nodes=error.nodes, source=error.source,
                            positions=error.positions, path=error.path, extensions=extensions)


class OrthovaultSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Log codes and types only: tracebacks and messages could carry PHI.

        (Unexpected errors are also logged by ErrorCodes, which masks them for the caller.)
        """
        for error in errors:
            original = error.original_error
            code = (error.extensions or {}).get("code") if original is None else (
                original.code if isinstance(original, OrthovaultError) else "internal_error")
            log.info("graphql_error", code=code, path=error.path,
                     error=type(original).__name__ if original else None)


schema = OrthovaultSchema(
    query=Query,
    mutation=Mutation,
    extensions=[
        lambda: QueryDepthLimiter(max_depth=10),
        lambda: MaxAliasesLimiter(max_alias_count=30),
        lambda: MaxTokensLimiter(max_token_count=5000),
        ErrorCodes,
    ],
)


def router(graphiql: bool) -> GraphQLRouter:
    async def context(request: Request) -> Context:
        services: Services = request.app.state.services
        actor = None
        if request.method != "GET" or request.headers.get("authorization"):
            token = bearer_token(request.headers.get("authorization"))
            actor = verify_token(services.tokens, token, getattr(request.state, "request_id", ""))
        return Context(services=services, actor=actor)

    return GraphQLRouter(
        schema, context_getter=context, graphql_ide="graphiql" if graphiql else None
    )
