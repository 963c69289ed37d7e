"""Comparisons: a before/after pair or an N-image timeline of one patient's view.

The first image is the reference; every other image carries a similarity transform onto it
(scale, rotation clockwise on screen, translation, in original pixels:
``p_reference = scale * R * p_image + translation``) with its source (``auto``: computed by
``adapters/photo_alignment.py``, with a quality figure; ``manual``: a clinician's
correction) so the frontend can synchronise pan and zoom and show a slider. Every change is
an event; a correction names the version it was made on (409 ``stale_version``).

Creating and correcting need ``imaging:annotate``; reading needs ``imaging:view``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError

from domain.errors import Conflict, InvalidInput
from domain.permissions import Grant, Permission, require
from domain.values import Actor

MAX_IMAGES = 12
MAX_LABEL = 200


@dataclass(frozen=True)
class Transform:
    scale: float
    rotation_deg: float
    translate_x: float
    translate_y: float
    source: str  # "auto" or "manual"
    quality: float | None  # auto only: normalised cross-correlation after alignment

    def __post_init__(self) -> None:
        values = (self.scale, self.rotation_deg, self.translate_x, self.translate_y)
        if not all(math.isfinite(v) for v in values) or not 0.1 <= self.scale <= 10:
            raise InvalidInput("invalid_transform",
                               "a transform needs finite values and a scale of 0.1-10")
        if self.source not in ("auto", "manual"):
            raise InvalidInput("invalid_transform", "source is auto or manual")

    def as_event(self) -> dict[str, Any]:
        return asdict(self)


def transform_from(values: Mapping[str, Any]) -> Transform:
    return Transform(**{k: values[k] for k in ("scale", "rotation_deg", "translate_x",
                                               "translate_y", "source", "quality")})


class Comparison(Aggregate):
    @event("Created")
    def __init__(self, *, patient_id: UUID, clinic_id: str, image_ids: list[UUID], label: str,
                 actor: Actor) -> None:
        self.patient_id = patient_id
        self.clinic_id = clinic_id
        self.image_ids = list(image_ids)
        self.label = label
        # One slot per image; the reference (index 0) is the identity and stays None.
        self.transforms: list[dict[str, Any] | None] = [None] * len(image_ids)

    @event("AlignmentRecorded")
    def record_alignment(self, *, patient_id: UUID, clinic_id: str, index: int,
                         transform: dict[str, Any], actor: Actor) -> None:
        self.transforms[index] = dict(transform)

    def transform(self, index: int) -> Transform | None:
        value = self.transforms[index]
        return None if value is None else transform_from(value)


class ComparisonCommands:
    """Mixed into Imaging; uses its ``repository``, ``_save``, ``_get`` and ``get_image``."""

    repository: Any
    _save: Any
    _get: Any
    get_image: Any

    def check_comparison(self, actor: Actor, image_ids: Sequence[UUID]) -> list[Any]:
        """The images of a new comparison, checked (2-12, one patient, none deleted)."""
        require(actor, Permission.ANNOTATE, Grant.OWN)
        if not 2 <= len(image_ids) <= MAX_IMAGES:
            raise InvalidInput("invalid_comparison", f"compare 2-{MAX_IMAGES} images")
        if len(set(image_ids)) != len(image_ids):
            raise InvalidInput("invalid_comparison", "each image appears once")
        images = [self.get_image(i, actor) for i in image_ids]
        if len({image.patient_id for image in images}) != 1:
            raise InvalidInput("different_patients", "compare images of one patient")
        if any(image.is_deleted for image in images):
            raise Conflict("image_deleted", "a deleted image cannot be compared")
        return images

    def create_comparison(self, actor: Actor, image_ids: Sequence[UUID], label: str,
                          alignments: Mapping[int, Transform]) -> Comparison:
        """The comparison and its automatic alignments, in one transaction."""
        images = self.check_comparison(actor, image_ids)
        label = " ".join(label.split())
        if len(label) > MAX_LABEL:
            raise InvalidInput("invalid_label", f"a label is at most {MAX_LABEL} characters")
        comparison = Comparison(patient_id=images[0].patient_id, clinic_id=actor.clinic_id,
                                image_ids=[i.id for i in images], label=label, actor=actor)
        for index, transform in sorted(alignments.items()):
            if not 1 <= index < len(images):
                raise InvalidInput("invalid_comparison", "no such image in the comparison")
            comparison.record_alignment(patient_id=comparison.patient_id,
                                        clinic_id=comparison.clinic_id, index=index,
                                        transform=transform.as_event(), actor=actor)
        self._save(comparison)
        return comparison

    def comparison(self, actor: Actor, comparison_id: UUID) -> Comparison:
        require(actor, Permission.VIEW)
        return self._get(comparison_id, Comparison, actor)

    def correct_alignment(self, actor: Actor, comparison_id: UUID, expected_version: int,
                          index: int, transform: Transform) -> Comparison:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        comparison: Comparison = self._get(comparison_id, Comparison, actor)
        if comparison.version != expected_version:
            raise Conflict("stale_version", f"edited version {expected_version}, but it is at"
                           f" version {comparison.version}; reload and edit again")
        if not 1 <= index < len(comparison.image_ids):
            raise InvalidInput("invalid_comparison",
                               "index names a compared image other than the reference (0)")
        comparison.record_alignment(patient_id=comparison.patient_id,
                                    clinic_id=comparison.clinic_id, index=index,
                                    transform=transform.as_event(), actor=actor)
        try:
            self._save(comparison)
        except IntegrityError:
            raise Conflict("stale_version", "changed meanwhile by someone else") from None
        return comparison
