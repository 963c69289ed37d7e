"""The ``viewport`` and ``window`` parameters of WADO-RS rendered resources (PS3.18 8.3.5.1).

``viewport=vw,vh[,sx,sy,sw,sh]``: the source region (sx, sy, sw, sh; default the whole
image) scaled to fit vw x vh, aspect ratio kept. ``window=center,width[,function]`` with
function ``linear`` (default), ``linear-exact`` or ``sigmoid``: the VOI window applied to the
modality values instead of the one the object carries (greyscale only). Anything else
malformed is a 400, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

from domain.errors import InvalidInput

MAX_VIEWPORT = 8192
_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


@dataclass(frozen=True)
class Window:
    centre: float
    width: float
    function: str  # as VOILUTFunction spells it

    def as_tuple(self) -> tuple[float, float, str]:
        return self.centre, self.width, self.function


@dataclass(frozen=True)
class Viewport:
    width: int
    height: int
    region: tuple[int, int, int, int] | None = None  # sx, sy, sw, sh in source pixels


@dataclass(frozen=True)
class RenderOptions:
    viewport: Viewport | None = None
    window: Window | None = None


def _numbers(raw: str, name: str, kind: type[int] | type[float]) -> list[float]:
    try:
        return [kind(part) for part in raw.split(",")]
    except ValueError:
        raise InvalidInput(f"dicomweb_invalid_{name}", f"{name} takes comma-separated "
                                                       "numbers") from None


def parse_viewport(raw: str) -> Viewport:
    values = [int(v) for v in _numbers(raw, "viewport", int)]
    if len(values) not in (2, 6) or not all(0 < v <= MAX_VIEWPORT for v in values[:2]):
        raise InvalidInput("dicomweb_invalid_viewport",
                           f"viewport is vw,vh[,sx,sy,sw,sh] with 1..{MAX_VIEWPORT} pixels")
    region = None
    if len(values) == 6:
        sx, sy, sw, sh = values[2:]
        if sx < 0 or sy < 0 or sw <= 0 or sh <= 0:  # flipping by a negative size: not done
            raise InvalidInput("dicomweb_invalid_viewport",
                               "the viewport's source region needs sx,sy >= 0 and sw,sh > 0")
        region = (sx, sy, sw, sh)
    return Viewport(values[0], values[1], region)


def parse_window(raw: str) -> Window:
    parts = raw.split(",")
    function = parts[2].strip().lower() if len(parts) == 3 else "linear"
    if len(parts) not in (2, 3) or function not in _FUNCTIONS:
        raise InvalidInput("dicomweb_invalid_window",
                           "window is center,width[,linear|linear-exact|sigmoid]")
    centre, width = _numbers(",".join(parts[:2]), "window", float)
    if not (np.isfinite(centre) and np.isfinite(width)) or width <= 0 or (
            function == "linear" and width < 1):
        raise InvalidInput("dicomweb_invalid_window", "the window width must be positive "
                                                      "(at least 1 for linear)")
    return Window(centre, width, _FUNCTIONS[function])


def render_options(params: dict[str, str]) -> RenderOptions:
    viewport = params.get("viewport")
    window = params.get("window")
    return RenderOptions(viewport=parse_viewport(viewport) if viewport else None,
                         window=parse_window(window) if window else None)


def apply_viewport(pixels: np.ndarray, viewport: Viewport | None) -> np.ndarray:
    """Crop to the source region (clipped to the image) and fit it into the viewport."""
    if viewport is None:
        return pixels
    if viewport.region is not None:
        sx, sy, sw, sh = viewport.region
        pixels = pixels[sy:sy + sh, sx:sx + sw]
        if pixels.size == 0:
            raise InvalidInput("dicomweb_invalid_viewport",
                               "the viewport's source region lies outside the image")
    rows, columns = pixels.shape[:2]
    scale = min(viewport.width / columns, viewport.height / rows)
    size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
    image = PILImage.fromarray(np.ascontiguousarray(pixels))
    return np.asarray(image.resize(size, PILImage.Resampling.LANCZOS))
