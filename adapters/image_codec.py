"""Raster images with Pillow: validating uploads and making derivatives fast.

Derivatives use JPEG DCT scaling (``Image.draft``): the decoder produces a 1/2, 1/4 or 1/8
scale image directly, so a 24-megapixel photo is never decoded at full size to make a
1600 px preview or a 256 px thumbnail.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

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
    return RasterProbe(width=width, height=height, format=fmt)


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


def decode_at_least(data: bytes, longest: int) -> Image.Image:
    """Decode no larger than needed for a ``longest``-pixel result (JPEG DCT scaling),
    with EXIF orientation applied and in RGB or L."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    scale = max(width, height) / longest
    if scale > 1:
        image.draft("RGB", (int(width / scale), int(height / scale)))
    image = ImageOps.exif_transpose(image)
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image


def make_derivatives(data: bytes) -> dict[str, bytes]:
    """{"preview": JPEG ≤1600 px, "thumbnail": JPEG ≤256 px}, EXIF orientation applied."""
    image = decode_at_least(data, PREVIEW_PX)
    preview = _fit(image, PREVIEW_PX)
    thumbnail = _fit(preview, THUMBNAIL_PX)
    return {"preview": _encode_jpeg(preview), "thumbnail": _encode_jpeg(thumbnail)}
