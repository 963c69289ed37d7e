"""CBCT volume assembly, reformats and MIPs on generated series (and pydicom's real files)."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, ExplicitVRLittleEndian, generate_uid

from adapters.cbct_volume import (
    Plane,
    assemble_volume,
    middle_index,
    mip_image,
    slice_image,
    thumbnail_jpeg,
)
from domain.errors import OrthovaultError

SLICES, ROWS, COLUMNS = 20, 40, 48
PIXEL, THICKNESS = 0.3, 0.5


def _phantom() -> np.ndarray:
    """HU values: air, a bone sphere in the middle, and a ramp that rises with z."""
    z, y, x = np.mgrid[0:SLICES, 0:ROWS, 0:COLUMNS]
    values = np.full((SLICES, ROWS, COLUMNS), -1000.0)
    values += z * 10.0  # lets tests tell head from feet
    sphere = (z - 10) ** 2 * (THICKNESS / PIXEL) ** 2 + (y - 20) ** 2 + (x - 24) ** 2 < 64
    values[sphere] = 1500.0
    return values


def _base(sop_class: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    ds.Modality = "CT"
    return ds


def _encode(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _classic_series(values: np.ndarray, drop: tuple[int, ...] = (),
                    duplicate: int | None = None) -> list[bytes]:
    files = []
    for index in range(values.shape[0]):
        if index in drop:
            continue
        ds = _base(CTImageStorage)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        position = index if duplicate is None or index != duplicate + 1 else duplicate
        ds.ImagePositionPatient = [-7.2, -6.0, -5.0 + position * THICKNESS]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [PIXEL, PIXEL]
        ds.SliceThickness = THICKNESS
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 500, 3000
        ds.InstanceNumber = values.shape[0] - index  # numbered head to feet: must not matter
        stored = np.rint(values[index] + 1024).astype(np.uint16)
        ds.set_pixel_data(stored, "MONOCHROME2", 12, generate_instance_uid=False)
        files.append(_encode(ds))
    random.Random(4).shuffle(files)
    return files


def _enhanced(values: np.ndarray) -> bytes:
    ds = _base(EnhancedCTImageStorage)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures = Dataset()
    measures.PixelSpacing = [PIXEL, PIXEL]
    measures.SliceThickness = THICKNESS
    transform = Dataset()
    transform.RescaleIntercept, transform.RescaleSlope = -1024, 1
    transform.RescaleType = "HU"
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    shared.PixelValueTransformationSequence = [transform]
    ds.SharedFunctionalGroupsSequence = [shared]
    # Frames stored head to feet (descending z): assembly must reorder them.
    order = list(range(values.shape[0]))[::-1]
    frames = []
    for index in order:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [-7.2, -6.0, -5.0 + index * THICKNESS]
        item.PlanePositionSequence = [position]
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = frames
    stored = np.rint(values[order] + 1024).astype(np.uint16)
    ds.set_pixel_data(stored, "MONOCHROME2", 12, generate_instance_uid=False)
    return _encode(ds)


@pytest.mark.parametrize("shape", ["classic", "enhanced"])
def test_volumes_are_assembled_in_patient_order(shape: str) -> None:
    values = _phantom()
    objects = _classic_series(values) if shape == "classic" else [_enhanced(values)]
    volume = assemble_volume(objects)
    assert volume.voxels.shape == (SLICES, ROWS, COLUMNS)
    assert np.allclose(volume.voxels, values)
    info = volume.info.as_dict()
    assert info["dimensions"] == [COLUMNS, ROWS, SLICES]
    assert info["spacing_mm"] == pytest.approx([PIXEL, PIXEL, THICKNESS])
    assert info["origin_mm"] == pytest.approx([-7.2, -6.0, -5.0])
    assert info["series_instance_uid"] == "1.2.3.4.5"


def test_a_missing_slice_is_refused_by_its_gap() -> None:
    with pytest.raises(OrthovaultError) as caught:
        assemble_volume(_classic_series(_phantom(), drop=(7,)))
    assert caught.value.code == "cbct_missing_slices"
    assert "1 slice(s) missing after slice 7" in caught.value.message
    with pytest.raises(OrthovaultError) as two:
        assemble_volume(_classic_series(_phantom(), drop=(3, 4)))
    assert "2 slice(s) missing" in two.value.message


def test_duplicates_mixed_series_and_non_volumes_are_refused() -> None:
    values = _phantom()
    with pytest.raises(OrthovaultError) as duplicate:
        assemble_volume(_classic_series(values, duplicate=5))
    assert duplicate.value.code == "cbct_duplicate_slices"
    with pytest.raises(OrthovaultError) as single:
        assemble_volume(_classic_series(values)[:1])
    assert single.value.code == "cbct_not_a_volume"
    # A real multi-frame object without plane positions (30 ultrasound frames).
    real_us = Path(get_testdata_file("examples_ybr_color.dcm")).read_bytes()
    with pytest.raises(OrthovaultError) as no_positions:
        assemble_volume([real_us])
    assert no_positions.value.code == "cbct_not_a_volume"
    real_ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    with pytest.raises(OrthovaultError) as mixed:
        assemble_volume([real_ct, *_classic_series(values)[:2]])
    assert mixed.value.code == "cbct_inconsistent_series"
    with pytest.raises(OrthovaultError) as large:
        assemble_volume(_classic_series(values), max_voxels=1000)
    assert large.value.code == "cbct_too_large"
    with pytest.raises(OrthovaultError) as garbage:
        assemble_volume([b"not dicom", b"nor this"])
    assert garbage.value.code == "cbct_unreadable"


def test_reformats_are_head_up_and_isotropic_on_screen() -> None:
    volume = assemble_volume(_classic_series(_phantom()))
    axial = slice_image(volume, Plane.AXIAL, middle_index(volume, Plane.AXIAL))
    assert axial.shape == (ROWS, COLUMNS) and axial.dtype == np.uint8
    # The series' window (500/3000) maps the bone sphere near white and air near black.
    assert axial[20, 24] == round((1500 - (500 - 1500)) * 255 / 3000)
    assert axial[0, 0] < 20

    coronal = slice_image(volume, Plane.CORONAL, 20)
    expected_height = round(SLICES * THICKNESS / PIXEL)
    assert coronal.shape == (expected_height, COLUMNS)
    # The ramp rises with z, so the head end (top row) is brighter than the feet end.
    assert coronal[0, 2] > coronal[-1, 2]
    sagittal = slice_image(volume, Plane.SAGITTAL, 24)
    assert sagittal.shape == (expected_height, ROWS)
    assert sagittal[0, 2] > sagittal[-1, 2]
    with pytest.raises(OrthovaultError) as outside:
        slice_image(volume, Plane.SAGITTAL, COLUMNS)
    assert outside.value.code == "cbct_index_out_of_range"


def test_mip_and_thumbnail() -> None:
    volume = assemble_volume([_enhanced(_phantom())])
    mip = mip_image(volume, Plane.AXIAL)
    assert mip.shape == (ROWS, COLUMNS)
    assert mip[20, 24] == 255 and mip[0, 0] < 255
    side = mip_image(volume, Plane.SAGITTAL)
    assert side.shape == (round(SLICES * THICKNESS / PIXEL), ROWS)
    thumbnail = thumbnail_jpeg(volume)
    image = PILImage.open(io.BytesIO(thumbnail))
    assert image.format == "JPEG" and max(image.size) <= 256
