"""Destroying an image for good: tombstone, then crypto-shred, then delete its blobs.

Each step is safe to repeat, so an interrupted destruction is finished by running it again:
the tombstone is written once (the image is then DESTROYED), deleting a key that is gone
and blobs that are gone does nothing.
"""

from __future__ import annotations

from uuid import UUID

import structlog

from api.services import Services
from domain.destruction_certificate import shredded_with
from domain.errors import InvalidInput, NotFound
from domain.image import Image, ImageStatus
from domain.permissions import Permission, require
from domain.values import Actor

log = structlog.get_logger("orthovault.destruction")


def destroy_image(services: Services, actor: Actor, image_id: UUID, reason: str) -> None:
    require(actor, Permission.DELETE)
    if not reason.strip():
        raise InvalidInput("reason_required", "say why the image is destroyed")
    key_store = services.app.key_store
    if key_store.is_destroyed(image_id):
        _ensure_tombstoned_clinic(services, actor, image_id)
        key_store.destroy(subjects_to_shred(services, image_id))
        services.blobs.delete_subject(image_id)
        return
    image = services.app.get_image(image_id, actor, destroyed=True)
    position = 0
    if image.status != ImageStatus.DESTROYED.value:
        position = services.app.destroy_image(actor, image_id, reason.strip()[:500]).position
    key_store.destroy(subjects_to_shred(services, image_id))
    services.blobs.delete_subject(image_id)
    log.info("image_destroyed", image_id=str(image_id))
    services.wait_for_read_models(position)


def subjects_to_shred(services: Services, image_id: UUID) -> list[UUID]:
    """Every subject whose key goes with the image's: those its id determines, and every
    annotation and tracing made on it (their ids outlive the image in the read model)."""
    return [*shredded_with(image_id), *services.annotations.subjects_of_image(image_id)]


def _ensure_tombstoned_clinic(services: Services, actor: Actor, image_id: UUID) -> None:
    """Only the image's own clinic may finish an interrupted destruction."""
    for event in services.app.events.get(image_id):
        if isinstance(event, Image.Destroyed) and event.clinic_id == actor.clinic_id:
            return
    raise NotFound("image_not_found", "no such image")
