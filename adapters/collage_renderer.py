"""Collages, case presentations and referral letters: print-ready PDF and PNG/JPEG rasters.

Every picture is decoded only as large as its cell needs at the target resolution (300 dpi
for print): the JPEG decoder's DCT scaling (``Image.draft``) yields a 1/2, 1/4 or 1/8
image directly, so a 24-megapixel original behind a 60 mm cell is decoded at 750x500 and
never at full size. Then EXIF orientation, conversion to sRGB, one resize that also
crops, and the picture is embedded in the PDF as a JPEG (DCTDecode), exactly the pixels
the cell prints.

One drawing code serves both outputs: pages are drawn on a ``_Surface`` in millimetres
(top-left origin, like the templates), implemented once on a reportlab canvas and once on
a Pillow image. Text uses an embedded TrueType font (DejaVu Sans from Debian's
``fonts-dejavu-core`` when present, else Bitstream Vera, which ships inside reportlab).

No storage I/O here: image bytes come from the caller's ``load(image_id)``.
"""

from __future__ import annotations

import functools
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol

import numpy as np
import reportlab
import reportlab.rl_config
from PIL import Image, ImageCms, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas as pdf_canvas
from reportlab.platypus import Image as FlowImage
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle
from reportlab.platypus.flowables import Flowable

import adapters.image_codec  # noqa: F401 - registers the HEIF/AVIF decoders with Pillow
from domain.collage import (
    MM_PER_INCH,
    Align,
    Branding,
    CollagePage,
    Fit,
    Frame,
    ImagePage,
    Logo,
    Margins,
    Orientation,
    PresentationPage,
    ReferralLetter,
    ResolvedCell,
    ResolvedCollage,
    TableData,
    TablePage,
    TextBlock,
    TimelinePage,
    ViewSlot,
    cover_crop,
    fitted_box,
    hex_colour,
    page_dimensions,
    target_pixels,
)
from domain.errors import InvalidInput

Loader = Callable[[str], bytes]
RGB = tuple[int, int, int]

# reportlab's default wraps every stream in ASCII85 (+25 % size), in pure Python unless its
# optional C accelerator is installed: most of the time of a collage. PDF is binary-safe.
reportlab.rl_config.useA85 = 0

PRINT_DPI = 300
RASTER_DPI = 150
JPEG_QUALITY = 90
PT_PER_MM = 72.0 / MM_PER_INCH
WHITE: RGB = (255, 255, 255)
PLACEHOLDER_GREY: RGB = (217, 217, 217)
PLACEHOLDER_INK: RGB = (100, 100, 100)
RULE_GREY: RGB = (190, 190, 190)
ROW_TINT: RGB = (246, 246, 246)
LEADING = 1.25
MIN_TEXT_PT = 5.0
EXIF_ORIENTATION = 0x0112
_TRANSPOSED = {5, 6, 7, 8}  # orientations that swap width and height
_DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
                  Image.DecompressionBombError)

REGULAR = "OrthovaultSans"
BOLD = "OrthovaultSans-Bold"
_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")


@dataclass(frozen=True, slots=True)
class FontFiles:
    family: str
    regular: Path
    bold: Path


@functools.cache
def font_files() -> FontFiles:
    """DejaVu covers far more scripts (patient names); Vera is the always-present fallback."""
    regular, bold = _DEJAVU / "DejaVuSans.ttf", _DEJAVU / "DejaVuSans-Bold.ttf"
    if regular.is_file() and bold.is_file():
        return FontFiles("DejaVu Sans", regular, bold)
    bundled = Path(reportlab.__file__).parent / "fonts"
    return FontFiles("Bitstream Vera Sans", bundled / "Vera.ttf", bundled / "VeraBd.ttf")


@functools.cache
def _register_pdf_fonts() -> None:
    files = font_files()
    pdfmetrics.registerFont(TTFont(REGULAR, str(files.regular)))
    pdfmetrics.registerFont(TTFont(BOLD, str(files.bold)))
    pdfmetrics.registerFontFamily(REGULAR, normal=REGULAR, bold=BOLD, italic=REGULAR,
                                  boldItalic=BOLD)


@functools.cache
def _pil_font(bold: bool, size_px: int) -> ImageFont.FreeTypeFont:
    files = font_files()
    return ImageFont.truetype(str(files.bold if bold else files.regular), size_px)


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _pt_to_mm(points: float) -> float:
    return points / PT_PER_MM


# --- what was rendered -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placement:
    """One picture as embedded: for the ``CollageGenerated`` event and for tests."""

    page: int | None  # 1-based; None in flowing documents (the referral letter)
    cell_index: int | None
    image_id: str
    box: Frame  # mm on the page
    source_px: tuple[int, int]  # as displayed, after EXIF orientation
    decoded_px: tuple[int, int]  # what the decoder produced (DCT scaling)
    embedded_px: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Rendered:
    data: bytes
    media_type: str
    pages: int
    placements: tuple[Placement, ...]
    unreadable: tuple[str, ...] = ()  # image ids drawn as "unreadable" placeholders


