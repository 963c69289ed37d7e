"""Writing DICOM: photos as VL Photographic Images, other rasters as Secondary Capture, and a
patient's study as a DICOM media zip with a DICOMDIR.

A photo's JPEG is wrapped as it is (JPEG Baseline transfer syntax, no re-encoding, so no
second generation loss) unless DICOM cannot carry it that way (progressive, CMYK, rotated by
EXIF only). The ADA White Paper 1100 view (IV07, EV19…) goes into the View Code Sequence
under a private coding scheme, declared in the Coding Scheme Identification Sequence, so any
reader can tell what the code means.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from PIL import Image as PILImage
from PIL import ImageOps
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.fileset import FileSet
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    VLPhotographicImageStorage,
    generate_uid,
)

from adapters.dicom_codec import read_stored
from domain.errors import InvalidInput, Unprocessable
from domain.views import VIEWS

ADA_1100_SCHEME = "99ADA1100"  # private designators start with 99 (PS3.3 8.1.2)
ADA_1100_NAME = "ADA White Paper 1100 orthodontic photographic views"
MANUFACTURER = "orthovault"
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ExportPatient:
    patient_id: str
    family_name: str
    given_name: str
    birth_date: date | None = None
    sex: str | None = None  # DICOM M, F or O


@dataclass(frozen=True)
class ExportStudy:
    study_uid: str
    study_date: date
    study_id: str = "1"
    accession_number: str = ""
    description: str = ""


@dataclass(frozen=True)
class ExportSeries:
    series_uid: str
    series_number: int = 1
    description: str = ""


def _dicom_sex(sex: str | None) -> str:
    return {"female": "F", "male": "M", "other": "O", "f": "F", "m": "M", "o": "O"}.get(
        (sex or "").lower(), "")


def _base(sop_class: UID, transfer_syntax: UID, patient: ExportPatient, study: ExportStudy,
          series: ExportSeries, modality: str, instance_number: int, moment: datetime,
          sop_uid: str | None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.PatientName = f"{patient.family_name}^{patient.given_name}"
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d") if patient.birth_date else ""
    ds.PatientSex = _dicom_sex(patient.sex)
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = study.study_date.strftime("%Y%m%d")
    ds.StudyTime = "000000"
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.StudyDescription = study.description
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = series.series_uid
    ds.SeriesNumber = series.series_number
    ds.SeriesDescription = series.description
    ds.Modality = modality
    ds.Manufacturer = MANUFACTURER
    ds.InstanceNumber = instance_number
    ds.ContentDate = moment.strftime("%Y%m%d")
    ds.ContentTime = moment.strftime("%H%M%S")
    ds.PatientOrientation = ""
    return ds


def _encode(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _open_raster(data: bytes) -> PILImage.Image:
    try:
        image = PILImage.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError, SyntaxError) as error:
        raise Unprocessable("export_unreadable_image", "the image cannot be decoded") from error
    return image


def _baseline_jpeg(data: bytes) -> tuple[bytes, PILImage.Image]:
    """The JPEG as DICOM's Baseline syntax can carry it, re-encoded only when it must be."""
    image = _open_raster(data)
    if image.format != "JPEG":
        raise InvalidInput("export_not_jpeg", "photos are exported from their JPEG original")
    rotated = image.getexif().get(_ORIENTATION_TAG, 1) not in (None, 1)
    progressive = bool(image.info.get("progressive") or image.info.get("progression"))
    if not rotated and not progressive and image.mode in ("L", "RGB"):
        return data, image
    fixed = ImageOps.exif_transpose(image).convert("L" if image.mode == "L" else "RGB")
    out = io.BytesIO()
    fixed.save(out, "JPEG", quality=95, progressive=False, subsampling=0)
    return out.getvalue(), fixed


def _view_code(view: str) -> Dataset:
    item = Dataset()
    item.CodeValue = view
    item.CodingSchemeDesignator = ADA_1100_SCHEME
    item.CodeMeaning = VIEWS[view].name
    return item


def photo_to_dicom(
    jpeg: bytes, *, patient: ExportPatient, study: ExportStudy, series: ExportSeries,
    view: str | None = None, instance_number: int = 1, captured_at: datetime | None = None,
    sop_uid: str | None = None,
) -> bytes:
    """A clinical photograph as a VL Photographic Image (Modality XC), JPEG Baseline."""
    if view is not None and view not in VIEWS:
        raise InvalidInput("unknown_view", f"{view!r} is not a known ADA-1100 view code")
    encoded, image = _baseline_jpeg(jpeg)
    moment = captured_at or datetime.now(UTC)
    ds = _base(VLPhotographicImageStorage, JPEGBaseline8Bit, patient, study, series, "XC",
               instance_number, moment, sop_uid)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.AcquisitionDateTime = moment.strftime("%Y%m%d%H%M%S")
    ds.AcquisitionContextSequence = []
    ds.Rows, ds.Columns = image.height, image.width
    colour = image.mode != "L"
    ds.SamplesPerPixel = 3 if colour else 1
    # Baseline JPEG of colour is YCbCr: DICOM names that YBR_FULL_422 (PS3.5 8.2.1).
    ds.PhotometricInterpretation = "YBR_FULL_422" if colour else "MONOCHROME2"
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    if view is not None:
        ds.ViewCodeSequence = [_view_code(view)]
        scheme = Dataset()
        scheme.CodingSchemeDesignator = ADA_1100_SCHEME
        scheme.CodingSchemeName = ADA_1100_NAME
        ds.CodingSchemeIdentificationSequence = [scheme]
    ds.PixelData = encapsulate([encoded])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return _encode(ds)


