"""Saved view states: where each user left an image (zoom, pan, window, visible layers).

One aggregate per (user, image), its id derived from both, so a user's viewer reopens an
image as they left it on any workstation. A view state is personal: the last save wins and
there is nothing to conflict with, so no version is asked for. It needs ``imaging:view``
(the full grade: thumbnails-only roles have no viewer). Saving is an event like any other,
sealed like every event (its key recorded with the patient as owner); the audit shows it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError

from domain.errors import Conflict, InvalidInput
from domain.permissions import Permission, require
from domain.values import Actor

VIEW_STATE_NAMESPACE = uuid.UUID("9e3b1f57-2c1e-4f0e-a7c4-5b8d1f0c2a64")
MAX_LAYERS = 100


def view_state_id(user_id: str, image_id: UUID) -> UUID:
    return uuid.uuid5(VIEW_STATE_NAMESPACE, f"{user_id}\x1f{image_id}")


@dataclass(frozen=True)
class ViewSettings:
    zoom: float
    pan_x: float  # the image point (original pixels) at the viewport's centre
    pan_y: float
    rotation: float  # display rotation in degrees, clockwise
    window_center: float | None
    window_width: float | None
    visible_layers: tuple[str, ...]  # author ids of the annotation layers shown
    edit_revision: int | None  # the non-destructive edit revision shown

    def as_event(self) -> dict[str, Any]:
        return {"zoom": self.zoom, "pan_x": self.pan_x, "pan_y": self.pan_y,
                "rotation": self.rotation, "window_center": self.window_center,
                "window_width": self.window_width,
                "visible_layers": list(self.visible_layers),
                "edit_revision": self.edit_revision}


def _finite(name: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise InvalidInput("invalid_view_state", f"{name} must lie between {low:g} and {high:g}")


def view_settings(*, zoom: float, pan_x: float, pan_y: float, rotation: float = 0.0,
                  window_center: float | None = None, window_width: float | None = None,
                  visible_layers: Sequence[str] = (), edit_revision: int | None = None,
                  image_size: tuple[int, int]) -> ViewSettings:
    _finite("zoom", zoom, 0.01, 64.0)
    width, height = image_size
    _finite("panX", pan_x, 0, width)
    _finite("panY", pan_y, 0, height)
    _finite("rotation", rotation, -360, 360)
    _finite("windowCenter", window_center, 0, 65535)
    _finite("windowWidth", window_width, 1, 65536)
    if (window_center is None) != (window_width is None):
        raise InvalidInput("invalid_view_state", "give windowCenter and windowWidth together")
    if len(visible_layers) > MAX_LAYERS or any(not 0 < len(s) <= 200 for s in visible_layers):
        raise InvalidInput("invalid_view_state", "visibleLayers are up to 100 author ids")
    if edit_revision is not None and edit_revision < 1:
        raise InvalidInput("invalid_view_state", "editRevision counts from 1")
    return ViewSettings(zoom, pan_x, pan_y, rotation, window_center, window_width,
                        tuple(dict.fromkeys(visible_layers)), edit_revision)


class ViewState(Aggregate):
    @staticmethod
    def create_id(user_id: str, image_id: UUID) -> UUID:
        return view_state_id(user_id, image_id)

    @event("Saved")
    def __init__(self, *, user_id: str, image_id: UUID, patient_id: UUID, clinic_id: str,
                 settings: dict[str, Any], actor: Actor) -> None:
        self.user_id = user_id
        self.image_id = image_id
        self.patient_id = patient_id
        self.clinic_id = clinic_id
        self.settings = dict(settings)

    @event("Updated")
    def update(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
               settings: dict[str, Any], actor: Actor) -> None:
        self.settings = dict(settings)


class ViewStateCommands:
    """Mixed into Imaging; uses its ``repository``, ``_save`` and ``get_image``."""

    repository: Any
    _save: Any
    get_image: Any

    def save_view_state(self, actor: Actor, image_id: UUID, **values: Any) -> ViewState:
        """Last save wins: a race between the user's own two viewers is simply re-run."""
        for _attempt in range(3):
            try:
                return self._save_view_state(actor, image_id, values)
            except IntegrityError:
                continue
        raise Conflict("concurrent_update", "the view state changed meanwhile; retry")

    def _save_view_state(self, actor: Actor, image_id: UUID,
                         values: dict[str, Any]) -> ViewState:
        require(actor, Permission.VIEW)
        image = self.get_image(image_id, actor)
        settings = view_settings(image_size=(image.width, image.height), **values).as_event()
        state = self.view_state(actor, image_id)
        if state is None:
            state = ViewState(user_id=actor.user_id, image_id=image.id,
                              patient_id=image.patient_id, clinic_id=image.clinic_id,
                              settings=settings, actor=actor)
        elif state.settings != settings:
            state.update(image_id=image.id, patient_id=image.patient_id,
                         clinic_id=image.clinic_id, settings=settings, actor=actor)
        self._save(state)
        return state

    def view_state(self, actor: Actor, image_id: UUID) -> ViewState | None:
        """The caller's own view state of the image, if saved."""
        require(actor, Permission.VIEW)
        image = self.get_image(image_id, actor)
        try:
            return self.repository.get(view_state_id(actor.user_id, image.id))
        except AggregateNotFoundError:
            return None