# --- decoding pictures at the size they print ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Picture:
    image: Image.Image  # RGB or L; RGBA only for logos and signatures
    box: Frame
    source_px: tuple[int, int]
    decoded_px: tuple[int, int]


def _oriented_size(image: Image.Image) -> tuple[int, int, bool]:
    swapped = image.getexif().get(EXIF_ORIENTATION, 1) in _TRANSPOSED
    width, height = image.size
    return (height, width, True) if swapped else (width, height, False)


def _to_grey8(image: Image.Image) -> Image.Image:
    """16-bit and float radiographs: stretch the used range to 8 bits (a straight convert
    would clip everything above 255 to white)."""
    values = np.asarray(image, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) * (255.0 / max(high - low, 1.0))
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    return "srgb" in ImageCms.getProfileDescription(profile).casefold()


def _to_display(image: Image.Image, keep_alpha: bool) -> Image.Image:
    """RGB in sRGB, or L; RGBA kept only when asked (logos over the header)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _to_grey8(image)
    has_alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        if keep_alpha:
            return rgba
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*WHITE, 255)), rgba
                                     ).convert("RGB")
    if mode in ("L", "1"):
        return image.convert("L")
    icc = image.info.get("icc_profile")
    if icc:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if not _is_srgb(profile):
                converted = ImageCms.profileToProfile(image, profile, _srgb(), outputMode="RGB")
                if converted is not None:
                    return converted
        except (OSError, ImageCms.PyCMSError):
            pass  # a broken profile: the pixels are most likely sRGB anyway
    return image if mode == "RGB" else image.convert("RGB")


def prepare_picture(data: bytes, area: Frame, fit: Fit, dpi: float, *,
                    keep_alpha: bool = False) -> Picture:
    """Decodes ``data`` just large enough to print ``area`` at ``dpi``."""
    image = Image.open(io.BytesIO(data))
    width, height, swapped = _oriented_size(image)
    box = fitted_box(area, width, height, fit)
    crop = cover_crop(width, height, area) if fit is Fit.FILL else (0.0, 0.0, width, height)
    crop_w, crop_h = crop[2] - crop[0], crop[3] - crop[1]
    target = target_pixels(box, dpi, (crop_w, crop_h))
    # The decoder scales the whole image, so ask for what the crop needs scaled up to it.
    need = (int(target[0] * width / crop_w + 1), int(target[1] * height / crop_h + 1))
    mode = "RGB" if image.mode in ("RGB", "YCbCr") else image.mode
    image.draft(mode, (need[1], need[0]) if swapped else need)
    decoded = image.size[::-1] if swapped else image.size
    ImageOps.exif_transpose(image, in_place=True)  # in place: no copy when upright
    image = _to_display(image, keep_alpha)
    sx, sy = image.width / width, image.height / height
    region = (crop[0] * sx, crop[1] * sy, crop[2] * sx, crop[3] * sy)
    if image.size != target or region != (0, 0, image.width, image.height):
        image = image.resize(target, Image.Resampling.LANCZOS, box=region, reducing_gap=3.0)
    return Picture(image, box, (width, height), (int(decoded[0]), int(decoded[1])))


def encode(picture: Picture) -> bytes:
    """JPEG (DCTDecode in the PDF) for photos; PNG keeps a logo's transparency."""
    out = io.BytesIO()
    if picture.image.mode == "RGBA":
        picture.image.save(out, "PNG")
    else:
        picture.image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


# --- two surfaces, one drawing code ----------------------------------------------------------


class _Surface(Protocol):
    dpi: float

    def rect(self, box: Frame, fill: RGB | None, stroke: RGB | None = None,
             width: float = 0.3) -> None: ...

    def line(self, x0: float, y0: float, x1: float, y1: float, colour: RGB,
             width: float = 0.3) -> None: ...

    def picture(self, picture: Picture) -> None: ...

    def text(self, x: float, baseline: float, text: str, size: float, *, bold: bool = False,
             colour: RGB = (0, 0, 0), align: Align = Align.LEFT) -> None: ...

    def text_width(self, text: str, size: float, bold: bool = False) -> float: ...


