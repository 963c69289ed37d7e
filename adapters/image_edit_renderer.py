"""Render an image's edit list (``domain/image_edits.py``) from its original bytes.

Each revision's rendering is a pure function of the original and the operations, so it can
be cached under a key made of both and recomputed at will: undo brings back the very same
bytes. The original is decoded only as large as the output needs (JPEG DCT scaling); crop
boxes, given in original-scale pixels, are scaled with it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image, ImageEnhance, ImageOps

from adapters.image_codec import decode_at_least
from domain.image_edits import EditOp, size_after

JPEG_QUALITY = 90
# PIL's ROTATE_* constants turn counter-clockwise; ours turn clockwise on screen.
_RIGHT_ANGLES = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
                 270: Image.Transpose.ROTATE_90}


def rendering_key(original_sha256: str, operations: Sequence[Mapping[str, Any]],
                  longest: int) -> str:
    """What a rendering depends on, hashed: an ETag that changes exactly when it does."""
    payload = json.dumps([original_sha256, list(operations), longest], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _lut(image: Image.Image, table: list[int]) -> Image.Image:
    bands = len(image.getbands())
    return image.point(table * bands)


def _apply(image: Image.Image, op: Mapping[str, Any], scale: list[float]) -> Image.Image:
    match op["op"]:
        case EditOp.ROTATE:
            degrees = float(op["degrees"]) % 360
            if degrees in _RIGHT_ANGLES:
                if degrees != 180:
                    scale.reverse()
                return image.transpose(_RIGHT_ANGLES[int(degrees)])
            # PIL turns counter-clockwise for positive angles; size kept, corners black.
            return image.rotate(-degrees, resample=Image.Resampling.BICUBIC, expand=False)
        case EditOp.FLIP:
            return ImageOps.mirror(image) if op["axis"] == "horizontal" else ImageOps.flip(image)
        case EditOp.CROP:
            sx, sy = scale
            box = (round(op["x"] * sx), round(op["y"] * sy),
                   round((op["x"] + op["width"]) * sx), round((op["y"] + op["height"]) * sy))
            return image.crop(box)
        case EditOp.BRIGHTNESS:
            return ImageEnhance.Brightness(image).enhance(float(op["factor"]))
        case EditOp.CONTRAST:
            return ImageEnhance.Contrast(image).enhance(float(op["factor"]))
        case EditOp.GAMMA:
            inverse = 1.0 / float(op["gamma"])
            return _lut(image, [round(255 * (i / 255) ** inverse) for i in range(256)])
        case EditOp.WINDOW:
            low = float(op["center"]) - float(op["width"]) / 2
            width = float(op["width"])
            return _lut(image, [min(255, max(0, round((i - low) / width * 255)))
                                for i in range(256)])
    raise ValueError(f"unknown edit operation {op['op']!r}")


def render(data: bytes, original_size: tuple[int, int], operations: Sequence[Mapping[str, Any]],
           longest: int) -> bytes:
    """JPEG of the edited image, at most ``longest`` pixels on its longer side."""
    final = size_after(original_size, operations)
    factor = min(1.0, longest / max(final))
    image = decode_at_least(data, max(1, math.ceil(max(original_size) * factor)))
    scale = [image.width / original_size[0], image.height / original_size[1]]
    for op in operations:
        image = _apply(image, op, scale)
    if max(image.size) > longest:
        image.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(
        out, "JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return out.getvalue()
