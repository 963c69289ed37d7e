"""Clinic-supplied landmark detection models (ONNX), as data and rules; no I/O here.

A clinic that has a trained detector registers it: the model file (stored encrypted in the
blob store under the model's id) and what the runtime needs to feed it and read it back:

- ``input_width`` x ``input_height``: the model's input, one grey channel, float32
  ``[1, 1, H, W]`` with values 0-1;
- ``pixel_spacing_mm``: the spacing it was trained at. The radiograph is resampled from its
  own effective calibration to that spacing and laid into the input from the top-left
  corner (cropped or padded with black), so one model pixel is always the same anatomy;
- ``landmarks``: the catalogue codes, in the order of the model's output, which is float32
  ``[1, K, 2]``: (x, y) of each landmark in input pixels.

Registering is an event (``LandmarkModel.Registered``) like every other change, carrying
the file's blob reference and SHA-256; the same name and version twice is 409
``model_exists``. ``suggestLandmarks(modelId:)`` runs the model in a child process
(adapters/onnx_landmarks.py) and :func:`read_predictions` refuses an answer that is not
``[1, K, 2]``, not finite, or outside the image (422 ``model_output_invalid``): nothing is
recorded then, and the template fit (domain/landmark_suggestion.py) still works.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import numpy as np
from eventsourcing.domain import Aggregate, event

from domain.cephalometry.landmarks import check_known
from domain.errors import InvalidInput, Unprocessable
from domain.values import Actor, BlobRef

MODEL_MEDIA_TYPE = "application/onnx"
MAX_MODEL_BYTES = 512 * 1024 * 1024
MAX_NAME = 80
MIN_INPUT, MAX_INPUT = 16, 4096
# Cephalometric detectors are trained at 0.1 mm (ISBI 2015) or coarser; 0.01-2 mm allows
# anything a radiograph could sensibly be resampled to.
MIN_SPACING_MM, MAX_SPACING_MM = 0.01, 2.0
OUTPUT_INVALID = "model_output_invalid"
_NAMESPACE = uuid.UUID("6f1d5c1e-4a7e-4f5e-9d0b-19c3e0a1d2b4")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What a registered model expects and answers (see the module docstring)."""

    name: str
    version: str
    input_width: int
    input_height: int
    landmarks: tuple[str, ...]
    pixel_spacing_mm: float

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def _label(value: str, what: str) -> str:
    cleaned = " ".join(str(value).split())
    if not cleaned or len(cleaned) > MAX_NAME or not cleaned.isprintable():
        raise InvalidInput(f"invalid_model_{what}",
                           f"the model {what} is 1-{MAX_NAME} printable characters")
    return cleaned


def model_spec(*, name: str, version: str, input_width: int, input_height: int,
               landmarks: Sequence[str], pixel_spacing_mm: float) -> ModelSpec:
    """Validated metadata; each fault has its own 400 code."""
    for size in (input_width, input_height):
        if not isinstance(size, int) or not MIN_INPUT <= size <= MAX_INPUT:
            raise InvalidInput("invalid_model_input_size",
                               f"the input is {MIN_INPUT}-{MAX_INPUT} pixels each way")
    codes = tuple(str(c).strip() for c in landmarks)
    if not codes:
        raise InvalidInput("invalid_model_landmarks", "name the landmarks the model outputs")
    if len(set(codes)) != len(codes):
        raise InvalidInput("invalid_model_landmarks", "each landmark appears once")
    check_known(codes)
    if not (math.isfinite(pixel_spacing_mm)
            and MIN_SPACING_MM <= pixel_spacing_mm <= MAX_SPACING_MM):
        raise InvalidInput("invalid_model_pixel_spacing",
                           f"pixel spacing is {MIN_SPACING_MM}-{MAX_SPACING_MM} mm")
    return ModelSpec(_label(name, "name"), _label(version, "version"), input_width,
                     input_height, codes, float(pixel_spacing_mm))


def model_id(clinic_id: str, spec: ModelSpec) -> UUID:
    """One id per clinic, name and version: registering the same twice collides."""
    return uuid.uuid5(_NAMESPACE, f"{clinic_id}\x00{spec.name}\x00{spec.version}")


class LandmarkModel(Aggregate):
    @staticmethod
    def create_id(model_id: UUID) -> UUID:
        return model_id

    @event("Registered")
    def __init__(self, *, model_id: UUID, clinic_id: str, name: str, version: str,
                 input_width: int, input_height: int, landmarks: list[str],
                 pixel_spacing_mm: float, file: BlobRef, actor: Actor) -> None:
        self.clinic_id = clinic_id
        self.spec = ModelSpec(name, version, input_width, input_height, tuple(landmarks),
                              pixel_spacing_mm)
        self.file = file
        self.registered_by = actor.user_id


def check_output_shape(shape: Sequence[int], spec: ModelSpec) -> None:
    """The model must answer ``[1, K, 2]`` for its K landmarks."""
    expected = (1, len(spec.landmarks), 2)
    if tuple(int(d) for d in shape) != expected:
        raise Unprocessable("model_mismatch",
                            f"the model answers shape {list(shape)}, expected {list(expected)} "
                            f"for {len(spec.landmarks)} landmarks")


@dataclass(frozen=True, slots=True)
class Resampling:
    """Image pixels -> model input pixels: ``x_model = x * scale_x`` (and y likewise)."""

    scale_x: float
    scale_y: float
    resized: tuple[int, int]  # the whole radiograph at the model's spacing, (w, h)


def resampling(image_size: tuple[int, int], image_mm_per_pixel: float,
               spec: ModelSpec) -> Resampling:
    """How to bring the radiograph to the model's pixel spacing."""
    if not (math.isfinite(image_mm_per_pixel) and image_mm_per_pixel > 0):
        raise InvalidInput("invalid_calibration", "mm_per_pixel must be positive")
    width, height = image_size
    factor = image_mm_per_pixel / spec.pixel_spacing_mm
    resized = (max(1, round(width * factor)), max(1, round(height * factor)))
    # The exact factors after rounding to whole pixels, so mapping back is exact.
    return Resampling(resized[0] / width, resized[1] / height, resized)


def read_predictions(output: np.ndarray, spec: ModelSpec, frame: Resampling,
                     image_size: tuple[int, int]) -> dict[str, list[float]]:
    """The model's answer as suggestions in image pixels, or 422 ``model_output_invalid``."""
    array = np.asarray(output)
    expected = (1, len(spec.landmarks), 2)
    if array.shape != expected:
        raise Unprocessable(OUTPUT_INVALID, f"the model answered shape {list(array.shape)}, "
                                            f"expected {list(expected)}")
    points = array.astype(float)[0]
    if not np.isfinite(points).all():
        raise Unprocessable(OUTPUT_INVALID, "the model answered NaN or infinite coordinates")
    width, height = image_size
    suggestions: dict[str, list[float]] = {}
    outside = []
    for code, (x, y) in zip(spec.landmarks, points, strict=True):
        px, py = float(x) / frame.scale_x, float(y) / frame.scale_y
        if not (0 <= px <= width and 0 <= py <= height):
            outside.append(code)
        suggestions[code] = [px, py]
    if outside:
        # One point off the film means the model is not looking at what it was trained on:
        # none of its answer is trusted.
        raise Unprocessable(OUTPUT_INVALID,
                            f"the model placed {', '.join(outside)} outside the image")
    return suggestions


__all__ = ["MODEL_MEDIA_TYPE", "LandmarkModel", "ModelSpec", "Resampling",
           "check_output_shape", "model_id", "model_spec", "read_predictions", "resampling"]