class _PdfSurface:
    def __init__(self, canvas: pdf_canvas.Canvas, height_mm: float, dpi: float) -> None:
        self.canvas = canvas
        self.height = height_mm
        self.dpi = dpi

    def _y(self, y_mm: float) -> float:
        return (self.height - y_mm) * PT_PER_MM

    def _colours(self, fill: RGB | None, stroke: RGB | None, width: float) -> None:
        if fill is not None:
            self.canvas.setFillColorRGB(*(v / 255 for v in fill))
        if stroke is not None:
            self.canvas.setStrokeColorRGB(*(v / 255 for v in stroke))
            self.canvas.setLineWidth(width * PT_PER_MM)

    def rect(self, box: Frame, fill: RGB | None, stroke: RGB | None = None,
             width: float = 0.3) -> None:
        self._colours(fill, stroke, width)
        self.canvas.rect(box.x * PT_PER_MM, self._y(box.bottom), box.width * PT_PER_MM,
                         box.height * PT_PER_MM, stroke=int(stroke is not None),
                         fill=int(fill is not None))

    def line(self, x0: float, y0: float, x1: float, y1: float, colour: RGB,
             width: float = 0.3) -> None:
        self._colours(None, colour, width)
        self.canvas.line(x0 * PT_PER_MM, self._y(y0), x1 * PT_PER_MM, self._y(y1))

    def picture(self, picture: Picture) -> None:
        b = picture.box
        reader = ImageReader(io.BytesIO(encode(picture)))
        self.canvas.drawImage(reader, b.x * PT_PER_MM, self._y(b.bottom), b.width * PT_PER_MM,
                              b.height * PT_PER_MM,
                              mask="auto" if picture.image.mode == "RGBA" else None)

    def text(self, x: float, baseline: float, text: str, size: float, *, bold: bool = False,
             colour: RGB = (0, 0, 0), align: Align = Align.LEFT) -> None:
        c = self.canvas
        c.setFont(BOLD if bold else REGULAR, size)
        c.setFillColorRGB(*(v / 255 for v in colour))
        draw = {Align.LEFT: c.drawString, Align.CENTER: c.drawCentredString,
                Align.RIGHT: c.drawRightString}[align]
        draw(x * PT_PER_MM, self._y(baseline), text)

    def text_width(self, text: str, size: float, bold: bool = False) -> float:
        return _pt_to_mm(pdfmetrics.stringWidth(text, BOLD if bold else REGULAR, size))


class _RasterSurface:
    def __init__(self, image: Image.Image, dpi: float) -> None:
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.dpi = dpi

    def _px(self, mm: float) -> int:
        return round(mm * self.dpi / MM_PER_INCH)

    def _font(self, size: float, bold: bool) -> ImageFont.FreeTypeFont:
        return _pil_font(bold, max(1, round(size / 72 * self.dpi)))

    def rect(self, box: Frame, fill: RGB | None, stroke: RGB | None = None,
             width: float = 0.3) -> None:
        x0, y0 = self._px(box.x), self._px(box.y)
        x1, y1 = self._px(box.right) - 1, self._px(box.bottom) - 1
        if x1 < x0 or y1 < y0:
            return
        self.draw.rectangle((x0, y0, x1, y1), fill=fill, outline=stroke,
                            width=max(1, self._px(width)) if stroke else 0)

    def line(self, x0: float, y0: float, x1: float, y1: float, colour: RGB,
             width: float = 0.3) -> None:
        self.draw.line((self._px(x0), self._px(y0), self._px(x1), self._px(y1)), fill=colour,
                       width=max(1, self._px(width)))

    def picture(self, picture: Picture) -> None:
        b = picture.box
        size = (max(1, self._px(b.right) - self._px(b.x)),
                max(1, self._px(b.bottom) - self._px(b.y)))
        image = picture.image
        if image.size != size:
            image = image.resize(size, Image.Resampling.LANCZOS)
        position = (self._px(b.x), self._px(b.y))
        if image.mode == "RGBA":
            self.image.paste(image, position, image)
        else:
            self.image.paste(image.convert(self.image.mode), position)

    def text(self, x: float, baseline: float, text: str, size: float, *, bold: bool = False,
             colour: RGB = (0, 0, 0), align: Align = Align.LEFT) -> None:
        anchor = {Align.LEFT: "ls", Align.CENTER: "ms", Align.RIGHT: "rs"}[align]
        self.draw.text((self._px(x), self._px(baseline)), text, fill=colour,
                       font=self._font(size, bold), anchor=anchor)

    def text_width(self, text: str, size: float, bold: bool = False) -> float:
        return self._font(size, bold).getlength(text) / self.dpi * MM_PER_INCH


# --- text ------------------------------------------------------------------------------------


def _leading(size: float) -> float:
    return _pt_to_mm(size * LEADING)


def _wrap(surface: _Surface, text: str, size: float, bold: bool, width: float) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if not line or surface.text_width(candidate, size, bold) <= width:
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def _ellipsize(surface: _Surface, text: str, size: float, bold: bool, width: float) -> str:
    if surface.text_width(text, size, bold) <= width:
        return text
    while text and surface.text_width(text + "…", size, bold) > width:
        text = text[:-1]
    return text + "…" if text else ""


def _fit_lines(surface: _Surface, text: str, size: float, bold: bool, box: Frame
               ) -> tuple[float, list[str]]:
    """The largest size up to ``size`` at which the wrapped text fits; cut with … if even
    the smallest does not."""
    while True:
        lines = _wrap(surface, text, size, bold, box.width)
        if len(lines) * _leading(size) <= box.height or size <= MIN_TEXT_PT:
            break
        size = max(MIN_TEXT_PT, size - 0.5)
    fitting = max(1, int(box.height / _leading(size)))
    if len(lines) > fitting:
        lines = [*lines[: fitting - 1], lines[fitting - 1] + " …"]
    return size, [_ellipsize(surface, line, size, bold, box.width) for line in lines]


