"""Automatic alignment of two photos of one view: a similarity transform and its quality.

Fourier-Mellin registration, numpy only: the magnitude of a Fourier transform ignores
translation, and in log-polar coordinates a rotation and a scale become shifts, found by
phase correlation; the translation is then found by phase correlation of the rotated and
scaled image. The magnitude spectrum cannot tell θ from θ+180°, so both are tried and the
better overlap wins. Quality is the normalised cross-correlation of the overlapping pixels
after alignment (1 = identical), which a viewer shows beside the slider.

Measured on a real radiograph moved by known similarities (tests/test_comparisons.py):
within about ±10 degrees and 0.85-1.2 scale the transform comes back to a fraction of a
degree and about a pixel, with quality above 0.6; larger rotations can fail, and then the
quality falls (below about 0.5), which is the cue to correct the alignment by hand.

Everything runs on grayscale copies at most ``WORK_PX`` wide; the transform is returned in
original pixels: ``p_reference = scale * R(rotation) * p_moving + translation`` with the
y axis down and the rotation clockwise on screen (as in ``domain/geometry.py``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from adapters.image_codec import decode_at_least

WORK_PX = 256
MAX_SCALE_CHANGE = 2.0  # beyond this the two are not the same view


@dataclass(frozen=True)
class Alignment:
    scale: float
    rotation_deg: float
    translation: tuple[float, float]
    quality: float

    def apply(self, x: float, y: float) -> tuple[float, float]:
        c = math.cos(math.radians(self.rotation_deg))
        s = math.sin(math.radians(self.rotation_deg))
        return (self.scale * (c * x - s * y) + self.translation[0],
                self.scale * (s * x + c * y) + self.translation[1])


def _gray(data: bytes) -> tuple[np.ndarray, float]:
    """Grayscale working copy and its scale (working px per original px)."""
    image = decode_at_least(data, WORK_PX * 2)
    original = max(Image.open(io.BytesIO(data)).size)
    image = image.convert("L")
    image.thumbnail((WORK_PX, WORK_PX), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.float64), max(image.size) / original


def _canvas(pixels: np.ndarray, n: int, fill: float | None = None
            ) -> tuple[np.ndarray, tuple[float, float]]:
    """``pixels`` centred on an n x n canvas of ``fill`` (default: their mean), and their
    offset (x, y)."""
    out = np.full((n, n), pixels.mean() if fill is None else fill)
    h, w = pixels.shape
    top, left = (n - h) // 2, (n - w) // 2
    out[top:top + h, left:left + w] = pixels
    return out, (float(left), float(top))


def _taper(pixels: np.ndarray) -> np.ndarray:
    """Zero-mean picture faded to zero outside the disc inscribed in it.

    A round window looks the same at every rotation, so unlike a rectangular one it adds
    no structure to the spectrum that would pull the rotation estimate to zero.
    """
    h, w = pixels.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(ys - (h - 1) / 2, xs - (w - 1) / 2) / (min(h, w) / 2)
    window = np.where(r < 1, 0.5 * (1 + np.cos(np.pi * np.clip(r, 0, 1))), 0.0)
    return (pixels - pixels.mean()) * window


def _phase_correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Shift (dy, dx) that moves ``b`` onto ``a``, sub-pixel, and the peak's height."""
    cross = np.fft.fft2(a) * np.conj(np.fft.fft2(b))
    cross /= np.abs(cross) + 1e-12
    surface = np.real(np.fft.ifft2(cross))
    peak = np.unravel_index(int(np.argmax(surface)), surface.shape)
    shifts = []
    for axis, index in enumerate(peak):
        size = surface.shape[axis]
        before = surface[tuple(((index - 1) % size) if k == axis else peak[k] for k in (0, 1))]
        after = surface[tuple(((index + 1) % size) if k == axis else peak[k] for k in (0, 1))]
        centre = surface[peak]
        denominator = before - 2 * centre + after
        offset = 0.5 * (before - after) / denominator if denominator != 0 else 0.0
        shift = index + offset
        shifts.append(shift - size if shift > size / 2 else shift)
    return shifts[0], shifts[1], float(surface[peak])


def _log_polar(magnitude: np.ndarray, angles: int, radii: int) -> tuple[np.ndarray, float]:
    n = magnitude.shape[0]
    centre = n / 2
    # The lowest frequencies are nearly isotropic and the same in both spectra; they would
    # only add a peak at "no rotation", so the band starts a few octaves up.
    min_radius, max_radius = n / 32, n / 2
    base = math.log(max_radius / min_radius) / radii
    theta = np.linspace(0, math.pi, angles, endpoint=False)
    rho = min_radius * np.exp(np.arange(radii) * base)
    xs = centre + rho[None, :] * np.cos(theta[:, None])
    ys = centre + rho[None, :] * np.sin(theta[:, None])
    return _bilinear(magnitude, xs, ys), base


