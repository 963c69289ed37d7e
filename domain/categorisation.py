"""Classical auto-categorisation of an image: radiograph, photograph or document, and a view.

Pure numpy on pixels the caller already decoded and downsized to the working width (512 px;
``uint8`` RGB ``(H, W, 3)`` or grayscale ``(H, W)``), plus the original width and height, which
carry the aspect ratio and the sensor size. No learned model: every feature is a colour,
histogram, geometry or symmetry statistic (``Features``, kept on the result so a wrong guess
can be explained). Confidences are heuristic scores in [0, 1] built from linear ramps
between hand-set breakpoints, capped at 0.95; they rank alternatives and are not calibrated
probabilities. Treat the result as a suggestion to the person filing the image.

Numbers quoted below were measured at 512 px on the two Bolton-Brush films (L = B1893L12
lateral, F = B1893F12 PA) and on the drawn scenes of ``tests/unit/test_categorisation.py``.

Kind
    *Colourful* is the larger of two ramps: the share of saturated pixels (HSV S > 0.25,
    V > 0.2; films 0, drawn photos 0.42-0.91) and the spread of rg-chromaticity (films 0,
    photos 0.07-0.1). Chromaticity rather than channel differences, because a film scanned
    with a colour tint has large channel differences (mean max-min 34 for R x1.08, B x0.85)
    but a single chromaticity (spread 0.001), and must stay a radiograph.
    *Document*: the smoothed histogram's mode is bright paper (>= 170) holding >= ~50 % of
    the pixels (page 0.86), 0.3-45 % of pixels are 80+ codes darker (ink, page 0.09), text
    makes many strong neighbour differences (edge density: page 0.24, films 0.03, drawn face
    0.03), little saturation. Otsu between-class/total variance was tried for "bimodality"
    and dropped: page 0.86, films 0.88 / 0.92, face 0.90 - air-and-bone films are as bimodal
    as paper-and-ink. *Radiograph*: not colourful, a 5-95 % luma spread over ~110 codes
    (films 176 / 181), not a document. *Photograph*: colourful with some tonal range.
    Kind ``unknown`` (confidence 0) when the best score, discounted by the runner-up, is
    below 0.35: flat frames, a single flat colour, ties.
    Limits: a black-and-white photograph or a grey screenshot reads as a radiograph; a film
    next to a large printed report may read as a document; a coloured page or a document with
    big colour pictures reads as a photograph; a film photographed on a light box under
    coloured light reads as a photograph.

Radiograph type
    *Panoramic*: long/short side over ~1.7 (panoramics are about 2:1, cephs and intraoral
    films 1.2-1.5). *Intraoral*: original long side under ~2000 px, because intraoral sensors
    and PSP plates are small. Only size is used, so a downsized export or a crop of a ceph
    reads as intraoral and a high-resolution scan of an intraoral film reads as a ceph.
    *Lateral vs PA ceph*: the PA is mirror symmetric, the lateral is not. The score is the
    best Pearson correlation of one half with the mirrored other half, at 64 px width, over
    a vertical and a horizontal axis (either, because films are often stored rotated 90
    degrees; the lateral here is), the axis anywhere in the middle 30 %, row means removed so a
    skull-to-air brightness ramp is not taken for symmetry. Measured: F 0.889 upright / 0.935
    rotated 90, L 0.743 / 0.743. Lateral below 0.76, PA above 0.86, a ramp between. That is
    a calibration on one pair of films from one patient; the margin is real but unverified on
    other patients, scanners and asymmetric PA positioning, hence the 0.8 cap on its score.

Photograph class
    *Intraoral*: red/pink mucosa and gingiva (hue >= 330 or < 8 degrees, S >= 0.3) cover much
    of the frame, outnumber skin, and there is some white enamel (S < 0.25, V > 0.6).
    *Extraoral*: skin tones (hue 8-45, S 0.15-0.7, V >= 0.35) outnumber mucosa.
    Limits: skin and lips differ mainly in hue, which lighting shifts (a warm cast turned
    the tinted film's grey into 68 % "skin"); very dark or very pale skin falls outside the
    skin band; close-up smiles (EV38) sit between the classes and score low on both.

View code (ADA-1100)
    Extraoral: frontal vs profile from the left-right symmetry of the frame (frontal from
    0.95, profile up to 0.7, three-quarter EV08 between; drawn frontal 0.995, drawn profile
    0.64); smile (EV19) vs rest (EV15) from enamel in the mouth region of the skin's bounding
    box; close-up smile (EV38) when skin and lips fill the frame. Right and left profile are
    not told apart: EV01 is offered for any profile. Intraoral: an enamel mask spanning a
    horizontal band is frontal (IV07) if mirror symmetric, else buccal, where IV01 and IV18
    get equal scores because the side is not determined, so no single code is returned. An
    enamel mask spread over most of the height is an occlusal view: upper (IV24) when the
    closed end of the arch (incisors) is at the top, lower (IV26) when at the bottom. That
    assumes the usual presentation (upper arch incisors up, lower arch incisors down) and
    cannot tell the mirror-corrected variants (IV25, IV27) from the pixels. The overjet
    views are never proposed. View scores are multiplied by the photograph-class confidence;
    no code is returned below 0.3 or within 0.1 of the runner-up. Only drawn scenes made to
    match these rules were available, so the tests pin behaviour, not accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

import numpy as np
import numpy.typing as npt

from domain.errors import InvalidInput
from domain.photo_quality import (
    block_mean,
    channel_max,
    channel_min,
    to_gray,
    validate_pixels,
)

FloatImage = npt.NDArray[np.float32]
Axis = Literal["vertical", "horizontal"]

_CLASSIFY_WIDTH = 128  # colour statistics need no more than this
_SYMMETRY_WIDTH = 64  # symmetry compares layout; fine detail only adds noise
_MIN_KIND_CONFIDENCE = 0.35
_MIN_VIEW_CONFIDENCE = 0.3
_MIN_VIEW_MARGIN = 0.1
_MAX_CONFIDENCE = 0.95  # hand-set ramps are never certain
_CEPH_TYPE_CAP = 0.8  # lateral/PA separation is calibrated on one pair of films


@dataclass(frozen=True, slots=True)
class Features:
    """The measured statistics, kept on the result so a wrong guess can be explained."""

    aspect: float  # long side / short side of the original
    long_side: int  # original pixels
    chroma_mean: float  # mean max(R, G, B) - min(R, G, B), 0..255
    chromaticity_spread: float  # std of rg-chromaticity, 0 for any single hue incl. a tint
    saturated_share: float
    tonal_spread: float  # 95th - 5th percentile of luma
    paper_share: float  # pixels within 25 codes of a bright (>= 170) histogram mode
    ink_share: float  # pixels 80+ codes darker than that bright mode
    edge_density: float  # share of pixels with a neighbour difference over 40 codes
    symmetry_vertical: float  # best mirror correlation about a vertical line
    symmetry_horizontal: float
    skin_share: float
    mucosa_share: float
    enamel_share: float  # low-saturation, bright pixels (teeth, but also white backdrops)


class Kind(StrEnum):
    RADIOGRAPH = "radiograph"
    PHOTOGRAPH = "photograph"
    DOCUMENT = "document"
    UNKNOWN = "unknown"


class PhotoClass(StrEnum):
    EXTRAORAL = "extraoral"
    INTRAORAL = "intraoral"


class RadiographType(StrEnum):
    PANORAMIC = "panoramic"
    LATERAL_CEPH = "lateral_ceph"
    PA_CEPH = "pa_ceph"
    INTRAORAL = "intraoral"


@dataclass(frozen=True, slots=True)
class Categorisation:
    kind: Kind
    confidence: float
    photo_class: PhotoClass | None = None
    photo_class_confidence: float = 0.0
    radiograph_type: RadiographType | None = None
    radiograph_type_confidence: float = 0.0
    view_code: str | None = None
    view_code_confidence: float = 0.0
    # Every scored alternative, best first, e.g. (("IV07", 0.8), ("IV01", 0.1)).
    kind_scores: tuple[tuple[str, float], ...] = ()
    view_candidates: tuple[tuple[str, float], ...] = ()
    features: Features | None = None


@dataclass(frozen=True, slots=True)
class _Masks:
    skin: npt.NDArray[np.bool_]
    mucosa: npt.NDArray[np.bool_]
    enamel: npt.NDArray[np.bool_]


def _shrink(img: npt.NDArray[np.generic], width: int) -> FloatImage:
    """Block-average (float32) so the width is at most about ``width``."""
    return block_mean(img, img.shape[1] // width)


def _ramp(x: float, lo: float, hi: float) -> float:
    """0 at ``lo``, 1 at ``hi``, linear between; works decreasing when ``lo > hi``."""
    if lo == hi:
        return float(x >= hi)
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def _hsv(rgb: FloatImage) -> tuple[FloatImage, FloatImage, FloatImage]:
    """Hue in degrees [0, 360), saturation and value in [0, 1] from 0..255 floats."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = channel_max(rgb)
    c = v - channel_min(rgb)
    s = np.where(v > 0, c / np.maximum(v, 1e-6), 0.0)
    safe = np.maximum(c, 1e-6)
    h = np.where(
        v == r,
        ((g - b) / safe) % 6,
        np.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    h = np.where(c > 0, h * 60.0, 0.0)
    return h.astype(np.float32), s.astype(np.float32), (v / 255).astype(np.float32)


def mirror_symmetry(gray: FloatImage, *, axis: Axis) -> float:
    """Best Pearson correlation between a half and the mirrored other half.

    The mirror line may sit anywhere in the middle 30 % (subjects are not centred exactly).
    Each row's (``axis="vertical"``) mean is removed first so a brightness ramp across the
    mirror line, e.g. skull on one side and air on the other, does not count as symmetry.
    """
    g = gray if axis == "vertical" else gray.T
    g = g - g.mean(axis=1, keepdims=True)
    w = g.shape[1]
    best = -1.0
    for c in range(int(0.35 * w), int(0.65 * w) + 1):
        k = min(c, w - c)
        if k < 0.3 * w:
            continue
        left = g[:, c - k : c]
        right = g[:, c : c + k][:, ::-1]
        left = left - left.mean()
        right = right - right.mean()
        denom = math.sqrt(float((left * left).sum()) * float((right * right).sum()))
        if denom > 0:
            best = max(best, float((left * right).sum()) / denom)
    return best


def _colour_masks(rgb: FloatImage) -> tuple[_Masks, float, float, float]:
    """Masks plus chroma mean, chromaticity spread and saturated share."""
    h, s, v = _hsv(rgb)
    skin = (h >= 8) & (h <= 45) & (s >= 0.15) & (s <= 0.7) & (v >= 0.35)
    mucosa = ((h >= 330) | (h < 8)) & (s >= 0.3) & (v >= 0.25)
    enamel = (s < 0.25) & (v > 0.6)
    chroma_mean = float((channel_max(rgb) - channel_min(rgb)).mean())
    lit = v > 0.15  # chromaticity of near-black pixels is noise
    if np.count_nonzero(lit) > 10:
        lit_rgb = rgb[lit]
        total = lit_rgb[:, 0] + lit_rgb[:, 1] + lit_rgb[:, 2] + 1e-6
        r = lit_rgb[:, 0] / total
        g = lit_rgb[:, 1] / total
        spread = float(math.sqrt(float(r.var()) + float(g.var())))
    else:
        spread = 0.0
    saturated = float(((s > 0.25) & (v > 0.2)).mean())
    return _Masks(skin, mucosa, enamel), chroma_mean, spread, saturated


def _histogram_features(gray: FloatImage) -> tuple[float, float, float]:
    hist = np.bincount(gray.astype(np.uint8).ravel(), minlength=256)
    cum = np.cumsum(hist) / gray.size
    spread = float(np.searchsorted(cum, 0.95) - np.searchsorted(cum, 0.05))
    # The mode of a lightly smoothed histogram; paper is one narrow bright peak.
    mode = int(np.argmax(np.convolve(hist, np.ones(9), mode="same")))
    if mode < 170:
        return spread, 0.0, 0.0
    paper = float(hist[max(0, mode - 25) : mode + 26].sum()) / gray.size
    ink = float(hist[: mode - 80].sum()) / gray.size
    return spread, paper, ink


def _edge_density(gray: FloatImage) -> float:
    gx = np.abs(gray[1:-1, 2:] - gray[1:-1, :-2])
    gy = np.abs(gray[2:, 1:-1] - gray[:-2, 1:-1])
    return float(np.count_nonzero(np.maximum(gx, gy) > 40)) / max(1, gx.size)


def _extract_features(
    pixels: npt.NDArray[np.uint8], *, width: int, height: int
) -> tuple[Features, _Masks | None]:
    validate_pixels(pixels)
    if width <= 0 or height <= 0:
        raise InvalidInput("original_size_invalid", "original width and height must be > 0")
    gray = to_gray(pixels)
    tonal_spread, paper, ink = _histogram_features(gray)
    small_gray = _shrink(gray, _SYMMETRY_WIDTH)
    masks = None
    chroma_mean = spread = saturated = 0.0
    if pixels.ndim == 3:
        masks, chroma_mean, spread, saturated = _colour_masks(_shrink(pixels, _CLASSIFY_WIDTH))
    features = Features(
        aspect=max(width, height) / min(width, height),
        long_side=max(width, height),
        chroma_mean=chroma_mean,
        chromaticity_spread=spread,
        saturated_share=saturated,
        tonal_spread=tonal_spread,
        paper_share=paper,
        ink_share=ink,
        edge_density=_edge_density(gray),
        symmetry_vertical=mirror_symmetry(small_gray, axis="vertical"),
        symmetry_horizontal=mirror_symmetry(small_gray, axis="horizontal"),
        skin_share=float(masks.skin.mean()) if masks else 0.0,
        mucosa_share=float(masks.mucosa.mean()) if masks else 0.0,
        enamel_share=float(masks.enamel.mean()) if masks else 0.0,
    )
    return features, masks


def _best(
    scores: dict[str, float], *, floor: float, margin: float = 0.0
) -> tuple[str | None, float, tuple[tuple[str, float], ...]]:
    ranked = tuple(sorted(((k, round(v, 3)) for k, v in scores.items()), key=lambda kv: -kv[1]))
    top, top_score = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    if top_score < floor or top_score - runner_up < margin:
        return None, top_score, ranked
    return top, top_score, ranked


def _kind_scores(f: Features) -> dict[str, float]:
    colourful = max(_ramp(f.saturated_share, 0.05, 0.2), _ramp(f.chromaticity_spread, 0.01, 0.03))
    document = (
        _ramp(f.paper_share, 0.45, 0.65)
        * _ramp(f.ink_share, 0.003, 0.02)
        * _ramp(f.ink_share, 0.45, 0.3)
        * _ramp(f.edge_density, 0.04, 0.1)
        * _ramp(f.saturated_share, 0.3, 0.1)
    )
    return {
        Kind.DOCUMENT: document,
        Kind.RADIOGRAPH: (1 - colourful) * _ramp(f.tonal_spread, 50, 110) * (1 - document),
        Kind.PHOTOGRAPH: colourful * _ramp(f.tonal_spread, 20, 60) * (1 - document),
    }


def _radiograph_type(f: Features) -> tuple[RadiographType | None, float]:
    panoramic = _ramp(f.aspect, 1.55, 1.85)
    intraoral = (1 - panoramic) * _ramp(f.long_side, 2400, 1600)
    ceph = (1 - panoramic) * (1 - intraoral)
    symmetry = max(f.symmetry_vertical, f.symmetry_horizontal)
    pa = _ramp(symmetry, 0.76, 0.86)
    scores = {
        RadiographType.PANORAMIC: panoramic,
        RadiographType.INTRAORAL: intraoral,
        RadiographType.PA_CEPH: ceph * pa * _CEPH_TYPE_CAP,
        RadiographType.LATERAL_CEPH: ceph * (1 - pa) * _CEPH_TYPE_CAP,
    }
    label, score, _ = _best(scores, floor=_MIN_KIND_CONFIDENCE)
    return (RadiographType(label) if label else None), score


def _photo_class(f: Features) -> tuple[PhotoClass | None, float]:
    red_ratio = f.mucosa_share / (f.skin_share + f.mucosa_share + 1e-6)
    intraoral = (
        _ramp(f.mucosa_share, 0.08, 0.25)
        * _ramp(red_ratio, 0.35, 0.6)
        * _ramp(f.enamel_share, 0.01, 0.05)
    )
    extraoral = _ramp(f.skin_share, 0.04, 0.12) * _ramp(red_ratio, 0.6, 0.35)
    best = max(intraoral, extraoral)
    # Confidence falls when both classes fit: close-up smiles, or skin under red light.
    confidence = min(_MAX_CONFIDENCE, best * (1 - min(intraoral, extraoral)))
    if confidence < _MIN_KIND_CONFIDENCE:
        return None, confidence
    return (PhotoClass.INTRAORAL if intraoral >= extraoral else PhotoClass.EXTRAORAL), confidence


def _row_spread(mask: npt.NDArray[np.bool_]) -> tuple[float, float]:
    """(5-95 % row span of the mask / height, mean row / height)."""
    rows = np.nonzero(mask)[0]
    h = mask.shape[0]
    lo, hi = np.percentile(rows, [5, 95])
    return float(hi - lo) / h, float(rows.mean()) / h


def _intraoral_views(masks: _Masks) -> dict[str, float]:
    enamel = masks.enamel
    if enamel.mean() < 0.02:
        return {}
    span, _ = _row_spread(enamel)
    arch = _ramp(span, 0.45, 0.6)
    w = enamel.shape[1]
    centre = enamel[:, int(0.4 * w) : int(0.6 * w)]
    if arch > 0 and np.count_nonzero(centre) > 0:
        # Closed end of the U (incisors): enamel in the centre columns sits high or low
        # compared with all enamel (the molars' ends are at the other side).
        _, centre_row = _row_spread(centre)
        _, all_row = _row_spread(enamel)
        top = _ramp(all_row - centre_row, 0.0, 0.15)
        bottom = _ramp(centre_row - all_row, 0.0, 0.15)
    else:
        top = bottom = 0.0
    symmetry = mirror_symmetry(enamel.astype(np.float32), axis="vertical")
    frontal = _ramp(symmetry, 0.5, 0.8)
    band = 1 - arch
    return {
        "IV07": band * frontal,
        "IV01": band * (1 - frontal) * 0.5,
        "IV18": band * (1 - frontal) * 0.5,
        "IV24": arch * top,
        "IV26": arch * bottom,
    }


def _mouth_enamel(masks: _Masks) -> float:
    """Share of enamel-like pixels in the mouth region of the skin's bounding box."""
    ys, xs = np.nonzero(masks.skin)
    if len(ys) < 20:
        return 0.0
    top, bottom = np.percentile(ys, [5, 95])
    left, right = np.percentile(xs, [5, 95])
    height, width = bottom - top, right - left
    rows = slice(int(top + 0.6 * height), int(top + 0.95 * height) + 1)
    cols = slice(int(left + 0.25 * width), int(right - 0.25 * width) + 1)
    region = masks.enamel[rows, cols]
    return float(region.mean()) if region.size else 0.0


def _extraoral_views(f: Features, masks: _Masks) -> dict[str, float]:
    frontal = _ramp(f.symmetry_vertical, 0.85, 0.95)
    profile = _ramp(f.symmetry_vertical, 0.8, 0.7)
    three_quarter = max(0.0, 1 - frontal - profile)
    smile = _ramp(_mouth_enamel(masks), 0.01, 0.04)
    close_up = _ramp(f.skin_share + f.mucosa_share, 0.5, 0.7)
    far = 1 - close_up
    return {
        "EV15": far * frontal * (1 - smile),
        "EV19": far * frontal * smile,
        "EV01": far * profile,
        "EV08": far * three_quarter,
        "EV38": close_up * smile,
    }


def categorise(pixels: npt.NDArray[np.uint8], *, width: int, height: int) -> Categorisation:
    """Best-guess kind, subtype and ADA-1100 view; ``width``/``height`` are the original's."""
    f, masks = _extract_features(pixels, width=width, height=height)
    label, confidence, kind_scores = _best(
        {str(k): v for k, v in _kind_scores(f).items()}, floor=0.0
    )
    # Discounted by the runner-up: two kinds that both fit make neither believable.
    confidence = min(_MAX_CONFIDENCE, confidence * (1 - kind_scores[1][1]))
    kind = Kind(label) if label and confidence >= _MIN_KIND_CONFIDENCE else Kind.UNKNOWN
    result = Categorisation(
        kind=kind,
        confidence=round(confidence, 3) if kind is not Kind.UNKNOWN else 0.0,
        kind_scores=kind_scores,
        features=f,
    )
    if kind is Kind.RADIOGRAPH:
        rtype, rconf = _radiograph_type(f)
        return replace(result, radiograph_type=rtype, radiograph_type_confidence=round(rconf, 3))
    if kind is not Kind.PHOTOGRAPH or masks is None:
        return result
    pclass, pconf = _photo_class(f)
    result = replace(result, photo_class=pclass, photo_class_confidence=round(pconf, 3))
    if pclass is None:
        return result
    views = (
        _intraoral_views(masks) if pclass is PhotoClass.INTRAORAL else _extraoral_views(f, masks)
    )
    if not views:
        return result
    views = {code: min(_MAX_CONFIDENCE, score * pconf) for code, score in views.items()}
    code, vconf, ranked = _best(views, floor=_MIN_VIEW_CONFIDENCE, margin=_MIN_VIEW_MARGIN)
    return replace(
        result,
        view_code=code,
        view_code_confidence=vconf if code else 0.0,
        view_candidates=ranked,
    )