def _draw_text(surface: _Surface, box: Frame, text: str, size: float, *, bold: bool = False,
               align: Align = Align.LEFT, middle: bool = False, colour: RGB = (0, 0, 0)
               ) -> None:
    size, lines = _fit_lines(surface, text, size, bold, box)
    leading = _leading(size)
    top = box.y + (box.height - len(lines) * leading) / 2 if middle else box.y
    x = {Align.LEFT: box.x, Align.CENTER: box.x + box.width / 2, Align.RIGHT: box.right}[align]
    for n, line in enumerate(lines):
        # The baseline sits about 0.8 of the font size below the line's top.
        surface.text(x, top + n * leading + _pt_to_mm(size) * 0.85, line, size, bold=bold,
                     colour=colour, align=align)


# --- page furniture --------------------------------------------------------------------------


@dataclass
class _Document:
    """What every page of one output shares, and what drawing it recorded."""

    branding: Branding
    load: Loader
    dpi: float
    pages: int = 1
    placements: list[Placement] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    @functools.cached_property
    def logo(self) -> bytes | None:
        return self.load(self.branding.logo_id) if self.branding.logo_id else None

    @property
    def primary(self) -> RGB:
        return hex_colour(self.branding.primary)

    @property
    def ink(self) -> RGB:
        return hex_colour(self.branding.text)


def _draw_logo(surface: _Surface, doc: _Document, area: Frame) -> Frame | None:
    if doc.logo is None:
        return None
    try:
        picture = prepare_picture(doc.logo, area, Fit.FIT, surface.dpi, keep_alpha=True)
    except _DECODE_ERRORS:
        return None  # a broken logo must not stop a clinical document
    # Hug the left edge of the area rather than centring.
    moved = Frame(area.x, picture.box.y, picture.box.width, picture.box.height)
    surface.picture(Picture(picture.image, moved, picture.source_px, picture.decoded_px))
    return moved


def _draw_header(surface: _Surface, doc: _Document, size: tuple[float, float],
                 margins: Margins, title: str) -> None:
    width = size[0]
    band = Frame(margins.left, 4.0, width - margins.left - margins.right, margins.top - 8.0)
    logo = _draw_logo(surface, doc, Frame(band.x, band.y, band.height * 3, band.height))
    x = band.x + (logo.width + 3.0 if logo else 0.0)
    baseline = band.y + band.height * 0.5 + 1.5
    name = _ellipsize(surface, doc.branding.clinic_name, 11, True, band.width * 0.45)
    surface.text(x, baseline, name, 11, bold=True, colour=doc.primary)
    room = band.right - x - surface.text_width(name, 11, True) - 6.0
    surface.text(band.right, baseline, _ellipsize(surface, title, 10, False, room), 10,
                 colour=doc.ink, align=Align.RIGHT)
    surface.line(band.x, margins.top - 3.0, band.right, margins.top - 3.0, doc.primary, 0.5)


def _draw_footer(surface: _Surface, doc: _Document, size: tuple[float, float],
                 margins: Margins, page: int) -> None:
    width, height = size
    top = height - margins.bottom + 2.0
    surface.line(margins.left, top, width - margins.right, top, RULE_GREY, 0.2)
    baseline = top + 4.0
    number = f"Page {page} of {doc.pages}"
    room = width - margins.left - margins.right - surface.text_width(number, 7) - 6.0
    surface.text(margins.left, baseline, _ellipsize(surface, doc.branding.footer_note, 7,
                                                    False, room), 7, colour=doc.ink)
    surface.text(width - margins.right, baseline, number, 7, colour=doc.ink, align=Align.RIGHT)


def _draw_placeholder(surface: _Surface, box: Frame, label: str, detail: str = "") -> None:
    surface.rect(box, PLACEHOLDER_GREY)
    size = min(10.0, max(MIN_TEXT_PT, box.height / 6 * PT_PER_MM))
    middle = box.y + box.height / 2
    surface.text(box.x + box.width / 2, middle,
                 _ellipsize(surface, label, size, True, box.width - 4), size, bold=True,
                 colour=PLACEHOLDER_INK, align=Align.CENTER)
    if detail:
        small = max(MIN_TEXT_PT, size * 0.75)
        surface.text(box.x + box.width / 2, middle + _leading(small) + 1,
                     _ellipsize(surface, detail, small, False, box.width - 4), small,
                     colour=PLACEHOLDER_INK, align=Align.CENTER)


