"""Annotations drawn on an image: the Annotation aggregate and its geometry rules.

One aggregate per annotation, so two clinicians editing different annotations of one image
never contend, and two editing the same one meet on one stream: each edit names the version
it was made on, and the later of two edits made on the same version is refused (409
``stale_version``) instead of overwriting the other's work.

Coordinates are original-image pixels (x right, y down, see ``domain/measurement.py``).
Every event carries the image, patient and clinic ids and the actor, plus the resulting
content, so read models need no replay logic and the audit can say who drew what where.
The annotation's layer is its author's: viewers toggle layers per author.

Measurements are never stored: they are computed from the points and the image's effective
calibration when read (``measure_content``), so a recalibration updates every one of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidInput
from domain.measurement import (
    Calibration,
    Measurement,
    Shape,
    ShapeKind,
    check_coordinates,
    measure,
)
from domain.revision_history import Content, RevisionHistory
from domain.values import Actor

MAX_POINTS = 5000  # a freehand stroke sampled at screen rate; more is a bug or an attack
MAX_LABEL = 200
MAX_TEXT = 2000


class AnnotationKind(StrEnum):
    POINT = "point"
    LINE = "line"
    ANGLE = "angle"
    POLYLINE = "polyline"
    POLYGON = "polygon"
    ELLIPSE = "ellipse"
    RECTANGLE = "rectangle"
    ARROW = "arrow"
    FREEHAND = "freehand"
    TEXT = "text"
    RULER = "ruler"  # a calibration ruler: a line along a scale of known length


# How each kind is measured: an arrow is a line, a freehand stroke a polyline, a text note
# is anchored at one point and measures nothing.
_SHAPE_OF: dict[AnnotationKind, ShapeKind | None] = {
    AnnotationKind.POINT: ShapeKind.POINT,
    AnnotationKind.LINE: ShapeKind.LINE,
    AnnotationKind.ANGLE: ShapeKind.ANGLE,
    AnnotationKind.POLYLINE: ShapeKind.POLYLINE,
    AnnotationKind.POLYGON: ShapeKind.POLYGON,
    AnnotationKind.ELLIPSE: ShapeKind.ELLIPSE,
    AnnotationKind.RECTANGLE: ShapeKind.RECTANGLE,
    AnnotationKind.ARROW: ShapeKind.LINE,
    AnnotationKind.FREEHAND: ShapeKind.POLYLINE,
    AnnotationKind.TEXT: None,
    AnnotationKind.RULER: ShapeKind.RULER,
}


def parse_kind(kind: str) -> AnnotationKind:
    try:
        return AnnotationKind(kind.lower())
    except ValueError:
        allowed = ", ".join(k.value for k in AnnotationKind)
        raise InvalidInput("unknown_annotation_kind", f"kind is one of {allowed}") from None


def _points(points: Sequence[Sequence[float]]) -> list[list[float]]:
    if len(points) > MAX_POINTS:
        raise InvalidInput("invalid_shape", f"an annotation has at most {MAX_POINTS} points")
    out = []
    for point in points:
        if len(point) != 2:
            raise InvalidInput("invalid_coordinates", "a point is [x, y]")
        out.append([float(point[0]), float(point[1])])
    return out


def shape_of(content: Content) -> Shape | None:
    shape_kind = _SHAPE_OF[AnnotationKind(content["kind"])]
    if shape_kind is None:
        return None
    return Shape(kind=shape_kind, points=tuple((p[0], p[1]) for p in content["points"]),
                 known_length_mm=content.get("known_length_mm"))


def make_content(
    *, kind: AnnotationKind, points: Sequence[Sequence[float]], label: str, text: str,
    known_length_mm: float | None, image_size: tuple[int, int],
) -> Content:
    """Validate one annotation's editable content against its image.

    Refuses points outside the image, the wrong number of points for the kind, degenerate
    geometry (a zero-length line, three collinear angle points) and a ruler without a
    positive known length, each with its stable code. The geometry is measured once here in
    pixels only to prove it is measurable; the value is not kept.
    """
    label = " ".join(label.split())
    if len(label) > MAX_LABEL or not label.isprintable():
        raise InvalidInput("invalid_label",
                           f"a label is at most {MAX_LABEL} printable characters")
    # Free text keeps its line breaks; a NUL (which stalls the read model), escape sequences
    # and bidi overrides are refused.
    if len(text) > MAX_TEXT or any(not ch.isprintable() and ch not in "\r\n\t" for ch in text):
        raise InvalidInput("invalid_text",
                           f"a text note is at most {MAX_TEXT} printable characters")
    if kind is AnnotationKind.TEXT and not text.strip():
        raise InvalidInput("invalid_text", "a text annotation needs its text")
    if kind is AnnotationKind.RULER:
        if known_length_mm is None or not (math.isfinite(known_length_mm)
                                           and 0 < known_length_mm <= 1000):
            raise InvalidInput("invalid_calibration",
                               "a calibration ruler needs its known length (0-1000 mm)")
    elif known_length_mm is not None:
        raise InvalidInput("invalid_shape", "only a ruler has a known length")
    content: Content = {
        "kind": kind.value, "points": _points(points), "label": label, "text": text,
        "known_length_mm": known_length_mm, "removed": False,
    }
    shape = shape_of(content)
    if shape is None:
        if len(content["points"]) != 1:
            raise InvalidInput("invalid_shape", "a text note is anchored at exactly 1 point")
        check_coordinates(content["points"], image_size)
    else:
        measure(shape, image_size=image_size)
    return content


def measure_content(content: Content, calibration: Calibration | None,
                    require_mm: bool = False) -> Measurement | None:
    """The server's measurement of an annotation (None for a text note)."""
    shape = shape_of(content)
    if shape is None:
        return None
    return measure(shape, calibration=calibration, require_mm=require_mm)


