"""Classical quality checks for clinical photographs and scanned radiographs (numpy only).

The caller decodes the image, applies EXIF orientation and downsizes it to the working width
(``QualityThresholds.working_width``, 512 px); this module does no I/O. Pixels are ``uint8``
RGB ``(H, W, 3)`` or grayscale ``(H, W)``. Everything is vectorised numpy: ``assess`` takes
about 5 ms on a 512x640 RGB frame on the 2-core dev box, so it also serves live capture
guidance.

Each check returns a ``CheckResult`` graded against a warn and a fail threshold; the report's
status is the worst check and its hints are the failing checks' short messages, worst first.

``sharpness``
    Variance of the 4-neighbour 3x3 Laplacian of luma rescaled to the working width (the same
    photo has a far higher variance at full resolution, so thresholds only mean something at
    one width), times the square of a contrast gain: a frame whose 0.5-99.5 % luma range is
    under 200 codes is stretched to 200, at most 3x. Without the gain a darkened film read
    28 ("blurred") instead of 247; the cap keeps sensor noise on a blank wall from looking
    like detail. Limits: noise and JPEG grain raise the value, so a noisy, blurred frame can
    pass; a large featureless backdrop lowers it.
``exposure_dark`` / ``exposure_bright``
    Share of pixels with luma <= 6 / >= 250 (a few codes in from 0/255 because JPEG ringing
    and noise keep clipped areas off the exact extremes). Extraoral views (``EV*``): pure
    white (all channels >= 250) connected to the left, right or top edge is taken as a
    blown-out backdrop (ABO backgrounds are white and often lit to pure white on purpose)
    and left out; over-exposed skin is not pure white, so the face still counts. A blown
    highlight that touches a white backdrop is missed. Intraoral frames clip dark in the
    buccal corridors; clinics may want a higher ``dark_clip_warn`` for ``IV*`` views.
``exposure_level``
    99.5th percentile of luma, "do the highlights reach a normal level". An image that is
    merely dim (scaled down, not crushed) has no clipped pixels, so clipping alone misses it.
``colour_cast``
    ``max(|a*|, |b*|)`` of the mean CIELAB (D65) of near-neutral pixels (chroma < 20, L* 25-97,
    on a 1/8 subsample). When 80 % of the usable pixels are within twice that gate (film,
    paper, grey scenes) the gate is re-centred on their median, so a strong uniform cast that
    pushes grey outside a fixed gate is still measured; in coloured scenes it is not, because
    it then locked onto gingiva (a darkened intraoral frame read "magenta 24"). Extraoral
    views use only the border band, i.e. the protocol's neutral backdrop; when that is blown
    out there is no reference and the value is ``None`` (skin is not neutral). Intraoral views
    are not measured at all: teeth are naturally yellow (b* +10..+20) and the rest is mucosa.
    Grayscale input has no cast by construction (value 0).
``background``
    Extraoral views only: standard deviation of luma in the top band and the upper 60 % of
    the side bands (the shoulders reach the bottom). Catches clutter and strong shadows, not a
    uniformly grey backdrop.
``resolution``
    Short side of the *original* image against the protocol minimum. The defaults (warn below
    1200 px, fail below 800 px) are placeholders to set per clinic protocol.
``tilt``
    Dominant near-horizontal straight-edge angle. The frame is halved and smoothed (5x5
    binomial), Scharr gradients of the strongest 10 % vote in a 0.5-degree, energy-weighted
    histogram of edges within 20 degrees of horizontal, and the peak +/-3 degrees is refined
    with a doubled-angle (structure tensor) mean. Sign: positive means the structure is turned
    counter-clockwise on screen (right end higher), the sense of ``PIL.Image.rotate(angle)``;
    rotate by ``-tilt`` to level it. ``None`` unless the peak holds 8 % of all edge energy
    (a uniform spread gives 3 %; noise and concentric circles measured 3-5 %, films, drawn
    faces and teeth 13-31 %). It measures straight edges - film borders, rulers, a bracket
    line, a drawn eyebrow - not anatomy such as the interpupillary line, and fine text or
    hatching snaps to the pixel grid (a page turned 4 degrees read 2.7).

Calibration, measured at 512 px with the images of ``tests/unit/test_photo_quality.py``
(films L = B1893L12, F = B1893F12; "face" is the drawn, textured portrait):

* Sharpness: L / F / face read 235 / 239 / 1740. Pillow ``GaussianBlur`` radius 0.5:
  107 / 108 / 547; radius 1: 18 / 17.5 / 41; radius 2: 3.2 / 3.1 / 4.8. Warn below 100 (the
  ORTHODONTICS.md starting point; radius 0.5 on film sits just above it), fail below 50
  (radius 1 at 512 px is radius 8 on the full 4096 px film: plainly soft).
* Exposure: the films have no pixel <= 6 or >= 250; 99.5th percentile 241 / 242, face 240.
  ``ImageEnhance.Brightness`` 0.5 gives 120 / 121 / 119, 0.35 gives 84 / 84 / 83, hence level
  warn below 130 and fail below 90. Brightness 1.6 clips 55 % / 53 % of the films; a black
  point of 60 (``v - 60``) crushes 27 % / 33 % of the films and 20 % of the face to black.
  Bright clip warn over 1 %, fail over 5 %; dark clip warn over 2 %, fail over 10 % (a
  good intraoral photo may have a percent or two of black oral cavity).
* Colour cast: films 0, face 1.0 (its grey backdrop). A warm cast (R x1.08, B x0.85) reads
  b* +15.1 / +15.2 / +20.4, a cool one (R x0.88, B x1.12) -12.4 / -12.4 / -12.5. Warn over 6
  (ORTHODONTICS.md), fail over 12.
* Background: the face's backdrop (noise sigma 2) reads 2.0; 40 random rectangles on it,
  well over 20. Warn over 10, fail over 20.
* Tilt: the films read +0.24 / -0.09 as scanned and within 0.5 degrees of that plus the
  rotation when turned by +/-4; stripes turned by -12..12 degrees read within 0.35.
  Warn over 2 degrees, fail over 5.

No clinical photo set could be used here, so none of these numbers come from real clinical
photographs; recalibrate on the practice's own images before a fail is allowed to block.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from domain.errors import InvalidInput

GrayImage = npt.NDArray[np.float32]


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a check status, not a password
    WARN = "warn"
    FAIL = "fail"


_SEVERITY = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=_SEVERITY.__getitem__, default=Status.PASS)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One measured check. When ``threshold_fail < threshold_warn`` lower values are worse.

    ``value`` is ``None`` when the check could not measure anything (e.g. no neutral pixels,
    no dominant straight edge); such a check passes and carries no hint.
    """

    name: str
    value: float | None
    status: Status
    threshold_warn: float | None
    threshold_fail: float | None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """Defaults are calibrated as described in the module docstring; override per protocol."""

    working_width: int = 512
    sharpness_warn: float = 100.0
    sharpness_fail: float = 50.0
    dark_level: int = 6
    bright_level: int = 250
    dark_clip_warn: float = 0.02
    dark_clip_fail: float = 0.10
    bright_clip_warn: float = 0.01
    bright_clip_fail: float = 0.05
    level_warn: float = 130.0
    level_fail: float = 90.0
    cast_warn: float = 6.0
    cast_fail: float = 12.0
    neutral_chroma_max: float = 20.0
    background_std_warn: float = 10.0
    background_std_fail: float = 20.0
    min_short_side_warn: int = 1200
    min_short_side_fail: int = 800
    tilt_warn: float = 2.0
    tilt_fail: float = 5.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise InvalidInput("quality_thresholds_invalid", f"{f.name} must be >= 0")
        if self.working_width < 16:
            raise InvalidInput("quality_thresholds_invalid", "working_width must be >= 16")
        # Pairs are (warn, fail, lower_is_worse); a crossed pair would make warn unreachable.
        pairs = (
            ("sharpness", self.sharpness_warn, self.sharpness_fail, True),
            ("dark_clip", self.dark_clip_warn, self.dark_clip_fail, False),
            ("bright_clip", self.bright_clip_warn, self.bright_clip_fail, False),
            ("level", self.level_warn, self.level_fail, True),
            ("cast", self.cast_warn, self.cast_fail, False),
            ("background_std", self.background_std_warn, self.background_std_fail, False),
            ("min_short_side", self.min_short_side_warn, self.min_short_side_fail, True),
            ("tilt", self.tilt_warn, self.tilt_fail, False),
        )
        for name, warn, fail, lower_is_worse in pairs:
            if (warn < fail) if lower_is_worse else (warn > fail):
                raise InvalidInput(
                    "quality_thresholds_invalid", f"{name}: warn and fail thresholds are crossed"
                )
        if not 0 <= self.dark_level < self.bright_level <= 255:
            raise InvalidInput("quality_thresholds_invalid", "need 0 <= dark < bright <= 255")


