"""DICOM export: VL Photographic (XC) with ADA-1100 views, Secondary Capture, DICOMDIR zips."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.encaps import generate_frames
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from adapters.dicom_codec import SpacingSource, read_dicom, render_dicom
from adapters.dicom_export import (
    ADA_1100_SCHEME,
    ExportPatient,
    ExportSeries,
    ExportStudy,
    photo_to_dicom,
    raster_to_secondary_capture,
    read_view_code,
    write_study_zip,
)
from domain.errors import OrthovaultError

CEPH = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "ceph" / "B1893L12.jpg"
PATIENT = ExportPatient("OV-1", "Lovelace", "Ada", date(2012, 4, 1), "female")
STUDY = ExportStudy(generate_uid(), date(2026, 3, 2), description="Initial records")


def _series(number: int = 1) -> ExportSeries:
    return ExportSeries(generate_uid(), number)


def _jpeg(width: int = 120, height: int = 80, **save: object) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 2 % 256, y * 3 % 256, np.full_like(x, 90)], -1).astype(np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, "JPEG", quality=92, **save)
    return out.getvalue()


def test_a_photo_is_wrapped_without_reencoding_and_carries_its_view() -> None:
    jpeg = _jpeg()
    data = photo_to_dicom(jpeg, patient=PATIENT, study=STUDY, series=_series(), view="IV07",
                          captured_at=datetime(2026, 3, 2, 10, 15))
    info = read_dicom(data)
    assert info.modality == "XC"
    assert info.sop_class_uid == "1.2.840.10008.5.1.4.1.1.77.1.4"
    assert info.transfer_syntax_uid == "1.2.840.10008.1.2.4.50"
    assert (info.rows, info.columns) == (80, 120)
    assert info.patient_id == "OV-1" and info.patient_name == "Lovelace^Ada"
    ds = pydicom.dcmread(io.BytesIO(data))
    [fragment] = list(generate_frames(ds.PixelData, number_of_frames=1))
    assert fragment.rstrip(b"\x00") == jpeg.rstrip(b"\x00")  # the very same codestream
    assert read_view_code(ds) == "IV07"
    assert ds.ViewCodeSequence[0].CodingSchemeDesignator == ADA_1100_SCHEME
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == ADA_1100_SCHEME
    rendered = render_dicom(data)
    original = np.asarray(PILImage.open(io.BytesIO(jpeg)).convert("RGB"), dtype=int)
    assert rendered.shape == original.shape
    assert np.abs(rendered.astype(int) - original).mean() < 3


def test_progressive_and_rotated_photos_are_made_baseline_and_upright() -> None:
    progressive = photo_to_dicom(_jpeg(progressive=True), patient=PATIENT, study=STUDY,
                                 series=_series())
    assert render_dicom(progressive).shape == (80, 120, 3)
    exif = PILImage.Exif()
    exif[0x0112] = 6  # stored sideways, shown rotated by 90 degrees
    rotated = photo_to_dicom(_jpeg(exif=exif.tobytes()), patient=PATIENT, study=STUDY,
                             series=_series())
    assert render_dicom(rotated).shape == (120, 80, 3)


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"view": "XX99"}, "unknown_view"),
    ({"data": b"\x89PNG\r\n\x1a\n"}, "export_unreadable_image"),
])
def test_bad_photo_exports_are_refused(kwargs: dict, code: str) -> None:
    data = kwargs.pop("data", _jpeg())
    with pytest.raises(OrthovaultError) as caught:
        photo_to_dicom(data, patient=PATIENT, study=STUDY, series=_series(), **kwargs)
    assert caught.value.code == code
    png = io.BytesIO()
    PILImage.new("RGB", (4, 4)).save(png, "PNG")
    with pytest.raises(OrthovaultError) as not_jpeg:
        photo_to_dicom(png.getvalue(), patient=PATIENT, study=STUDY, series=_series())
    assert not_jpeg.value.code == "export_not_jpeg"


def test_a_real_scanned_ceph_becomes_secondary_capture_with_its_spacing() -> None:
    if not CEPH.exists():
        pytest.skip("shared test data not present")
    spacing = 25.4 / 512  # a 512 dpi film scan
    data = raster_to_secondary_capture(CEPH.read_bytes(), patient=PATIENT, study=STUDY,
                                       series=_series(), modality="DX",
                                       pixel_spacing_mm=(spacing, spacing))
    info = read_dicom(data)
    assert info.sop_class_uid == "1.2.840.10008.5.1.4.1.1.7"
    assert info.modality == "DX" and info.photometric_interpretation == "MONOCHROME2"
    assert info.pixel_spacing is not None
    assert info.pixel_spacing.row_mm == pytest.approx(spacing, rel=1e-5)
    assert info.pixel_spacing.source is SpacingSource.PIXEL_SPACING
    original = np.asarray(PILImage.open(CEPH).convert("L"))
    assert (info.rows, info.columns) == original.shape
    assert np.array_equal(pydicom.dcmread(io.BytesIO(data)).pixel_array, original)


def test_sixteen_bit_greyscale_stays_sixteen_bit() -> None:
    pixels = (np.arange(64 * 48).reshape(48, 64) * 13 % 65535).astype(np.uint16)
    png = io.BytesIO()
    PILImage.fromarray(pixels).save(png, "PNG")
    data = raster_to_secondary_capture(png.getvalue(), patient=PATIENT, study=STUDY,
                                       series=_series())
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.BitsAllocated == 16 and np.array_equal(ds.pixel_array, pixels)


def test_a_study_zip_has_a_dicomdir_that_finds_every_instance(tmp_path: Path) -> None:
    photos = _series(1)
    scans = _series(2)
    instances = [
        photo_to_dicom(_jpeg(), patient=PATIENT, study=STUDY, series=photos, view=view,
                       instance_number=number)
        for number, view in enumerate(("IV07", "IV01", "EV19"), start=1)
    ]
    png = io.BytesIO()
    PILImage.fromarray(np.full((32, 32), 128, np.uint8)).save(png, "PNG")
    sc = pydicom.dcmread(io.BytesIO(raster_to_secondary_capture(
        png.getvalue(), patient=PATIENT, study=STUDY, series=scans, modality="PX")))
    del sc.InstanceNumber  # some senders omit it; the DICOMDIR needs one
    buffer = io.BytesIO()
    sc.save_as(buffer, enforce_file_format=True)
    instances.append(buffer.getvalue())

    out = io.BytesIO()
    assert write_study_zip(instances, out) == 4
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as archive:
        names = archive.namelist()
        assert "DICOMDIR" in names
        assert all(len(part) <= 8 and part == part.upper() for n in names
                   for part in n.split("/"))
        archive.extractall(tmp_path)
    fileset = FileSet(pydicom.dcmread(tmp_path / "DICOMDIR"))
    assert len(fileset) == 4
    assert {i.SeriesInstanceUID for i in fileset} == {photos.series_uid, scans.series_uid}
    views = sorted(v for v in (read_view_code(i.load()) for i in fileset) if v)
    assert views == ["EV19", "IV01", "IV07"]
    with pytest.raises(OrthovaultError):
        write_study_zip([], io.BytesIO())
