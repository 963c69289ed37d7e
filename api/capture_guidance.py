"""Live capture guidance: a low-resolution preview frame in, quick hints out.

Nothing is stored: the frame is checked in memory and forgotten. The answer must come
back fast enough for a camera's live preview (the benchmark holds it to p95 < 100 ms).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from adapters.image_codec import working_pixels
from domain.categorisation import categorise
from domain.errors import InvalidInput, TooLarge, Unprocessable
from domain.photo_quality import assess
from domain.views import VIEWS

MAX_FRAME_PX = 640
MAX_FRAME_BYTES = 2 * 1024 * 1024
VIEW_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Guidance:
    slot: str
    status: str
    hints: list[str]
    checks: list[dict[str, object]]
    looks_like: str | None
    looks_like_confidence: float


def _frame(data: bytes) -> Image.Image:
    if not data:
        raise Unprocessable("empty_file", "the frame is empty")
    if len(data) > MAX_FRAME_BYTES:
        raise TooLarge("frame_too_large", f"frames are at most {MAX_FRAME_BYTES} bytes")
    try:
        image = Image.open(io.BytesIO(data))
        if max(image.size) > MAX_FRAME_PX:
            raise TooLarge("frame_too_large", f"frames are at most {MAX_FRAME_PX} px")
        image = ImageOps.exif_transpose(image)
        image.load()
    except Image.DecompressionBombError:  # Pillow's own guard fires inside open()
        raise TooLarge("frame_too_large", f"frames are at most {MAX_FRAME_PX} px") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise Unprocessable("corrupt_image", "the frame cannot be decoded") from None
    return image.convert("RGB")


def guide(data: bytes, slot: str) -> Guidance:
    if slot not in VIEWS:
        raise InvalidInput("unknown_slot", f"{slot[:16]!r} is not a view code")
    image = _frame(data)
    pixels = working_pixels(image, width=min(MAX_FRAME_PX, image.width))
    # Resolution is the full photo's business, not the preview frame's: leave it out.
    report = assess(pixels, original_size=image.size, view_code=slot)
    checks = [{"name": c.name, "value": c.value, "status": str(c.status), "hint": c.hint}
              for c in report.checks if c.name != "resolution"]
    hints = [c["hint"] for c in checks if c["hint"] and c["status"] != "pass"]
    found = categorise(pixels, width=image.width, height=image.height)
    looks_like = found.view_code if found.view_code_confidence >= VIEW_CONFIDENCE else None
    if looks_like and looks_like != slot:
        hints.append(f"looks like {VIEWS[looks_like].name} ({looks_like}); "
                     f"the slot is {VIEWS[slot].name} ({slot})")
    statuses = [c["status"] for c in checks]
    status = "fail" if "fail" in statuses else "warn" if "warn" in statuses or (
        looks_like and looks_like != slot) else "pass"
    return Guidance(slot=slot, status=status, hints=[str(h) for h in hints], checks=checks,
                    looks_like=looks_like, looks_like_confidence=found.view_code_confidence)