def _place(surface: _Surface, doc: _Document, image_id: str, area: Frame, fit: Fit, *,
           page: int | None, cell: int | None, label: str) -> Picture | None:
    """Draws one image into ``area``; an undecodable one becomes a labelled placeholder."""
    try:
        picture = prepare_picture(doc.load(image_id), area, fit, surface.dpi)
    except _DECODE_ERRORS:
        doc.unreadable.append(image_id)
        _draw_placeholder(surface, area, f"{label} — unreadable", f"image {image_id}")
        return None
    surface.picture(picture)
    doc.placements.append(Placement(page, cell, image_id, picture.box, picture.source_px,
                                    picture.decoded_px, picture.image.size))
    return picture


# --- tables ----------------------------------------------------------------------------------


def _column_widths(table: TableData, width: float) -> list[float]:
    # Measurement names and interpretations need room; values and norms are short.
    if len(table.columns) == 4:
        fractions = [0.32, 0.13, 0.17, 0.38]
    else:
        fractions = [1 / len(table.columns)] * len(table.columns)
    return [f * width for f in fractions]


def _table_rows(surface: _Surface, table: TableData, widths: list[float], size: float
                ) -> list[tuple[list[list[str]], float, bool]]:
    """Each row as wrapped cell lines, its height in mm, and whether it is the header."""
    pad = 1.0
    rows = []
    for n, row in enumerate((table.columns, *table.rows)):
        header = n == 0
        cells = [_wrap(surface, text, size, header, w - 2 * pad) for text, w in zip(row, widths,
                                                                                    strict=False)]
        height = max(len(c) for c in cells) * _leading(size) + 2 * pad
        rows.append((cells, height, header))
    return rows


def _draw_table(surface: _Surface, doc: _Document, box: Frame, table: TableData) -> None:
    title_size = 11.0
    surface.text(box.x, box.y + _pt_to_mm(title_size), _ellipsize(
        surface, table.title, title_size, True, box.width), title_size, bold=True,
        colour=doc.primary)
    body = Frame(box.x, box.y + _leading(title_size) + 1.5, box.width,
                 box.height - _leading(title_size) - 1.5)
    widths = _column_widths(table, body.width)
    size = 9.0
    rows = _table_rows(surface, table, widths, size)
    while sum(h for _, h, _ in rows) > body.height and size > MIN_TEXT_PT:
        size = max(MIN_TEXT_PT, size - 0.5)
        rows = _table_rows(surface, table, widths, size)
    y = body.y
    accent = hex_colour(doc.branding.accent)
    for n, (cells, height, header) in enumerate(rows):
        if y + height > body.bottom + 1e-6:
            surface.text(body.x, min(y + _pt_to_mm(size), body.bottom), "…", size)
            break
        fill = accent if header else ROW_TINT if n % 2 == 0 else None
        if fill:
            surface.rect(Frame(body.x, y, body.width, height), fill)
        x = body.x
        for lines, width in zip(cells, widths, strict=False):
            for k, line in enumerate(lines):
                surface.text(x + 1.0, y + 1.0 + k * _leading(size) + _pt_to_mm(size) * 0.85,
                             _ellipsize(surface, line, size, header, width - 2.0), size,
                             bold=header, colour=doc.ink)
            x += width
        y += height
        surface.line(body.x, y, body.right, y, RULE_GREY, 0.15)


# --- pages -----------------------------------------------------------------------------------


def _draw_cell(surface: _Surface, doc: _Document, page: int, rc: ResolvedCell) -> None:
    cell = rc.cell
    content = cell.content
    if rc.missing:
        milestone = content.milestone if isinstance(content, ViewSlot) else None
        detail = f"{milestone}: {rc.explanation}" if milestone else rc.explanation
        _draw_placeholder(surface, cell.frame, f"{rc.label} — missing", detail)
        return
    picture = None
    if rc.image is not None:
        picture = _place(surface, doc, rc.image.id, cell.image_area, cell.options.fit,
                         page=page, cell=rc.index, label=rc.label)
        if picture is not None and cell.options.border:
            surface.rect(picture.box, None, doc.primary, 0.3)
    elif rc.text is not None and isinstance(content, TextBlock):
        _draw_text(surface, cell.frame, rc.text, content.size_pt, bold=content.bold,
                   align=content.align, middle=content.middle, colour=doc.ink)
    elif rc.table is not None:
        _draw_table(surface, doc, cell.frame, rc.table)
    elif isinstance(content, Logo):
        _draw_logo(surface, doc, cell.frame)
    if rc.caption and cell.caption_area is not None:
        area = cell.caption_area
        # Right under a letterboxed picture reads as its caption; the strip's top otherwise.
        top = picture.box.bottom if picture is not None else area.y
        surface.text(area.x + area.width / 2, top + 4.2,
                     _ellipsize(surface, rc.caption, 8, False, area.width), 8,
                     colour=doc.ink, align=Align.CENTER)


def _draw_collage(surface: _Surface, doc: _Document, page: int, collage: ResolvedCollage
                  ) -> None:
    t = collage.template
    if t.header:
        _draw_header(surface, doc, t.size_mm, t.margins, collage.title)
    for rc in collage.cells:
        _draw_cell(surface, doc, page, rc)
    if t.footer:
        _draw_footer(surface, doc, t.size_mm, t.margins, page)


