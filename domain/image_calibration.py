"""How many millimetres one pixel of an image spans: recorded calibrations and the choice.

An image can be calibrated four ways (see ``domain/measurement.py`` for why in this order):
DICOM pixel spacing read from the file; a clinician-recorded scan resolution and
radiographic magnification (a film cephalogram scanned at 512 dpi with a 1611/1524 mm
source geometry); a calibration-ruler annotation of known length; a clinician's manual
figure or the device default. The recorded ones live in :class:`ImageCalibration`, one
aggregate per image whose id derives from the image's, so two clinicians calibrating one
image meet on one stream and the later sees a 409 instead of silently overwriting.

:func:`effective_calibration` makes the choice. It runs at read time, so recalibrating an
image recomputes every measurement and analysis on it: nothing derived is ever stored.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidInput
from domain.measurement import Calibration, CalibrationSource, Shape, calibration_from_ruler
from domain.values import Actor

CALIBRATION_NAMESPACE = uuid.UUID("5d0c3c52-6a57-4d7e-9a1c-2f0f5c6b8e41")
MM_PER_INCH = 25.4
# Anything outside these is a typo, not a radiograph: 1 µm to 5 mm per pixel, and a
# magnification between a contact print (1.0) and a strongly enlarged projection (3.0).
MIN_MM_PER_PIXEL, MAX_MM_PER_PIXEL = 0.001, 5.0
MIN_MAGNIFICATION, MAX_MAGNIFICATION = 1.0, 3.0
RECORDED_SOURCES = (CalibrationSource.SCAN_RESOLUTION, CalibrationSource.MANUAL,
                    CalibrationSource.DEVICE_DEFAULT)


def calibration_id(image_id: UUID) -> UUID:
    return uuid.uuid5(CALIBRATION_NAMESPACE, str(image_id))


@dataclass(frozen=True, slots=True)
class RecordedCalibration:
    """What a clinician recorded: the patient-plane figure and how it was obtained."""

    mm_per_pixel: float
    source: CalibrationSource
    magnification: float | None
    dpi: float | None

    def as_calibration(self) -> Calibration:
        return Calibration(mm_per_pixel=self.mm_per_pixel, source=self.source,
                           magnification=self.magnification)


def _finite(value: float | None, what: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidInput("invalid_calibration", f"{what} must lie between {low:g} and {high:g}")
    return float(value)


def recorded_calibration(
    *, dpi: float | None = None, mm_per_pixel: float | None = None,
    magnification: float | None = None, source: str | None = None,
) -> RecordedCalibration:
    """Validate a clinician's calibration input.

    Either ``dpi`` (a scan's resolution; the figure at the film is 25.4/dpi mm) or
    ``mm_per_pixel`` (at the detector when a magnification is given, else at the patient).
    The magnification, when given, is divided out so the result is at the patient plane.
    """
    if (dpi is None) == (mm_per_pixel is None):
        raise InvalidInput("invalid_calibration", "give either dpi or mmPerPixel")
    factor = _finite(magnification, "magnification", MIN_MAGNIFICATION, MAX_MAGNIFICATION)
    if dpi is not None:
        dpi = _finite(dpi, "dpi", MM_PER_INCH / MAX_MM_PER_PIXEL, MM_PER_INCH / MIN_MM_PER_PIXEL)
        assert dpi is not None
        detector = MM_PER_INCH / dpi
        chosen = CalibrationSource.SCAN_RESOLUTION
    else:
        detector = _finite(mm_per_pixel, "mmPerPixel", MIN_MM_PER_PIXEL, MAX_MM_PER_PIXEL)
        assert detector is not None
        chosen = CalibrationSource.MANUAL
    if source is not None:
        try:
            chosen = CalibrationSource(source)
        except ValueError:
            chosen = CalibrationSource.RULER  # refused just below
        if chosen not in RECORDED_SOURCES:
            allowed = ", ".join(s.value for s in RECORDED_SOURCES)
            raise InvalidInput("invalid_calibration", f"a recorded source is one of {allowed}")
    return RecordedCalibration(mm_per_pixel=detector / (factor or 1.0), source=chosen,
                               magnification=factor, dpi=dpi)


class ImageCalibration(Aggregate):
    """The calibration a clinician recorded for one image (id: :func:`calibration_id`)."""

    @staticmethod
    def create_id(image_id: UUID) -> UUID:
        return calibration_id(image_id)

    @event("Recorded")
    def __init__(self, *, image_id: UUID, patient_id: UUID, clinic_id: str,
                 mm_per_pixel: float, source: str, magnification: float | None,
                 dpi: float | None, actor: Actor) -> None:
        self.image_id = image_id
        self.patient_id = patient_id
        self.clinic_id = clinic_id
        self.current: RecordedCalibration | None = None
        self._set(mm_per_pixel, source, magnification, dpi)

    def _set(self, mm_per_pixel: float, source: str, magnification: float | None,
             dpi: float | None) -> None:
        self.current = RecordedCalibration(mm_per_pixel, CalibrationSource(source),
                                           magnification, dpi)

    @event("Revised")
    def revise(self, *, image_id: UUID, patient_id: UUID, clinic_id: str, mm_per_pixel: float,
               source: str, magnification: float | None, dpi: float | None,
               actor: Actor) -> None:
        self._set(mm_per_pixel, source, magnification, dpi)

    @event("Cleared")
    def clear(self, *, image_id: UUID, patient_id: UUID, clinic_id: str, actor: Actor) -> None:
        self.current = None


def _dicom_spacing(metadata: Mapping[str, Any] | None) -> tuple[Calibration | None, bool]:
    """The DICOM calibration from ``Image.MetadataExtracted(source="dicom")``, and whether it
    refers to the patient plane (False: uncorrected imager spacing, which a ruler beats)."""
    spacing = (metadata or {}).get("pixel_spacing")
    if not isinstance(spacing, Mapping):
        return None, False
    try:
        row, column = float(spacing["row_mm"]), float(spacing["column_mm"])
    except (KeyError, TypeError, ValueError):
        return None, False
    if not (math.isfinite(row) and math.isfinite(column) and row > 0 and column > 0):
        return None, False
    magnification = spacing.get("magnification")
    calibration = Calibration(
        mm_per_pixel=column,
        mm_per_pixel_y=None if math.isclose(row, column, rel_tol=1e-9) else row,
        source=CalibrationSource.DICOM_PIXEL_SPACING,
        magnification=float(magnification) if isinstance(magnification, int | float) else None,
    )
    return calibration, spacing.get("source") != "imager_pixel_spacing"


def effective_calibration(
    *, dicom: Mapping[str, Any] | None, recorded: RecordedCalibration | None,
    ruler: Shape | None,
) -> Calibration | None:
    """The calibration measurements on an image use, best first:

    DICOM spacing at the patient plane, a recorded scan resolution with its magnification,
    a calibration ruler, uncorrected DICOM imager spacing, a manual figure or device
    default; None when there is nothing (measurements then stay in pixels).
    """
    from_dicom, at_patient = _dicom_spacing(dicom)
    if from_dicom is not None and at_patient:
        return from_dicom
    if (recorded is not None and recorded.source is CalibrationSource.SCAN_RESOLUTION
            and recorded.magnification is not None):
        return recorded.as_calibration()
    if ruler is not None:
        try:
            return calibration_from_ruler(ruler)
        except InvalidInput:
            pass  # a ruler without a usable known length calibrates nothing
    if from_dicom is not None:
        return from_dicom
    if recorded is not None:
        return recorded.as_calibration()
    return None
