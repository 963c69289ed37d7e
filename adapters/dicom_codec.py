"""Reading and rendering DICOM objects: the only module that calls pydicom.

Every failure leaves as an ``OrthovaultError`` with a stable code; pydicom's own exceptions
never reach a caller (its UserWarnings about odd but readable files do: filter them in the
logging setup). pydicom is lenient by design (it silently drops or shortens what a cut file
lacks), so completeness is checked here with a separate walk over the element headers before
anything is trusted.

Codes: ``dicom_not_dicom``, ``dicom_truncated``, ``dicom_no_pixel_data``,
``dicom_unsupported_transfer_syntax``, ``dicom_unsupported_photometric``,
``dicom_frame_out_of_range``, ``dicom_too_large``, ``dicom_invalid``.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, TypeVar

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    convert_color_space,
    get_decoder,
)
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from domain.errors import (
    InvalidInput,
    OrthovaultError,
    TooLarge,
    Unprocessable,
    UnsupportedMedia,
)

NOT_DICOM = "dicom_not_dicom"
TRUNCATED = "dicom_truncated"
NO_PIXEL_DATA = "dicom_no_pixel_data"
UNSUPPORTED_TRANSFER_SYNTAX = "dicom_unsupported_transfer_syntax"
UNSUPPORTED_PHOTOMETRIC = "dicom_unsupported_photometric"
FRAME_OUT_OF_RANGE = "dicom_frame_out_of_range"
TOO_LARGE = "dicom_too_large"
INVALID = "dicom_invalid"

# A 10 000 x 10 000 frame; a panoramic or a 512 dpi ceph scan is well below, while a corrupt
# Rows/Columns pair would otherwise make numpy allocate gigabytes.
DEFAULT_MAX_PIXELS = 100_000_000

_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class SpacingSource(StrEnum):
    """Where the mm/pixel figure comes from, which decides how far it can be trusted."""

    PIXEL_SPACING = "pixel_spacing"  # (0028,0030): calibrated by the modality, in the patient
    # (0018,1164) divided by (0018,1114): the detector pitch projected back to the patient
    IMAGER_PIXEL_SPACING_CORRECTED = "imager_pixel_spacing_corrected"
    # (0018,1164) alone: at the detector, so anatomy measures larger by the magnification
    IMAGER_PIXEL_SPACING = "imager_pixel_spacing"


@dataclass(frozen=True, slots=True)
class PixelSpacing:
    row_mm: float  # distance between the centres of adjacent rows (vertical)
    column_mm: float  # distance between the centres of adjacent columns (horizontal)
    source: SpacingSource
    magnification: float | None  # (0018,1114) when it was applied


@dataclass(frozen=True, slots=True)
class DicomInstance:
    study_instance_uid: str | None
    series_instance_uid: str | None
    sop_instance_uid: str | None
    sop_class_uid: str | None
    transfer_syntax_uid: str | None
    modality: str | None
    body_part_examined: str | None
    view_position: str | None
    rows: int | None
    columns: int | None
    number_of_frames: int
    samples_per_pixel: int | None
    bits_allocated: int | None
    bits_stored: int | None
    photometric_interpretation: str | None
    has_pixel_data: bool
    pixel_spacing: PixelSpacing | None
    patient_name: str | None
    patient_id: str | None
    patient_birth_date: date | None
    patient_sex: str | None
    study_date: date | None
    study_description: str | None
    series_description: str | None
    # Images in Acquisition (0020,1002): how many slices a CT series announces, if it does.
    images_in_acquisition: int | None = None
    # What QIDO's default attribute sets name (PS3.18 Table 10.6.3-3/4/5).
    study_time: str | None = None
    accession_number: str | None = None
    series_number: int | None = None
    instance_number: int | None = None


# --- sniffing ---------------------------------------------------------------------------------

_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)


def looks_like_dicom(head: bytes) -> bool:
    """Whether the first bytes (at least 132 when available) start a DICOM file.

    Part 10 files carry ``DICM`` at offset 128. Older exports omit the preamble and start
    straight with a group 0002 or 0008 element; those are recognised from the first header.
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    return _starts_with_bare_element(head)


