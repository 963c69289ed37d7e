"""CBCT volumes: assembled from DICOM, sliced, projected, summarised.

Two shapes arrive from dental CBCT units: one enhanced (multi-frame) CT object whose per-frame
functional groups give each slice's position, or a classic series of one file per slice.
Either way slices are ordered by their position along the slice normal (never by
InstanceNumber or file name, which scanners number in either direction), and a gap larger than
the regular spacing means a slice is missing: a volume with a hole would measure wrong, so it
is refused with ``cbct_missing_slices``.

Voxel values are kept in modality units (HU after rescale) as float32; display images are
8-bit, windowed by the series' window or, without one, by robust percentiles. Axial slices are
shown as stored; coronal and sagittal reformats put the patient's head up and are resampled
so that a millimetre is as long across as down.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from PIL import Image as PILImage
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_rescale

from adapters.dicom_codec import read_stored
from adapters.isolated_decoding import pixel_array_isolated
from domain.errors import InvalidInput, TooLarge, Unprocessable

MISSING_SLICES = "cbct_missing_slices"
DUPLICATE_SLICES = "cbct_duplicate_slices"
INCONSISTENT = "cbct_inconsistent_series"
NOT_A_VOLUME = "cbct_not_a_volume"
TOO_LARGE = "cbct_too_large"
UNREADABLE = "cbct_unreadable"
INDEX_OUT_OF_RANGE = "cbct_index_out_of_range"

DEFAULT_MAX_VOXELS = 800 * 800 * 600  # a large-field dental CBCT at 0.2 mm, with headroom
GAP_TOLERANCE = 0.5  # a step 1.5x the regular spacing means at least one slice is missing
THUMBNAIL_PX = 256


class Plane(StrEnum):
    AXIAL = "axial"
    CORONAL = "coronal"
    SAGITTAL = "sagittal"


@dataclass(frozen=True)
class VolumeInfo:
    """Dimensions (columns, rows, slices) and voxel spacing in mm (x, y, z)."""

    columns: int
    rows: int
    slices: int
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    row_direction: tuple[float, float, float]
    column_direction: tuple[float, float, float]
    study_instance_uid: str | None
    series_instance_uid: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dimensions": [self.columns, self.rows, self.slices],
            "spacing_mm": list(self.spacing_mm),
            "origin_mm": list(self.origin_mm),
            "orientation": list(self.row_direction) + list(self.column_direction),
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
        }


@dataclass(frozen=True)
class Volume:
    voxels: np.ndarray  # (slices, rows, columns), float32, modality units, z ascending
    info: VolumeInfo
    window: tuple[float, float] | None  # (centre, width) from the series, if it has one


# ---- reading ------------------------------------------------------------------------------


def _read(data: bytes) -> Dataset:
    try:
        return read_stored(data)  # as ingest read it: a slice without preamble is fine
    except Exception as error:
        raise Unprocessable(UNREADABLE, "a slice is not a readable DICOM object") from error


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(np.isfinite(numbers)):
        return None
    return numbers


def _first_item(ds: Dataset, sequence: str, inner: str) -> Dataset | None:
    outer = ds.get(sequence)
    if not outer:
        return None
    items = outer[0].get(inner)
    return items[0] if items else None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, MultiValue | list | tuple) else value


def _window(ds: Dataset) -> tuple[float, float] | None:
    source = _first_item(ds, "SharedFunctionalGroupsSequence", "FrameVOILUTSequence") or ds
    try:
        centre = source.WindowCenter
        width = source.WindowWidth
    except AttributeError:
        return None
    centre, width = float(_first(centre)), float(_first(width))
    return (centre, width) if width >= 1 else None


def _pixels(ds: Dataset) -> np.ndarray:
    try:
        array = pixel_array_isolated(ds)  # C decoders: in a child process
    except Exception as error:
        raise Unprocessable(UNREADABLE, "the slice's pixel data cannot be decoded") from error
    return np.asarray(array)


def _normal(orientation: tuple[float, ...]) -> np.ndarray:
    row, column = np.array(orientation[:3]), np.array(orientation[3:])
    normal = np.cross(row, column)
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        raise Unprocessable(INCONSISTENT, "the image orientation is degenerate")
    return normal / length


def _check_positions(positions: np.ndarray) -> float:
    """Regular spacing along the normal, or refuse the volume."""
    steps = np.diff(positions)
    if np.any(steps < 1e-4):
        raise Unprocessable(DUPLICATE_SLICES, "two slices lie at the same position")
    spacing = float(np.median(steps))
    gaps = np.flatnonzero(steps > spacing * (1 + GAP_TOLERANCE))
    if gaps.size:
        missing = sum(round(float(step) / spacing) - 1 for step in steps[gaps])
        raise Unprocessable(
            MISSING_SLICES,
            f"{max(missing, 1)} slice(s) missing after slice {int(gaps[0]) + 1} "
            f"of {positions.size} (spacing {spacing:.3f} mm)",
        )
    if np.any(steps < spacing * (1 - GAP_TOLERANCE)):
        raise Unprocessable(INCONSISTENT, "the slice spacing is irregular")
    return spacing


def _guard(rows: int, columns: int, slices: int, max_voxels: int) -> None:
    if rows * columns * slices > max_voxels:
        raise TooLarge(TOO_LARGE, f"{columns}x{rows}x{slices} exceeds {max_voxels} voxels")


def _from_enhanced(ds: Dataset, max_voxels: int) -> Volume:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, columns = int(ds.Rows), int(ds.Columns)
    _guard(rows, columns, frames, max_voxels)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != frames:
        raise Unprocessable(NOT_A_VOLUME, "the frames carry no positions")
    orientation_item = (_first_item(ds, "SharedFunctionalGroupsSequence",
                                    "PlaneOrientationSequence")
                        or _item(per_frame[0], "PlaneOrientationSequence"))
    measures = (_first_item(ds, "SharedFunctionalGroupsSequence", "PixelMeasuresSequence")
                or _item(per_frame[0], "PixelMeasuresSequence"))
    orientation = _floats(orientation_item.get("ImageOrientationPatient"), 6) if \
        orientation_item else None
    spacing = _floats(measures.get("PixelSpacing"), 2) if measures else None
    if orientation is None or spacing is None:
        raise Unprocessable(NOT_A_VOLUME, "the volume has no orientation or pixel spacing")
    points = []
    for item in per_frame:
        position = _item(item, "PlanePositionSequence")
        point = _floats(position.get("ImagePositionPatient"), 3) if position else None
        if point is None:
            raise Unprocessable(NOT_A_VOLUME, "a frame has no position")
        points.append(point)
    normal = _normal(orientation)
    along = np.array([np.dot(p, normal) for p in points])
    order = np.argsort(along, kind="stable")
    slice_spacing = _check_positions(along[order])
    pixels = _pixels(ds).reshape(frames, rows, columns)[order].astype(np.float32)
    transform = (_first_item(ds, "SharedFunctionalGroupsSequence",
                             "PixelValueTransformationSequence")
                 or _item(per_frame[0], "PixelValueTransformationSequence"))
    slope = float(transform.get("RescaleSlope", 1) or 1) if transform else 1.0
    intercept = float(transform.get("RescaleIntercept", 0) or 0) if transform else 0.0
    voxels = pixels * np.float32(slope) + np.float32(intercept)
    info = _info(ds, rows, columns, frames, spacing, slice_spacing, points[int(order[0])],
                 orientation)
    return Volume(voxels, info, _window(ds))


def _item(ds: Dataset, sequence: str) -> Dataset | None:
    items = ds.get(sequence)
    return items[0] if items else None


def _info(ds: Dataset, rows: int, columns: int, slices: int, spacing: tuple[float, ...],
          slice_spacing: float, origin: tuple[float, ...],
          orientation: tuple[float, ...]) -> VolumeInfo:
    return VolumeInfo(
        columns=columns, rows=rows, slices=slices,
        # PixelSpacing is (row spacing, column spacing): y first, then x.
        spacing_mm=(spacing[1], spacing[0], slice_spacing),
        origin_mm=(origin[0], origin[1], origin[2]),
        row_direction=(orientation[0], orientation[1], orientation[2]),
        column_direction=(orientation[3], orientation[4], orientation[5]),
        study_instance_uid=str(ds.get("StudyInstanceUID") or "") or None,
        series_instance_uid=str(ds.get("SeriesInstanceUID") or "") or None,
    )


def _from_series(datasets: list[Dataset], max_voxels: int) -> Volume:
    first = datasets[0]
    rows, columns = int(first.Rows), int(first.Columns)
    _guard(rows, columns, len(datasets), max_voxels)
    orientation = _floats(first.get("ImageOrientationPatient"), 6)
    spacing = _floats(first.get("PixelSpacing"), 2)
    if orientation is None or spacing is None:
        raise Unprocessable(NOT_A_VOLUME, "the slices have no orientation or pixel spacing")
    series = first.get("SeriesInstanceUID")
    points = []
    for ds in datasets:
        point = _floats(ds.get("ImagePositionPatient"), 3)
        same = (int(ds.Rows), int(ds.Columns)) == (rows, columns) and \
            ds.get("SeriesInstanceUID") == series and \
            np.allclose(_floats(ds.get("ImageOrientationPatient"), 6) or (0,) * 6,
                        orientation, atol=1e-3)
        if point is None or not same:
            raise Unprocessable(INCONSISTENT, "the slices differ in series, size or orientation")
        points.append(point)
    normal = _normal(orientation)
    along = np.array([np.dot(p, normal) for p in points])
    order = np.argsort(along, kind="stable")
    slice_spacing = _check_positions(along[order])
    voxels = np.empty((len(datasets), rows, columns), dtype=np.float32)
    for target, index in enumerate(order):
        ds = datasets[int(index)]
        voxels[target] = np.asarray(apply_rescale(_pixels(ds), ds), dtype=np.float32)
    info = _info(first, rows, columns, len(datasets), spacing, slice_spacing,
                 points[int(order[0])], orientation)
    return Volume(voxels, info, _window(first))


def assemble_volume(objects: Sequence[bytes], *, max_voxels: int = DEFAULT_MAX_VOXELS) -> Volume:
    """One enhanced multi-frame CT object, or a classic series of one slice per object."""
    if not objects:
        raise InvalidInput(NOT_A_VOLUME, "no slices given")
    datasets = [_read(data) for data in objects]
    if len(datasets) == 1:
        ds = datasets[0]
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            return _from_enhanced(ds, max_voxels)
        raise Unprocessable(NOT_A_VOLUME, "a single single-frame object is not a volume")
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in datasets):
        raise Unprocessable(INCONSISTENT, "multi-frame objects cannot be mixed into a series")
    return _from_series(datasets, max_voxels)


# ---- display ------------------------------------------------------------------------------


def to_uint8(values: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    if window is None:
        low, high = (float(v) for v in np.percentile(values, (0.5, 99.5)))
    else:
        centre, width = window
        low, high = centre - width / 2, centre + width / 2
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float32) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _aspect(image: np.ndarray, across_mm: float, down_mm: float) -> np.ndarray:
    """Resample rows so one millimetre is as long down as across."""
    if abs(across_mm - down_mm) < 1e-6:
        return image
    height = max(1, round(image.shape[0] * down_mm / across_mm))
    resized = PILImage.fromarray(image).resize((image.shape[1], height),
                                               PILImage.Resampling.BILINEAR)
    return np.asarray(resized)


def _plane_of(volume: Volume, plane: Plane, index: int) -> tuple[np.ndarray, float, float]:
    """The plane's values, head up, with its (across, down) spacing."""
    voxels = volume.voxels
    sx, sy, sz = volume.info.spacing_mm
    limit = {Plane.AXIAL: voxels.shape[0], Plane.CORONAL: voxels.shape[1],
             Plane.SAGITTAL: voxels.shape[2]}[plane]
    if not 0 <= index < limit:
        raise InvalidInput(INDEX_OUT_OF_RANGE, f"{plane.value} slices are 0..{limit - 1}")
    if plane is Plane.AXIAL:
        return voxels[index], sx, sy
    # Slices ascend along the normal (feet to head for axial acquisitions): flip for head-up.
    if plane is Plane.CORONAL:
        return voxels[::-1, index, :], sx, sz
    return voxels[::-1, :, index], sy, sz


