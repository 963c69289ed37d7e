"""Landmark suggestions: the classical baseline that places a template from three anchors.

A clinician clicks S, N and Me; the template shape is fitted to them by a similarity
(scale, rotation, translation, and a mirror when the patient faces the other way: Umeyama
least squares) and every other template landmark is suggested where the fit puts it.
Suggestions stay suggestions (``Tracing.suggestions``) until a clinician confirms them;
analyses use confirmed landmarks only.

The template is a normal-shaped tracing in millimetres (face towards +x, y down) built to
sit on the published norms (SNA 84°, SNB 79°, FMA 25°…); it is *not* the statistical mean
of a labelled data set, which cannot be installed here. A clinic-supplied detector (an ONNX
model) is registered and run through domain/landmark_model.py and
adapters/onnx_landmarks.py; this template fit stays the fallback.

Measured honestly on the only real tracing there is (tests/data/b1893l12_tracing.json,
itself placed by eye): see :func:`radial_errors` and docs/cephalometry.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from domain.errors import InvalidInput

ANCHORS: tuple[str, ...] = ("S", "N", "Me")
SOURCE_TEMPLATE = "template_from_anchors"
SOURCE_MODEL = "onnx_model"  # a registered model (domain/landmark_model.py)

TEMPLATE_MM: dict[str, tuple[float, float]] = {
    "S": (0, 0), "N": (70, 0), "Po": (-10, 20), "Or": (60, 28),
    "A": (65, 50), "B": (52, 90), "Pog": (57, 100), "Gn": (55, 110), "Me": (45, 117),
    "Go": (-5, 82), "Ar": (-20, 32), "Co": (-8, 27), "Ba": (-22, 42), "Pt": (12, 22),
    "ANS": (74, 47), "PNS": (22, 49),
    "U1": (68, 82), "U1_apex": (58, 52), "L1": (60, 79), "L1_apex": (42, 103),
    "UPM": (48, 83), "LPM": (48, 85), "UM": (28, 79), "LM": (28, 81),
    "Prn": (95, 45), "Pog_s": (72, 108), "LL": (80, 88), "UL": (84, 72), "Sn": (82, 55),
    "N_s": (78, 2),
}  # fmt: skip


class LandmarkDetector(Protocol):
    """What an automatic detector provides: code -> (x, y, confidence) in image pixels."""

    def detect(self, image: bytes, size: tuple[int, int]
               ) -> Mapping[str, tuple[float, float, float]]: ...


@dataclass(frozen=True)
class Similarity:
    matrix: tuple[tuple[float, float], tuple[float, float]]  # scale * rotation (or mirror)
    translation: tuple[float, float]

    def apply(self, p: Sequence[float]) -> tuple[float, float]:
        (a, b), (c, d) = self.matrix
        return (a * p[0] + b * p[1] + self.translation[0],
                c * p[0] + d * p[1] + self.translation[1])


def fit_similarity(source: Sequence[Sequence[float]], target: Sequence[Sequence[float]]
                   ) -> Similarity:
    """Least-squares similarity taking ``source`` onto ``target`` (Umeyama 1991), a mirror
    allowed: a patient facing left is the template mirrored, not a rotated one."""
    src, dst = np.asarray(source, dtype=float), np.asarray(target, dtype=float)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    cs, cd = src - mu_s, dst - mu_d
    variance = float((cs ** 2).sum())
    for centred in (cs, cd):
        singular = np.linalg.svd(centred, compute_uv=False)
        if singular[0] <= 1e-9 or singular[-1] <= 1e-3 * singular[0]:
            raise InvalidInput("degenerate_geometry", "the anchor points lie on one line")
    u, sigma, vt = np.linalg.svd(cd.T @ cs)
    rotation = u @ vt  # may be a reflection: allowed on purpose
    scale = float(sigma.sum() / variance)
    matrix = scale * rotation
    t = mu_d - matrix @ mu_s
    return Similarity(((float(matrix[0, 0]), float(matrix[0, 1])),
                       (float(matrix[1, 0]), float(matrix[1, 1]))), (float(t[0]), float(t[1])))


def suggest_from_anchors(anchors: Mapping[str, Sequence[float]], image_size: tuple[int, int]
                         ) -> dict[str, list[float]]:
    """Suggested positions (image pixels) of every template landmark except the anchors,
    left out when the fit puts them outside the image."""
    missing = [c for c in ANCHORS if c not in anchors]
    if missing:
        raise InvalidInput("anchors_required",
                           f"place {', '.join(ANCHORS)} first; missing {', '.join(missing)}")
    fit = fit_similarity([TEMPLATE_MM[c] for c in ANCHORS], [anchors[c] for c in ANCHORS])
    width, height = image_size
    suggestions = {}
    for code, point in TEMPLATE_MM.items():
        if code in ANCHORS:
            continue
        x, y = fit.apply(point)
        if 0 <= x <= width and 0 <= y <= height:
            suggestions[code] = [x, y]
    return suggestions


@dataclass(frozen=True)
class RadialErrors:
    per_landmark_mm: dict[str, float]
    mean_mm: float
    within_2mm: float  # share of landmarks within 2 mm, 0-1

    @classmethod
    def between(cls, truth: Mapping[str, Sequence[float]],
                suggested: Mapping[str, Sequence[float]], mm_per_pixel: float) -> RadialErrors:
        errors = {c: math.dist(truth[c], suggested[c]) * mm_per_pixel
                  for c in suggested if c in truth}
        if not errors:
            raise InvalidInput("no_landmarks", "nothing to compare")
        values = list(errors.values())
        return cls(errors, sum(values) / len(values),
                   sum(v <= 2.0 for v in values) / len(values))


def radial_errors(truth: Mapping[str, Sequence[float]], image_size: tuple[int, int],
                  mm_per_pixel: float) -> RadialErrors:
    """The baseline's error on a tracing: suggest from its own anchors, compare the rest."""
    return RadialErrors.between(truth, suggest_from_anchors(truth, image_size), mm_per_pixel)
