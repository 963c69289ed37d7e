"""DICOM adapter against pydicom's own test files plus small datasets built here.

Recorded with pydicom 3.0.2 and pylibjpeg 2.1 / pylibjpeg-libjpeg 2.5 / pylibjpeg-openjpeg 2.6 /
pyjpegls 1.5: 95 bundled files carry pixel data; 90 render, 4 are rejected as
``dicom_invalid`` (JPEG-lossy.dcm and JPEG2000-embedded-sequence-delimiter.dcm are corrupt
codestreams, meta_missing_tsyntax.dcm and nested_priv_SQ.dcm have no image module) and 1 as
``dicom_truncated`` (MR_truncated.dcm).
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import (
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

from adapters.dicom_codec import (
    DicomInstance,
    SpacingSource,
    looks_like_dicom,
    read_dicom,
    render_dicom,
)
from domain.errors import InvalidInput, OrthovaultError, TooLarge, Unprocessable, UnsupportedMedia

# pydicom warns about the oddities its test files were written to show; outcomes are checked.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CODES = {
    "dicom_not_dicom",
    "dicom_truncated",
    "dicom_no_pixel_data",
    "dicom_unsupported_transfer_syntax",
    "dicom_unsupported_photometric",
    "dicom_invalid",
}


def _testdata(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def _has_pixel_data(path: Path) -> bool:
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception:
        return False
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _dicom_bytes(pixels: np.ndarray, photometric: str, bits_stored: int, **attrs: object) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.set_pixel_data(pixels, photometric, bits_stored)
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _code(call: object, *args: object, **kwargs: object) -> str:
    try:
        call(*args, **kwargs)  # type: ignore[operator]
    except OrthovaultError as exc:
        return exc.code
    return "ok"


# --- every bundled file ---------------------------------------------------------------------


def test_every_pydicom_file_with_pixel_data_renders_or_fails_clearly() -> None:
    paths = sorted(
        (Path(p) for p in get_testdata_files() if Path(p).is_file() and _has_pixel_data(Path(p))),
        key=lambda p: p.name,
    )
    table: list[tuple[str, str]] = []
    for path in paths:
        try:
            pixels = render_dicom(path.read_bytes())
        except OrthovaultError as exc:
            assert exc.code in CODES, (path.name, exc.code)
            table.append((path.name, exc.code))
            continue
        assert pixels.dtype == np.uint8 and pixels.size > 0, path.name
        assert pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3), path.name
        table.append((path.name, f"ok {'x'.join(map(str, pixels.shape))}"))

    report = "\n".join(f"{name:45s} {outcome}" for name, outcome in table)
    print(report)
    accepted = sum(outcome.startswith("ok") for _, outcome in table)
    assert len(table) >= 90, report
    assert accepted >= 88 and accepted / len(table) > 0.9, report
    assert dict(table)["MR_truncated.dcm"] == "dicom_truncated"


def test_files_without_pixel_data_read_but_do_not_render() -> None:
    data = _testdata("rtplan.dcm")
    info = read_dicom(data)
    assert isinstance(info, DicomInstance)
    assert info.has_pixel_data is False
    assert info.modality == "RTPLAN"
    with pytest.raises(Unprocessable) as caught:
        render_dicom(data)
    assert caught.value.code == "dicom_no_pixel_data"


# --- codecs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "transfer_syntax"),
    [
        ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5"),  # RLE lossless
        ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),  # JPEG-LS lossless
        ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90"),  # JPEG 2000 lossless
        ("MR_small_bigendian.dcm", "1.2.840.10008.1.2.2"),  # explicit VR big endian
        ("MR_small_implicit.dcm", "1.2.840.10008.1.2"),  # implicit VR little endian
    ],
)
def test_lossless_encodings_render_exactly_like_the_uncompressed_original(
    name: str, transfer_syntax: str
) -> None:
    assert read_dicom(_testdata(name)).transfer_syntax_uid == transfer_syntax
    reference = render_dicom(_testdata("MR_small.dcm"))
    assert np.array_equal(render_dicom(_testdata(name)), reference)


@pytest.mark.parametrize(
    ("name", "transfer_syntax", "shape"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50", (100, 100, 3)),  # baseline, YBR
        ("JPGExtended.dcm", "1.2.840.10008.1.2.4.51", (1024, 256)),  # 12-bit extended
        ("JPEGLSNearLossless_16.dcm", "1.2.840.10008.1.2.4.81", (50, 10)),  # JPEG-LS lossy
        ("JPEG2000.dcm", "1.2.840.10008.1.2.4.91", (1024, 256)),  # JPEG 2000 lossy
        ("GDCMJ2K_TextGBR.dcm", "1.2.840.10008.1.2.4.90", (400, 400, 3)),  # J2K with RCT
        ("image_dfl.dcm", "1.2.840.10008.1.2.1.99", (512, 512)),  # deflated
        ("SC_rgb_small_odd_big_endian.dcm", "1.2.840.10008.1.2.2", (3, 3, 3)),
    ],
)
def test_each_transfer_syntax_decodes(name: str, transfer_syntax: str, shape: tuple) -> None:
    data = _testdata(name)
    assert read_dicom(data).transfer_syntax_uid == transfer_syntax
    pixels = render_dicom(data)
    assert pixels.shape == shape and pixels.dtype == np.uint8
    assert pixels.max() > pixels.min()


def test_baseline_jpeg_in_ybr_comes_out_as_rgb() -> None:
    # The same colour bars, once lossless (RLE, RGB) and once JPEG baseline in YBR_FULL.
    lossless = render_dicom(_testdata("SC_rgb_rle.dcm")).astype(int)
    lossy = render_dicom(_testdata("SC_rgb_jpeg_dcmtk.dcm")).astype(int)
    assert np.abs(lossless - lossy).mean() < 5


def test_16_bit_colour_is_scaled_to_8_bits() -> None:
    eight = render_dicom(_testdata("SC_rgb_rle.dcm"))
    sixteen = render_dicom(_testdata("SC_rgb_rle_16bit.dcm"))
    thirty_two = render_dicom(_testdata("SC_rgb_rle_32bit.dcm"))
    assert np.abs(eight.astype(int) - sixteen).max() <= 1
    assert np.abs(eight.astype(int) - thirty_two).max() <= 1


def test_palette_colour_becomes_rgb() -> None:
    pixels = render_dicom(_testdata("examples_palette.dcm"))
    assert pixels.shape == (350, 800, 3)


def test_multiframe_frames_are_addressable() -> None:
    data = _testdata("SC_rgb_rle_2frame.dcm")
    assert read_dicom(data).number_of_frames == 2
    assert render_dicom(data, frame=1).shape == (100, 100, 3)
    with pytest.raises(InvalidInput) as caught:
        render_dicom(data, frame=2)
    assert caught.value.code == "dicom_frame_out_of_range"


# --- greyscale display pipeline -------------------------------------------------------------


def test_monochrome1_is_inverted() -> None:
    ramp = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (8, 1))
    normal = render_dicom(_dicom_bytes(ramp, "MONOCHROME2", 12))
    inverted = render_dicom(_dicom_bytes(ramp, "MONOCHROME1", 12))
    assert normal[0, 0] == 0 and normal[0, -1] == 255
    assert np.array_equal(inverted, 255 - normal)


def test_real_monochrome1_radiograph_renders() -> None:
    path = next(Path(p) for p in get_testdata_files("**/6154") if Path(p).is_file())
    data = path.read_bytes()
    assert read_dicom(data).photometric_interpretation == "MONOCHROME1"
    assert render_dicom(data).dtype == np.uint8


def test_16_bit_window_fills_the_full_8_bit_range() -> None:
    ramp = np.tile(np.arange(0, 65536, 64, dtype=np.uint16), (4, 1))  # 0 .. 65472
    data = _dicom_bytes(ramp, "MONOCHROME2", 16, WindowCenter=30000, WindowWidth=20000)
    pixels = render_dicom(data)
    assert pixels.min() == 0 and pixels.max() == 255
    assert len(np.unique(pixels)) > 200  # a ramp, not a threshold
    values = ramp[0].astype(float)
    row = pixels[0].astype(int)
    assert (row[values < 19_999] == 0).all() and (row[values > 40_001] == 255).all()
    assert abs(int(row[np.argmin(np.abs(values - 30000))]) - 128) <= 2


def test_rescale_is_applied_before_the_window() -> None:
    # Stored 0..2000 with intercept -1000 are -1000..1000 HU; a 0 HU / 400 window sees the middle.
    ramp = np.tile(np.linspace(0, 2000, 201).astype(np.uint16), (2, 1))
    data = _dicom_bytes(
        ramp, "MONOCHROME2", 12, RescaleIntercept=-1000, RescaleSlope=1,
        WindowCenter=0, WindowWidth=400,
    )  # fmt: skip
    row = render_dicom(data)[0].astype(int)
    hounsfield = ramp[0].astype(int) - 1000
    assert (row[hounsfield <= -201] == 0).all() and (row[hounsfield >= 201] == 255).all()
    assert abs(row[np.argmin(np.abs(hounsfield))] - 128) <= 2


def test_without_a_window_the_stored_range_is_stretched() -> None:
    ramp = np.tile(np.arange(100, 1100, dtype=np.uint16), (2, 1))
    pixels = render_dicom(_dicom_bytes(ramp, "MONOCHROME2", 12))
    assert pixels.min() == 0 and pixels.max() == 255


def test_ct_window_from_the_file_is_used() -> None:
    pixels = render_dicom(_testdata("CT_small.dcm"))
    assert pixels.min() == 0 and pixels.max() == 255


# --- metadata -------------------------------------------------------------------------------


def test_metadata_and_magnification_corrected_spacing() -> None:
    data = _dicom_bytes(
        np.zeros((20, 30), dtype=np.uint16),
        "MONOCHROME2",
        12,
        Modality="DX",
        BodyPartExamined="SKULL",
        ViewPosition="LL",
        ImagerPixelSpacing=[0.11, 0.1],
        EstimatedRadiographicMagnificationFactor=1.1,
        PatientName="Doe^Jane",
        PatientID="P-42",
        PatientBirthDate="20100131",
        PatientSex="F",
        StudyDate="20240215",
        StudyDescription="Lateral ceph",
        SeriesDescription="Ceph",
    )
    info = read_dicom(data)
    assert (info.modality, info.body_part_examined, info.view_position) == ("DX", "SKULL", "LL")
    assert (info.rows, info.columns, info.number_of_frames) == (20, 30, 1)
    assert (info.bits_allocated, info.bits_stored) == (16, 12)
    assert info.photometric_interpretation == "MONOCHROME2"
    assert info.patient_name == "Doe^Jane" and info.patient_id == "P-42"
    assert str(info.patient_birth_date) == "2010-01-31" and info.patient_sex == "F"
    assert str(info.study_date) == "2024-02-15"
    assert info.study_description == "Lateral ceph" and info.series_description == "Ceph"
    assert info.sop_class_uid == DigitalXRayImageStorageForPresentation
    assert info.sop_instance_uid and info.study_instance_uid and info.series_instance_uid
    spacing = info.pixel_spacing
    assert spacing is not None
    assert spacing.source is SpacingSource.IMAGER_PIXEL_SPACING_CORRECTED
    assert spacing.row_mm == pytest.approx(0.1) and spacing.column_mm == pytest.approx(0.1 / 1.1)
    assert spacing.magnification == pytest.approx(1.1)


def test_pixel_spacing_wins_over_imager_pixel_spacing() -> None:
    data = _dicom_bytes(
        np.zeros((4, 4), dtype=np.uint8), "MONOCHROME2", 8,
        PixelSpacing=[0.2, 0.2], ImagerPixelSpacing=[0.25, 0.25],
    )  # fmt: skip
    spacing = read_dicom(data).pixel_spacing
    assert spacing is not None and spacing.source is SpacingSource.PIXEL_SPACING
    assert (spacing.row_mm, spacing.column_mm, spacing.magnification) == (0.2, 0.2, None)


def test_uncorrected_imager_spacing_says_so() -> None:
    data = _dicom_bytes(
        np.zeros((4, 4), dtype=np.uint8), "MONOCHROME2", 8, ImagerPixelSpacing=[0.1, 0.1]
    )
    spacing = read_dicom(data).pixel_spacing
    assert spacing is not None and spacing.source is SpacingSource.IMAGER_PIXEL_SPACING


def test_real_ct_metadata() -> None:
    info = read_dicom(_testdata("CT_small.dcm"))
    assert info.modality == "CT" and (info.rows, info.columns) == (128, 128)
    assert info.pixel_spacing is not None
    assert info.pixel_spacing.source is SpacingSource.PIXEL_SPACING


def test_a_malformed_value_does_not_hide_the_rest() -> None:
    data = _testdata("badVR.dcm")  # Number of Frames is "1A"
    info = read_dicom(data)
    assert info.number_of_frames == 1 and info.rows == 10
    assert render_dicom(data).shape == (10, 10)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "image_dfl.dcm"]
)
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9, 1.0])
def test_truncated_file_is_reported_as_truncated(name: str, fraction: float) -> None:
    data = _testdata(name)
    # 1.0 stands for "the last 20 bytes missing": image_dfl.dcm ends with 8 bytes of padding
    # after its deflate stream, which can go without loss.
    cut = data[: min(int(len(data) * fraction), len(data) - 20)]
    assert _code(render_dicom, cut) in {"dicom_truncated", "dicom_invalid"}
    if fraction > 0.5:  # cut inside the pixel data
        assert _code(render_dicom, cut) == "dicom_truncated"
        assert _code(read_dicom, cut) == "dicom_truncated"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"DICM",
        random.Random(7).randbytes(4096),
        b"\x89PNG\r\n\x1a\n" + bytes(200),
        bytes(128) + b"DICX" + bytes(100),  # wrong magic after the preamble
    ],
)
def test_non_dicom_bytes_are_refused(data: bytes) -> None:
    assert looks_like_dicom(data[:132]) is False
    for call in (read_dicom, render_dicom):
        with pytest.raises(UnsupportedMedia) as caught:
            call(data)
        assert caught.value.code == "dicom_not_dicom"


def test_preambleless_files_are_recognised() -> None:
    for name in ("ExplVR_LitEndNoMeta.dcm", "ExplVR_BigEndNoMeta.dcm"):
        data = _testdata(name)
        assert looks_like_dicom(data[:132]), name
        assert read_dicom(data).modality == "RTPLAN"
    assert looks_like_dicom(_testdata("CT_small.dcm")[:132])


def test_unknown_transfer_syntax_is_unsupported() -> None:
    ds = pydicom.dcmread(io.BytesIO(_testdata("JPEG2000.dcm")))
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.100")  # MPEG2, no decoder
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with pytest.raises(UnsupportedMedia) as caught:
        render_dicom(buffer.getvalue())
    assert caught.value.code == "dicom_unsupported_transfer_syntax"


def test_missing_decoder_is_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    with pytest.raises(UnsupportedMedia) as caught:
        render_dicom(_testdata("JPEG2000.dcm"))
    assert caught.value.code == "dicom_unsupported_transfer_syntax"


def test_oversized_frame_is_refused_before_decoding() -> None:
    with pytest.raises(TooLarge) as caught:
        render_dicom(_testdata("CT_small.dcm"), max_pixels=1000)
    assert caught.value.code == "dicom_too_large"


_CT = _testdata("CT_small.dcm")
_J2K = _testdata("JPEG2000.dcm")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=st.sampled_from([_CT, _J2K]),
    cut=st.floats(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6),
)
def test_damaged_files_only_raise_our_errors(
    source: bytes, cut: float, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(source[: max(1, int(len(source) * cut))])
    for where, value in flips:
        data[min(len(data) - 1, int(where * len(data)))] = value
    for call in (read_dicom, render_dicom):
        try:
            call(bytes(data))
        except OrthovaultError as exc:
            assert exc.code in CODES | {"dicom_frame_out_of_range", "dicom_too_large"}