def slice_image(volume: Volume, plane: Plane, index: int) -> np.ndarray:
    values, across, down = _plane_of(volume, plane, index)
    return _aspect(to_uint8(values, volume.window), across, down)


def middle_index(volume: Volume, plane: Plane) -> int:
    axis = {Plane.AXIAL: 0, Plane.CORONAL: 1, Plane.SAGITTAL: 2}[plane]
    return volume.voxels.shape[axis] // 2


def mip_image(volume: Volume, plane: Plane) -> np.ndarray:
    """Maximum intensity projection through the whole volume, viewed along ``plane``'s normal."""
    sx, sy, sz = volume.info.spacing_mm
    voxels = volume.voxels
    if plane is Plane.AXIAL:
        values, across, down = voxels.max(axis=0), sx, sy
    elif plane is Plane.CORONAL:
        values, across, down = voxels.max(axis=1)[::-1], sx, sz
    else:
        values, across, down = voxels.max(axis=2)[::-1], sy, sz
    # A MIP is brighter than any slice: window it on its own range, not the slice window.
    return _aspect(to_uint8(values, None), across, down)


def thumbnail_jpeg(volume: Volume, size: int = THUMBNAIL_PX) -> bytes:
    image = PILImage.fromarray(slice_image(volume, Plane.AXIAL,
                                           middle_index(volume, Plane.AXIAL)))
    image.thumbnail((size, size), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()