def _starts_with_bare_element(head: bytes) -> bool:
    if len(head) < 8:
        return False
    for order in "<>":
        group, element = struct.unpack(order + "HH", head[:4])
        # Big-endian files still encode group 0002 little-endian, so only 0008 counts there.
        if group not in ((0x0002, 0x0008) if order == "<" else (0x0008,)) or element > 0x0FFF:
            continue
        if head[4:6] in _VRS:
            return True
        (implicit_length,) = struct.unpack(order + "I", head[4:8])
        if order == "<" and implicit_length < 0x1000:
            return True
    return False


# --- completeness walk ------------------------------------------------------------------------

_LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_MAX_NESTING = 64


class _TruncatedError(Exception):
    """The declared structure runs past the end of the bytes."""


class _UnwalkableError(Exception):
    """The walk cannot follow the encoding; pydicom's reading is then taken as it is."""


class _HeaderWalker:
    """Skips from element header to element header without decoding any value."""

    def __init__(self, buf: bytes, *, implicit: bool, little: bool) -> None:
        self.buf = buf
        self.implicit = implicit
        self.order = "<" if little else ">"

    def header(self, pos: int) -> tuple[int, int, int]:
        """Return (tag, position of the value, value length)."""
        if pos + 8 > len(self.buf):
            raise _TruncatedError
        group, element = struct.unpack_from(self.order + "HH", self.buf, pos)
        tag = group << 16 | element
        vr = self.buf[pos + 4 : pos + 6]
        # Item and delimiter headers never carry a VR, whatever the transfer syntax.
        explicit = not self.implicit and group != 0xFFFE and vr.isalpha() and vr.isupper()
        if not explicit:
            return tag, pos + 8, struct.unpack_from(self.order + "I", self.buf, pos + 4)[0]
        if vr in _LONG_LENGTH_VRS:
            if pos + 12 > len(self.buf):
                raise _TruncatedError
            return tag, pos + 12, struct.unpack_from(self.order + "I", self.buf, pos + 8)[0]
        return tag, pos + 8, struct.unpack_from(self.order + "H", self.buf, pos + 6)[0]

    def skip_value(self, value_pos: int, length: int, depth: int) -> int:
        if length == _UNDEFINED:
            return self.skip_items(value_pos, depth + 1)
        end = value_pos + length
        if end > len(self.buf):
            raise _TruncatedError
        return end

    def skip_items(self, pos: int, depth: int) -> int:
        """Skip an undefined-length value: sequence items or encapsulated fragments."""
        if depth > _MAX_NESTING:
            raise _UnwalkableError
        while True:
            tag, value_pos, length = self.header(pos)
            if tag == _SEQUENCE_END:
                return value_pos
            if tag != _ITEM:
                raise _UnwalkableError
            if length == _UNDEFINED:
                pos = self.skip_item_dataset(value_pos, depth)
            else:
                pos = self.skip_value(value_pos, length, depth)

    def skip_item_dataset(self, pos: int, depth: int) -> int:
        while True:
            tag, value_pos, length = self.header(pos)
            if tag == _ITEM_END:
                return value_pos
            pos = self.skip_value(value_pos, length, depth)

    def walk(self, pos: int) -> None:
        while pos < len(self.buf):
            _tag, value_pos, length = self.header(pos)
            pos = self.skip_value(value_pos, length, 0)


def _dataset_offset(data: bytes) -> int:
    """Offset just past the file meta group (always explicit VR little endian)."""
    pos = 132 if data[128:132] == b"DICM" else 0
    meta = _HeaderWalker(data, implicit=False, little=True)
    while pos + 8 <= len(data) and struct.unpack_from("<H", data, pos)[0] == 0x0002:
        _tag, value_pos, length = meta.header(pos)
        pos = meta.skip_value(value_pos, length, 0)
    return pos


def _check_complete(data: bytes, ds: Dataset) -> None:
    try:
        start = _dataset_offset(data)
        if _transfer_syntax_of(ds) == DeflatedExplicitVRLittleEndian:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            body = inflater.decompress(data[start:])
            if not inflater.eof:
                raise _TruncatedError
            _HeaderWalker(body, implicit=False, little=True).walk(0)
            return
        implicit, little = ds.original_encoding
        if implicit is None or little is None:
            return
        _HeaderWalker(data, implicit=implicit, little=little).walk(start)
    except _TruncatedError:
        raise Unprocessable(TRUNCATED, "The DICOM file ends before its last element.") from None
    except (_UnwalkableError, zlib.error, struct.error):
        return


# --- parsing ----------------------------------------------------------------------------------


