"""GraphQL for patients and their gallery: consents, tags, soft delete, destruction.

Resolvers run their blocking work in a worker thread, ask the domain for permission
decisions, and read from the gallery read model filtered by the caller's clinic. Every
mutation waits until the gallery has applied its write (read-your-writes).
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any
from uuid import UUID

import strawberry
from strawberry.types import Info

from api.destruction import destroy_image
from api.graphql_context import actor_of, blocking, parse_id
from api.services import Services
from domain.access import AccessKind
from domain.errors import InvalidInput, NotFound
from domain.events import ShreddedEvent
from domain.image import Image, ImageCategory
from domain.imaging import Written, normalise_tag
from domain.patient import ConsentScope as DomainConsentScope
from domain.patient import Patient
from domain.permissions import Grant, Permission, grant, require
from domain.photo_quality import Status as QualityStatus
from domain.values import Actor, Guardian
from domain.views import parse_view
from projections.gallery import GalleryImage, GalleryPatient, encode_cursor


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


@strawberry.type
class QualityCheck:
    name: str
    value: float | None
    status: str
    hint: str | None


@strawberry.type
class Quality:
    status: str
    hints: list[str]
    tilt_degrees: float | None
    checks: list[QualityCheck]


def _quality(report: dict | None) -> Quality | None:
    if not report:
        return None
    return Quality(
        status=report["status"], hints=list(report.get("hints", [])),
        tilt_degrees=report.get("tilt_degrees"),
        checks=[QualityCheck(name=c["name"], value=c.get("value"), status=c["status"],
                             hint=c.get("hint")) for c in report.get("checks", [])],
    )


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
    category_source: str
    quality: Quality | None
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
        processing_failure=image.processing_failure, category_source=image.category_source,
        quality=_quality(image.quality),
        thumbnail_url=f"{base}/thumbnail" if pixels else None,
        preview_url=f"{base}/preview" if full else None,
        original_url=f"{base}/original" if held is Grant.FULL else None,
    )


def _visible_categories(actor: Actor) -> list[str] | None:
    """Front desk never sees X-rays (radiographs, CBCT); everyone else sees every category."""
    if grant(actor.role, Permission.VIEW) is Grant.THUMBNAILS:
        return [c.value for c in ImageCategory if not c.hidden_from_thumbnail_grade]
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
        include_deleted: bool = False, category: str | None = None, view: str | None = None,
        quality: str | None = None, tag: str | None = None,
        captured_from: datetime | None = None, captured_to: datetime | None = None,
    ) -> ImageConnection:
        """Filters combine (AND); ``capturedFrom`` is inclusive, ``capturedTo`` exclusive."""
        actor = actor_of(info)
        services: Services = info.context.services
        filters = gallery_filters(category, view, quality, tag, captured_from, captured_to)
        page = await blocking(
            services.gallery.images_of_patient, actor.clinic_id, UUID(str(self.id)),
            first=first, after=after, include_deleted=include_deleted,
            categories=_visible_categories(actor), **filters,
        )
        await blocking(
            services.app.record_access, actor,
            [(image.id, image.patient_id) for image in page.images], AccessKind.METADATA,
        )
        return ImageConnection(
            edges=[ImageEdge(node=_image_node(i, actor), cursor=encode_cursor(i))
                   for i in page.images],
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )


def gallery_filters(category: str | None, view: str | None, quality: str | None,
                    tag: str | None, captured_from: datetime | None,
                    captured_to: datetime | None) -> dict[str, Any]:
    """Checked filter values: an unknown value is a 400, never an empty page by accident."""
    if category is not None:
        try:
            category = ImageCategory(category.strip().lower()).value
        except ValueError:
            raise InvalidInput("invalid_category", "unknown category") from None
    if quality is not None and quality not in tuple(QualityStatus):
        raise InvalidInput("invalid_quality", "quality is one of pass, warn, fail")
    if captured_from and captured_to and captured_from >= captured_to:
        raise InvalidInput("invalid_date_range", "capturedFrom must lie before capturedTo")
    return {"category": category, "view": parse_view(view) if view is not None else None,
            "quality": quality, "tag": normalise_tag(tag) if tag is not None else None,
            "captured_from": captured_from, "captured_to": captured_to}


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
    patient = await blocking(services.gallery.patient, actor.clinic_id, patient_id)
    if patient is None:
        raise NotFound("patient_not_found", "no such patient")
    return _patient_node(patient)


async def _load_image(services: Services, actor: Actor, image_id: UUID) -> ImageNode:
    image = await blocking(services.gallery.image, actor.clinic_id, image_id)
    hidden = _visible_categories(actor)
    if image is None or (hidden is not None and image.category not in hidden):
        raise NotFound("image_not_found", "no such image")
    return _image_node(image, actor)


@strawberry.type
class GalleryQuery:
    @strawberry.field
    async def patient(self, info: Info, id: strawberry.ID,
                      as_of: datetime | None = None) -> PatientNode:
        """``asOf`` rebuilds the patient's own fields (demographics, consents) as they stood
        then from the event log; ``images`` always lists the gallery as it is now."""
        actor = actor_of(info)
        require(actor, Permission.VIEW, Grant.THUMBNAILS, Grant.METADATA)
        services: Services = info.context.services
        if as_of is not None:
            patient = await blocking(services.app.as_of, actor, parse_id(id, "id"), Patient,
                                     as_of)
            return _patient_node(_gallery_patient_from(patient))
        return await _load_patient(services, actor, parse_id(id, "id"))

    @strawberry.field
    async def image(self, info: Info, id: strawberry.ID,
                    as_of: datetime | None = None) -> ImageNode:
        """``asOf`` rebuilds the image (tags, category, status…) as it stood then."""
        actor = actor_of(info)
        require(actor, Permission.VIEW, Grant.THUMBNAILS, Grant.METADATA)
        services: Services = info.context.services
        if as_of is not None:
            image = await blocking(services.app.as_of, actor, parse_id(id, "id"), Image, as_of)
            allowed = _visible_categories(actor)
            if allowed is not None:
                # Front desk: a radiograph stays hidden in the past too (then or now).
                now = await blocking(services.app.get_image, image.id, actor)
                if image.category not in allowed or now.category not in allowed:
                    raise NotFound("image_not_found", "no such image")
            node = _image_node(_gallery_image_from(image), actor)
        else:
            node = await _load_image(services, actor, parse_id(id, "id"))
        await blocking(services.app.record_access, actor,
                        [(UUID(str(node.id)), UUID(str(node.patient_id)))], AccessKind.METADATA)
        return node


@strawberry.type
class HistoryEntry:
    version: int
    type: str
    at: datetime | None
    actor_user: str | None
    actor_role: str | None
    request_id: str | None
    redacted: bool


def _history_entry(event: object) -> HistoryEntry:
    if isinstance(event, ShreddedEvent):
        actor = event.header.get("actor", {})
        return HistoryEntry(version=event.originator_version,
                            type=event.topic.rpartition(".")[2], at=event.timestamp,
                            actor_user=actor.get("user_id"), actor_role=actor.get("role"),
                            request_id=actor.get("request_id"), redacted=True)
    actor = getattr(event, "actor", None)
    return HistoryEntry(version=event.originator_version,  # type: ignore[attr-defined]
                        type=type(event).__name__, at=event.timestamp,  # type: ignore[attr-defined]
                        actor_user=getattr(actor, "user_id", None),
                        actor_role=getattr(actor, "role", None),
                        request_id=getattr(actor, "request_id", None), redacted=False)


@strawberry.type
class HistoryQuery:
    @strawberry.field(description="Every event of an image with its actor and version.")
    async def image_history(self, info: Info, id: strawberry.ID) -> list[HistoryEntry]:
        actor = actor_of(info)
        require(actor, Permission.VIEW)
        services: Services = info.context.services
        events = await blocking(services.app.history, actor, parse_id(id, "id"), Image)
        return [_history_entry(e) for e in events]


@strawberry.input
class GuardianInput:
    name: str
    relationship: str
    phone: str = ""


@strawberry.input
class RegisterPatientInput:
    external_id: str
    given_name: str
    family_name: str
    birth_date: date
    sex: str
    guardian: GuardianInput | None = None


@strawberry.input
class GrantConsentInput:
    patient_id: strawberry.ID
    scope: ConsentScope
    granted_by: str | None = None  # unset: the patient, or the guardian of a minor
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
class CategoriseImageInput:
    image_id: strawberry.ID
    category: str
    view: str | None = None


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


def _gallery_image_from(image: Image) -> GalleryImage:
    return GalleryImage(
        id=image.id, clinic_id=image.clinic_id, patient_id=image.patient_id,
        status=image.status, category=image.category, view=image.view, tags=list(image.tags),
        captured_at=image.captured_at, uploaded_at=image.created_on, width=image.width,
        height=image.height, media_type=image.original.media_type,
        has_derivatives=bool(image.derivatives), processing_failure=image.processing_failure,
        quality=image.quality, category_source=image.category_source,
    )


def _gallery_patient_from(patient: Patient) -> GalleryPatient:
    return GalleryPatient(
        id=patient.id, clinic_id=patient.clinic_id, external_id=patient.external_id,
        given_name=patient.given_name, family_name=patient.family_name,
        birth_date=patient.birth_date.isoformat(), sex=patient.sex,
        consents={
            scope: {"granted_at": c.granted_at.isoformat(), "granted_by": c.granted_by,
                    "expires_at": c.expires_at.isoformat() if c.expires_at else None}
            for scope, c in patient.consents.items()
        },
        image_count=0,
    )


async def _patient_after(services: Services, actor: Actor, written: Written) -> PatientNode:
    """The read model once it shows the write; the aggregate itself if it lags behind."""
    if await blocking(services.wait_for_read_models, written.position):
        return await _load_patient(services, actor, written.id)
    patient = await blocking(services.app.get_patient, written.id, actor)
    return _patient_node(_gallery_patient_from(patient))


async def _image_after(services: Services, actor: Actor, written: Written) -> ImageNode:
    if await blocking(services.wait_for_read_models, written.position):
        return await _load_image(services, actor, written.id)
    image = await blocking(services.app.get_image, written.id, actor)
    return _image_node(_gallery_image_from(image), actor)


@strawberry.type
class GalleryMutation:
    @strawberry.mutation
    async def register_patient(self, info: Info, input: RegisterPatientInput) -> PatientNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(
            services.app.register_patient, actor, external_id=input.external_id,
            given_name=input.given_name, family_name=input.family_name,
            birth_date=input.birth_date, sex=input.sex,
            guardian=Guardian(input.guardian.name, input.guardian.relationship,
                              input.guardian.phone) if input.guardian else None,
        )
        return await _patient_after(services, actor, written)

    @strawberry.mutation
    async def grant_consent(self, info: Info, input: GrantConsentInput) -> PatientNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(
            services.app.grant_consent, actor, parse_id(input.patient_id, "patientId"),
            DomainConsentScope(input.scope.value), granted_by=input.granted_by,
            expires_at=input.expires_at,
        )
        return await _patient_after(services, actor, written)

    @strawberry.mutation
    async def revoke_consent(self, info: Info, input: RevokeConsentInput) -> PatientNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(
            services.app.revoke_consent, actor, parse_id(input.patient_id, "patientId"),
            DomainConsentScope(input.scope.value),
        )
        return await _patient_after(services, actor, written)

    @strawberry.mutation
    async def tag_image(self, info: Info, input: TagImageInput) -> ImageNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.tag_image, actor,
                                  parse_id(input.image_id, "imageId"), input.tag)
        return await _image_after(services, actor, written)

    @strawberry.mutation
    async def untag_image(self, info: Info, input: TagImageInput) -> ImageNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.untag_image, actor,
                                  parse_id(input.image_id, "imageId"), input.tag)
        return await _image_after(services, actor, written)

    @strawberry.mutation(description="A clinician's category/view; overrides the automatic one.")
    async def categorise_image(self, info: Info, input: CategoriseImageInput) -> ImageNode:
        actor, services = actor_of(info), info.context.services
        try:
            category = ImageCategory(input.category.strip().lower())
        except ValueError:
            raise InvalidInput("invalid_category", "unknown category") from None
        written = await blocking(services.app.categorise_image, actor,
                                 parse_id(input.image_id, "imageId"), category,
                                 parse_view(input.view))
        return await _image_after(services, actor, written)

    @strawberry.mutation
    async def delete_image(self, info: Info, input: DeleteImageInput) -> ImageNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.delete_image, actor,
                                  parse_id(input.image_id, "imageId"), input.reason)
        return await _image_after(services, actor, written)

    @strawberry.mutation
    async def restore_image(self, info: Info, input: RestoreImageInput) -> ImageNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.restore_image, actor,
                                  parse_id(input.image_id, "imageId"))
        return await _image_after(services, actor, written)


    @strawberry.mutation(description="Destroy an image for good (crypto-shredding).")
    async def destroy_image(self, info: Info, input: DestroyImageInput) -> DestroyedImage:
        actor, services = actor_of(info), info.context.services
        image_id = parse_id(input.image_id, "imageId")
        await blocking(destroy_image, services, actor, image_id, input.reason)
        return DestroyedImage(id=strawberry.ID(str(image_id)))
