"""Commands for non-destructive image edits (a mixin on Imaging, beside AnnotationCommands).

Changing how an image is shown needs ``imaging:annotate`` (clinical staff included); every
edit names the version it was made on (409 ``stale_version`` otherwise); reading needs
``imaging:view``. The original blob never changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.annotation_commands import Edited
from domain.errors import Conflict
from domain.image import Image
from domain.image_edits import ImageEdits, edits_id, size_after, validate_operation
from domain.permissions import Grant, Permission, require
from domain.values import Actor


class ImageEditCommands:
    """Non-destructive edits (``domain/image_edits.py``), mixed into Imaging with
    AnnotationCommands: editing the view of an image needs ``imaging:annotate``."""

    repository: Any
    _markable_image: Any
    _check_version: Any
    _save_edit: Any
    get_image: Any

    def image_edits(self, actor: Actor, image_id: UUID) -> ImageEdits | None:
        """The image's edit list, or None while it has never been edited."""
        require(actor, Permission.VIEW)
        image = self.get_image(image_id, actor)
        try:
            return self.repository.get(edits_id(image.id))
        except AggregateNotFoundError:
            return None

    def _editable_edits(self, actor: Actor, image_id: UUID,
                        expected_version: int) -> tuple[ImageEdits, Image]:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        image = self._markable_image(actor, image_id)
        try:
            edits: ImageEdits = self.repository.get(edits_id(image.id))
        except AggregateNotFoundError:
            if expected_version != 0:
                raise Conflict("stale_version", "the image has no edits yet (send version 0)"
                               ) from None
            edits = ImageEdits(image_id=image.id, patient_id=image.patient_id,
                               clinic_id=image.clinic_id, actor=actor)
            return edits, image
        self._check_version(edits, expected_version)
        return edits, image

    def apply_image_edit(self, actor: Actor, image_id: UUID, expected_version: int,
                         operation: Mapping[str, Any]) -> Edited:
        edits, image = self._editable_edits(actor, image_id, expected_version)
        size = size_after((image.width, image.height), edits.operations)
        edits.append(validate_operation(operation, size), actor)
        return self._save_edit(edits)

    def reset_image_edits(self, actor: Actor, image_id: UUID, expected_version: int) -> Edited:
        edits, _image = self._editable_edits(actor, image_id, expected_version)
        if not edits.operations:
            raise Conflict("nothing_to_reset", "the image shows its original already")
        edits.reset(actor)
        return self._save_edit(edits)

    def undo_image_edit(self, actor: Actor, image_id: UUID, expected_version: int) -> Edited:
        edits, _image = self._editable_edits(actor, image_id, expected_version)
        edits.undo(actor)
        return self._save_edit(edits)

    def redo_image_edit(self, actor: Actor, image_id: UUID, expected_version: int) -> Edited:
        edits, _image = self._editable_edits(actor, image_id, expected_version)
        edits.redo(actor)
        return self._save_edit(edits)
