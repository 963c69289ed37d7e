"""Stored objects are read as ingest read them: without preamble or file meta, too."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pydicom
from dicom_support import dicom_bytes

from adapters import dicom_codec
from adapters.dicom_export import write_study_zip


def _bare(data: bytes) -> bytes:
    """The dataset alone: no preamble, no DICM, no file meta (implicit VR little endian)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.preamble = None
    del ds.file_meta
    out = io.BytesIO()
    ds.save_as(out, implicit_vr=True, little_endian=True)
    return out.getvalue()


def test_bare_datasets_are_read_and_exported() -> None:
    data = _bare(dicom_bytes())
    assert data[128:132] != b"DICM"
    ds = dicom_codec.read_stored(data)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.pixel_array.shape == (64, 96)
    out = io.BytesIO()
    assert write_study_zip([data], out) == 1
    assert "DICOMDIR" in zipfile.ZipFile(out).namelist()


def test_the_same_pixels_in_another_transfer_syntax_have_one_fingerprint() -> None:
    data = dicom_bytes()
    assert dicom_codec.pixel_fingerprint(_bare(data)) == dicom_codec.pixel_fingerprint(data)
    other = dicom_bytes(np.zeros((64, 96), np.uint16))
    assert dicom_codec.pixel_fingerprint(other) != dicom_codec.pixel_fingerprint(data)