# Executable, script and document magic in the free 128-byte preamble makes a DICOM file a
# polyglot (CVE-2019-11687): zeros, a TIFF header or vendor text stay allowed.
_HOSTILE_PREAMBLES = (b"MZ", b"\x7fELF", b"#!", b"<", b"PK\x03\x04", b"%PDF", b"\xca\xfe\xba\xbe",
                      b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa")
SUSPICIOUS_PREAMBLE = "dicom_suspicious_preamble"


def _parse(data: bytes) -> Dataset:
    if not looks_like_dicom(data[:132]):
        raise UnsupportedMedia(NOT_DICOM, "The file is not DICOM (no DICM marker, no dataset).")
    if data[128:132] == b"DICM" and data[:128].lstrip(b"\0 \t\r\n").startswith(
            _HOSTILE_PREAMBLES):
        raise UnsupportedMedia(SUSPICIOUS_PREAMBLE,
                               "The DICOM preamble holds an executable, script or document.")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except InvalidDicomError as exc:
        raise UnsupportedMedia(NOT_DICOM, "The file is not DICOM.") from exc
    except (EOFError, struct.error) as exc:
        raise Unprocessable(TRUNCATED, "The DICOM file ends before its last element.") from exc
    except zlib.error as exc:  # a deflated dataset (1.2.840.10008.1.2.1.99) cut short
        code = TRUNCATED if "truncated" in str(exc) else INVALID
        raise Unprocessable(code, "The deflated DICOM dataset cannot be inflated.") from exc
    except Exception as exc:
        raise Unprocessable(INVALID, "The DICOM file cannot be parsed.") from exc
    _check_complete(data, ds)
    if len(ds) == 0:
        raise Unprocessable(INVALID, "The DICOM file holds no dataset.")
    return ds


def _transfer_syntax_of(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(str(ts)) if ts else None


def _effective_transfer_syntax(ds: Dataset) -> UID:
    """The transfer syntax to decode with, inferred from the encoding when the meta lacks it.

    Only native syntaxes can be inferred: encapsulated pixel data needs the codec's name.
    """
    ts = _transfer_syntax_of(ds)
    if ts is not None:
        return ts
    element = next((ds[k] for k in _PIXEL_DATA_KEYWORDS if k in ds), None)
    implicit, little = ds.original_encoding
    if element is not None and element.is_undefined_length:
        raise UnsupportedMedia(
            UNSUPPORTED_TRANSFER_SYNTAX,
            "The pixel data is compressed but the file names no transfer syntax.",
        )
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


_T = TypeVar("_T")


def _get(ds: Dataset, keyword: str, convert: Callable[[Any], _T]) -> _T | None:
    """A single attribute, or None when it is absent, empty or malformed.

    Metadata is best effort: one bad value (say an IS of "1A") must not hide the rest.
    """
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        return convert(value)
    except Exception:
        return None


def _text(value: Any) -> str | None:
    # Control characters (a NUL inside a PN, say) are never meaningful in these VRs and
    # PostgreSQL text columns refuse NUL: drop them rather than poison the read models.
    text = "".join(ch for ch in str(value) if ch.isprintable()).strip()
    return text or None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list | tuple | MultiValue) else value


_DATE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})")  # DA, plus the old ACR-NEMA dotted form


def _date(value: Any) -> date | None:
    match = _DATE.match(str(value).strip())
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _pair(value: Any) -> tuple[float, float] | None:
    numbers = [float(v) for v in value]
    if len(numbers) != 2 or not all(np.isfinite(n) and n > 0 for n in numbers):
        return None
    return numbers[0], numbers[1]