def _title_area(surface: _Surface, doc: _Document, box: Frame, title: str) -> Frame:
    surface.text(box.x, box.y + 6.0, _ellipsize(surface, title, 16, True, box.width), 16,
                 bold=True, colour=doc.primary)
    return Frame(box.x, box.y + 11.0, box.width, box.height - 11.0)


def _content(size: tuple[float, float], margins: Margins) -> Frame:
    return Frame(margins.left, margins.top, size[0] - margins.left - margins.right,
                 size[1] - margins.top - margins.bottom)


def _draw_image_page(surface: _Surface, doc: _Document, page: int, spec: ImagePage,
                     box: Frame) -> None:
    area = _title_area(surface, doc, box, spec.title)
    if spec.caption:
        area = Frame(area.x, area.y, area.width, area.height - 10.0)
        surface.text(area.x + area.width / 2, area.bottom + 7.0,
                     _ellipsize(surface, spec.caption, 10, False, area.width), 10,
                     colour=doc.ink, align=Align.CENTER)
    _place(surface, doc, spec.image_id, area, Fit.FIT, page=page, cell=None, label="image")


def _draw_table_page(surface: _Surface, doc: _Document, spec: TablePage, box: Frame) -> None:
    area = _title_area(surface, doc, box, spec.title)
    if not spec.tables:
        return
    share = (area.height - 6.0 * (len(spec.tables) - 1)) / len(spec.tables)
    for n, table in enumerate(spec.tables):
        _draw_table(surface, doc, Frame(area.x, area.y + n * (share + 6.0), area.width, share),
                    table)


def _draw_timeline_page(surface: _Surface, doc: _Document, page: int, spec: TimelinePage,
                        box: Frame) -> None:
    area = _title_area(surface, doc, box, spec.title)
    entries = sorted(spec.entries, key=lambda e: e.when)
    if not entries:
        return
    gap = 4.0
    width = (area.width - gap * (len(entries) - 1)) / len(entries)
    thumbs = min(area.height * 0.6, width * 1.2)
    axis = area.y + thumbs + 8.0
    surface.line(area.x, axis, area.right, axis, doc.primary, 0.6)
    for n, entry in enumerate(entries):
        x = area.x + n * (width + gap)
        slot = Frame(x, area.y, width, thumbs)
        picture = None
        if entry.image_id:
            picture = _place(surface, doc, entry.image_id, slot, Fit.FIT, page=page, cell=None,
                             label=entry.label)
        else:
            _draw_placeholder(surface, slot, f"{entry.label} — no image")
        centre = x + width / 2
        stem = picture.box.bottom if picture is not None else slot.bottom
        surface.line(centre, stem + 1.0, centre, axis, doc.primary, 0.3)
        surface.rect(Frame(centre - 1.5, axis - 1.5, 3.0, 3.0), doc.primary)
        surface.text(centre, axis + 7.0, _ellipsize(surface, entry.label, 9, True, width), 9,
                     bold=True, colour=doc.ink, align=Align.CENTER)
        surface.text(centre, axis + 11.5, entry.when.isoformat(), 8, colour=doc.ink,
                     align=Align.CENTER)


def _page_geometry(spec: PresentationPage) -> tuple[tuple[float, float], Margins]:
    if isinstance(spec, CollagePage):
        t = spec.collage.template
        return t.size_mm, t.margins
    return page_dimensions(spec.page, spec.orientation), Margins()


def _draw_page(surface: _Surface, doc: _Document, page: int, spec: PresentationPage) -> None:
    if isinstance(spec, CollagePage):
        _draw_collage(surface, doc, page, spec.collage)
        return
    size, margins = _page_geometry(spec)
    title = {ImagePage: "Case presentation", TablePage: "Measurements",
             TimelinePage: "Treatment timeline"}[type(spec)]
    _draw_header(surface, doc, size, margins, title)
    box = _content(size, margins)
    if isinstance(spec, ImagePage):
        _draw_image_page(surface, doc, page, spec, box)
    elif isinstance(spec, TablePage):
        _draw_table_page(surface, doc, spec, box)
    else:
        _draw_timeline_page(surface, doc, page, spec, box)
    _draw_footer(surface, doc, size, margins, page)


# --- entry points ----------------------------------------------------------------------------


def _new_canvas(out: io.BytesIO, title: str, branding: Branding) -> pdf_canvas.Canvas:
    _register_pdf_fonts()
    # invariant: no timestamps or random ids, so the same input regenerates identical bytes.
    # The initial font names a font for every page; the default Helvetica is not embedded.
    canvas = pdf_canvas.Canvas(out, invariant=1, pageCompression=1, initialFontName=REGULAR)
    canvas.setTitle(title)
    canvas.setAuthor(branding.clinic_name)
    canvas.setCreator("orthovault")
    return canvas


