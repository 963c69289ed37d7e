"""GraphQL for organising a gallery: albums, the tag vocabulary, treatment phases, notes.

Reads come from the albums and treatment read models (filtered by the caller's clinic) and
the gallery for the images themselves, fetched in one query per page (no N+1). Every
mutation waits until the read models that show it have applied it (read-your-writes).
"""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID, uuid4

import strawberry
from strawberry.types import Info

from api import tag_management
from api.graphql_context import actor_of, blocking, parse_id
from api.graphql_gallery import (
    ImageConnection,
    ImageEdge,
    ImageNode,
    PageInfo,
    _image_after,
    _image_node,
    _visible_categories,
)
from api.services import Services
from domain.access import AccessKind
from domain.errors import Conflict, InvalidInput, NotFound
from domain.imaging import Written
from domain.permissions import Grant, Permission, require
from domain.treatment import PhaseImage, PhaseMilestone, assign_phases, labels, milestone_ref
from domain.values import Actor
from projections.albums import AlbumRow
from projections.gallery import GalleryImage, encode_cursor

MAX_PER_PHASE = 200


def _require_view(actor: Actor) -> Grant:
    return require(actor, Permission.VIEW, Grant.THUMBNAILS, Grant.METADATA)


async def _visible_images(services: Services, actor: Actor,
                          image_ids: list[UUID]) -> list[GalleryImage]:
    """The gallery rows of ``image_ids`` in their order, as far as the role may see them;
    the access is recorded like a gallery page's."""
    rows = await blocking(services.gallery.images_by_id, actor.clinic_id, image_ids)
    allowed = _visible_categories(actor)
    images = [rows[i] for i in image_ids if i in rows and rows[i].status == "active"
              and (allowed is None or rows[i].category in allowed)]
    await blocking(services.app.record_access, actor,
                   [(i.id, i.patient_id) for i in images], AccessKind.METADATA)
    return images


async def _wait(services: Services, written: Written, *views: object) -> None:
    if not await blocking(services.wait_for_read_models, written.position, *views):
        raise Conflict("read_model_lagging", "the change is saved but not visible yet; retry")


# ---- albums -------------------------------------------------------------------------------

@strawberry.type(name="Album")
class AlbumNode:
    id: strawberry.ID
    name: str
    parent_id: strawberry.ID | None
    archived: bool
    image_count: int
    created_at: datetime
    updated_at: datetime

    @strawberry.field
    async def images(self, info: Info, first: int = 50,
                     after: str | None = None) -> ImageConnection:
        actor, services = actor_of(info), info.context.services
        page = await blocking(services.albums.image_ids, actor.clinic_id, UUID(str(self.id)),
                              first=first, after=after)
        images = await _visible_images(services, actor, page.image_ids)
        return ImageConnection(
            edges=[ImageEdge(node=_image_node(i, actor), cursor=encode_cursor(i))
                   for i in images],
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor))

    @strawberry.field
    async def children(self, info: Info, include_archived: bool = False) -> list[AlbumNode]:
        actor, services = actor_of(info), info.context.services
        rows = await blocking(services.albums.children, actor.clinic_id, UUID(str(self.id)),
                              include_archived=include_archived)
        return [_album(r) for r in rows]


def _album(row: AlbumRow) -> AlbumNode:
    return AlbumNode(id=strawberry.ID(str(row.id)), name=row.name,
                     parent_id=strawberry.ID(str(row.parent_id)) if row.parent_id else None,
                     archived=row.archived, image_count=row.image_count,
                     created_at=row.created_at, updated_at=row.updated_at)


async def _album_after(services: Services, actor: Actor, written: Written) -> AlbumNode:
    """The read model once it shows the write; the aggregate itself if it lags behind."""
    if await blocking(services.wait_for_read_models, written.position, services.albums,
                      services.search):
        row = await blocking(services.albums.album, actor.clinic_id, written.id)
        if row is not None:
            return _album(row)
    album = await blocking(services.app.album, actor, written.id)
    return _album(AlbumRow(id=album.id, clinic_id=album.clinic_id, name=album.name,
                           parent_id=album.parent_id, archived=album.archived,
                           image_count=len(album.image_ids), created_at=album.created_on,
                           updated_at=album.modified_on))


@strawberry.input
class CreateAlbumInput:
    name: str
    parent_id: strawberry.ID | None = None


