"""Commands for annotations, image calibration and cephalometric tracings (a mixin on Imaging).

Permissions (``domain/permissions.py``): drawing and editing annotations and calibrating
need ``imaging:annotate``; clinical staff hold it as OWN: they edit anyone's annotations
but remove (or undo into a removal) only their own. Tracings and analyses need
``imaging:cephalometric``. Reading needs ``imaging:view``. Another clinic's image,
annotation or tracing is NotFound. A deleted image takes no new marks (409 image_deleted).

Optimistic concurrency visible to users: every edit names the aggregate version it was made
on; a different current version, or losing the race to save, answers 409 ``stale_version``
and records nothing. Unlike worker races, these are never retried: the clinician must see
the other person's change before deciding again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from domain.annotation import Annotation, make_content, parse_kind
from domain.cephalometry.analyses import AnalysisResult, analyze
from domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from domain.image import Image, ImageCategory
from domain.image_calibration import (
    ImageCalibration,
    RecordedCalibration,
    calibration_id,
    effective_calibration,
    recorded_calibration,
)
from domain.landmark_suggestion import SOURCE_MODEL, SOURCE_TEMPLATE, suggest_from_anchors
from domain.measurement import Calibration, Shape
from domain.permissions import Grant, Permission, require
from domain.tracing import Tracing, validate_landmarks
from domain.values import Actor


@dataclass(frozen=True)
class Edited:
    """The id an edit touched, the aggregate's version after it, and the log position."""

    id: UUID
    version: int
    position: int


@dataclass(frozen=True)
class TracingAnalysis:
    tracing: Tracing
    calibration: Calibration | None
    age: float | None
    sex: str | None
    results: tuple[AnalysisResult, ...]


def age_in_years(birth: date, on: date) -> float:
    return (on - birth).days / 365.2425