def render_presentation(pages: Sequence[PresentationPage], load: Loader, *,
                        branding: Branding, dpi: float = PRINT_DPI,
                        title: str = "Case presentation") -> Rendered:
    """A multi-page PDF: collages, single images, measurement tables, a timeline."""
    if not pages:
        raise InvalidInput("empty_presentation", "a presentation needs at least one page")
    out = io.BytesIO()
    canvas = _new_canvas(out, title, branding)
    doc = _Document(branding, load, dpi, pages=len(pages))
    for number, spec in enumerate(pages, start=1):
        (width, height), _ = _page_geometry(spec)
        canvas.setPageSize((width * PT_PER_MM, height * PT_PER_MM))
        _draw_page(_PdfSurface(canvas, height, dpi), doc, number, spec)
        canvas.showPage()
    canvas.save()
    return Rendered(out.getvalue(), "application/pdf", len(pages), tuple(doc.placements),
                    tuple(doc.unreadable))


def render_pdf(collage: ResolvedCollage, load: Loader, *, branding: Branding,
               dpi: float = PRINT_DPI) -> Rendered:
    """One collage as a one-page, print-ready PDF (pictures at ``dpi``, 300 by default)."""
    return render_presentation([CollagePage(collage)], load, branding=branding, dpi=dpi,
                               title=collage.title or collage.template.name)


def render_raster(collage: ResolvedCollage, load: Loader, *, branding: Branding,
                  fmt: str = "png", dpi: float = RASTER_DPI) -> Rendered:
    """One collage as a PNG or JPEG at ``dpi`` (150 by default: screens and e-mail)."""
    fmt = fmt.lower()
    if fmt not in ("png", "jpeg", "jpg"):
        raise InvalidInput("unsupported_format", "raster collages are png or jpeg")
    width, height = collage.template.size_mm
    size = (round(width / MM_PER_INCH * dpi), round(height / MM_PER_INCH * dpi))
    page = Image.new("RGB", size, WHITE)
    doc = _Document(branding, load, dpi)
    _draw_collage(_RasterSurface(page, dpi), doc, 1, collage)
    out = io.BytesIO()
    if fmt == "png":
        page.save(out, "PNG", dpi=(dpi, dpi))
        media = "image/png"
    else:
        page.save(out, "JPEG", quality=JPEG_QUALITY, dpi=(round(dpi), round(dpi)))
        media = "image/jpeg"
    return Rendered(out.getvalue(), media, 1, tuple(doc.placements), tuple(doc.unreadable))


# --- the referral letter (flowing text: reportlab platypus) --------------------------------


_LETTER_MARGINS = Margins(top=40.0, right=22.0, bottom=22.0, left=22.0)


def _styles(branding: Branding) -> dict[str, ParagraphStyle]:
    ink = "#" + branding.text[1:]
    body = ParagraphStyle("body", fontName=REGULAR, fontSize=10.5, leading=14.5,
                          textColor=ink, spaceAfter=7)
    return {
        "body": body,
        "right": ParagraphStyle("right", parent=body, alignment=2),
        "subject": ParagraphStyle("subject", parent=body, fontName=BOLD),
        "caption": ParagraphStyle("caption", parent=body, fontSize=8, leading=10,
                                  alignment=1, spaceAfter=0),
        "cell": ParagraphStyle("cell", parent=body, fontSize=8, leading=10, spaceAfter=0),
        "head": ParagraphStyle("head", parent=body, fontName=BOLD, fontSize=8, leading=10,
                               spaceAfter=0),
        "table_title": ParagraphStyle("table_title", parent=body, fontName=BOLD,
                                      fontSize=11, textColor=branding.primary),
    }


def _para(text: str, style: ParagraphStyle) -> Paragraph:
    # User text is data, not reportlab's paragraph markup.
    return Paragraph(html.escape(text, quote=False).replace("\n", "<br/>"), style)


def _letterhead(doc: _Document, size: tuple[float, float]) -> Callable[..., None]:
    def draw(canvas: pdf_canvas.Canvas, template: SimpleDocTemplate) -> None:
        surface = _PdfSurface(canvas, size[1], doc.dpi)
        m = _LETTER_MARGINS
        band = Frame(m.left, 10.0, size[0] - m.left - m.right, 20.0)
        logo = _draw_logo(surface, doc, Frame(band.x, band.y, 45.0, band.height))
        x = band.x + (logo.width + 4.0 if logo else 0.0)
        surface.text(x, band.y + 9.0, doc.branding.clinic_name, 14, bold=True,
                     colour=doc.primary)
        for n, line in enumerate(doc.branding.address_lines[:4]):
            surface.text(band.right, band.y + 4.0 + n * 4.0, line, 8, colour=doc.ink,
                         align=Align.RIGHT)
        surface.line(band.x, band.bottom + 3.0, band.right, band.bottom + 3.0, doc.primary,
                     0.6)
        doc.pages = canvas.getPageNumber()
        surface.text(band.right, size[1] - 12.0, f"Page {canvas.getPageNumber()}", 7,
                     colour=doc.ink, align=Align.RIGHT)
        surface.text(band.x, size[1] - 12.0, doc.branding.footer_note, 7, colour=doc.ink)

    return draw