@strawberry.input
class RenameAlbumInput:
    album_id: strawberry.ID
    name: str


@strawberry.input
class MoveAlbumInput:
    album_id: strawberry.ID
    parent_id: strawberry.ID | None = None


@strawberry.input
class AlbumImagesInput:
    album_id: strawberry.ID
    image_ids: list[strawberry.ID]


@strawberry.input
class AlbumImageInput:
    album_id: strawberry.ID
    image_id: strawberry.ID


@strawberry.input
class AlbumIdInput:
    album_id: strawberry.ID


def _ids(values: list[strawberry.ID], what: str) -> list[UUID]:
    return [parse_id(v, what) for v in values]


# ---- tags ---------------------------------------------------------------------------------

@strawberry.type
class TagCount:
    tag: str
    image_count: int
    controlled: bool


@strawberry.type
class TagAlias:
    source: str
    target: str


@strawberry.type
class TagVocabularyNode:
    tags: list[TagCount]
    aliases: list[TagAlias]


@strawberry.type
class TagChange:
    source: str
    target: str
    retagged: int


@strawberry.input
class RenameTagInput:
    old: str
    new: str


@strawberry.input
class MergeTagsInput:
    source: str
    target: str


def _vocabulary(services: Services, actor: Actor) -> TagVocabularyNode:
    vocabulary = services.app.tag_vocabulary(actor.clinic_id)
    counts = services.gallery.tag_counts(actor.clinic_id)
    terms = list(vocabulary.terms) if vocabulary else []
    tags = [TagCount(tag=t, image_count=counts.get(t, 0), controlled=True) for t in terms]
    tags += [TagCount(tag=t, image_count=n, controlled=False)
             for t, n in sorted(counts.items()) if t not in terms]
    aliases = sorted((vocabulary.aliases if vocabulary else {}).items())
    return TagVocabularyNode(
        tags=tags,
        aliases=[TagAlias(source=s, target=vocabulary.canonical(s)) for s, _ in aliases]
        if vocabulary else [])


# ---- treatment phases ---------------------------------------------------------------------

@strawberry.type(name="Milestone")
class MilestoneNode:
    id: str
    kind: str
    label: str
    occurred_on: date
    source: str


@strawberry.type
class PhaseImageNode:
    image: ImageNode
    linked_by: str  # link | session | date


@strawberry.type
class Phase:
    milestone: MilestoneNode | None  # None: before the first milestone
    image_count: int
    images: list[PhaseImageNode]


@strawberry.type
class TreatmentTimeline:
    patient_id: strawberry.ID
    phases: list[Phase]


@strawberry.input
class RecordMilestoneInput:
    patient_id: strawberry.ID
    kind: str
    occurred_on: date
    label: str = ""
    milestone_id: str | None = None


@strawberry.input
class LinkImageInput:
    image_id: strawberry.ID
    milestone_id: str


@strawberry.input
class UnlinkImageInput:
    image_id: strawberry.ID


@strawberry.input
class AddImageNoteInput:
    image_id: strawberry.ID
    text: str


async def _timeline(services: Services, actor: Actor, patient_id: UUID,
                    images_per_phase: int) -> TreatmentTimeline:
    if await blocking(services.gallery.patient, actor.clinic_id, patient_id) is None:
        raise NotFound("patient_not_found", "no such patient")
    phases = await blocking(services.treatment.phases_of_patient, actor.clinic_id, patient_id)
    times = await blocking(services.gallery.capture_times, actor.clinic_id, patient_id,
                           _visible_categories(actor))
    milestones = [PhaseMilestone(m.milestone_id, m.kind, m.occurred_on)
                  for m in phases.milestones]
    assigned = assign_phases(milestones, [
        PhaseImage(image_id, captured_at, *phases.sessions.get(image_id, (None, None)))
        for image_id, captured_at in times], phases.links)
    names = labels(milestones)
    groups: dict[str | None, list[tuple[UUID, str]]] = {}
    for image_id, _captured in times:  # newest first within each phase
        milestone_id, how = assigned[image_id]
        groups.setdefault(milestone_id, []).append((image_id, how))
    shown = [i for members in groups.values() for i, _ in members[:images_per_phase]]
    rows = await blocking(services.gallery.images_by_id, actor.clinic_id, shown)
    await blocking(services.app.record_access, actor,
                   [(r.id, r.patient_id) for r in rows.values()], AccessKind.METADATA)

    def phase(milestone: MilestoneNode | None, key: str | None) -> Phase:
        members = groups.get(key, [])
        return Phase(milestone=milestone, image_count=len(members), images=[
            PhaseImageNode(image=_image_node(rows[i], actor), linked_by=how)
            for i, how in members[:images_per_phase] if i in rows])

    result = [phase(None, None)] if None in groups else []
    for m in sorted(phases.milestones, key=lambda m: (m.occurred_on, m.milestone_id)):
        node = MilestoneNode(id=m.milestone_id, kind=m.kind,
                             label=m.label or names[m.milestone_id],
                             occurred_on=m.occurred_on, source=m.source)
        result.append(phase(node, m.milestone_id))
    return TreatmentTimeline(patient_id=strawberry.ID(str(patient_id)), phases=result)


