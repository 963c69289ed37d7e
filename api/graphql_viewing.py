"""GraphQL for viewing: non-destructive edits (edit list, revisions, undo, redo) and each
user's saved view state of an image.

Renderings are bytes, served per revision by ``GET /api/v1/images/{id}/edited``
(``api/rest_viewing.py``); ``renderUrl`` names the current one.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.graphql_context import actor_of, blocking, parse_id
from api.rest_viewing import auto_alignment
from api.services import Services
from domain.comparison import Comparison, Transform
from domain.image_edits import ImageEdits
from domain.values import Actor
from domain.view_state import ViewState


@strawberry.type(name="ImageEditList")
class EditListNode:
    image_id: strawberry.ID
    version: int = strawberry.field(description="Send this back with the next edit; 0: none.")
    revision: int = strawberry.field(description="The revision shown; 1 is the original.")
    revisions: int
    operations: JSON
    can_undo: bool
    can_redo: bool
    render_url: str


@strawberry.type(name="ViewState")
class ViewStateNode:
    image_id: strawberry.ID
    zoom: float
    pan_x: float
    pan_y: float
    rotation: float
    window_center: float | None
    window_width: float | None
    visible_layers: list[str]
    edit_revision: int | None


@strawberry.input
class SaveViewStateInput:
    image_id: strawberry.ID
    zoom: float
    pan_x: float
    pan_y: float
    rotation: float = 0.0
    window_center: float | None = None
    window_width: float | None = None
    visible_layers: list[str] = strawberry.field(default_factory=list)
    edit_revision: int | None = None


def _view_state(state: ViewState | None) -> ViewStateNode | None:
    if state is None:
        return None
    v = state.settings
    return ViewStateNode(image_id=strawberry.ID(str(state.image_id)), zoom=v["zoom"],
                         pan_x=v["pan_x"], pan_y=v["pan_y"], rotation=v["rotation"],
                         window_center=v["window_center"], window_width=v["window_width"],
                         visible_layers=v["visible_layers"], edit_revision=v["edit_revision"])


@strawberry.type(name="AlignmentTransform")
class TransformNode:
    scale: float
    rotation_deg: float
    translate_x: float
    translate_y: float
    source: str
    quality: float | None


@strawberry.type(name="ComparedImage")
class ComparedImageNode:
    index: int
    image_id: strawberry.ID
    transform: TransformNode | None = strawberry.field(
        description="Onto the reference (index 0): p_ref = scale R p + translation.")
    aligned_url: str | None


@strawberry.type(name="Comparison")
class ComparisonNode:
    id: strawberry.ID
    patient_id: strawberry.ID
    label: str
    version: int
    images: list[ComparedImageNode]


def _comparison(c: Comparison) -> ComparisonNode:
    images = []
    for index, image_id in enumerate(c.image_ids):
        t = c.transform(index)
        images.append(ComparedImageNode(
            index=index, image_id=strawberry.ID(str(image_id)),
            transform=None if t is None else TransformNode(
                scale=t.scale, rotation_deg=t.rotation_deg, translate_x=t.translate_x,
                translate_y=t.translate_y, source=t.source, quality=t.quality),
            aligned_url=None if t is None else f"/api/v1/comparisons/{c.id}/aligned/{index}.jpg"))
    return ComparisonNode(id=strawberry.ID(str(c.id)),
                          patient_id=strawberry.ID(str(c.patient_id)), label=c.label,
                          version=c.version, images=images)


def _create_comparison(services: Services, actor: Actor, image_ids: list[UUID], label: str,
                       auto_align: bool) -> ComparisonNode:
    images = services.app.check_comparison(actor, image_ids)
    alignments = {}
    if auto_align:
        for index, image in enumerate(images[1:], start=1):
            alignments[index] = auto_alignment(services, actor, images[0], image)
    return _comparison(services.app.create_comparison(actor, image_ids, label, alignments))


@strawberry.input
class ImageEditInput:
    """One operation: rotate(degrees), flip(axis), crop(x, y, width, height),
    brightness/contrast(factor), gamma(gamma), window(center, windowWidth)."""

    op: str
    degrees: float | None = None
    axis: str | None = None
    x: float | None = None
    y: float | None = None
    width: float | None = None
    height: float | None = None
    factor: float | None = None
    gamma: float | None = None
    center: float | None = None
    window_width: float | None = None


def _operation(edit: ImageEditInput) -> dict[str, Any]:
    values = {"op": edit.op, "degrees": edit.degrees, "axis": edit.axis, "x": edit.x,
              "y": edit.y, "width": edit.width, "height": edit.height, "factor": edit.factor,
              "gamma": edit.gamma, "center": edit.center}
    if edit.op.lower() == "window":
        values["width"] = edit.window_width
    return {k: v for k, v in values.items() if v is not None}


def _node(image_id: UUID, edits: ImageEdits | None) -> EditListNode:
    url = f"/api/v1/images/{image_id}/edited"
    if edits is None:
        return EditListNode(image_id=strawberry.ID(str(image_id)), version=0, revision=1,
                            revisions=1, operations=[], can_undo=False, can_redo=False,
                            render_url=url)
    h = edits.history
    return EditListNode(image_id=strawberry.ID(str(image_id)), version=edits.version,
                        revision=h.revision, revisions=h.count, operations=edits.operations,
                        can_undo=h.can_undo, can_redo=h.can_redo,
                        render_url=f"{url}?revision={h.revision}")


def _after(services: Services, actor: Actor, image_id: UUID, command: str,
           *args: Any) -> EditListNode:
    getattr(services.app, command)(actor, image_id, *args)
    return _node(image_id, services.app.image_edits(actor, image_id))


@strawberry.type
class ViewingQuery:
    @strawberry.field(description="The image's non-destructive edit list and revisions.")
    async def image_edits(self, info: Info, image_id: strawberry.ID) -> EditListNode:
        actor, services = actor_of(info), info.context.services
        image = parse_id(image_id, "imageId")
        return _node(image, await blocking(services.app.image_edits, actor, image))

    @strawberry.field
    async def comparison(self, info: Info, id: strawberry.ID) -> ComparisonNode:
        actor, services = actor_of(info), info.context.services
        return _comparison(await blocking(services.app.comparison, actor, parse_id(id, "id")))

    @strawberry.field(description="The caller's own saved view of the image, if any.")
    async def view_state(self, info: Info, image_id: strawberry.ID) -> ViewStateNode | None:
        actor, services = actor_of(info), info.context.services
        return _view_state(await blocking(services.app.view_state, actor,
                                          parse_id(image_id, "imageId")))


@strawberry.type
class ViewingMutation:
    @strawberry.mutation(description="A before/after pair or timeline; the first image is the "
                         "reference, the others are aligned onto it automatically.")
    async def create_comparison(self, info: Info, image_ids: list[strawberry.ID],
                                label: str = "", auto_align: bool = True) -> ComparisonNode:
        actor, services = actor_of(info), info.context.services
        ids = [parse_id(i, "imageIds") for i in image_ids]
        return await blocking(_create_comparison, services, actor, ids, label, auto_align)

    @strawberry.mutation(description="A clinician's correction of one image's alignment.")
    async def correct_alignment(self, info: Info, comparison_id: strawberry.ID, version: int,
                                index: int, scale: float, rotation_deg: float,
                                translate_x: float, translate_y: float) -> ComparisonNode:
        actor, services = actor_of(info), info.context.services
        transform = Transform(scale=scale, rotation_deg=rotation_deg, translate_x=translate_x,
                              translate_y=translate_y, source="manual", quality=None)
        return _comparison(await blocking(services.app.correct_alignment, actor,
                                          parse_id(comparison_id, "comparisonId"), version,
                                          index, transform))

    @strawberry.mutation(description="Save where the caller left this image (last save wins).")
    async def save_view_state(self, info: Info, input: SaveViewStateInput) -> ViewStateNode:
        actor, services = actor_of(info), info.context.services
        state = await blocking(
            services.app.save_view_state, actor, parse_id(input.image_id, "imageId"),
            zoom=input.zoom, pan_x=input.pan_x, pan_y=input.pan_y, rotation=input.rotation,
            window_center=input.window_center, window_width=input.window_width,
            visible_layers=input.visible_layers, edit_revision=input.edit_revision)
        node = _view_state(state)
        assert node is not None
        return node

    @strawberry.mutation(description="Append one operation (a new revision).")
    async def apply_image_edit(self, info: Info, image_id: strawberry.ID, version: int,
                               edit: ImageEditInput) -> EditListNode:
        actor, services = actor_of(info), info.context.services
        return await blocking(_after, services, actor, parse_id(image_id, "imageId"),
                              "apply_image_edit", version, _operation(edit))

    @strawberry.mutation
    async def undo_image_edit(self, info: Info, image_id: strawberry.ID, version: int
                              ) -> EditListNode:
        actor, services = actor_of(info), info.context.services
        return await blocking(_after, services, actor, parse_id(image_id, "imageId"),
                              "undo_image_edit", version)

    @strawberry.mutation
    async def redo_image_edit(self, info: Info, image_id: strawberry.ID, version: int
                              ) -> EditListNode:
        actor, services = actor_of(info), info.context.services
        return await blocking(_after, services, actor, parse_id(image_id, "imageId"),
                              "redo_image_edit", version)

    @strawberry.mutation(description="Back to the original, as a new revision.")
    async def reset_image_edits(self, info: Info, image_id: strawberry.ID, version: int
                                ) -> EditListNode:
        actor, services = actor_of(info), info.context.services
        return await blocking(_after, services, actor, parse_id(image_id, "imageId"),
                              "reset_image_edits", version)