def _functional_group_spacing(ds: Dataset) -> tuple[float, float] | None:
    """Pixel Spacing of enhanced multi-frame objects, kept in the shared functional groups."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    if not shared:
        return None
    measures = shared[0].get("PixelMeasuresSequence")
    if not measures:
        return None
    return _get(measures[0], "PixelSpacing", _pair)


def _pixel_spacing(ds: Dataset) -> PixelSpacing | None:
    """Effective mm/pixel at the patient, preferring the calibrated Pixel Spacing.

    PS3.3 C.8.11.7: in projection radiography Pixel Spacing, when present, already accounts for
    geometry; Imager Pixel Spacing is at the detector face and overstates anatomy by the
    magnification unless divided by the Estimated Radiographic Magnification Factor.
    """
    spacing = _get(ds, "PixelSpacing", _pair) or _functional_group_spacing(ds)
    if spacing is not None:
        return PixelSpacing(spacing[0], spacing[1], SpacingSource.PIXEL_SPACING, None)
    imager = _get(ds, "ImagerPixelSpacing", _pair)
    if imager is None:
        return None
    magnification = _get(ds, "EstimatedRadiographicMagnificationFactor", float)
    if magnification is not None and np.isfinite(magnification) and magnification > 0:
        return PixelSpacing(
            imager[0] / magnification,
            imager[1] / magnification,
            SpacingSource.IMAGER_PIXEL_SPACING_CORRECTED,
            magnification,
        )
    return PixelSpacing(imager[0], imager[1], SpacingSource.IMAGER_PIXEL_SPACING, None)


def _has_pixel_data(ds: Dataset) -> bool:
    return any(keyword in ds for keyword in _PIXEL_DATA_KEYWORDS)


def _frame_count(ds: Dataset) -> int:
    frames = _get(ds, "NumberOfFrames", int)
    return frames if frames is not None and frames > 0 else 1


def read_stored(data: bytes, *, stop_before_pixels: bool = False) -> Dataset:
    """A stored object read the way ingest read it: leniently (no preamble, no file meta,
    as pydicom writes a dataset built in memory), with the file meta filled in so that
    decoders and writers (DICOMDIR export) get the transfer syntax and SOP identity."""
    if not looks_like_dicom(data[:132]):  # force=True would make a dataset of anything
        raise UnsupportedMedia(NOT_DICOM, "The object is not DICOM.")
    ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=stop_before_pixels)
    if len(ds) == 0:
        raise Unprocessable(INVALID, "The DICOM object holds no dataset.")
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = _effective_transfer_syntax(ds)
    for meta_keyword, keyword in (("MediaStorageSOPClassUID", "SOPClassUID"),
                                  ("MediaStorageSOPInstanceUID", "SOPInstanceUID")):
        if meta_keyword not in meta and keyword in ds:
            setattr(meta, meta_keyword, ds[keyword].value)
    return ds


def part10_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A stored object's chunks as a PS3.10 file, which WADO-RS promises and strict readers
    (dicomweb-client's ``dcmread``) need: streamed as stored when it has its preamble and
    DICM prefix, else read whole and written again with them."""
    rest = iter(chunks)
    head = b""
    for chunk in rest:
        head += chunk
        if len(head) >= 132:
            break
    if head[128:132] == b"DICM":
        yield head
        yield from rest
        return
    out = io.BytesIO()
    read_stored(head + b"".join(rest)).save_as(out, enforce_file_format=True)
    yield out.getvalue()


def pixel_fingerprint(data: bytes) -> str:
    """A digest of the decoded pixel data (every frame, with its shape): the same image
    gives the same digest in any transfer syntax that keeps its pixels (explicit or
    implicit VR, big endian, lossless compression)."""
    try:
        pixels = np.asarray(read_stored(data).pixel_array)
    except OrthovaultError:
        raise
    except Exception as exc:
        raise _classify_decode_error(exc) from exc
    little = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False)
    digest = hashlib.sha256(f"{little.shape}|{little.dtype.str}|".encode())
    digest.update(np.ascontiguousarray(little).tobytes())
    return digest.hexdigest()


