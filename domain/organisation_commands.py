"""Commands that organise a gallery: albums, the tag vocabulary, treatment phases, notes,
saved searches.

Mixed into ``domain.imaging.Imaging`` (one base class, ``OrganisationCommands``). Like
every command: tenancy first (another clinic's album, image or patient is NotFound),
then the permission table, then the business rules, then one save.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.album import MAX_DEPTH, Album, album_name
from domain.errors import Conflict, InvalidInput, NotFound
from domain.image import Image
from domain.permissions import Grant, Permission, require
from domain.saved_search import SavedSearch, saved_filters, saved_query, saved_search_name
from domain.tag_vocabulary import TagVocabulary, vocabulary_id
from domain.treatment import (
    MAX_LABEL,
    TreatmentPlan,
    milestone_kind,
    milestone_ref,
    plan_id,
)
from domain.values import Actor

MAX_BATCH = 200
MAX_NOTE = 4000
RETAG_BATCH = 100


def retrying(command: Callable[..., Any]) -> Callable[..., Any]:
    """``domain.imaging.retry_on_conflict``, resolved at call time (imaging imports us)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from domain.imaging import retry_on_conflict

        return retry_on_conflict(command)(*args, **kwargs)

    return wrapper


class AlbumCommands:
    """Uses ``repository``, ``_save``, ``get_image`` and ``_written`` of the application."""

    repository: Any
    _save: Any
    get_image: Any

    def album(self, actor: Actor, album_id: UUID) -> Album:
        try:
            album = self.repository.get(album_id)
        except AggregateNotFoundError:
            raise NotFound("album_not_found", "no such album") from None
        if not isinstance(album, Album) or album.clinic_id != actor.clinic_id:
            raise NotFound("album_not_found", "no such album")
        return album

    def create_album(self, actor: Actor, name: str, parent_id: UUID | None = None) -> Any:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        if parent_id is not None:
            self._depth_below_limit(actor, parent_id)
        album = Album(clinic_id=actor.clinic_id, name=album_name(name), parent_id=parent_id,
                      actor=actor)
        return _written(album.id, self._save(album))

    @retrying
    def rename_album(self, actor: Actor, album_id: UUID, name: str) -> Any:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        album = self.album(actor, album_id)
        album.check_open()
        cleaned = album_name(name)
        if cleaned != album.name:
            album.rename(name=cleaned, actor=actor)
        return _written(album.id, self._save(album))

    @retrying
    def move_album(self, actor: Actor, album_id: UUID, parent_id: UUID | None) -> Any:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        album = self.album(actor, album_id)
        album.check_open()
        if parent_id is not None:
            for ancestor in self._ancestors(actor, parent_id):
                if ancestor == album_id:
                    raise Conflict("album_cycle", "an album cannot sit inside itself")
            self._depth_below_limit(actor, parent_id)
        if parent_id != album.parent_id:
            album.move(parent_id=parent_id, actor=actor)
        return _written(album.id, self._save(album))

    @retrying
    def add_to_album(self, actor: Actor, album_id: UUID, image_ids: Sequence[UUID]) -> Any:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        _batch(image_ids)
        album = self.album(actor, album_id)
        album.check_open()
        for image_id in image_ids:
            image = self.get_image(image_id, actor)  # tenancy: another clinic's is NotFound
            if image.is_deleted:
                raise Conflict("image_deleted", "a deleted image cannot be added to an album")
            album.add(image_id=image_id, actor=actor)
        return _written(album.id, self._save(album))

    @retrying
    def remove_from_album(self, actor: Actor, album_id: UUID, image_id: UUID) -> Any:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        album = self.album(actor, album_id)
        album.check_open()
        album.remove(image_id=image_id, actor=actor)
        return _written(album.id, self._save(album))

    @retrying
    def reorder_album(self, actor: Actor, album_id: UUID, image_ids: Sequence[UUID]) -> Any:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        album = self.album(actor, album_id)
        album.check_open()
        for gone in [i for i in album.image_ids if not self._image_alive(actor, i)]:
            album.remove(image_id=gone, actor=actor)  # destroyed since it was added
        album.reorder(image_ids=list(image_ids), actor=actor)
        return _written(album.id, self._save(album))

    def _image_alive(self, actor: Actor, image_id: UUID) -> bool:
        try:
            self.get_image(image_id, actor)
        except NotFound:
            return False
        return True

    @retrying
    def archive_album(self, actor: Actor, album_id: UUID) -> Any:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        album = self.album(actor, album_id)
        if not album.archived:
            album.archive(actor=actor)
        return _written(album.id, self._save(album))

    def _ancestors(self, actor: Actor, album_id: UUID) -> list[UUID]:
        chain = [album_id]
        current = self.album(actor, album_id)
        while current.parent_id is not None and len(chain) <= MAX_DEPTH:
            chain.append(current.parent_id)
            current = self.album(actor, current.parent_id)
        return chain

    def _depth_below_limit(self, actor: Actor, parent_id: UUID) -> None:
        parent = self.album(actor, parent_id)
        parent.check_open()
        if len(self._ancestors(actor, parent_id)) >= MAX_DEPTH:
            raise Conflict("album_too_deep", f"albums nest at most {MAX_DEPTH} deep")