def _letter_images(letter: ReferralLetter, doc: _Document, width: float,
                   styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    flow: list[Flowable] = []
    per_row = 3
    gap = 4.0
    for start in range(0, len(letter.images), per_row):
        row = letter.images[start:start + per_row]
        cell_w = (width - gap * (per_row - 1)) / per_row
        pictures: list[Flowable | str] = []
        captions: list[Flowable | str] = []
        for item in row:
            picture = prepare_picture(doc.load(item.image_id), Frame(0, 0, cell_w, 55.0),
                                      Fit.FIT, doc.dpi)
            doc.placements.append(Placement(None, None, item.image_id, picture.box,
                                            picture.source_px, picture.decoded_px,
                                            picture.image.size))
            pictures.append(FlowImage(io.BytesIO(encode(picture)),
                                      width=picture.box.width * PT_PER_MM,
                                      height=picture.box.height * PT_PER_MM))
            captions.append(_para(item.caption, styles["caption"]) if item.caption else "")
        table = Table([pictures, captions], colWidths=[cell_w * PT_PER_MM] * len(row),
                      hAlign="LEFT")
        table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                                   ("ALIGN", (0, 0), (-1, -1), "CENTER"),
                                   ("FONTNAME", (0, 0), (-1, -1), REGULAR)]))
        flow += [table, Spacer(1, 4 * PT_PER_MM)]
    return flow


def _letter_table(data: TableData, branding: Branding, width: float,
                  styles: dict[str, ParagraphStyle]) -> list[Flowable]:
    rows = [[_para(c, styles["head"]) for c in data.columns]]
    rows += [[_para(c, styles["cell"]) for c in row] for row in data.rows]
    widths = [w * PT_PER_MM for w in _column_widths(data, width)]
    table = Table(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, 0), branding.accent),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, "#BEBEBE"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("FONTNAME", (0, 0), (-1, -1), REGULAR),
    ]))
    return [_para(data.title, styles["table_title"]), table, Spacer(1, 5 * PT_PER_MM)]


def render_referral(letter: ReferralLetter, load: Loader, *, branding: Branding,
                    dpi: float = PRINT_DPI) -> Rendered:
    """A referral letter: letterhead, addressee, body, images, ceph summary, signature."""
    _register_pdf_fonts()
    size = page_dimensions(letter.page, Orientation.PORTRAIT)
    m = _LETTER_MARGINS
    # platypus frames keep 6 pt of padding on each side.
    width = size[0] - m.left - m.right - 2 * _pt_to_mm(6)
    doc = _Document(branding, load, dpi)
    styles = _styles(branding)
    when = (letter.letter_date or date.today()).strftime("%d %B %Y")
    story: list[Flowable] = [
        _para(when, styles["right"]),
        _para("\n".join(letter.addressee), styles["body"]),
        Spacer(1, 4 * PT_PER_MM),
        _para(letter.subject, styles["subject"]),
        _para(letter.salutation, styles["body"]),
        *(_para(p, styles["body"]) for p in letter.paragraphs),
    ]
    story += _letter_images(letter, doc, width, styles)
    if letter.ceph_summary is not None:
        story += _letter_table(letter.ceph_summary, branding, width, styles)
    story.append(_para(letter.closing, styles["body"]))
    if letter.signature_image_id:
        signature = prepare_picture(load(letter.signature_image_id), Frame(0, 0, 50.0, 18.0),
                                    Fit.FIT, dpi, keep_alpha=True)
        story.append(FlowImage(io.BytesIO(encode(signature)),
                               width=signature.box.width * PT_PER_MM,
                               height=signature.box.height * PT_PER_MM, hAlign="LEFT"))
    else:
        story.append(Spacer(1, 12 * PT_PER_MM))
    story.append(_para(letter.signer_name, styles["subject"]))
    if letter.signer_title:
        story.append(_para(letter.signer_title, styles["body"]))
    out = io.BytesIO()
    template = SimpleDocTemplate(
        out, pagesize=(size[0] * PT_PER_MM, size[1] * PT_PER_MM),
        leftMargin=m.left * PT_PER_MM, rightMargin=m.right * PT_PER_MM,
        topMargin=m.top * PT_PER_MM, bottomMargin=m.bottom * PT_PER_MM,
        title="Referral letter", author=branding.clinic_name, creator="orthovault",
        invariant=1, initialFontName=REGULAR,
    )
    furniture = _letterhead(doc, size)
    template.build(story, onFirstPage=furniture, onLaterPages=furniture)
    return Rendered(out.getvalue(), "application/pdf", doc.pages, tuple(doc.placements))

