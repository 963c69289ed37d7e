"""Rendering collages, presentations and referral letters, checked as a reader would.

Every pre-built layout is rendered for one generated patient whose photos are 3000x2000
JPEGs of a distinct flat colour per image (with photo-like noise), plus the real lateral
cephalogram. Each PDF is checked structurally with pypdf (pages, page size in points,
embedded pictures at 300 dpi for their cell, text, embedded fonts) and visually: page 1
is rasterised by poppler's ``pdftoppm`` and the mean colour of every cell is compared to
the colour of the image that should be there; a missing slot must show placeholder grey.
"""

from __future__ import annotations

import colorsys
import io
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pypdf import PdfReader

from adapters import collage_renderer as r
from conftest import jpeg_bytes
from domain import collage as c
from domain.cephalometry.analyses import analyze_one
from domain.errors import InvalidInput

CEPH = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "ceph" / "B1893L12.jpg"
MILESTONES = ("initial", "progress_1", "progress_2", "debond")
DATES = {m: date(2024, 1 + 4 * i // 2, 2 + i) for i, m in enumerate(MILESTONES)}
SERIES = [v for row in c.FULL_SERIES_ROWS for v in row]
PATIENT = "Zoë Ortiz-Łukasik"
CLINIC = "Bright Smiles Orthodontics"
CHECK_DPI = 50
POINTS = {("A4", "landscape"): (841.89, 595.28), ("Letter", "landscape"): (792.0, 612.0)}
RGB = tuple[int, int, int]

STEINER_PX = {code: (x * 4, y * 4) for code, (x, y) in {
    "S": (0, 0), "N": (70, 0), "A": (65, 50), "B": (52, 90), "Go": (-5, 82), "Gn": (55, 110),
    "U1": (68, 82), "U1_apex": (58, 52), "L1": (60, 79), "L1_apex": (42, 103),
}.items()}


def solid_jpeg(colour: RGB, width: int = 3000, height: int = 2000) -> bytes:
    """A flat colour with photo-like noise (as in ``conftest.jpeg_bytes``), so it
    compresses and decodes like a photo yet its mean colour is known."""
    rng = np.random.default_rng(sum(colour))
    tile = rng.integers(-15, 15, size=(256, 256, 3), dtype=np.int16)
    noise = np.tile(tile, (height // 256 + 1, width // 256 + 1, 1))[:height, :width]
    pixels = (noise + np.array(colour, dtype=np.int16)).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def logo_png() -> bytes:
    logo = Image.new("RGBA", (400, 160), (0, 0, 0, 0))
    logo.paste((31, 78, 121, 255), (0, 0, 160, 160))
    out = io.BytesIO()
    logo.save(out, "PNG")
    return out.getvalue()


@dataclass
class Patient:
    blobs: dict[str, bytes]
    images: list[c.CollageImage]
    colours: dict[str, RGB]
    ceph_inner_mean: float

    def load(self, image_id: str) -> bytes:
        return self.blobs[image_id]


def _palette(count: int) -> list[RGB]:
    return [tuple(round(v * 255) for v in colorsys.hsv_to_rgb(i / count, 0.75, 0.85))
            for i in range(count)]  # type: ignore[misc]


def make_patient() -> Patient:
    specs: list[tuple[str, str, str, float]] = [
        (f"{view}-debond", view, "debond", 0.8) for view in SERIES]
    specs += [(f"IV07-{m}", "IV07", m, 0.8) for m in MILESTONES[:3]]
    specs += [("EV19-initial", "EV19", "initial", 0.8), ("EV38-initial", "EV38", "initial", 0.8)]
    specs.append(("IV07-debond-blurry", "IV07", "debond", 0.3))  # must lose to IV07-debond
    colours = dict(zip([s[0] for s in specs], _palette(len(specs)), strict=True))
    blobs = {image_id: solid_jpeg(colours[image_id]) for image_id in colours}
    images = [c.CollageImage(image_id, view, milestone,
                             datetime.combine(DATES[milestone], datetime.min.time(), UTC),
                             quality) for image_id, view, milestone, quality in specs]
    blobs["ceph-debond"] = CEPH.read_bytes()
    images.append(c.CollageImage("ceph-debond", "lateral_ceph", "debond",
                                 datetime(2024, 7, 5, tzinfo=UTC)))
    blobs["logo"] = logo_png()
    with Image.open(CEPH) as film:
        film.draft("L", (512, 640))
        grey = np.asarray(film.convert("L"), dtype=float)
    # The same inner 60 % that ``mean_colour`` looks at on the page.
    h, w = grey.shape
    inner = grey[round(h * 0.2):round(h * 0.8), round(w * 0.2):round(w * 0.8)]
    return Patient(blobs, images, colours, float(inner.mean()))


@pytest.fixture(scope="module")
def patient() -> Patient:
    return make_patient()


BRANDING = c.Branding(CLINIC, logo_id="logo", address_lines=("1 Harbour Street", "Dublin"))
LAYOUTS: dict[str, Callable[[c.PageSize], c.CollageTemplate]] = {
    "abo_8": lambda page: c.abo_eight(page),
    "full_series_12": lambda page: c.full_series(page),
    "before_after": lambda page: c.before_after("IV07", "initial", c.LATEST, page),
    "progress_timeline": lambda page: c.progress_timeline("IV07", MILESTONES, page),
    "ceph_pano": lambda page: c.ceph_pano_sheet(page),
    "smile_progress": lambda page: c.smile_progress(("initial", "debond"), page),
}


def resolve(template: c.CollageTemplate, patient: Patient) -> c.ResolvedCollage:
    steiner = analyze_one("steiner", STEINER_PX, 0.25, age=30, sex="female")
    return c.resolve(template, patient.images, milestone_dates=DATES, analyses=[steiner],
                     fields={"patient_name": PATIENT, "date": "2024-07-08"})


# --- reading the PDF -------------------------------------------------------------------------


def embedded_images(page) -> list[tuple[int, int, str]]:
    found = []
    for ref in page["/Resources"].get("/XObject", {}).values():
        obj = ref.get_object()
        if obj["/Subtype"] == "/Image":
            found.append((int(obj["/Width"]), int(obj["/Height"]), str(obj["/Filter"])))
    return found


def assert_fonts_embedded(page) -> None:
    fonts = page["/Resources"]["/Font"]
    assert fonts, "the page uses no font"
    for ref in fonts.values():
        font = ref.get_object()
        descriptor = font.get("/FontDescriptor")
        if descriptor is None:
            descriptor = font["/DescendantFonts"][0].get_object()["/FontDescriptor"]
        descriptor = descriptor.get_object()
        assert any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3")), font


@pytest.fixture(scope="module")
def pdftoppm() -> str:
    found = shutil.which("pdftoppm")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("pdftoppm (poppler-utils) is required in CI")
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    return found


def rasterise(pdftoppm: str, pdf: bytes, folder: Path, page: int = 1) -> Image.Image:
    source = folder / "doc.pdf"
    source.write_bytes(pdf)
    subprocess.run([pdftoppm, "-r", str(CHECK_DPI), "-png", "-f", str(page), "-l", str(page),
                    "-singlefile", str(source), str(folder / "page")], check=True)
    with Image.open(folder / "page.png") as shot:
        return shot.convert("RGB")


def mean_colour(shot: Image.Image, box: c.Frame, inset: float = 0.2) -> np.ndarray:
    """Mean RGB of ``box`` (mm), ignoring an ``inset`` share at each edge (antialiasing)."""
    scale = CHECK_DPI / c.MM_PER_INCH
    dx, dy = box.width * inset, box.height * inset
    crop = (round((box.x + dx) * scale), round((box.y + dy) * scale),
            round((box.right - dx) * scale), round((box.bottom - dy) * scale))
    return np.asarray(shot.crop(crop), dtype=float).reshape(-1, 3).mean(axis=0)


def source_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def expected_box_and_px(cell: c.ResolvedCell, patient: Patient) -> tuple[c.Frame, int]:
    assert cell.image is not None
    width, height = source_size(patient.blobs[cell.image.id])
    box = c.fitted_box(cell.cell.image_area, width, height, cell.cell.options.fit)
    return box, min(round(box.width / c.MM_PER_INCH * 300), width)


# --- every pre-built layout ------------------------------------------------------------------


@pytest.mark.parametrize("page", [c.A4, c.LETTER], ids=lambda p: p.name)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_renders_to_a_print_ready_pdf(layout: str, page: c.PageSize,
                                                 patient: Patient, pdftoppm: str,
                                                 tmp_path: Path) -> None:
    collage = resolve(LAYOUTS[layout](page), patient)
    rendered = r.render_pdf(collage, patient.load, branding=BRANDING)
    assert rendered.media_type == "application/pdf" and rendered.pages == 1

    reader = PdfReader(io.BytesIO(rendered.data))
    assert len(reader.pages) == 1
    pdf_page = reader.pages[0]
    assert (float(pdf_page.mediabox.width), float(pdf_page.mediabox.height)) == pytest.approx(
        POINTS[(page.name, "landscape")], abs=0.5)

    # Every picture is embedded at 300 dpi for the box it prints in (within 10 %).
    pictures = [cell for cell in collage.cells if cell.image is not None]
    expected = sorted(expected_box_and_px(cell, patient)[1] for cell in pictures)
    images = embedded_images(pdf_page)
    photos = sorted(w for w, _h, kind in images if "DCTDecode" in kind)
    assert len(photos) == len(expected)
    for got, want in zip(photos, expected, strict=True):
        assert abs(got - want) <= 0.1 * want, (got, want)
    assert len(images) == len(photos) + 1  # and the logo in the header

    text = pdf_page.extract_text()
    for needle in (CLINIC, PATIENT, "Page 1 of 1", *(m.placeholder for m in collage.missing)):
        assert needle in text, needle
    for cell in collage.cells:
        if cell.caption:
            assert cell.caption in text
    assert_fonts_embedded(pdf_page)

    shot = rasterise(pdftoppm, rendered.data, tmp_path)
    for cell in pictures:
        box, _ = expected_box_and_px(cell, patient)
        seen = mean_colour(shot, box)
        if cell.image.id == "ceph-debond":
            assert abs(seen.mean() - patient.ceph_inner_mean) < 12, seen
            assert np.ptp(seen) < 3  # a radiograph stays grey
        else:
            want = np.array(patient.colours[cell.image.id])
            assert np.abs(seen - want).max() < 14, (cell.label, cell.image.id, seen, want)
    for slot in collage.missing:
        frame = collage.template.cells[slot.index].frame
        band = c.Frame(frame.x, frame.y, frame.width, frame.height * 0.3)  # above the label
        assert np.abs(mean_colour(shot, band) - r.PLACEHOLDER_GREY).max() < 6


def test_the_expected_slots_are_filled_and_missing(patient: Patient) -> None:
    """The patient above has no panoramic: the ceph sheet shows exactly that placeholder,
    and the better IV07 at debond wins over the blurry retake."""
    ceph = resolve(c.ceph_pano_sheet(), patient)
    assert [m.placeholder for m in ceph.missing] == ["panoramic — missing"]
    for layout in LAYOUTS:
        if layout != "ceph_pano":
            assert resolve(LAYOUTS[layout](c.A4), patient).missing == (), layout
    series = resolve(c.full_series(), patient)
    iv07 = next(cell for cell in series.cells if cell.label == "IV07")
    assert iv07.image is not None and iv07.image.id == "IV07-debond"
    assert iv07.explanation.startswith("best quality (0.80) among 2 IV07")


def test_pictures_are_decoded_only_as_large_as_their_cells_need(patient: Patient) -> None:
    rendered = r.render_pdf(resolve(c.full_series(), patient), patient.load,
                            branding=BRANDING)
    assert len(rendered.placements) == 12
    for placement in rendered.placements:
        assert placement.source_px == (3000, 2000)
        # A 67 mm cell needs ~790 px: DCT scaling decodes 1/2 (a quarter of the pixels).
        assert placement.decoded_px == (1500, 1000)
        assert placement.embedded_px[0] <= placement.decoded_px[0]


def test_the_same_input_renders_the_same_bytes(patient: Patient) -> None:
    collage = resolve(c.abo_eight(), patient)
    first = r.render_pdf(collage, patient.load, branding=BRANDING).data
    assert r.render_pdf(collage, patient.load, branding=BRANDING).data == first


# --- rasters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "media"), [("png", "image/png"), ("jpeg", "image/jpeg")])
def test_raster_output(fmt: str, media: str, patient: Patient) -> None:
    collage = resolve(c.abo_eight(c.LETTER), patient)
    rendered = r.render_raster(collage, patient.load, branding=BRANDING, fmt=fmt, dpi=100)
    assert rendered.media_type == media
    with Image.open(io.BytesIO(rendered.data)) as shot:
        assert shot.size == (round(279.4 / 25.4 * 100), round(215.9 / 25.4 * 100))
        shot = shot.convert("RGB")
        scale = 100 / c.MM_PER_INCH
        for placement in rendered.placements:
            b = placement.box.inset(min(placement.box.width, placement.box.height) * 0.2)
            seen = np.asarray(shot.crop((round(b.x * scale), round(b.y * scale),
                                         round(b.right * scale), round(b.bottom * scale))),
                              dtype=float).reshape(-1, 3).mean(axis=0)
            want = np.array(patient.colours[placement.image_id])
            assert np.abs(seen - want).max() < 14, placement.image_id
    with pytest.raises(InvalidInput):
        r.render_raster(collage, patient.load, branding=BRANDING, fmt="gif")


def single_image(image_id: str, fit: c.Fit = c.Fit.FIT) -> c.CollageTemplate:
    cell = c.Cell(c.Frame(20, 30, 100, 150), c.ImageRef(image_id), c.CellOptions(fit=fit))
    return c.CollageTemplate("single", (cell,))


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90° clockwise: portrait
    # conftest's gradient: red grows left to right, green top to bottom, as stored.
    blobs = {"rotated": jpeg_bytes(3000, 2000, seed=3, exif=exif.tobytes())}
    collage = c.resolve(single_image("rotated"), [
        c.CollageImage("rotated", None, None, datetime(2024, 1, 1, tzinfo=UTC))])
    rendered = r.render_raster(collage, blobs.__getitem__,
                               branding=c.Branding(CLINIC), dpi=60)
    (placement,) = rendered.placements
    assert placement.source_px == (2000, 3000)
    assert placement.box.height > placement.box.width
    shot = np.asarray(Image.open(io.BytesIO(rendered.data)).convert("RGB"), dtype=float)
    s = 60 / c.MM_PER_INCH
    b = placement.box
    picture = shot[round(b.y * s) + 2:round(b.bottom * s) - 2,
                   round(b.x * s) + 2:round(b.right * s) - 2]
    third = picture.shape[0] // 3
    # Displayed: stored x runs down the page, stored y runs right to left.
    assert picture[:third, :, 0].mean() + 120 < picture[-third:, :, 0].mean()
    assert picture[:, :third, 1].mean() > picture[:, -third:, 1].mean() + 80


def test_fill_crops_to_the_cell(patient: Patient) -> None:
    collage = c.resolve(single_image("IV07-debond", c.Fit.FILL), patient.images)
    rendered = r.render_pdf(collage, patient.load, branding=c.Branding(CLINIC))
    (placement,) = rendered.placements
    assert placement.box == c.Frame(20, 30, 100, 150)
    # 100 x 150 mm at 300 dpi is 1181 x 1772 px; the 2000 px tall source allows it all.
    assert placement.embedded_px == (1181, 1772)


def test_colour_modes_become_srgb_or_grey() -> None:
    area = c.Frame(0, 0, 50, 50)
    cmyk = io.BytesIO()
    Image.new("CMYK", (400, 400), (0, 255, 255, 0)).save(cmyk, "JPEG")
    picture = r.prepare_picture(cmyk.getvalue(), area, c.Fit.FIT, 100)
    assert picture.image.mode == "RGB"
    red, green, blue = np.asarray(picture.image, dtype=float).reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60
    film = np.linspace(0, 4095, 300 * 300).reshape(300, 300).astype(np.uint16)  # 12-bit
    png = io.BytesIO()
    Image.fromarray(film).save(png, "PNG")
    grey = r.prepare_picture(png.getvalue(), area, c.Fit.FIT, 100).image
    assert grey.mode == "L"
    assert np.asarray(grey).min() == 0 and np.asarray(grey).max() >= 250  # not clipped white


def test_an_unreadable_image_becomes_a_labelled_placeholder(patient: Patient,
                                                            pdftoppm: str,
                                                            tmp_path: Path) -> None:
    blobs = dict(patient.blobs, **{"IV07-debond": b"\xff\xd8 not really a jpeg"})
    collage = resolve(c.before_after("IV07"), patient)
    rendered = r.render_pdf(collage, blobs.__getitem__, branding=BRANDING)
    assert rendered.unreadable == ("IV07-debond",)
    assert "IV07 — unreadable" in PdfReader(io.BytesIO(rendered.data)).pages[0].extract_text()
    shot = rasterise(pdftoppm, rendered.data, tmp_path)
    area = collage.cells[1].cell.image_area
    band = c.Frame(area.x, area.y, area.width, area.height * 0.3)
    assert np.abs(mean_colour(shot, band) - r.PLACEHOLDER_GREY).max() < 6


# --- multi-page presentation and the referral letter ----------------------------------------


def test_case_presentation(patient: Patient) -> None:
    steiner = analyze_one("steiner", STEINER_PX, 0.25, age=30, sex="female")
    pages = [
        c.CollagePage(resolve(c.abo_eight(), patient)),
        c.ImagePage("ceph-debond", "Lateral cephalogram", "Debond, 2024-07-05",
                    page=c.LETTER, orientation=c.Orientation.PORTRAIT),
        c.TablePage("Cephalometric summary", (c.ceph_table(steiner),)),
        c.TimelinePage("IV07 through treatment", tuple(
            c.TimelineEntry(m, DATES[m], f"IV07-{m}") for m in MILESTONES)),
    ]
    rendered = r.render_presentation(pages, patient.load, branding=BRANDING)
    reader = PdfReader(io.BytesIO(rendered.data))
    assert rendered.pages == len(reader.pages) == 4
    sizes = [(round(float(p.mediabox.width)), round(float(p.mediabox.height)))
             for p in reader.pages]
    assert sizes == [(842, 595), (612, 792), (595, 842), (842, 595)]
    texts = [p.extract_text() for p in reader.pages]
    assert all(f"Page {n} of 4" in t for n, t in enumerate(texts, start=1))
    assert "Lateral cephalogram" in texts[1] and "Debond, 2024-07-05" in texts[1]
    assert "SNA" in texts[2] and "Interpretation" in texts[2]
    assert all(m in texts[3] and DATES[m].isoformat() in texts[3] for m in MILESTONES)
    ceph = next(p for p in rendered.placements if p.image_id == "ceph-debond")
    assert ceph.page == 2
    (width, _h, _f) = max(embedded_images(reader.pages[1]))
    assert abs(width - ceph.box.width / c.MM_PER_INCH * 300) <= 0.1 * width
    assert [p.image_id for p in rendered.placements if p.page == 4] == [
        f"IV07-{m}" for m in MILESTONES]
    for page in reader.pages:
        assert_fonts_embedded(page)


def test_referral_letter(patient: Patient) -> None:
    steiner = analyze_one("steiner", STEINER_PX, 0.25, age=30, sex="female")
    letter = c.ReferralLetter(
        addressee=("Dr. Maria Chen", "Oral Surgery Unit", "12 Quay Road"),
        subject=f"Re: {PATIENT}, born 2012-04-01",
        salutation="Dear Dr. Chen,",
        paragraphs=("Thank you for seeing this patient: Class II <div 1> & crowding.",
                    "Records at debond are enclosed; the cephalometric summary follows."),
        signer_name="Dr. Ada Byrne",
        signer_title="Specialist Orthodontist",
        letter_date=date(2024, 7, 8),
        images=(c.LetterImage("EV19-debond", "Frontal smile"),
                c.LetterImage("ceph-debond", "Lateral ceph")),
        ceph_summary=c.ceph_table(steiner),
        signature_image_id="logo",
        page=c.LETTER,
    )
    rendered = r.render_referral(letter, patient.load, branding=BRANDING)
    reader = PdfReader(io.BytesIO(rendered.data))
    assert rendered.pages == len(reader.pages) >= 1
    first = reader.pages[0]
    assert (float(first.mediabox.width), float(first.mediabox.height)) == pytest.approx(
        (612, 792), abs=0.5)
    text = "\n".join(p.extract_text() for p in reader.pages)
    for needle in (CLINIC, "1 Harbour Street", "Dr. Maria Chen", PATIENT, "08 July 2024",
                   "Class II <div 1> & crowding", "Frontal smile", "SNA", "Dr. Ada Byrne",
                   "Specialist Orthodontist"):
        assert needle in text, needle
    assert [p.image_id for p in rendered.placements] == ["EV19-debond", "ceph-debond"]
    photos = sorted(w for page in reader.pages for w, _h, kind in embedded_images(page)
                    if "DCTDecode" in kind)
    expected = sorted(round(p.box.width / c.MM_PER_INCH * 300) for p in rendered.placements)
    assert len(photos) == 2
    for got, want in zip(photos, expected, strict=True):
        assert abs(got - want) <= 0.1 * want
    for page in reader.pages:
        assert_fonts_embedded(page)


def test_fonts_are_a_known_embeddable_ttf() -> None:
    files = r.font_files()
    assert files.regular.is_file() and files.bold.is_file()
    assert files.family in ("DejaVu Sans", "Bitstream Vera Sans")
