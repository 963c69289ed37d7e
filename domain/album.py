"""Albums: a clinic's own, nestable collections of images, ordered by hand.

An image may sit in several albums; adding, removing and reordering are events on the
album, never on the image, so organising a gallery never contends with the image's own
stream (workers record derivatives there). Album names are free text and may name a
patient, so album events are sealed like every other non-PHI-free event (with the album's
own subject key).
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import Conflict, InvalidInput
from domain.values import Actor

MAX_ALBUM_NAME = 120
MAX_ALBUM_IMAGES = 5000
MAX_DEPTH = 8


def album_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > MAX_ALBUM_NAME or not cleaned.isprintable():
        raise InvalidInput("invalid_album_name",
                           f"an album name is 1-{MAX_ALBUM_NAME} printable characters")
    return cleaned


class Album(Aggregate):
    @event("Created")
    def __init__(self, *, clinic_id: str, name: str, parent_id: UUID | None,
                 actor: Actor) -> None:
        self.clinic_id = clinic_id
        self.name = name
        self.parent_id = parent_id
        self.image_ids: list[UUID] = []
        self.archived = False

    @event("Renamed")
    def rename(self, *, name: str, actor: Actor) -> None:
        self.name = name

    @event("Moved")
    def move(self, *, parent_id: UUID | None, actor: Actor) -> None:
        self.parent_id = parent_id

    def add(self, *, image_id: UUID, actor: Actor) -> bool:
        """Adding an image that is already in the album records nothing."""
        if image_id in self.image_ids:
            return False
        if len(self.image_ids) >= MAX_ALBUM_IMAGES:
            raise Conflict("album_full", f"an album holds at most {MAX_ALBUM_IMAGES} images")
        self._add(image_id=image_id, actor=actor)
        return True

    @event("ImageAdded")
    def _add(self, *, image_id: UUID, actor: Actor) -> None:
        self.image_ids.append(image_id)

    def remove(self, *, image_id: UUID, actor: Actor) -> None:
        if image_id not in self.image_ids:
            raise Conflict("image_not_in_album", "the image is not in this album")
        self._remove(image_id=image_id, actor=actor)

    @event("ImageRemoved")
    def _remove(self, *, image_id: UUID, actor: Actor) -> None:
        self.image_ids.remove(image_id)

    def reorder(self, *, image_ids: list[UUID], actor: Actor) -> None:
        """The new order must name exactly the album's images, each once."""
        if len(image_ids) != len(set(image_ids)) or set(image_ids) != set(self.image_ids):
            raise InvalidInput("invalid_order",
                               "the new order must list every image of the album exactly once")
        if image_ids != self.image_ids:
            self._reorder(image_ids=image_ids, actor=actor)

    @event("Reordered")
    def _reorder(self, *, image_ids: list[UUID], actor: Actor) -> None:
        self.image_ids = list(image_ids)

    @event("Archived")
    def archive(self, *, actor: Actor) -> None:
        self.archived = True

    def check_open(self) -> None:
        if self.archived:
            raise Conflict("album_archived", "the album is archived")