def read_dicom(data: bytes) -> DicomInstance:
    """Identity, acquisition and patient attributes of a DICOM object, without its pixels."""
    ds = _parse(data)
    ts = _transfer_syntax_of(ds)
    return DicomInstance(
        study_instance_uid=_get(ds, "StudyInstanceUID", _text),
        series_instance_uid=_get(ds, "SeriesInstanceUID", _text),
        sop_instance_uid=_get(ds, "SOPInstanceUID", _text),
        sop_class_uid=_get(ds, "SOPClassUID", _text),
        transfer_syntax_uid=str(ts) if ts else None,
        modality=_get(ds, "Modality", _text),
        body_part_examined=_get(ds, "BodyPartExamined", _text),
        view_position=_get(ds, "ViewPosition", _text),
        rows=_get(ds, "Rows", int),
        columns=_get(ds, "Columns", int),
        number_of_frames=_frame_count(ds),
        samples_per_pixel=_get(ds, "SamplesPerPixel", int),
        bits_allocated=_get(ds, "BitsAllocated", int),
        bits_stored=_get(ds, "BitsStored", int),
        photometric_interpretation=_get(ds, "PhotometricInterpretation", _text),
        has_pixel_data=_has_pixel_data(ds),
        pixel_spacing=_pixel_spacing(ds),
        patient_name=_get(ds, "PatientName", _text),
        patient_id=_get(ds, "PatientID", _text),
        patient_birth_date=_get(ds, "PatientBirthDate", _date),
        patient_sex=_get(ds, "PatientSex", _text),
        study_date=_get(ds, "StudyDate", _date),
        study_description=_get(ds, "StudyDescription", _text),
        series_description=_get(ds, "SeriesDescription", _text),
        images_in_acquisition=_get(ds, "ImagesInAcquisition", int),
        study_time=_get(ds, "StudyTime", _text),
        accession_number=_get(ds, "AccessionNumber", _text),
        series_number=_get(ds, "SeriesNumber", int),
        instance_number=_get(ds, "InstanceNumber", int),
    )


# --- rendering --------------------------------------------------------------------------------


def render_dicom(
    data: bytes, frame: int = 0, *, max_pixels: int = DEFAULT_MAX_PIXELS,
    window: tuple[float, float, str] | None = None,
) -> np.ndarray:
    """One frame as display-ready 8-bit pixels: (rows, columns) grey or (rows, columns, 3) RGB.

    Greyscale goes through the standard display pipeline (modality LUT or rescale, then VOI
    LUT or window, then MONOCHROME1 inversion); colour is brought to 8-bit RGB. ``window``
    (centre, width, VOI LUT function) replaces the object's own VOI for greyscale.
    """
    ds = _parse(data)
    if not _has_pixel_data(ds):
        raise Unprocessable(NO_PIXEL_DATA, "The DICOM object has no pixel data.")
    frames = _frame_count(ds)
    if not 0 <= frame < frames:
        raise InvalidInput(FRAME_OUT_OF_RANGE, f"Frame {frame} is outside 0..{frames - 1}.")
    rows, columns = _get(ds, "Rows", int), _get(ds, "Columns", int)
    if not rows or not columns or rows < 0 or columns < 0:
        raise Unprocessable(INVALID, "The DICOM object has no valid Rows/Columns.")
    if rows * columns > max_pixels:
        raise TooLarge(TOO_LARGE, f"A {columns}x{rows} frame exceeds {max_pixels} pixels.")
    try:
        pixels, photometric = _decode_frame(ds, frame)
        rendered = _to_display(pixels, photometric, ds, window)
    except OrthovaultError:
        raise
    except MemoryError as exc:
        raise TooLarge(TOO_LARGE, "The frame is too large to decode.") from exc
    except Exception as exc:
        raise _classify_decode_error(exc) from exc
    except BaseException as exc:
        # Rust decoders built with pyo3 turn a panic into PanicException, a BaseException.
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        raise Unprocessable(INVALID, "The DICOM pixel data cannot be decoded.") from exc
    if rendered.size == 0:
        raise Unprocessable(INVALID, "The DICOM frame decoded to no pixels.")
    return rendered


def _decode_frame(ds: Dataset, frame: int) -> tuple[np.ndarray, str]:
    ts = _effective_transfer_syntax(ds)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise UnsupportedMedia(
            UNSUPPORTED_TRANSFER_SYNTAX, f"No decoder for transfer syntax {ts}."
        ) from None
    if not decoder.is_available:
        raise UnsupportedMedia(
            UNSUPPORTED_TRANSFER_SYNTAX, f"The decoder for transfer syntax {ts} is not installed."
        )
    if "NumberOfFrames" in ds:
        # A malformed value (say "1A") counts as one frame, as in read_dicom; the decoder
        # still checks that the pixel data is long enough. ``ds`` is this call's own copy.
        ds.NumberOfFrames = _frame_count(ds)
    options = as_pixel_options(ds)
    options["transfer_syntax_uid"] = ts  # overrides a missing or unreadable file meta
    pixels, meta = decoder.as_array(ds, index=frame, validate=True, **options)
    # The decoder reports the colour space it actually produced (YBR_FULL* becomes RGB).
    return pixels, str(meta.get("photometric_interpretation", "")).strip()


_TRUNCATION_HINTS = ("less than expected", "insufficient pixel data", "end of file")