class TagCommands:
    """The clinic's controlled vocabulary (``imaging:admin``), renames and merges."""

    repository: Any
    _save: Any
    get_image: Any

    def tag_vocabulary(self, clinic_id: str) -> TagVocabulary | None:
        try:
            return self.repository.get(vocabulary_id(clinic_id))
        except AggregateNotFoundError:
            return None

    def canonical_tag(self, actor: Actor, tag: str) -> str:
        """The tag as the clinic spells it now (a renamed or merged spelling lands on its
        successor)."""
        vocabulary = self.tag_vocabulary(actor.clinic_id)
        return vocabulary.canonical(tag) if vocabulary is not None else tag

    def _vocabulary(self, actor: Actor) -> TagVocabulary:
        return self.tag_vocabulary(actor.clinic_id) or TagVocabulary(
            clinic_id=actor.clinic_id, actor=actor)

    @retrying
    def add_vocabulary_tag(self, actor: Actor, tag: str) -> Any:
        from domain.imaging import normalise_tag

        require(actor, Permission.ADMIN)
        vocabulary = self._vocabulary(actor)
        vocabulary.add_term(tag=normalise_tag(tag), actor=actor)
        return _written(vocabulary.id, self._save(vocabulary))

    @retrying
    def remove_vocabulary_tag(self, actor: Actor, tag: str) -> Any:
        from domain.imaging import normalise_tag

        require(actor, Permission.ADMIN)
        vocabulary = self._vocabulary(actor)
        vocabulary.remove_term(tag=normalise_tag(tag), actor=actor)
        return _written(vocabulary.id, self._save(vocabulary))

    @retrying
    def rename_tag(self, actor: Actor, old: str, new: str) -> Any:
        """Records the rename; the caller then re-tags the images (``retag_images``)."""
        from domain.imaging import normalise_tag

        require(actor, Permission.ADMIN)
        vocabulary = self._vocabulary(actor)
        vocabulary.rename(old=normalise_tag(old), new=normalise_tag(new), actor=actor)
        return _written(vocabulary.id, self._save(vocabulary))

    @retrying
    def merge_tags(self, actor: Actor, source: str, target: str) -> Any:
        """Records the merge; the caller then re-tags the images (``retag_images``)."""
        from domain.imaging import normalise_tag

        require(actor, Permission.ADMIN)
        vocabulary = self._vocabulary(actor)
        vocabulary.merge(source=normalise_tag(source), target=normalise_tag(target),
                         actor=actor)
        return _written(vocabulary.id, self._save(vocabulary))

    @retrying
    def retag_images(self, actor: Actor, image_ids: Sequence[UUID], source: str,
                     target: str) -> int:
        """Replace ``source`` by ``target`` on each image, in batches of one transaction.

        Deleted images are re-tagged too (they may be restored). Returns the last position.
        """
        require(actor, Permission.ADMIN)
        position = 0
        for start in range(0, len(image_ids), RETAG_BATCH):
            changed = []
            for image_id in image_ids[start:start + RETAG_BATCH]:
                try:
                    image: Image = self.get_image(image_id, actor)
                except NotFound:
                    continue  # destroyed meanwhile
                if source not in image.tags:
                    continue
                image.untag(tag=source, actor=actor)
                image.tag(tag=target, actor=actor)
                changed.append(image)
            if changed:
                position = self._save(*changed)
        return position


class TreatmentCommands:
    """Milestones per patient and explicit image links."""

    repository: Any
    _save: Any
    get_image: Any
    get_patient: Any

    def treatment_plan(self, actor: Actor, patient_id: UUID) -> TreatmentPlan | None:
        self.get_patient(patient_id, actor)  # tenancy
        try:
            return self.repository.get(plan_id(actor.clinic_id, patient_id))
        except AggregateNotFoundError:
            return None

    @retrying
    def record_milestone(self, actor: Actor, patient_id: UUID, *, kind: str,
                         occurred_on: date, milestone_id: str | None = None, label: str = "",
                         source: str = "manual") -> Any:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        plan = self.treatment_plan(actor, patient_id) or TreatmentPlan(
            clinic_id=actor.clinic_id, patient_id=patient_id, actor=actor)
        label = " ".join(label.split())
        if len(label) > MAX_LABEL or not label.isprintable():
            raise InvalidInput("invalid_label", f"a label is at most {MAX_LABEL} characters")
        if source not in ("manual", "treatment"):
            raise InvalidInput("invalid_source", "source is manual or treatment")
        reference = str(uuid.uuid4()) if milestone_id is None else milestone_ref(milestone_id)
        plan.record(milestone_id=reference,
                    kind=milestone_kind(kind), label=label, occurred_on=occurred_on,
                    source=source, actor=actor)
        return _written(plan.id, self._save(plan))

    @retrying
    def link_image_to_milestone(self, actor: Actor, image_id: UUID, milestone_id: str) -> Any:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        image = self.get_image(image_id, actor)
        plan = self.treatment_plan(actor, image.patient_id)
        if plan is None:
            raise NotFound("milestone_not_found", "no such milestone for this patient")
        plan.link(image_id=image_id, milestone_id=milestone_ref(milestone_id), actor=actor)
        return _written(plan.id, self._save(plan))

    @retrying
    def unlink_image_from_milestone(self, actor: Actor, image_id: UUID) -> Any:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        image = self.get_image(image_id, actor)
        plan = self.treatment_plan(actor, image.patient_id)
        if plan is None or not plan.unlink(image_id=image_id, actor=actor):
            raise Conflict("image_not_linked", "the image has no explicit milestone link")
        return _written(plan.id, self._save(plan))