# ---- the schema parts ---------------------------------------------------------------------

@strawberry.type
class OrganisationQuery:
    @strawberry.field(description="The clinic's albums under a parent (top level: none).")
    async def albums(self, info: Info, parent_id: strawberry.ID | None = None,
                     include_archived: bool = False) -> list[AlbumNode]:
        actor, services = actor_of(info), info.context.services
        _require_view(actor)
        parent = parse_id(parent_id, "parentId") if parent_id is not None else None
        rows = await blocking(services.albums.children, actor.clinic_id, parent,
                              include_archived=include_archived)
        return [_album(r) for r in rows]

    @strawberry.field
    async def album(self, info: Info, id: strawberry.ID) -> AlbumNode:
        actor, services = actor_of(info), info.context.services
        _require_view(actor)
        row = await blocking(services.albums.album, actor.clinic_id, parse_id(id, "id"))
        if row is None:
            raise NotFound("album_not_found", "no such album")
        return _album(row)

    @strawberry.field(description="Controlled and free tags with image counts, and aliases.")
    async def tag_vocabulary(self, info: Info) -> TagVocabularyNode:
        actor, services = actor_of(info), info.context.services
        _require_view(actor)
        return await blocking(_vocabulary, services, actor)

    @strawberry.field(description="A patient's phases, oldest first, with their images.")
    async def treatment_timeline(self, info: Info, patient_id: strawberry.ID,
                                 images_per_phase: int = 20) -> TreatmentTimeline:
        actor, services = actor_of(info), info.context.services
        _require_view(actor)
        if not 0 <= images_per_phase <= MAX_PER_PHASE:
            raise InvalidInput("invalid_page_size",
                               f"imagesPerPhase must be between 0 and {MAX_PER_PHASE}")
        return await _timeline(services, actor, parse_id(patient_id, "patientId"),
                               images_per_phase)