def _bilinear(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    h, w = image.shape
    x0 = np.clip(np.floor(xs).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(ys).astype(int), 0, h - 2)
    fx, fy = np.clip(xs - x0, 0, 1), np.clip(ys - y0, 0, 1)
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _high_pass(shape: tuple[int, int]) -> np.ndarray:
    fy = np.cos(np.pi * (np.fft.fftshift(np.fft.fftfreq(shape[0]))))
    fx = np.cos(np.pi * (np.fft.fftshift(np.fft.fftfreq(shape[1]))))
    x = np.outer(fy, fx)
    return (1.0 - x) * (2.0 - x)


def _warp(moving: np.ndarray, scale: float, degrees: float, tx: float, ty: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``moving`` by p' = scale R (p - c) + c + t about the canvas centre c;
    returns the pixels and where they came from inside ``moving``."""
    h, w = moving.shape
    cx, cy = w / 2, h / 2
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    px, py = (xs - cx - tx) / scale, (ys - cy - ty) / scale
    mx, my = c * px + s * py + cx, -s * px + c * py + cy
    inside = (mx >= 0) & (my >= 0) & (mx <= w - 1) & (my <= h - 1)
    return _bilinear(moving, mx, my), inside


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray, area: int) -> float:
    """Normalised cross-correlation where both have pixels; 0 if they barely overlap."""
    if mask.sum() < 0.2 * area:
        return 0.0
    x, y = a[mask], b[mask]
    x, y = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def align(reference: bytes, moving: bytes) -> Alignment:
    """The similarity transform taking ``moving``'s pixels onto ``reference``'s."""
    ref, ref_scale = _gray(reference)
    mov, mov_scale = _gray(moving)
    n = 2 * WORK_PX
    (a, off_a), (b, off_b) = _canvas(ref, n), _canvas(mov, n)
    # Taper each picture to its mean at its own edges: the picture's rectangle sits at the
    # same place on both canvases and would otherwise dominate every correlation at zero.
    (ta, _), (tb, _) = _canvas(_taper(ref), n, 0.0), _canvas(_taper(mov), n, 0.0)
    spectra = [np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(x)))) * _high_pass((n, n))
               for x in (ta, tb)]
    angles, radii = 360, n
    (lp_a, base), (lp_b, _) = (_log_polar(spectra[0], angles, radii),
                               _log_polar(spectra[1], angles, radii))
    d_angle, d_log, _ = _phase_correlation(lp_a, lp_b)
    rotation = 180.0 * d_angle / angles
    scale = math.exp(-d_log * base)
    if not (1 / MAX_SCALE_CHANGE <= scale <= MAX_SCALE_CHANGE):
        scale = 1.0
    region = np.zeros_like(a, dtype=bool)
    top, left = int(off_a[1]), int(off_a[0])
    region[top:top + ref.shape[0], left:left + ref.shape[1]] = True
    best: tuple[float, float, float, float] | None = None  # quality, degrees, tx, ty
    for candidate in (rotation, rotation + 180.0):
        rotated, _inside = _warp(tb, scale, candidate, 0.0, 0.0)
        dy, dx, _peak = _phase_correlation(ta, rotated)
        warped, inside = _warp(b, scale, candidate, dx, dy)
        quality = _ncc(a, warped, inside & region, ref.size)
        if best is None or quality > best[0]:
            best = (quality, candidate, dx, dy)
    assert best is not None
    quality, degrees, tx, ty = best
    degrees = ((degrees + 180.0) % 360.0) - 180.0
    # Canvas: p_a = sR(p_b - c) + c + t; working: p_a_w = p_a - off_a, p_b = p_b_w + off_b;
    # original: p_a_w = ref_scale p_a_o, p_b_w = mov_scale p_b_o.
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    centre = n / 2
    bx, by = off_b[0] - centre, off_b[1] - centre
    shift_x = scale * (c * bx - s * by) + centre + tx - off_a[0]
    shift_y = scale * (s * bx + c * by) + centre + ty - off_a[1]
    return Alignment(scale=scale * mov_scale / ref_scale, rotation_deg=degrees,
                     translation=(shift_x / ref_scale, shift_y / ref_scale),
                     quality=max(0.0, quality))