def _classify_decode_error(exc: Exception) -> OrthovaultError:
    message = str(exc).lower()
    if isinstance(exc, EOFError) or any(hint in message for hint in _TRUNCATION_HINTS):
        return Unprocessable(TRUNCATED, "The DICOM pixel data is shorter than declared.")
    if "missing dependencies" in message or "not supported by numpy" in message:
        return UnsupportedMedia(UNSUPPORTED_TRANSFER_SYNTAX, "The pixel data cannot be decoded.")
    return Unprocessable(INVALID, "The DICOM pixel data cannot be decoded.")


_GREYSCALE = frozenset({"MONOCHROME1", "MONOCHROME2"})
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422"})


def _to_display(pixels: np.ndarray, photometric: str, ds: Dataset,
                window: tuple[float, float, str] | None = None) -> np.ndarray:
    if photometric in _GREYSCALE:
        if pixels.ndim != 2:
            raise Unprocessable(INVALID, "Greyscale pixel data has more than one sample.")
        grey = _grey_to_uint8(pixels, ds, window)
        return 255 - grey if photometric == "MONOCHROME1" else grey
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, ds)
        return _colour_to_uint8(rgb, 16 if rgb.dtype.itemsize > 1 else 8)
    if photometric in _COLOUR:
        if pixels.ndim != 3 or pixels.shape[-1] != 3:
            raise Unprocessable(INVALID, "Colour pixel data does not have three samples.")
        if photometric != "RGB":
            pixels = convert_color_space(pixels, photometric, "RGB")
        return _colour_to_uint8(pixels, _get(ds, "BitsStored", int) or pixels.dtype.itemsize * 8)
    raise Unprocessable(
        UNSUPPORTED_PHOTOMETRIC, f"Photometric interpretation {photometric!r} is not rendered."
    )


def _colour_to_uint8(pixels: np.ndarray, bits: int) -> np.ndarray:
    shifted = pixels.astype(np.uint64) >> max(bits - 8, 0) if bits > 8 else pixels
    return np.ascontiguousarray(np.clip(shifted, 0, 255).astype(np.uint8))


def _grey_to_uint8(pixels: np.ndarray, ds: Dataset,
                   window: tuple[float, float, str] | None = None) -> np.ndarray:
    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    if window is not None:
        return _apply_window(values, window[0], window[1], function=window[2])
    if ds.get("VOILUTSequence"):
        return _voi_lut(values, ds)
    window = _window(ds)
    if window is not None:
        return _apply_window(values, *window, function=_get(ds, "VOILUTFunction", _text))
    return _stretch(values)


def _voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray:
    # A VOI LUT is indexed by integer modality values; its own output range is the scale.
    mapped = apply_voi(np.rint(values).astype(np.int64), ds, 0).astype(np.float64)
    lut = ds.VOILUTSequence[0]
    bits = int(lut.LUTDescriptor[2])
    top = float(2**bits - 1)
    if mapped.max(initial=0.0) > top:  # some writers declare fewer bits than they store
        top = float(mapped.max())
    return np.clip(np.rint(mapped * (255.0 / top)), 0, 255).astype(np.uint8)


def _window(ds: Dataset) -> tuple[float, float] | None:
    centre = _get(ds, "WindowCenter", lambda v: float(_first(v)))
    width = _get(ds, "WindowWidth", lambda v: float(_first(v)))
    if centre is None or width is None or not np.isfinite(centre) or not width >= 1:
        return None
    return centre, width


def _apply_window(
    values: np.ndarray, centre: float, width: float, function: str | None
) -> np.ndarray:
    """PS3.3 C.11.2.1.2 windowing mapped straight onto 0..255.

    Done here rather than with pydicom's ``apply_windowing`` because that returns values in
    the stored-bit range, which would need a second, lossy rescale to reach 8 bits.
    """
    match (function or "LINEAR").upper():
        case "SIGMOID":
            scaled = 1.0 / (1.0 + np.exp(-4.0 * (values - centre) / width))
        case "LINEAR_EXACT":
            scaled = (values - centre) / width + 0.5
        case _:
            scaled = (values - (centre - 0.5)) / max(width - 1.0, 1e-9) + 0.5
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


def _stretch(values: np.ndarray) -> np.ndarray:
    """Without a VOI, the full stored range of this frame fills 0..255."""
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.clip(np.rint((values - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)