@strawberry.type
class OrganisationMutation:
    @strawberry.mutation
    async def create_album(self, info: Info, input: CreateAlbumInput) -> AlbumNode:
        actor, services = actor_of(info), info.context.services
        parent = parse_id(input.parent_id, "parentId") if input.parent_id else None
        written = await blocking(services.app.create_album, actor, input.name, parent)
        return await _album_after(services, actor, written)

    @strawberry.mutation
    async def rename_album(self, info: Info, input: RenameAlbumInput) -> AlbumNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.rename_album, actor,
                                 parse_id(input.album_id, "albumId"), input.name)
        return await _album_after(services, actor, written)

    @strawberry.mutation
    async def move_album(self, info: Info, input: MoveAlbumInput) -> AlbumNode:
        actor, services = actor_of(info), info.context.services
        parent = parse_id(input.parent_id, "parentId") if input.parent_id else None
        written = await blocking(services.app.move_album, actor,
                                 parse_id(input.album_id, "albumId"), parent)
        return await _album_after(services, actor, written)

    @strawberry.mutation
    async def add_images_to_album(self, info: Info, input: AlbumImagesInput) -> AlbumNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.add_to_album, actor,
                                 parse_id(input.album_id, "albumId"),
                                 _ids(input.image_ids, "imageIds"))
        return await _album_after(services, actor, written)

    @strawberry.mutation
    async def remove_image_from_album(self, info: Info, input: AlbumImageInput) -> AlbumNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.remove_from_album, actor,
                                 parse_id(input.album_id, "albumId"),
                                 parse_id(input.image_id, "imageId"))
        return await _album_after(services, actor, written)

    @strawberry.mutation(description="Set the album's order: list every image exactly once.")
    async def reorder_album(self, info: Info, input: AlbumImagesInput) -> AlbumNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.reorder_album, actor,
                                 parse_id(input.album_id, "albumId"),
                                 _ids(input.image_ids, "imageIds"))
        return await _album_after(services, actor, written)

    @strawberry.mutation
    async def archive_album(self, info: Info, input: AlbumIdInput) -> AlbumNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.archive_album, actor,
                                 parse_id(input.album_id, "albumId"))
        return await _album_after(services, actor, written)

    @strawberry.mutation(description="Add a tag to the clinic's controlled vocabulary.")
    async def add_vocabulary_tag(self, info: Info, tag: str) -> TagVocabularyNode:
        actor, services = actor_of(info), info.context.services
        await blocking(services.app.add_vocabulary_tag, actor, tag)
        return await blocking(_vocabulary, services, actor)

    @strawberry.mutation
    async def remove_vocabulary_tag(self, info: Info, tag: str) -> TagVocabularyNode:
        actor, services = actor_of(info), info.context.services
        await blocking(services.app.remove_vocabulary_tag, actor, tag)
        return await blocking(_vocabulary, services, actor)

    @strawberry.mutation(description="Rename a tag and re-tag every image that carries it.")
    async def rename_tag(self, info: Info, input: RenameTagInput) -> TagChange:
        actor, services = actor_of(info), info.context.services
        done = await blocking(tag_management.rename_tag, services, actor, input.old, input.new)
        return TagChange(source=done.source, target=done.target, retagged=done.retagged)

    @strawberry.mutation(description="Merge one tag into another, re-tagging every image.")
    async def merge_tags(self, info: Info, input: MergeTagsInput) -> TagChange:
        actor, services = actor_of(info), info.context.services
        done = await blocking(tag_management.merge_tags, services, actor, input.source,
                              input.target)
        return TagChange(source=done.source, target=done.target, retagged=done.retagged)

    @strawberry.mutation
    async def record_milestone(self, info: Info, input: RecordMilestoneInput) -> MilestoneNode:
        actor, services = actor_of(info), info.context.services
        patient_id = parse_id(input.patient_id, "patientId")
        milestone_id = str(uuid4()) if input.milestone_id is None else input.milestone_id
        written = await blocking(services.app.record_milestone, actor, patient_id,
                                 kind=input.kind, occurred_on=input.occurred_on,
                                 milestone_id=milestone_id, label=input.label)
        if written.position:
            await _wait(services, written, services.treatment)
        plan = await blocking(services.app.treatment_plan, actor, patient_id)
        recorded = plan.milestones[milestone_ref(milestone_id)]
        return MilestoneNode(id=recorded.milestone_id, kind=recorded.kind,
                             label=recorded.label, occurred_on=recorded.occurred_on,
                             source=recorded.source)

    @strawberry.mutation(description="Put an image in a phase by hand (wins over dates).")
    async def link_image_to_milestone(self, info: Info, input: LinkImageInput) -> ImageNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.link_image_to_milestone, actor,
                                 parse_id(input.image_id, "imageId"), input.milestone_id)
        await _wait(services, written, services.treatment)
        return await _image_after(services, actor, Written(parse_id(input.image_id, "imageId"),
                                                           0))

    @strawberry.mutation
    async def unlink_image_from_milestone(self, info: Info,
                                          input: UnlinkImageInput) -> ImageNode:
        actor, services = actor_of(info), info.context.services
        image_id = parse_id(input.image_id, "imageId")
        written = await blocking(services.app.unlink_image_from_milestone, actor, image_id)
        await _wait(services, written, services.treatment)
        return await _image_after(services, actor, Written(image_id, 0))

    @strawberry.mutation(description="A free-text clinical note, searchable by clinicians.")
    async def add_image_note(self, info: Info, input: AddImageNoteInput) -> ImageNode:
        actor, services = actor_of(info), info.context.services
        written = await blocking(services.app.add_image_note, actor,
                                 parse_id(input.image_id, "imageId"), input.text)
        await _wait(services, written, services.search)  # the gallery does not show notes
        return await _image_after(services, actor, Written(written.id, 0))
