"""A cephalometric tracing: the landmarks a clinician placed on one lateral cephalogram.

One aggregate per tracing (an image may carry several, e.g. two clinicians' or a before and
after re-trace). Placing, moving and removing landmarks are events carrying the resulting
landmark set, the version edited is checked (409 ``stale_version`` on a stale one), and undo
and redo are events too (``domain/revision_history.py``). Analyses are never stored: they
are computed from the landmarks and the image's calibration when asked for
(``domain/cephalometry/analyses.py``), so undo brings the previous values back exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.cephalometry.landmarks import check_known
from domain.errors import InvalidInput
from domain.measurement import check_coordinates
from domain.revision_history import Content, RevisionHistory
from domain.values import Actor

Landmarks = dict[str, list[float]]


def validate_landmarks(landmarks: Mapping[str, Sequence[float]],
                       image_size: tuple[int, int]) -> Landmarks:
    """Catalogue codes only, finite coordinates inside the image; ``unknown_landmark`` names
    every unknown code at once."""
    check_known(landmarks)
    out: Landmarks = {}
    for code, point in landmarks.items():
        if len(point) != 2:
            raise InvalidInput("invalid_coordinates", f"landmark {code} needs [x, y]")
        x, y = float(point[0]), float(point[1])
        check_coordinates([(x, y)], image_size)
        out[code] = [x, y]
    return out


class Tracing(Aggregate):
    @event("Started")
    def __init__(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
                 landmarks: Landmarks, actor: Actor) -> None:
        self.image_id = image_id
        self.patient_id = patient_id
        self.clinic_id = clinic_id
        self.author = actor.user_id
        self.history = RevisionHistory({"landmarks": dict(landmarks), "suggestions": {},
                                        "removed": False})

    @property
    def content(self) -> Content:
        return self.history.current

    @property
    def landmarks(self) -> Landmarks:
        return dict(self.content["landmarks"])

    @property
    def suggestions(self) -> Landmarks:
        """Suggested positions not yet confirmed by a clinician (analyses ignore them)."""
        return dict(self.content["suggestions"])

    @property
    def removed(self) -> bool:
        return bool(self.content["removed"])

    @property
    def suggested_by(self) -> dict[str, Any] | None:
        """What produced the current suggestions: ``{"source": ...}`` and, for a model, its
        id, name and version (recorded in ``LandmarksSuggested``)."""
        by = self.content.get("suggested_by")
        return dict(by) if by and self.suggestions else None

    def _next(self, landmarks: Landmarks, suggestions: Landmarks, removed: bool) -> Content:
        # Suggestions that survive an edit keep their provenance.
        return {"landmarks": landmarks, "suggestions": suggestions, "removed": removed,
                "suggested_by": self.content.get("suggested_by") if suggestions else None}

    def _ids(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "patient_id": self.patient_id,
                "clinic_id": self.clinic_id}

    def place(self, placed: Landmarks, actor: Actor) -> None:
        """Place new landmarks or move placed ones (one event for a batch)."""
        landmarks = {**self.landmarks, **placed}
        # A clinician's own click supersedes a suggestion for the same point.
        suggestions = {c: p for c, p in self.suggestions.items() if c not in placed}
        self._placed(codes=sorted(placed), landmarks=landmarks, suggestions=suggestions,
                     actor=actor, **self._ids())

    @event("LandmarksPlaced")
    def _placed(self, *, image_id: UUID, patient_id: UUID, clinic_id: str, codes: list[str],
                landmarks: Landmarks, suggestions: Landmarks, actor: Actor) -> None:
        self.history.push(self._next(landmarks, suggestions, False))

    def suggest(self, suggested: Landmarks, source: str, actor: Actor,
                model: dict[str, str] | None = None) -> None:
        """Record suggestions for points not placed yet (they replace earlier ones);
        ``model`` names the detector (id, name, version) when one made them."""
        suggestions = {c: p for c, p in suggested.items() if c not in self.landmarks}
        if not suggestions:
            raise InvalidInput("nothing_to_suggest", "every suggestible landmark is placed")
        self._suggested(source=source, suggestions=suggestions, landmarks=self.landmarks,
                        actor=actor, model=model, **self._ids())

    @event("LandmarksSuggested")
    def _suggested(self, *, image_id: UUID, patient_id: UUID, clinic_id: str, source: str,
                   suggestions: Landmarks, landmarks: Landmarks, actor: Actor,
                   model: dict[str, str] | None = None) -> None:
        # ``model`` has a default: events recorded before models existed carry none.
        self.history.push({"landmarks": landmarks, "suggestions": suggestions,
                           "removed": False, "suggested_by": {"source": source, **(model or {})}})

    def confirm(self, codes: Sequence[str], actor: Actor) -> None:
        """Accept suggestions as placed landmarks (a clinician's decision, recorded)."""
        check_known(codes)
        absent = sorted(set(codes) - set(self.suggestions))
        if absent:
            raise InvalidInput("landmark_not_suggested",
                               f"no suggestion to confirm for: {', '.join(absent)}")
        chosen = set(codes)
        landmarks = {**self.landmarks, **{c: p for c, p in self.suggestions.items()
                                          if c in chosen}}
        suggestions = {c: p for c, p in self.suggestions.items() if c not in chosen}
        self._confirmed(codes=sorted(chosen), landmarks=landmarks, suggestions=suggestions,
                        actor=actor, **self._ids())

    @event("LandmarksConfirmed")
    def _confirmed(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
                   codes: list[str], landmarks: Landmarks, suggestions: Landmarks,
                   actor: Actor) -> None:
        self.history.push(self._next(landmarks, suggestions, False))

    def remove_landmarks(self, codes: Sequence[str], actor: Actor) -> None:
        check_known(codes)
        absent = sorted(set(codes) - set(self.landmarks))
        if absent:
            raise InvalidInput("landmark_not_placed",
                               f"not placed on this tracing: {', '.join(absent)}")
        landmarks = {c: p for c, p in self.landmarks.items() if c not in set(codes)}
        self._landmarks_removed(codes=sorted(set(codes)), landmarks=landmarks,
                                suggestions=self.suggestions, actor=actor, **self._ids())

    @event("LandmarksRemoved")
    def _landmarks_removed(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
                           codes: list[str], landmarks: Landmarks, suggestions: Landmarks,
                           actor: Actor) -> None:
        self.history.push(self._next(landmarks, suggestions, False))

    def discard(self, actor: Actor) -> None:
        """Remove the whole tracing (undo brings it back)."""
        self._discarded(landmarks=self.landmarks, suggestions=self.suggestions, actor=actor,
                        **self._ids())

    @event("Discarded")
    def _discarded(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
                   landmarks: Landmarks, suggestions: Landmarks, actor: Actor) -> None:
        self.history.push(self._next(landmarks, suggestions, True))

    def undo(self, actor: Actor) -> None:
        content = self.history.peek_undo()
        self._undone(landmarks=content["landmarks"], suggestions=content["suggestions"],
                     removed=content["removed"], actor=actor, **self._ids())

    @event("Undone")
    def _undone(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
                landmarks: Landmarks, suggestions: Landmarks, removed: bool,
                actor: Actor) -> None:
        self.history.move(-1)

    def redo(self, actor: Actor) -> None:
        content = self.history.peek_redo()
        self._redone(landmarks=content["landmarks"], suggestions=content["suggestions"],
                     removed=content["removed"], actor=actor, **self._ids())

    @event("Redone")
    def _redone(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
                landmarks: Landmarks, suggestions: Landmarks, removed: bool,
                actor: Actor) -> None:
        self.history.move(+1)


TRACING_EVENTS = (Tracing.Started, Tracing.LandmarksPlaced, Tracing.LandmarksRemoved,
                  Tracing.LandmarksSuggested, Tracing.LandmarksConfirmed,
                  Tracing.Discarded, Tracing.Undone, Tracing.Redone)
