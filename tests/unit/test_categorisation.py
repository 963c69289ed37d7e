"""Auto-categorisation on the real Bolton-Brush films and on drawn scenes.

The film tests are the only ones on real data. The photo and document scenes are drawn to
resemble what the heuristics look for, so those tests pin the rules' behaviour (and catch
regressions); they say nothing about accuracy on real clinical photographs.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFont

from domain.categorisation import (
    Categorisation,
    Kind,
    PhotoClass,
    RadiographType,
    categorise,
    mirror_symmetry,
)
from domain.errors import InvalidInput

from .test_photo_quality import (
    CEPHS,
    FILM_SIZE,
    WARM,
    WORKING_WIDTH,
    _add_noise,
    _speckle,
    colour_cast,
    load_ceph,
    needs_cephs,
    px,
    synthetic_face,
)

PHOTO_PORTRAIT = (3000, 3750)
PHOTO_LANDSCAPE = (4000, 3000)
ENAMEL = (240, 236, 224)
GINGIVA = (222, 125, 135)


def _working(img: Image.Image) -> np.ndarray:
    if img.width != WORKING_WIDTH:
        size = (WORKING_WIDTH, round(img.height * WORKING_WIDTH / img.width))
        img = img.resize(size, Image.Resampling.BOX)
    return px(img)


def intraoral_frontal(seed: int = 0, w: int = 640, h: int = 480) -> Image.Image:
    """Retracted frontal view in occlusion: mucosa all round, gingiva, two rows of teeth."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (w, h), (120, 30, 35))
    d = ImageDraw.Draw(img)
    d.ellipse((-w * 0.1, -h * 0.2, w * 1.1, h * 1.2), fill=(205, 95, 100))
    d.ellipse((w * 0.08, h * 0.1, w * 0.92, h * 0.9), fill=(90, 20, 28))
    _speckle(d, (0, 0, w, h), (200, 92, 98), 15, 800, rng, 3)
    d.ellipse((w * 0.12, h * 0.18, w * 0.88, h * 0.82), fill=GINGIVA)
    widths = [34, 38, 44, 36, 46, 56]  # central incisor to first molar
    for lower, (y0, y1) in enumerate(((h * 0.32, h * 0.5), (h * 0.5, h * 0.66))):
        for side in (-1, 1):
            x = w / 2
            for i, width in enumerate(widths):
                tw = width * (0.85 if lower else 1.0)
                xa, xb = sorted((x, x + side * tw))
                d.rounded_rectangle((xa + 1, y0 + 3 * i, xb - 1, y1 - 3 * i), radius=6, fill=ENAMEL)
                x += side * tw
    d.line((w * 0.1, h * 0.5, w * 0.9, h * 0.5), fill=(70, 40, 40), width=2)
    for x in (8, w - 60):  # clear plastic retractors
        d.rounded_rectangle((x, h * 0.15, x + 52, h * 0.85), radius=20, outline=(230,) * 3, width=4)
    return _add_noise(img, 2.0, seed)


def intraoral_occlusal(*, incisors_top: bool = True, seed: int = 0) -> Image.Image:
    """Occlusal mirror view, corrected: a U of teeth on the palate with rugae."""
    w, h = 640, 480
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (w, h), (60, 20, 25))
    d = ImageDraw.Draw(img)
    d.ellipse((w * 0.1, h * 0.02, w * 0.9, h * 1.1), fill=(215, 110, 120))
    for i in range(6):
        y = h * (0.25 + 0.05 * i)
        d.arc((w * 0.35, y, w * 0.65, y + 30), 200, 340, fill=(180, 80, 95), width=3)
    _speckle(d, (64, 24, 576, 456), (215, 110, 120), 12, 900, rng, 2)
    top, bottom = h * 0.12, h * 0.95
    for i in range(16):
        t = -1 + 2 * i / 15
        x, y = w / 2 + t * w * 0.3, top + (bottom - top) * t * t
        r = 17 + 12 * abs(t)
        d.ellipse((x - r, y - r, x + r, y + r), fill=ENAMEL, outline=(150, 130, 120))
    img = _add_noise(img, 2.0, seed)
    return img if incisors_top else img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)