DEFAULT_THRESHOLDS = QualityThresholds()


@dataclass(frozen=True, slots=True)
class QualityReport:
    status: Status
    checks: tuple[CheckResult, ...]
    hints: tuple[str, ...]
    tilt_degrees: float | None

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)


# --- pixel helpers ---------------------------------------------------------------------------


def validate_pixels(pixels: npt.NDArray[np.generic]) -> None:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        raise InvalidInput("pixels_invalid", "pixels must be a uint8 numpy array")
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        pass
    elif pixels.ndim != 2:
        raise InvalidInput("pixels_invalid", "pixels must be HxW or HxWx3")
    if pixels.shape[0] < 8 or pixels.shape[1] < 8:
        raise InvalidInput("pixels_invalid", "image must be at least 8x8 pixels")


def channel_min(pixels: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    # Pairwise minimum: ``min(axis=-1)`` over a length-3 last axis took 14 ms on 512x640.
    if pixels.ndim == 2:
        return pixels
    return np.minimum(np.minimum(pixels[..., 0], pixels[..., 1]), pixels[..., 2])


def channel_max(pixels: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    if pixels.ndim == 2:
        return pixels
    return np.maximum(np.maximum(pixels[..., 0], pixels[..., 1]), pixels[..., 2])


_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_gray(pixels: npt.NDArray[np.uint8]) -> GrayImage:
    """Rec. 601 luma on the sRGB codes, the same weights as Pillow's ``convert("L")``."""
    if pixels.ndim == 2:
        return pixels.astype(np.float32)
    # One matmul is about twice as fast as three scaled channel slices.
    return pixels.astype(np.float32) @ _LUMA_WEIGHTS


def _resample_axis(img: GrayImage, new_len: int, axis: int) -> GrayImage:
    """Linear resampling along one axis, sample centres aligned like Pillow's."""
    old_len = img.shape[axis]
    pos = (np.arange(new_len, dtype=np.float32) + 0.5) * (old_len / new_len) - 0.5
    pos = np.clip(pos, 0, old_len - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, old_len - 1)
    frac = pos - lo
    shape = [1, 1]
    shape[axis] = new_len
    frac = frac.reshape(shape)
    return np.take(img, lo, axis=axis) * (1 - frac) + np.take(img, hi, axis=axis) * frac


def block_mean(img: npt.NDArray[np.generic], factor: int) -> npt.NDArray[np.float32]:
    """Mean over ``factor`` x ``factor`` blocks (HxW or HxWxC), remainder rows/columns dropped.

    Strided sums rather than ``reshape(...).mean(axis=(1, 3))``: the reshape reduction over
    non-adjacent axes took about 20 ms on a 512x640 RGB frame here, this well under 1 ms.
    """
    if factor < 2:
        return img.astype(np.float32)
    h, w = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
    acc = np.zeros((h // factor, w // factor, *img.shape[2:]), dtype=np.float32)
    for dy in range(factor):
        for dx in range(factor):
            acc += img[dy:h:factor, dx:w:factor]
    return acc / np.float32(factor * factor)


def normalise_width(gray: GrayImage, width: int) -> GrayImage:
    """Rescale to ``width`` keeping aspect; block-average first so downsizing does not alias."""
    if gray.shape[1] == width:
        return gray
    gray = block_mean(gray, gray.shape[1] // width)
    h, w = gray.shape
    if w == width:
        return gray
    new_h = max(1, round(h * width / w))
    return _resample_axis(_resample_axis(gray, width, axis=1), new_h, axis=0).astype(np.float32)


# --- measurements ----------------------------------------------------------------------------


def laplacian_variance(gray: GrayImage) -> float:
    lap = gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2] + gray[1:-1, 2:] - 4 * gray[1:-1, 1:-1]
    return float(lap.var())


def luma_histogram(gray: GrayImage) -> npt.NDArray[np.int64]:
    """256-bin histogram; percentiles from it cost microseconds instead of a sort."""
    return np.bincount(gray.astype(np.uint8).ravel(), minlength=256)


def histogram_percentile(hist: npt.NDArray[np.int64], q: float) -> float:
    cum = np.cumsum(hist)
    if cum[-1] == 0:
        return 0.0
    return float(np.searchsorted(cum, q / 100 * cum[-1]))


def clipped_share(hist: npt.NDArray[np.int64], *, level: int, bright: bool) -> float:
    total = int(hist.sum())
    if total == 0:
        return 0.0
    clipped = hist[level:] if bright else hist[: level + 1]
    return int(clipped.sum()) / total


_SHARPNESS_REFERENCE_RANGE = 200.0
_SHARPNESS_MAX_GAIN = 3.0


def contrast_gain(hist: npt.NDArray[np.int64]) -> float:
    """Gain that brings a low-contrast frame's 0.5-99.5 % luma range up to 200 codes.

    Laplacian variance scales with contrast squared, so without this an under-exposed frame
    reads as blurred too and the user is told to refocus when the light is the problem. The
    gain never lowers the value and is capped so sensor noise on a blank frame is not
    amplified into apparent detail.
    """
    spread = histogram_percentile(hist, 99.5) - histogram_percentile(hist, 0.5)
    if spread <= 0:
        return 1.0
    return float(np.clip(_SHARPNESS_REFERENCE_RANGE / spread, 1.0, _SHARPNESS_MAX_GAIN))


_SRGB_TO_LINEAR = np.array(
    [
        c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
        for c in (i / 255 for i in range(256))
    ],
    dtype=np.float32,
)
# sRGB (D65) to XYZ, rows pre-divided by the D65 white so white maps to (1, 1, 1).
_RGB_TO_XYZ_N = np.array(
    [
        [0.4124564 / 0.95047, 0.3575761 / 0.95047, 0.1804375 / 0.95047],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339 / 1.08883, 0.1191920 / 1.08883, 0.9503041 / 1.08883],
    ],
    dtype=np.float32,
)
_LAB_EPS = (6 / 29) ** 3


def _lab_f(t: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.where(t > _LAB_EPS, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)


def srgb_to_lab(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """uint8 sRGB (..., 3) to CIELAB D65 (..., 3) as float32."""
    lin = [_SRGB_TO_LINEAR[rgb[..., i]] for i in range(3)]
    fx, fy, fz = (
        _lab_f(row[0] * lin[0] + row[1] * lin[1] + row[2] * lin[2]) for row in _RGB_TO_XYZ_N
    )
    return np.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1).astype(np.float32)


# Re-centring is only safe when nearly everything is near-neutral (film, paper, grey scenes);
# at 0.5 a darkened intraoral frame re-centred on gingiva and read a magenta cast of 24.
_DOMINANT_NEUTRAL_SHARE = 0.8


def neutral_cast(
    lab: npt.NDArray[np.float32],
    *,
    chroma_max: float,
    follow_dominant: bool = True,
    min_pixels: int = 150,
) -> tuple[float, float] | None:
    """Mean (a*, b*) of near-neutral pixels, or ``None`` without enough of them.

    With ``follow_dominant`` and when 80 % of usable pixels lie within twice the gate, the gate
    is re-centred on their median, so a strong uniform cast that pushes grey out of a fixed
    "chroma < 20" gate is still measured. When they are not the majority (a photo full of
    skin or gingiva) re-centring would lock onto that tissue, so the fixed gate is used.
    """
    lab = lab.reshape(-1, 3)
    # Very dark pixels have noisy a*/b*; clipped white ones have lost their colour.
    lab = lab[(lab[:, 0] > 25) & (lab[:, 0] < 97)]
    if len(lab) < min_pixels:
        return None
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    loose = lab[chroma < 2 * chroma_max]
    if follow_dominant and len(loose) > _DOMINANT_NEUTRAL_SHARE * len(lab):
        centre_a = float(np.median(loose[:, 1]))
        centre_b = float(np.median(loose[:, 2]))
        near = loose[np.hypot(loose[:, 1] - centre_a, loose[:, 2] - centre_b) < chroma_max]
    else:
        near = lab[chroma < chroma_max]
    if len(near) < min_pixels:
        return None
    return float(near[:, 1].mean()), float(near[:, 2].mean())


def border_mask(shape: tuple[int, int], *, band: float = 0.08) -> npt.NDArray[np.bool_]:
    """Top band plus the upper 60 % of the side bands: where an extraoral backdrop shows."""
    h, w = shape
    bh, bw = max(1, round(h * band)), max(1, round(w * band))
    mask = np.zeros(shape, dtype=bool)
    mask[:bh, :] = True
    side_rows = slice(0, max(bh, round(h * 0.6)))
    mask[side_rows, :bw] = True
    mask[side_rows, w - bw :] = True
    return mask


_TILT_WINDOW = 20.0  # degrees either side of horizontal that count as "near-horizontal"
_TILT_BIN = 0.5
_TILT_PEAK_HALF_WIDTH = 3.0
_TILT_MIN_PEAK_SHARE = 0.08  # of all edge energy; a uniform spread would give 6/180 = 0.033
_TILT_MIN_PEAK_PIXELS = 0.002  # of the frame: a short stray edge is not a horizon
_TILT_MIN_EDGE = 20.0  # Scharr magnitude on the smoothed half-size frame; below it is noise


def _half_size_smoothed(gray: GrayImage) -> GrayImage:
    """2x2 box average, then a 5x5 binomial blur ([1, 4, 6, 4, 1] each way).

    Measured on the film scans: at full working size, film grain and thin strokes give
    gradients that snap to the pixel grid, so a ceph rotated by 4 degrees read 0.2-0.4.
    On rotated stripes (periods 30-120 px, -12..12 degrees) the worst error was 0.78 degrees
    with a 3x3 blur after the box and 0.35 with this 5x5 one. Half size also makes the
    gradients four times cheaper.
    """
    if min(gray.shape) >= 16:
        gray = block_mean(gray, 2)
    g = gray[:-4] + 4 * gray[1:-3] + 6 * gray[2:-2] + 4 * gray[3:-1] + gray[4:]
    g = g[:, :-4] + 4 * g[:, 1:-3] + 6 * g[:, 2:-2] + 4 * g[:, 3:-1] + g[:, 4:]
    return g * np.float32(1 / 256)


def _scharr(g: GrayImage) -> tuple[GrayImage, GrayImage]:
    # Scharr rather than Sobel: Sobel's orientation error reads a 4-degree line as 3.5.
    c = np.float32(10 / 3)
    gx = (g[:-2, 2:] + c * g[1:-1, 2:] + g[2:, 2:]) - (g[:-2, :-2] + c * g[1:-1, :-2] + g[2:, :-2])
    gy = (g[2:, :-2] + c * g[2:, 1:-1] + g[2:, 2:]) - (g[:-2, :-2] + c * g[:-2, 1:-1] + g[:-2, 2:])
    return gx, gy


def estimate_tilt(gray: GrayImage) -> float | None:
    """Dominant near-horizontal edge angle in degrees (CCW positive) or ``None``."""
    small = _half_size_smoothed(gray)
    if min(small.shape) < 8:
        return None
    gx, gy = _scharr(small)
    energy = gx * gx + gy * gy
    # Only clear edges vote: weak gradients are noise and texture whose orientation is random.
    # The 90th percentile comes from a subsample because it needs a partial sort.
    sample = energy[::3, ::3].ravel()
    k = int(0.9 * (sample.size - 1))
    cut = max(_TILT_MIN_EDGE**2, float(np.partition(sample, k)[k]))
    strong = energy > cut
    n_strong = np.count_nonzero(strong)
    if n_strong < 50:
        return None
    total = float(energy[strong].sum())
    # A near-horizontal edge has a near-vertical gradient: |gx| <= tan(window) * |gy|. On
    # screen (y down) a line rotated CCW by t has gradient direction (sin t, cos t) up to
    # sign, so t = atan(gx / gy) whichever way the gradient points.
    near = strong & (np.abs(gx) <= math.tan(math.radians(_TILT_WINDOW)) * np.abs(gy))
    if not near.any():
        return None
    tilt = np.degrees(np.arctan(gx[near] / gy[near]))
    weight = energy[near]
    hist, edges = np.histogram(
        tilt,
        bins=int(2 * _TILT_WINDOW / _TILT_BIN),
        range=(-_TILT_WINDOW, _TILT_WINDOW),
        weights=weight,
    )
    smooth = np.convolve(hist, np.array([1, 2, 3, 2, 1], dtype=np.float64), mode="same")
    peak = float(edges[int(np.argmax(smooth))] + _TILT_BIN / 2)
    in_peak = np.abs(tilt - peak) <= _TILT_PEAK_HALF_WIDTH
    if float(weight[in_peak].sum()) < _TILT_MIN_PEAK_SHARE * total:
        return None
    if np.count_nonzero(in_peak) < _TILT_MIN_PEAK_PIXELS * small.size:
        return None
    # Energy-weighted doubled-angle mean (the structure tensor of the peak's pixels): not tied
    # to the bin grid, and unbiased where a plain angle mean would not be.
    doubled = np.radians(2 * tilt[in_peak])
    w = weight[in_peak]
    sin_sum = float((w * np.sin(doubled)).sum())
    cos_sum = float((w * np.cos(doubled)).sum())
    return 0.5 * math.degrees(math.atan2(sin_sum, cos_sum))


def _spread_along_rows(
    mask: npt.NDArray[np.bool_], seed: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """Every horizontal run of ``mask`` that contains a ``seed`` pixel, whole."""
    h, w = mask.shape
    padded = np.zeros((h, w + 1), dtype=bool)  # a False column ends every run at the row end
    padded[:, :w] = mask
    run_id = np.cumsum(~padded.ravel())
    seeded = np.zeros((h, w + 1), dtype=bool)
    seeded[:, :w] = seed & mask
    has_seed = np.bincount(run_id, weights=seeded.ravel(), minlength=int(run_id[-1]) + 1) > 0
    return (has_seed[run_id] & padded.ravel()).reshape(h, w + 1)[:, :w]


_BACKDROP_STEP = 4  # the backdrop is found on every 4th pixel: it is large and solid
_BACKDROP_ROUNDS = 2


def backdrop_mask(white: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """``white`` pixels connected to the left, right or top edge: a blown-out backdrop.

    A flood fill without scipy: alternate row and column passes that take whole white runs
    touching what is already known to be backdrop, on a 1/4 subsample for speed. A white
    highlight on the face is not connected to the edges and stays out.
    """
    step = _BACKDROP_STEP if min(white.shape) >= 8 * _BACKDROP_STEP else 1
    small = white[::step, ::step]
    seed = np.zeros_like(small)
    seed[0, :] = seed[:, 0] = seed[:, -1] = True
    found = seed & small
    for _ in range(_BACKDROP_ROUNDS):
        found = _spread_along_rows(small, found)
        found = _spread_along_rows(small.T, found.T).T
    if step > 1:
        # Grow by one cell so the rim the subsample skipped at the silhouette is covered; the
        # final "& white" keeps the subject's non-white pixels out.
        grown = found.copy()
        grown[1:] |= found[:-1]
        grown[:-1] |= found[1:]
        grown[:, 1:] |= found[:, :-1]
        grown[:, :-1] |= found[:, 1:]
        found = grown
    full = np.repeat(np.repeat(found, step, axis=0), step, axis=1)[
        : white.shape[0], : white.shape[1]
    ]
    return full & white


# --- checks ----------------------------------------------------------------------------------


def _grade(value: float, warn: float, fail: float, *, lower_is_worse: bool) -> Status:
    if lower_is_worse:
        return Status.FAIL if value < fail else Status.WARN if value < warn else Status.PASS
    return Status.FAIL if value > fail else Status.WARN if value > warn else Status.PASS


def check_sharpness(
    gray: GrayImage, t: QualityThresholds, *, hist: npt.NDArray[np.int64] | None = None
) -> CheckResult:
    """``hist`` may be passed when ``gray`` is already at the working width (saves a pass)."""
    scaled = normalise_width(gray, t.working_width)
    if hist is None or scaled is not gray:
        hist = luma_histogram(scaled)
    value = laplacian_variance(scaled) * contrast_gain(hist) ** 2
    status = _grade(value, t.sharpness_warn, t.sharpness_fail, lower_is_worse=True)
    hint = {Status.PASS: None, Status.WARN: "slightly blurred", Status.FAIL: "blurred"}[status]
    return CheckResult("sharpness", value, status, t.sharpness_warn, t.sharpness_fail, hint)


def check_exposure(
    gray: GrayImage,
    t: QualityThresholds,
    *,
    white: npt.NDArray[np.bool_] | None = None,
    hist: npt.NDArray[np.int64] | None = None,
) -> tuple[CheckResult, CheckResult, CheckResult]:
    """``white`` (extraoral views): pure-white pixels that may be a blown-out backdrop.

    Only white reached from the frame edges is excused. Blown skin is not pure white (its
    blue channel stays lower), so the flood from the backdrop stops at an over-exposed face.
    """
    if hist is None:
        hist = luma_histogram(gray)
    dark = clipped_share(hist, level=t.dark_level, bright=False)
    if white is not None:
        clipped = gray >= t.bright_level
        backdrop = backdrop_mask(white)
        subject = gray.size - int(np.count_nonzero(backdrop))
        bright = int(np.count_nonzero(clipped & ~backdrop)) / subject if subject else 0.0
    else:
        bright = clipped_share(hist, level=t.bright_level, bright=True)
    # A high percentile rather than the max, so a few specular or label pixels do not count.
    level = histogram_percentile(hist, 99.5)
    dark_status = _grade(dark, t.dark_clip_warn, t.dark_clip_fail, lower_is_worse=False)
    bright_status = _grade(bright, t.bright_clip_warn, t.bright_clip_fail, lower_is_worse=False)
    level_status = _grade(level, t.level_warn, t.level_fail, lower_is_worse=True)
    return (
        CheckResult(
            "exposure_dark",
            dark,
            dark_status,
            t.dark_clip_warn,
            t.dark_clip_fail,
            None if dark_status is Status.PASS else "too dark (shadows clipped)",
        ),
        CheckResult(
            "exposure_bright",
            bright,
            bright_status,
            t.bright_clip_warn,
            t.bright_clip_fail,
            None if bright_status is Status.PASS else "too bright (highlights clipped)",
        ),
        CheckResult(
            "exposure_level",
            level,
            level_status,
            t.level_warn,
            t.level_fail,
            None if level_status is Status.PASS else "too dark",
        ),
    )


def _cast_name(a: float, b: float) -> str:
    if abs(b) >= abs(a):
        return "yellow" if b > 0 else "blue"
    return "magenta" if a > 0 else "green"


_CAST_SAMPLE_ROWS = 64  # a mean of ~5000 pixels (1/64 of a 512-px frame) is plenty


def check_colour_cast(
    pixels: npt.NDArray[np.uint8], t: QualityThresholds, *, view_code: str | None = None
) -> CheckResult:
    kind = (view_code or "")[:2].upper()
    if pixels.ndim == 2 or kind == "IV":
        # Grayscale has no cast by construction. Intraoral frames have no neutral reference:
        # teeth are yellowish (b* +10..+20) and everything else is gingiva or mucosa.
        value = 0.0 if pixels.ndim == 2 else None
        return CheckResult("colour_cast", value, Status.PASS, t.cast_warn, t.cast_fail)
    step = max(1, min(pixels.shape[:2]) // _CAST_SAMPLE_ROWS)
    sub = pixels[::step, ::step]
    lab = srgb_to_lab(sub)
    if kind == "EV":
        # The protocol backdrop is the neutral reference. When it is blown out or missing the
        # cast is not measured: the rest of an extraoral frame is skin, which is not neutral.
        cast = neutral_cast(
            lab[border_mask(sub.shape[:2])], chroma_max=t.neutral_chroma_max, min_pixels=50
        )
    else:
        cast = neutral_cast(lab, chroma_max=t.neutral_chroma_max)
    if cast is None:
        return CheckResult("colour_cast", None, Status.PASS, t.cast_warn, t.cast_fail)
    a, b = cast
    value = max(abs(a), abs(b))
    status = _grade(value, t.cast_warn, t.cast_fail, lower_is_worse=False)
    hint = None if status is Status.PASS else f"colour cast ({_cast_name(a, b)})"
    return CheckResult("colour_cast", value, status, t.cast_warn, t.cast_fail, hint)


def check_background(gray: GrayImage, t: QualityThresholds) -> CheckResult:
    value = float(gray[border_mask(gray.shape)].std())
    status = _grade(value, t.background_std_warn, t.background_std_fail, lower_is_worse=False)
    hint = None if status is Status.PASS else "background not uniform"
    return CheckResult(
        "background", value, status, t.background_std_warn, t.background_std_fail, hint
    )


def check_resolution(original_size: tuple[int, int], t: QualityThresholds) -> CheckResult:
    width, height = original_size
    if width <= 0 or height <= 0:
        raise InvalidInput("original_size_invalid", "original width and height must be > 0")
    value = float(min(width, height))
    status = _grade(value, t.min_short_side_warn, t.min_short_side_fail, lower_is_worse=True)
    hint = None if status is Status.PASS else "resolution too low"
    return CheckResult(
        "resolution",
        value,
        status,
        float(t.min_short_side_warn),
        float(t.min_short_side_fail),
        hint,
    )


def check_tilt(gray: GrayImage, t: QualityThresholds) -> CheckResult:
    angle = estimate_tilt(gray)
    if angle is None:
        return CheckResult("tilt", None, Status.PASS, t.tilt_warn, t.tilt_fail)
    status = _grade(abs(angle), t.tilt_warn, t.tilt_fail, lower_is_worse=False)
    hint = None
    if status is not Status.PASS:
        direction = "counter-clockwise" if angle > 0 else "clockwise"
        hint = f"tilted {abs(angle):.0f}° {direction}"
    return CheckResult("tilt", angle, status, t.tilt_warn, t.tilt_fail, hint)


def assess(
    pixels: npt.NDArray[np.uint8],
    *,
    original_size: tuple[int, int],
    view_code: str | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> QualityReport:
    """Run every applicable check; ``original_size`` is (width, height) before downsizing.

    ``view_code`` (ADA-1100, e.g. ``EV15``, ``IV07``) switches on the extraoral backdrop
    checks for ``EV*`` and turns the colour-cast check off for ``IV*``.
    """
    validate_pixels(pixels)
    t = thresholds
    extraoral = view_code is not None and view_code.upper().startswith("EV")
    gray = to_gray(pixels)
    hist = luma_histogram(gray)
    white = None
    if extraoral:
        white = channel_min(pixels) >= t.bright_level
    checks: list[CheckResult] = [
        check_sharpness(gray, t, hist=hist),
        *check_exposure(gray, t, white=white, hist=hist),
        check_colour_cast(pixels, t, view_code=view_code),
    ]
    if extraoral:
        checks.append(check_background(gray, t))
    tilt = check_tilt(gray, t)
    checks += [check_resolution(original_size, t), tilt]
    ranked = sorted(checks, key=lambda c: -_SEVERITY[c.status])
    hints = tuple(dict.fromkeys(c.hint for c in ranked if c.hint and c.status is not Status.PASS))
    return QualityReport(
        status=worst([c.status for c in checks]),
        checks=tuple(checks),
        hints=hints,
        tilt_degrees=tilt.value,
    )
