"""Case presentations and referral letters checked visually: every page rasterised with
poppler's ``pdftoppm`` and compared region by region to what should be there.

(``tests/test_collage_rendering.py`` checks these documents structurally; the single-page
layouts are checked visually there.)
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader
from test_collage_rendering import (
    BRANDING,
    CHECK_DPI,
    DATES,
    MILESTONES,
    STEINER_PX,
    Patient,
    make_patient,
    mean_colour,
    pdftoppm,  # noqa: F401 - the fixture
    rasterise,
    resolve,
)

from adapters import collage_renderer as r
from domain import collage as c
from domain.cephalometry.analyses import analyze_one

SCALE = CHECK_DPI / c.MM_PER_INCH


@pytest.fixture(scope="module")
def patient() -> Patient:
    return make_patient()


def colour_area_mm2(shot: Image.Image, colour: tuple[int, int, int], tolerance: int = 18
                    ) -> float:
    """How much of the page (mm²) shows ``colour``: a flat photo printed once covers its box."""
    pixels = np.asarray(shot, dtype=np.int16)
    near = np.all(np.abs(pixels - np.array(colour, dtype=np.int16)) <= tolerance, axis=-1)
    return float(near.sum()) / SCALE**2


def rule_colour(shot: Image.Image, y_mm: float, x0: float, x1: float) -> np.ndarray:
    """The darkest colour along a thin horizontal rule at ``y_mm`` (antialiasing spreads it
    over two rows at 50 dpi)."""
    rows = np.asarray(shot, dtype=float)[round(y_mm * SCALE) - 1:round(y_mm * SCALE) + 2,
                                         round(x0 * SCALE):round(x1 * SCALE)]
    darkest = rows.sum(axis=2).argmin(axis=0)
    return np.median(rows[darkest, np.arange(rows.shape[1])], axis=0)


def test_case_presentation_pages_look_right(patient: Patient, pdftoppm: str,  # noqa: F811
                                            tmp_path: Path) -> None:
    steiner = analyze_one("steiner", STEINER_PX, 0.25, age=30, sex="female")
    abo = resolve(c.abo_eight(), patient)
    pages = [
        c.CollagePage(abo),
        c.ImagePage("ceph-debond", "Lateral cephalogram", "Debond",
                    page=c.LETTER, orientation=c.Orientation.PORTRAIT),
        c.TablePage("Cephalometric summary", (c.ceph_table(steiner),)),
        c.TimelinePage("IV07 through treatment", (
            *(c.TimelineEntry(m, DATES[m], f"IV07-{m}") for m in MILESTONES[:3]),
            c.TimelineEntry("debond", DATES["debond"], None))),
    ]
    rendered = r.render_presentation(pages, patient.load, branding=BRANDING)
    assert len(PdfReader(io.BytesIO(rendered.data)).pages) == 4
    primary = np.array(c.hex_colour(BRANDING.primary))

    # Page 1: every ABO cell shows its photo's colour; the header rule is the brand colour.
    shot = rasterise(pdftoppm, rendered.data, tmp_path, page=1)
    for cell in abo.cells:
        if cell.image is None:
            continue
        box = c.fitted_box(cell.cell.image_area, 3000, 2000, cell.cell.options.fit)
        seen = mean_colour(shot, box)
        assert np.abs(seen - np.array(patient.colours[cell.image.id])).max() < 14, cell.label
    margins = abo.template.margins
    assert np.abs(rule_colour(shot, margins.top - 3.0, 20, 200) - primary).max() < 40

    # Page 2: the radiograph fills its placement and stays grey.
    shot = rasterise(pdftoppm, rendered.data, tmp_path, page=2)
    (ceph,) = [p for p in rendered.placements if p.page == 2]
    seen = mean_colour(shot, ceph.box)
    assert abs(seen.mean() - patient.ceph_inner_mean) < 15 and np.ptp(seen) < 4

    # Page 3: a table, so mostly white with dark text and an accent-tinted header row.
    shot = rasterise(pdftoppm, rendered.data, tmp_path, page=3)
    accent = np.array(c.hex_colour(BRANDING.accent))
    assert colour_area_mm2(shot, tuple(accent), tolerance=6) > 100  # the header row fill

    # Page 4: three thumbnails in their own colours, a grey placeholder for the fourth.
    shot = rasterise(pdftoppm, rendered.data, tmp_path, page=4)
    thumbs = [p for p in rendered.placements if p.page == 4]
    assert [p.image_id for p in thumbs] == [f"IV07-{m}" for m in MILESTONES[:3]]
    for placement in thumbs:
        seen = mean_colour(shot, placement.box)
        assert np.abs(seen - np.array(patient.colours[placement.image_id])).max() < 14
    assert colour_area_mm2(shot, r.PLACEHOLDER_GREY, tolerance=4) > 0.5 * thumbs[0].box.width \
        * thumbs[0].box.height


def test_referral_letter_looks_right(patient: Patient, pdftoppm: str,  # noqa: F811
                                     tmp_path: Path) -> None:
    letter = c.ReferralLetter(
        addressee=("Dr. Maria Chen", "Oral Surgery Unit"),
        subject="Re: referral", salutation="Dear Dr. Chen,",
        paragraphs=("Please see the enclosed records.",),
        signer_name="Dr. Ada Byrne",
        images=(c.LetterImage("EV19-debond", "Frontal smile"),
                c.LetterImage("IV07-debond", "Frontal intraoral")),
        page=c.A4,
    )
    rendered = r.render_referral(letter, patient.load, branding=BRANDING)
    shot = rasterise(pdftoppm, rendered.data, tmp_path, page=1)
    width, height = shot.size
    assert (round(width / SCALE), round(height / SCALE)) == (210, 297)
    # The letterhead rule in the brand colour across the text width.
    assert np.abs(rule_colour(shot, 33.0, 30, 180) - np.array(
        c.hex_colour(BRANDING.primary))).max() < 40
    # Each enclosed photo is printed once, at the size placed (±30 % for edges at 50 dpi).
    for placement in rendered.placements:
        area = colour_area_mm2(shot, patient.colours[placement.image_id])
        expected = placement.box.width * placement.box.height
        assert 0.7 * expected < area < 1.3 * expected, (placement.image_id, area, expected)
    # The logo (a brand-blue square) sits in the letterhead band, top left.
    band = np.asarray(shot, dtype=float)[round(10 * SCALE):round(30 * SCALE),
                                         round(22 * SCALE):round(42 * SCALE)]
    logo_blue = np.array((31, 78, 121))
    assert (np.abs(band - logo_blue).max(axis=-1) < 20).mean() > 0.3
