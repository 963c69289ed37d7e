"""Non-destructive image editing: an edit list recorded as events, the original untouched.

Rotate, flip, crop, brightness, contrast, gamma and window level are operations appended
to the image's edit list; each state of the list is a numbered revision, and undo and redo
are events that move between revisions (``domain/revision_history.py``). Renderings are
derived per revision from the original (``adapters/image_edit_renderer.py``), so undoing an
edit gives back exactly the pixels of the earlier revision.

Annotation and landmark coordinates stay in original-image pixels whatever the edit list:
a viewer maps them through the same operations it displays.

Operations are applied in order; a crop box is in the pixel space of the image as it stands
at that step (after the rotations and crops before it), which :func:`validate_operation`
checks with :func:`size_after`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidInput
from domain.revision_history import RevisionHistory
from domain.values import Actor

EDITS_NAMESPACE = uuid.UUID("c0a4f0b2-7e0d-4a43-8f0c-3f8f5d0e9a17")
MAX_OPERATIONS = 64


class EditOp(StrEnum):
    ROTATE = "rotate"  # degrees, clockwise on screen; right angles are exact
    FLIP = "flip"  # axis: horizontal (mirror left-right) or vertical
    CROP = "crop"  # x, y, width, height in the current pixel space
    BRIGHTNESS = "brightness"  # factor, 1 = unchanged
    CONTRAST = "contrast"  # factor, 1 = unchanged
    GAMMA = "gamma"  # gamma, 1 = unchanged; >1 brightens mid-tones
    WINDOW = "window"  # center, width on 0-255 (radiographs)


def edits_id(image_id: UUID) -> UUID:
    return uuid.uuid5(EDITS_NAMESPACE, str(image_id))


def _number(values: Mapping[str, Any], name: str, low: float, high: float) -> float:
    value = values.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool) or not (
            math.isfinite(value) and low <= value <= high):
        raise InvalidInput("invalid_edit", f"{name} must be a number from {low:g} to {high:g}")
    return float(value)


def size_after(size: tuple[int, int], operations: Sequence[Mapping[str, Any]]
               ) -> tuple[int, int]:
    width, height = size
    for op in operations:
        if op["op"] == EditOp.ROTATE and round(op["degrees"]) % 180 == 90 and (
                op["degrees"] % 90 == 0):
            width, height = height, width
        elif op["op"] == EditOp.CROP:
            width, height = int(op["width"]), int(op["height"])
    return width, height


def validate_operation(raw: Mapping[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """A clean operation for an image currently of ``size``, or ``invalid_edit``."""
    try:
        kind = EditOp(str(raw.get("op", "")).lower())
    except ValueError:
        allowed = ", ".join(o.value for o in EditOp)
        raise InvalidInput("invalid_edit", f"op is one of {allowed}") from None
    match kind:
        case EditOp.ROTATE:
            degrees = _number(raw, "degrees", -360, 360)
            if degrees == 0:
                raise InvalidInput("invalid_edit", "a rotation by 0 degrees changes nothing")
            return {"op": kind.value, "degrees": degrees % 360}
        case EditOp.FLIP:
            axis = raw.get("axis")
            if axis not in ("horizontal", "vertical"):
                raise InvalidInput("invalid_edit", "axis is horizontal or vertical")
            return {"op": kind.value, "axis": axis}
        case EditOp.CROP:
            width, height = size
            box = {k: _number(raw, k, 0, max(width, height)) for k in ("x", "y", "width",
                                                                       "height")}
            if any(box[k] != int(box[k]) for k in box):
                raise InvalidInput("invalid_edit", "a crop box is in whole pixels")
            if box["width"] < 1 or box["height"] < 1 or box["x"] + box["width"] > width or (
                    box["y"] + box["height"] > height):
                raise InvalidInput("invalid_edit",
                                   f"the crop box must lie inside the {width}x{height} image")
            return {"op": kind.value, **{k: int(v) for k, v in box.items()}}
        case EditOp.BRIGHTNESS | EditOp.CONTRAST:
            return {"op": kind.value, "factor": _number(raw, "factor", 0.05, 5.0)}
        case EditOp.GAMMA:
            return {"op": kind.value, "gamma": _number(raw, "gamma", 0.1, 10.0)}
        case EditOp.WINDOW:
            return {"op": kind.value, "center": _number(raw, "center", 0, 255),
                    "width": _number(raw, "width", 1, 255)}
    raise AssertionError(kind)  # pragma: no cover - every member is matched above


class ImageEdits(Aggregate):
    """The edit list of one image (id: :func:`edits_id`)."""

    @staticmethod
    def create_id(image_id: UUID) -> UUID:
        return edits_id(image_id)

    @event("Opened")
    def __init__(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
                 actor: Actor) -> None:
        self.image_id = image_id
        self.patient_id = patient_id
        self.clinic_id = clinic_id
        self.history = RevisionHistory({"operations": []})

    @property
    def operations(self) -> list[dict[str, Any]]:
        return list(self.history.current["operations"])

    def _ids(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "patient_id": self.patient_id,
                "clinic_id": self.clinic_id}

    def append(self, operation: dict[str, Any], actor: Actor) -> None:
        if len(self.operations) >= MAX_OPERATIONS:
            raise InvalidInput("invalid_edit", f"an edit list has at most {MAX_OPERATIONS}"
                               " operations; reset or undo first")
        self._edited(operation=operation, operations=[*self.operations, operation],
                     actor=actor, **self._ids())

    @event("Edited")
    def _edited(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
                operation: dict[str, Any], operations: list[dict[str, Any]],
                actor: Actor) -> None:
        self.history.push({"operations": operations})

    def reset(self, actor: Actor) -> None:
        """Back to the original, as a new revision (undo returns to the edits)."""
        self._reset(operations=[], actor=actor, **self._ids())

    @event("Reset")
    def _reset(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
               operations: list[dict[str, Any]], actor: Actor) -> None:
        self.history.push({"operations": operations})

    def undo(self, actor: Actor) -> None:
        self._undone(operations=self.history.peek_undo()["operations"], actor=actor,
                     **self._ids())

    @event("Undone")
    def _undone(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
                operations: list[dict[str, Any]], actor: Actor) -> None:
        self.history.move(-1)

    def redo(self, actor: Actor) -> None:
        self._redone(operations=self.history.peek_redo()["operations"], actor=actor,
                     **self._ids())

    @event("Redone")
    def _redone(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
                operations: list[dict[str, Any]], actor: Actor) -> None:
        self.history.move(+1)

    def operations_at(self, revision: int) -> list[dict[str, Any]]:
        """The edit list of revision ``revision`` (1 = the original) on the current branch."""
        return self.history.at(revision)["operations"]