class AnnotationCommands:
    """Uses ``repository``, ``_save``, ``_get``, ``get_image`` and ``get_patient`` of Imaging."""

    repository: Any
    _save: Any
    _get: Any
    get_image: Any
    get_patient: Any

    # ---- shared ------------------------------------------------------------------------

    def _markable_image(self, actor: Actor, image_id: UUID) -> Image:
        image = self.get_image(image_id, actor)
        if image.is_deleted:
            raise Conflict("image_deleted", "the image is deleted; restore it first")
        return image

    @staticmethod
    def _check_version(aggregate: Any, expected_version: int) -> None:
        if aggregate.version != expected_version:
            raise Conflict(
                "stale_version",
                f"edited version {expected_version}, but it is at version {aggregate.version};"
                " reload and edit again",
            )

    def _save_edit(self, aggregate: Any) -> Edited:
        try:
            position = self._save(aggregate)
        except IntegrityError:
            # Someone saved an edit on the same version a moment earlier.
            raise Conflict("stale_version",
                           "changed meanwhile by someone else; reload and edit again") from None
        return Edited(aggregate.id, aggregate.version, position)

    # ---- annotations -------------------------------------------------------------------

    def add_annotation(
        self, actor: Actor, image_id: UUID, *, kind: str, points: Sequence[Sequence[float]],
        label: str = "", text: str = "", known_length_mm: float | None = None,
    ) -> Edited:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        image = self._markable_image(actor, image_id)
        content = make_content(kind=parse_kind(kind), points=points, label=label, text=text,
                               known_length_mm=known_length_mm,
                               image_size=(image.width, image.height))
        annotation = Annotation(image_id=image.id, patient_id=image.patient_id,
                                clinic_id=image.clinic_id, content=content, actor=actor)
        return self._save_edit(annotation)

    def annotation(self, actor: Actor, annotation_id: UUID) -> Annotation:
        require(actor, Permission.VIEW)
        return self._get(annotation_id, Annotation, actor)

    def _editable_annotation(self, actor: Actor, annotation_id: UUID,
                             expected_version: int) -> Annotation:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        annotation: Annotation = self._get(annotation_id, Annotation, actor)
        self._markable_image(actor, annotation.image_id)
        self._check_version(annotation, expected_version)
        return annotation

    @staticmethod
    def _check_may_remove(actor: Actor, annotation: Annotation) -> None:
        held = require(actor, Permission.ANNOTATE, Grant.OWN)
        if held is Grant.OWN and annotation.author != actor.user_id:
            raise PermissionDenied("not_own_annotation",
                                   "this role may remove only its own annotations")

    def edit_annotation(
        self, actor: Actor, annotation_id: UUID, expected_version: int, *,
        points: Sequence[Sequence[float]] | None = None, label: str | None = None,
        text: str | None = None, known_length_mm: float | None = None,
    ) -> Edited:
        """Change the points, label, text or ruler length; what is None stays as it was."""
        annotation = self._editable_annotation(actor, annotation_id, expected_version)
        if annotation.removed:
            raise Conflict("annotation_removed", "the annotation is removed; undo to restore")
        image = self.get_image(annotation.image_id, actor)
        current = annotation.content
        content = make_content(
            kind=annotation.kind,
            points=current["points"] if points is None else points,
            label=current["label"] if label is None else label,
            text=current["text"] if text is None else text,
            known_length_mm=(current["known_length_mm"] if known_length_mm is None
                             else known_length_mm),
            image_size=(image.width, image.height),
        )
        annotation.edit(content, actor)
        return self._save_edit(annotation)

    def remove_annotation(self, actor: Actor, annotation_id: UUID,
                          expected_version: int) -> Edited:
        annotation = self._editable_annotation(actor, annotation_id, expected_version)
        self._check_may_remove(actor, annotation)
        if annotation.removed:
            raise Conflict("annotation_removed", "the annotation is already removed")
        annotation.remove(actor)
        return self._save_edit(annotation)

    def undo_annotation(self, actor: Actor, annotation_id: UUID,
                        expected_version: int) -> Edited:
        annotation = self._editable_annotation(actor, annotation_id, expected_version)
        if annotation.history.peek_undo()["removed"]:
            self._check_may_remove(actor, annotation)
        annotation.undo(actor)
        return self._save_edit(annotation)

    def redo_annotation(self, actor: Actor, annotation_id: UUID,
                        expected_version: int) -> Edited:
        annotation = self._editable_annotation(actor, annotation_id, expected_version)
        if annotation.history.peek_redo()["removed"]:
            self._check_may_remove(actor, annotation)
        annotation.redo(actor)
        return self._save_edit(annotation)

    # ---- calibration -------------------------------------------------------------------

    def recorded_calibration(self, actor: Actor, image_id: UUID
                             ) -> tuple[RecordedCalibration | None, int]:
        """The clinician-recorded calibration of an image and its version (0: none yet)."""
        image = self.get_image(image_id, actor)
        try:
            aggregate = self.repository.get(calibration_id(image.id))
        except AggregateNotFoundError:
            return None, 0
        return aggregate.current, aggregate.version

    def calibrate_image(
        self, actor: Actor, image_id: UUID, expected_version: int, *,
        dpi: float | None = None, mm_per_pixel: float | None = None,
        magnification: float | None = None, source: str | None = None,
    ) -> Edited:
        """Record how many mm a pixel spans (``expected_version`` 0 for the first time)."""
        require(actor, Permission.ANNOTATE, Grant.OWN)
        image = self._markable_image(actor, image_id)
        value = recorded_calibration(dpi=dpi, mm_per_pixel=mm_per_pixel,
                                     magnification=magnification, source=source)
        fields = {"image_id": image.id, "patient_id": image.patient_id,
                  "clinic_id": image.clinic_id, "mm_per_pixel": value.mm_per_pixel,
                  "source": value.source.value, "magnification": value.magnification,
                  "dpi": value.dpi, "actor": actor}
        try:
            aggregate = self.repository.get(calibration_id(image.id))
        except AggregateNotFoundError:
            if expected_version != 0:
                raise Conflict("stale_version", "the image has no recorded calibration yet"
                               " (send version 0)") from None
            return self._save_edit(ImageCalibration(**fields))
        self._check_version(aggregate, expected_version)
        aggregate.revise(**fields)
        return self._save_edit(aggregate)

    def clear_calibration(self, actor: Actor, image_id: UUID, expected_version: int) -> Edited:
        require(actor, Permission.ANNOTATE, Grant.OWN)
        image = self._markable_image(actor, image_id)
        try:
            aggregate = self.repository.get(calibration_id(image.id))
        except AggregateNotFoundError:
            raise NotFound("calibration_not_found", "the image has no recorded calibration"
                           ) from None
        self._check_version(aggregate, expected_version)
        aggregate.clear(image_id=image.id, patient_id=image.patient_id,
                        clinic_id=image.clinic_id, actor=actor)
        return self._save_edit(aggregate)

    def image_calibration(self, actor: Actor, image_id: UUID,
                          ruler: Shape | None) -> Calibration | None:
        """The calibration measurements on this image use; ``ruler`` is the image's current
        calibration ruler, which the caller finds in the annotations read model."""
        image = self.get_image(image_id, actor)
        recorded, _version = self.recorded_calibration(actor, image_id)
        return effective_calibration(dicom=image.metadata.get("dicom"), recorded=recorded,
                                     ruler=ruler)

    # ---- tracings ----------------------------------------------------------------------

    def start_tracing(self, actor: Actor, image_id: UUID,
                      landmarks: Mapping[str, Sequence[float]] | None = None) -> Edited:
        require(actor, Permission.CEPHALOMETRIC)
        image = self._markable_image(actor, image_id)
        if image.category != ImageCategory.RADIOGRAPH.value:
            raise Conflict("not_a_radiograph", "cephalometric tracing needs a radiograph")
        tracing = Tracing(image_id=image.id, patient_id=image.patient_id,
                          clinic_id=image.clinic_id,
                          landmarks=validate_landmarks(landmarks or {},
                                                       (image.width, image.height)),
                          actor=actor)
        return self._save_edit(tracing)

    def tracing(self, actor: Actor, tracing_id: UUID) -> Tracing:
        require(actor, Permission.VIEW)
        return self._get(tracing_id, Tracing, actor)

    def _editable_tracing(self, actor: Actor, tracing_id: UUID,
                          expected_version: int) -> tuple[Tracing, Image]:
        require(actor, Permission.CEPHALOMETRIC)
        tracing: Tracing = self._get(tracing_id, Tracing, actor)
        image = self._markable_image(actor, tracing.image_id)
        self._check_version(tracing, expected_version)
        return tracing, image

    def place_landmarks(self, actor: Actor, tracing_id: UUID, expected_version: int,
                        landmarks: Mapping[str, Sequence[float]]) -> Edited:
        tracing, image = self._editable_tracing(actor, tracing_id, expected_version)
        if tracing.removed:
            raise Conflict("tracing_removed", "the tracing is removed; undo to restore")
        placed = validate_landmarks(landmarks, (image.width, image.height))
        if not placed:
            raise InvalidInput("no_landmarks", "name at least one landmark to place")
        tracing.place(placed, actor)
        return self._save_edit(tracing)

    def remove_landmarks(self, actor: Actor, tracing_id: UUID, expected_version: int,
                         codes: Sequence[str]) -> Edited:
        tracing, _image = self._editable_tracing(actor, tracing_id, expected_version)
        if tracing.removed:
            raise Conflict("tracing_removed", "the tracing is removed; undo to restore")
        tracing.remove_landmarks(codes, actor)
        return self._save_edit(tracing)

    def suggest_landmarks(self, actor: Actor, tracing_id: UUID, expected_version: int, *,
                          detected: Mapping[str, Sequence[float]] | None = None,
                          model: dict[str, str] | None = None) -> Edited:
        """Suggest the landmarks not placed yet: by default the template baseline of
        ``domain/landmark_suggestion.py``; ``detected`` is a registered model's answer
        (image pixels), recorded with ``model`` (id, name, version). Suggestions await
        confirmation."""
        tracing, image = self._editable_tracing(actor, tracing_id, expected_version)
        if tracing.removed:
            raise Conflict("tracing_removed", "the tracing is removed; undo to restore")
        if detected is None:
            suggested = suggest_from_anchors(tracing.landmarks, (image.width, image.height))
            source = SOURCE_TEMPLATE
        else:
            suggested = validate_landmarks(detected, (image.width, image.height))
            source = SOURCE_MODEL
        tracing.suggest(suggested, source, actor, model=model)
        return self._save_edit(tracing)

    def confirm_landmarks(self, actor: Actor, tracing_id: UUID, expected_version: int,
                          codes: Sequence[str] | None) -> Edited:
        """Accept the named suggestions (all of them when ``codes`` is None)."""
        tracing, _image = self._editable_tracing(actor, tracing_id, expected_version)
        chosen = sorted(tracing.suggestions) if codes is None else list(codes)
        if not chosen:
            raise InvalidInput("no_landmarks", "there is no suggestion to confirm")
        tracing.confirm(chosen, actor)
        return self._save_edit(tracing)

    def discard_tracing(self, actor: Actor, tracing_id: UUID, expected_version: int) -> Edited:
        tracing, _image = self._editable_tracing(actor, tracing_id, expected_version)
        if tracing.removed:
            raise Conflict("tracing_removed", "the tracing is already removed")
        tracing.discard(actor)
        return self._save_edit(tracing)

    def undo_tracing(self, actor: Actor, tracing_id: UUID, expected_version: int) -> Edited:
        tracing, _image = self._editable_tracing(actor, tracing_id, expected_version)
        tracing.undo(actor)
        return self._save_edit(tracing)

    def redo_tracing(self, actor: Actor, tracing_id: UUID, expected_version: int) -> Edited:
        tracing, _image = self._editable_tracing(actor, tracing_id, expected_version)
        tracing.redo(actor)
        return self._save_edit(tracing)

    def analyse_tracing(self, actor: Actor, tracing_id: UUID, analyses: Sequence[str] | None,
                        ruler: Shape | None) -> TracingAnalysis:
        """Run analyses on the tracing's current landmarks with the image's calibration and
        the norms for the patient's age (at capture) and sex."""
        require(actor, Permission.CEPHALOMETRIC)
        tracing: Tracing = self._get(tracing_id, Tracing, actor)
        if tracing.removed:
            raise NotFound("tracing_not_found", "no such tracing")
        image = self.get_image(tracing.image_id, actor)
        patient = self.get_patient(tracing.patient_id, actor)
        calibration = self.image_calibration(actor, image.id, ruler)
        captured: datetime = image.captured_at
        age = age_in_years(patient.birth_date, captured.date())
        # analyse() takes one isotropic figure; non-square pixels are rare on cephs and
        # would need per-axis scaling, so they are refused rather than measured wrongly.
        if calibration is not None and not calibration.is_isotropic:
            raise Conflict("anisotropic_pixels",
                           "the image has non-square pixels; analyses need square ones")
        results = analyze(tracing.landmarks,
                          calibration.mm_per_pixel if calibration else None,
                          analyses=analyses, age=age, sex=patient.sex)
        return TracingAnalysis(tracing, calibration, age, patient.sex, results)