class Annotation(Aggregate):
    @event("Added")
    def __init__(self, *, image_id: UUID, patient_id: UUID, clinic_id: str, content: Content,
                 actor: Actor) -> None:
        self.image_id = image_id
        self.patient_id = patient_id
        self.clinic_id = clinic_id
        self.author = actor.user_id
        self.history = RevisionHistory(content)

    @property
    def content(self) -> Content:
        return self.history.current

    @property
    def kind(self) -> AnnotationKind:
        return AnnotationKind(self.content["kind"])

    @property
    def removed(self) -> bool:
        return bool(self.content["removed"])

    def _ids(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "patient_id": self.patient_id,
                "clinic_id": self.clinic_id}

    def edit(self, content: Content, actor: Actor) -> None:
        self._edited(content=content, actor=actor, **self._ids())

    @event("Edited")
    def _edited(self, *, image_id: UUID, patient_id: UUID, clinic_id: str, content: Content,
                actor: Actor) -> None:
        self.history.push(content)

    def remove(self, actor: Actor) -> None:
        self._removed(content={**self.content, "removed": True}, actor=actor, **self._ids())

    @event("Removed")
    def _removed(self, *, image_id: UUID, patient_id: UUID, clinic_id: str, content: Content,
                 actor: Actor) -> None:
        self.history.push(content)

    def undo(self, actor: Actor) -> None:
        self._undone(content=self.history.peek_undo(), actor=actor, **self._ids())

    @event("Undone")
    def _undone(self, *, image_id: UUID, patient_id: UUID, clinic_id: str, content: Content,
                actor: Actor) -> None:
        self.history.move(-1)

    def redo(self, actor: Actor) -> None:
        self._redone(content=self.history.peek_redo(), actor=actor, **self._ids())

    @event("Redone")
    def _redone(self, *, image_id: UUID, patient_id: UUID, clinic_id: str, content: Content,
                actor: Actor) -> None:
        self.history.move(+1)


ANNOTATION_EVENTS = (Annotation.Added, Annotation.Edited, Annotation.Removed,
                     Annotation.Undone, Annotation.Redone)