def intraoral_buccal(seed: int = 0) -> Image.Image:
    """Buccal view: a band of teeth shrinking from molars (left) to the front (right)."""
    w, h = 640, 480
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (w, h), (200, 92, 100))
    d = ImageDraw.Draw(img)
    d.rectangle((0, h * 0.2, w, h * 0.8), fill=GINGIVA)
    _speckle(d, (0, 0, w, h), (205, 100, 108), 14, 900, rng, 3)
    x = w * 0.05
    for i, tw in enumerate([90, 85, 70, 55, 48, 42, 36]):
        d.rounded_rectangle((x + 1, h * 0.32 + 4 * i, x + tw - 1, h * 0.5), radius=8, fill=ENAMEL)
        d.rounded_rectangle(
            (x + 1, h * 0.5, x + tw * 0.95 - 1, h * 0.68 - 4 * i), radius=8, fill=ENAMEL
        )
        x += tw
    d.line((0, h * 0.5, w, h * 0.5), fill=(90, 40, 45), width=2)
    d.rectangle((w * 0.9, 0, w, h), fill=(150, 60, 70))
    return _add_noise(img, 2.0, seed)


def scanned_document(seed: int = 0) -> Image.Image:
    """A letter page at 200 dpi: off-white paper, dark lines of text, scanner noise."""
    w, h = 1700, 2200
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (w, h), (250, 250, 247))
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=34)
    alphabet = list("abcdefghijklmnopqrstuvwxyz     ABCDEFGHIJ0123456789.,")
    y = 180
    while y < h - 200:
        line = "".join(rng.choice(alphabet, int(rng.integers(50, 80))))
        d.text((150, y), line, fill=(25, 25, 30), font=font)
        y += 52 + (52 if rng.random() < 0.1 else 0)
    return _add_noise(img, 1.5, seed)


# --- radiographs (real) ----------------------------------------------------------------------


@needs_cephs
@pytest.mark.parametrize(
    ("name", "expected"),
    [("B1893L12.jpg", RadiographType.LATERAL_CEPH), ("B1893F12.jpg", RadiographType.PA_CEPH)],
)
@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_real_films_are_radiographs_of_the_right_type(
    name: str, expected: RadiographType, mode: str, rotation: int
) -> None:
    film = load_ceph(name).rotate(rotation, expand=True).convert(mode)
    size = FILM_SIZE if rotation % 180 == 0 else FILM_SIZE[::-1]
    result = categorise(_working(film), width=size[0], height=size[1])
    assert result.kind is Kind.RADIOGRAPH
    assert result.confidence >= 0.9
    assert result.radiograph_type is expected
    assert result.radiograph_type_confidence >= 0.7
    assert result.photo_class is None and result.view_code is None


@needs_cephs
def test_symmetry_margin_between_the_two_films() -> None:
    """The measured numbers behind the lateral/PA split (see the module docstring)."""

    def best(name: str) -> float:
        small = np.asarray(load_ceph(name).resize((64, 80), Image.Resampling.BOX), np.float32)
        return max(
            mirror_symmetry(small, axis="vertical"), mirror_symmetry(small, axis="horizontal")
        )

    lateral, pa = best("B1893L12.jpg"), best("B1893F12.jpg")
    assert lateral < 0.76 < 0.86 < pa


@needs_cephs
@pytest.mark.parametrize("name", CEPHS)
def test_tinted_film_scan_is_still_a_radiograph(name: str) -> None:
    # A flatbed colour scan of film with a warm tint: big channel differences, one hue.
    tinted = colour_cast(load_ceph(name), *WARM)
    assert categorise(px(tinted), width=4096, height=5120).kind is Kind.RADIOGRAPH


@needs_cephs
def test_wide_radiograph_is_panoramic_and_small_one_intraoral() -> None:
    # Geometry rules only: the content is a ceph squeezed to 2:1 / claimed to be small.
    squeezed = load_ceph("B1893F12.jpg").resize((512, 250), Image.Resampling.BOX)
    wide = categorise(px(squeezed), width=2900, height=1420)
    assert wide.radiograph_type is RadiographType.PANORAMIC
    small = categorise(px(load_ceph("B1893L12.jpg")), width=1200, height=1500)
    assert small.radiograph_type is RadiographType.INTRAORAL


# --- photographs and documents (synthetic) ---------------------------------------------------