def raster_to_secondary_capture(
    data: bytes, *, patient: ExportPatient, study: ExportStudy, series: ExportSeries,
    modality: str = "OT", pixel_spacing_mm: tuple[float, float] | None = None,
    instance_number: int = 1, captured_at: datetime | None = None, sop_uid: str | None = None,
) -> bytes:
    """A non-DICOM radiograph (JPEG/PNG/TIFF scan or export) as Secondary Capture.

    Greyscale stays greyscale (MONOCHROME2, 8 or 16 bit as decoded); colour becomes RGB.
    ``pixel_spacing_mm`` (row, column), when known, is recorded so it can be measured on.
    """
    image = ImageOps.exif_transpose(_open_raster(data))
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        pixels = np.asarray(image, dtype=np.int64).clip(0, 65535).astype(np.uint16)
    elif image.mode in ("L", "1", "P", "LA") and not _is_colour_palette(image):
        pixels = np.asarray(image.convert("L"))
    else:
        pixels = np.asarray(image.convert("RGB"))
    moment = captured_at or datetime.now(UTC)
    ds = _base(SecondaryCaptureImageStorage, ExplicitVRLittleEndian, patient, study, series,
               modality, instance_number, moment, sop_uid)
    ds.ConversionType = "WSD"  # workstation: converted here, not digitised from film
    ds.ImageType = ["DERIVED", "SECONDARY"]
    photometric = "RGB" if pixels.ndim == 3 else "MONOCHROME2"
    bits = 16 if pixels.dtype == np.uint16 else 8
    ds.set_pixel_data(pixels, photometric, bits, generate_instance_uid=False)
    if pixel_spacing_mm is not None:
        row, column = pixel_spacing_mm
        if not (row > 0 and column > 0):
            raise InvalidInput("invalid_pixel_spacing", "pixel spacing must be positive")
        ds.PixelSpacing = [f"{row:.6g}", f"{column:.6g}"]
        ds.NominalScannedPixelSpacing = [f"{row:.6g}", f"{column:.6g}"]
    return _encode(ds)


def _is_colour_palette(image: PILImage.Image) -> bool:
    if image.mode != "P":
        return False
    rgb = np.asarray(image.convert("RGB"))
    return not (np.array_equal(rgb[..., 0], rgb[..., 1])
                and np.array_equal(rgb[..., 1], rgb[..., 2]))


def read_view_code(ds: Dataset) -> str | None:
    """The ADA-1100 view of a photograph written by us or by another ADA-1100 writer."""
    for item in ds.get("ViewCodeSequence") or []:
        code = str(item.get("CodeValue", "")).strip().upper()
        if code in VIEWS:
            return code
    return None


def view_code_of(data: bytes) -> str | None:
    """``read_view_code`` of an encoded object; None when it cannot be read."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
    except Exception:
        return None
    return read_view_code(ds)


# ---- DICOM media (a zip with a DICOMDIR) --------------------------------------------------


def _fill_record_keys(ds: Dataset, number: int) -> None:
    """The DICOMDIR records need keys some senders leave out; the exported copy gets them."""
    defaults = {
        "PatientID": "UNKNOWN", "PatientName": "", "StudyDate": ds.get("ContentDate") or
        date.today().strftime("%Y%m%d"), "StudyTime": "000000", "StudyID": "1",
        "AccessionNumber": "", "StudyDescription": "", "Modality": "OT", "SeriesNumber": 1,
        "InstanceNumber": number,
    }
    for keyword, value in defaults.items():
        if ds.get(keyword) in (None, ""):
            setattr(ds, keyword, value)


def write_study_zip(instances: Iterable[bytes], out: BinaryIO) -> int:
    """Write the instances as DICOM media (PS3.10) with a DICOMDIR, zipped. Returns the count.

    File names follow the media rules (upper case, at most 8 characters per component).
    """
    with tempfile.TemporaryDirectory(prefix="ov-export-") as staging:
        fileset = FileSet()
        count = 0
        for number, data in enumerate(instances, start=1):
            ds = read_stored(data)  # as ingest read it (no preamble, no file meta: fine)
            _fill_record_keys(ds, number)
            fileset.add(ds)
            count += 1
        if count == 0:
            raise InvalidInput("export_empty", "there is nothing to export")
        fileset.write(staging)
        root = Path(staging)
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                archive.write(path, path.relative_to(root).as_posix())
    return count