class NoteCommands:
    """Free-text clinical notes on an image (searchable by clinical roles only)."""

    repository: Any
    _save: Any
    get_image: Any

    @retrying
    def add_image_note(self, actor: Actor, image_id: UUID, text: str) -> Any:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        cleaned = text.strip()
        if not cleaned or len(cleaned) > MAX_NOTE:
            raise InvalidInput("invalid_note", f"a note is 1-{MAX_NOTE} characters")
        if any(not ch.isprintable() and ch not in "\n\t" for ch in cleaned):
            raise InvalidInput("invalid_note", "a note holds printable text only")
        image = self.get_image(image_id, actor)
        if image.is_deleted:
            raise Conflict("image_deleted", "the image is deleted; restore it first")
        image.add_note(note_id=uuid.uuid4(), text=cleaned, actor=actor)
        return _written(image.id, self._save(image))


class SavedSearchCommands:
    """Stored queries, the clinic's (shared) or one user's (private). Like albums:
    organising needs ``imaging:annotate``; another clinic's saved search, or another
    user's private one, is NotFound before anything else is checked."""

    repository: Any
    _save: Any

    def saved_search(self, actor: Actor, search_id: UUID) -> SavedSearch:
        try:
            found = self.repository.get(search_id)
        except AggregateNotFoundError:
            found = None
        if not isinstance(found, SavedSearch) or not found.visible_to(actor):
            raise NotFound("saved_search_not_found", "no such saved search")
        return found

    def create_saved_search(self, actor: Actor, *, name: str, query: str,
                            filters: dict[str, str], shared: bool) -> Any:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        saved = SavedSearch(clinic_id=actor.clinic_id,
                            owner_id=None if shared else actor.user_id,
                            name=saved_search_name(name), query=saved_query(query),
                            filters=saved_filters(filters), actor=actor)
        return _written(saved.id, self._save(saved))

    @retrying
    def rename_saved_search(self, actor: Actor, search_id: UUID, name: str) -> Any:
        saved = self.saved_search(actor, search_id)
        require(actor, Permission.ANNOTATE, Grant.OWN)
        cleaned = saved_search_name(name)
        if cleaned != saved.name:
            saved.rename(name=cleaned, actor=actor)
        return _written(saved.id, self._save(saved))

    @retrying
    def update_saved_search(self, actor: Actor, search_id: UUID, *, query: str,
                            filters: dict[str, str]) -> Any:
        saved = self.saved_search(actor, search_id)
        require(actor, Permission.ANNOTATE, Grant.OWN)
        query, filters = saved_query(query), saved_filters(filters)
        if (query, filters) != (saved.query, saved.filters):
            saved.change_query(query=query, filters=filters, actor=actor)
        return _written(saved.id, self._save(saved))

    @retrying
    def delete_saved_search(self, actor: Actor, search_id: UUID) -> Any:
        saved = self.saved_search(actor, search_id)
        require(actor, Permission.ANNOTATE, Grant.OWN)
        saved.delete(actor=actor)
        return _written(saved.id, self._save(saved))


class OrganisationCommands(AlbumCommands, TagCommands, TreatmentCommands, NoteCommands,
                           SavedSearchCommands):
    """Everything of issue 6 (and issue 19's saved searches) the imaging application
    accepts."""


def _batch(image_ids: Sequence[UUID]) -> None:
    if not image_ids:
        raise InvalidInput("no_images", "name at least one image")
    if len(image_ids) > MAX_BATCH:
        raise InvalidInput("too_many_images", f"at most {MAX_BATCH} images at once")
    if len(set(image_ids)) != len(image_ids):
        raise InvalidInput("duplicate_images", "an image is named twice")


def _written(aggregate_id: UUID, position: int) -> Any:
    from domain.imaging import Written

    return Written(aggregate_id, position)