@pytest.mark.parametrize(
    ("scene", "size", "photo_class", "view"),
    [
        (lambda: synthetic_face(), PHOTO_PORTRAIT, PhotoClass.EXTRAORAL, "EV15"),
        (lambda: synthetic_face(smile=True), PHOTO_PORTRAIT, PhotoClass.EXTRAORAL, "EV19"),
        (lambda: synthetic_face(profile=True), PHOTO_PORTRAIT, PhotoClass.EXTRAORAL, "EV01"),
        (intraoral_frontal, PHOTO_LANDSCAPE, PhotoClass.INTRAORAL, "IV07"),
        (lambda: intraoral_occlusal(), PHOTO_LANDSCAPE, PhotoClass.INTRAORAL, "IV24"),
        (
            lambda: intraoral_occlusal(incisors_top=False),
            PHOTO_LANDSCAPE,
            PhotoClass.INTRAORAL,
            "IV26",
        ),
    ],
    ids=["frontal-rest", "frontal-smile", "profile", "io-frontal", "occlusal-up", "occlusal-low"],
)
def test_synthetic_photographs(scene, size, photo_class: PhotoClass, view: str) -> None:
    result = categorise(_working(scene()), width=size[0], height=size[1])
    assert result.kind is Kind.PHOTOGRAPH
    assert result.photo_class is photo_class
    assert result.photo_class_confidence >= 0.5
    assert result.view_code == view
    assert result.view_candidates[0][0] == view
    assert result.radiograph_type is None


def test_buccal_side_is_not_guessed() -> None:
    result = categorise(_working(intraoral_buccal()), width=4000, height=3000)
    assert result.photo_class is PhotoClass.INTRAORAL
    assert result.view_code is None
    top_two = {code for code, _ in result.view_candidates[:2]}
    assert top_two == {"IV01", "IV18"}
    assert result.view_candidates[0][1] == result.view_candidates[1][1]


def test_scanned_document() -> None:
    result = categorise(_working(scanned_document()), width=1700, height=2200)
    assert result.kind is Kind.DOCUMENT
    assert result.confidence >= 0.8
    assert result.photo_class is None and result.radiograph_type is None


def test_grayscale_scan_of_a_document_is_still_a_document() -> None:
    page = scanned_document().convert("L")
    assert categorise(_working(page), width=1700, height=2200).kind is Kind.DOCUMENT


@pytest.mark.parametrize("colour", [(128, 128, 128), (200, 30, 30), (255, 255, 255), (0, 0, 0)])
def test_flat_frames_are_unknown(colour: tuple[int, int, int]) -> None:
    flat = np.full((480, 640, 3), colour, np.uint8)
    result = categorise(flat, width=4000, height=3000)
    assert result.kind is Kind.UNKNOWN
    assert result.view_code is None


# --- properties and edges --------------------------------------------------------------------


def _well_formed(result: Categorisation) -> None:
    assert 0.0 <= result.confidence <= 1.0
    assert 0.0 <= result.photo_class_confidence <= 1.0
    assert 0.0 <= result.radiograph_type_confidence <= 1.0
    assert 0.0 <= result.view_code_confidence <= 1.0
    assert (result.photo_class is not None) <= (result.kind is Kind.PHOTOGRAPH)
    assert (result.radiograph_type is not None) <= (result.kind is Kind.RADIOGRAPH)
    assert (result.view_code is not None) <= (result.photo_class is not None)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(8, 120),
    w=st.integers(8, 120),
    colour=st.booleans(),
    size=st.tuples(st.integers(1, 8000), st.integers(1, 8000)),
)
def test_categorise_is_total_and_well_formed(
    seed: int, h: int, w: int, colour: bool, size: tuple[int, int]
) -> None:
    shape = (h, w, 3) if colour else (h, w)
    image = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    _well_formed(categorise(image, width=size[0], height=size[1]))


@settings(max_examples=30, deadline=None)
@given(level=st.integers(0, 255), h=st.integers(8, 100), w=st.integers(8, 100))
def test_grey_without_structure_is_never_called_anything(level: int, h: int, w: int) -> None:
    assert categorise(np.full((h, w), level, np.uint8), width=w, height=h).kind is Kind.UNKNOWN


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_channel_identical_images_are_never_photographs(seed: int) -> None:
    grey = np.random.default_rng(seed).integers(0, 256, (64, 64), dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    assert categorise(rgb, width=2000, height=2000).kind is not Kind.PHOTOGRAPH


@pytest.mark.parametrize(("width", "height"), [(0, 100), (100, -1)])
def test_original_size_must_be_positive(width: int, height: int) -> None:
    with pytest.raises(InvalidInput):
        categorise(np.zeros((64, 64), np.uint8), width=width, height=height)


def test_pixels_must_be_uint8() -> None:
    with pytest.raises(InvalidInput):
        categorise(np.zeros((64, 64, 3), np.float64), width=64, height=64)
