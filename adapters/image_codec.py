"""Raster images with Pillow: validating uploads and making derivatives fast.

Derivatives use JPEG DCT scaling (``Image.draft``): the decoder produces a 1/2, 1/4 or 1/8
scale image directly, so a 24-megapixel photo is never decoded at full size to make a
1600 px preview or a 256 px thumbnail.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from domain.errors import TooLarge, Unprocessable

try:  # HEIC/HEIF (phones, some intraoral cameras); optional at import, declared in pyproject.
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover
    pass

THUMBNAIL_PX = 256
PREVIEW_PX = 1600
JPEG_QUALITY = 85
RASTER_TYPES = {"image/jpeg", "image/png", "image/tiff", "image/webp", "image/heic", "image/avif"}


@dataclass(frozen=True)
class RasterProbe:
    width: int
    height: int
    format: str
    dhash: int  # 64-bit difference hash (signed, to fit a Postgres bigint)


def difference_hash(image: Image.Image) -> int:
    """dHash: brightness gradients of a 9x8 thumbnail; near-identical photos differ in few
    bits even after re-encoding or resizing."""
    small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BILINEAR),
                       dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    value = int("".join("1" if b else "0" for b in bits), 2)
    return value - (1 << 64) if value >= 1 << 63 else value


def probe(source: BinaryIO, *, max_pixels: int) -> RasterProbe:
    """Checks the whole file decodes, without decoding it at full size where avoidable.

    Refuses decompression bombs from the header alone, before any pixel is decoded.
    """
    source.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
            width, height = image.size
            if width <= 0 or height <= 0:
                raise Unprocessable("corrupt_image", "the image has no pixels")
            if width * height > max_pixels:
                raise TooLarge(
                    "image_too_many_pixels",
                    f"{width}x{height} exceeds the limit of {max_pixels} pixels",
                )
            fmt = image.format or "unknown"
            # A 1/8-scale decode still reads every byte of the entropy-coded data, so
            # truncation and corruption surface here at a fraction of the cost.
            image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
            fingerprint = difference_hash(ImageOps.exif_transpose(image))
            for frame in range(1, getattr(image, "n_frames", 1)):
                image.seek(frame)
                image.load()
    except (TooLarge, Unprocessable):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLarge("image_too_many_pixels", "the image exceeds the pixel limit") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise Unprocessable(
            "corrupt_image", f"the image cannot be decoded ({type(error).__name__})"
        ) from None
    finally:
        source.seek(0)
    return RasterProbe(width=width, height=height, format=fmt, dhash=fingerprint)


def _encode_jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return out.getvalue()


def _fit(image: Image.Image, longest: int) -> Image.Image:
    if max(image.size) <= longest:
        return image
    copy = image.copy()
    copy.thumbnail((longest, longest), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return copy


_SRGB = ImageCms.createProfile("sRGB")


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert through an embedded colour profile so derivatives look right everywhere."""
    icc = image.info.get("icc_profile")
    if not icc:
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        mode = "RGB" if image.mode not in ("L",) else "L"
        converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image  # a broken profile is ignored rather than failing the image
    return converted or image


def decode_at_least(data: bytes, longest: int) -> Image.Image:
    """Decode no larger than needed for a ``longest``-pixel result (JPEG DCT scaling),
    with EXIF orientation applied, converted to sRGB, in RGB or L."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    scale = max(width, height) / longest
    if scale > 1:
        image.draft("RGB", (int(width / scale), int(height / scale)))
    image = ImageOps.exif_transpose(image)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return _to_srgb(image)


def flip(image: Image.Image, axis: str | None) -> Image.Image:
    if axis == "vertical":
        return ImageOps.flip(image)
    if axis == "horizontal":
        return ImageOps.mirror(image)
    return image


def derivatives_from(image: Image.Image) -> dict[str, bytes]:
    """{"preview": JPEG ≤1600 px, "thumbnail": JPEG ≤256 px} from a decoded image."""
    preview = _fit(image, PREVIEW_PX)
    thumbnail = _fit(preview, THUMBNAIL_PX)
    return {"preview": _encode_jpeg(preview), "thumbnail": _encode_jpeg(thumbnail)}


def make_derivatives(data: bytes) -> dict[str, bytes]:
    """Derivatives straight from file bytes, EXIF orientation applied."""
    return derivatives_from(decode_at_least(data, PREVIEW_PX))


def working_pixels(image: Image.Image, width: int = 512) -> np.ndarray:
    """A small RGB array for the quality and categorisation checks."""
    small = image.convert("RGB")
    if small.width > width:
        small = small.resize((width, max(1, round(small.height * width / small.width))),
                             Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.uint8)


_EXIF_FIELDS = {
    0x010F: "make", 0x0110: "model", 0xA434: "lens", 0x829A: "exposure_time",
    0x829D: "f_number", 0x8827: "iso", 0x9209: "flash", 0x920A: "focal_length",
    0x9003: "captured_at", 0x0112: "orientation",
}


def camera_metadata(source: BinaryIO) -> dict[str, Any]:
    """Make, model, lens, exposure, flash and capture time, as plain JSON values.

    Absurd or unreadable values are dropped, not trusted: EXIF is whatever the file says.
    """
    source.seek(0)
    try:
        exif = Image.open(source).getexif()
        merged = {**exif, **exif.get_ifd(0x8769)}
    except Exception:
        return {}
    finally:
        source.seek(0)
    found: dict[str, Any] = {}
    for tag, name in _EXIF_FIELDS.items():
        value = merged.get(tag)
        plain = _plain(value)
        if plain is not None:
            found[name] = plain
    return found


def _plain(value: Any) -> str | float | int | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    if isinstance(value, str):
        text = "".join(ch for ch in value if ch.isprintable()).strip()
        return text[:100] or None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if number != number or abs(number) > 1e9:  # NaN or absurd
        return None
    return int(number) if number.is_integer() else round(number, 6)


def exif_capture_time(metadata: dict[str, Any]) -> datetime | None:
    """DateTimeOriginal as a naive-UTC datetime when it is a sane date."""
    raw = metadata.get("captured_at")
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.strptime(raw, "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return moment if datetime(1990, 1, 1, tzinfo=UTC) <= moment <= datetime.now(UTC) else None
