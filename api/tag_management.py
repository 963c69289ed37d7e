"""Renaming and merging tags: record the vocabulary change, then re-tag every image.

The vocabulary event comes first, so from then on a new tag with the old spelling lands
on the new one (``Imaging.tag_image`` asks the vocabulary). Then every image that still
carries the old tag is re-tagged, in batches, as ordinary ``Untagged``/``Tagged`` events
that every read model follows. The search read model finds those images: it follows the
vocabulary's events too, so waiting for it to reach the vocabulary write guarantees it has
seen every earlier tag. A second pass catches an image tagged in the instant before the
alias existed; running the rename or merge again finishes an interrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from api.services import Services
from domain.errors import Conflict
from domain.imaging import normalise_tag
from domain.values import Actor

log = structlog.get_logger("orthovault.tags")
PASSES = 3


@dataclass(frozen=True)
class Reshaped:
    source: str
    target: str
    retagged: int


def _retag_all(services: Services, actor: Actor, source: str, target: str,
               position: int) -> int:
    retagged = 0
    for _ in range(PASSES):
        if not services.wait_for_read_models(position, services.search):
            raise Conflict("read_model_lagging", "the search index lags behind; retry shortly")
        image_ids = services.search.image_ids_tagged(actor.clinic_id, source)
        if not image_ids:
            break
        position = services.app.retag_images(actor, image_ids, source, target) or position
        retagged += len(image_ids)
    services.wait_for_read_models(position)
    log.info("tag_reshaped", retagged=retagged)
    return retagged


def rename_tag(services: Services, actor: Actor, old: str, new: str) -> Reshaped:
    source, target = normalise_tag(old), normalise_tag(new)
    written = services.app.rename_tag(actor, source, target)
    return Reshaped(source, target, _retag_all(services, actor, source, target,
                                               written.position))


def merge_tags(services: Services, actor: Actor, source: str, target: str) -> Reshaped:
    source, target = normalise_tag(source), normalise_tag(target)
    written = services.app.merge_tags(actor, source, target)
    target = services.app.canonical_tag(actor, target)
    return Reshaped(source, target, _retag_all(services, actor, source, target,
                                               written.position))
