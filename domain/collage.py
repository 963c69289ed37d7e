"""Collage templates as data, the pre-built layouts, and choosing the image for each cell.

A template is a page (size, orientation, margins) and cells, each a frame in millimetres on
the page (origin top-left, y down, as a person reads the sheet) bound to what fills it: a
protocol view at a milestone, an explicit image, a text block, the clinic logo or a
cephalometric measurement table. Templates are validated when built, so an invalid one
never exists; errors carry stable codes.

``resolve`` is pure: given the patient's image metadata it picks the image for every cell,
says why ("best quality (0.92) among 3 IV07 at debond"), and lists the slots it could not
fill, which the renderer draws as labelled placeholders. Pixels and PDF are
``adapters/collage_renderer.py``.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from domain.categorisation import RadiographType
from domain.cephalometry.analyses import ANALYSES, AnalysisResult, CephMeasurement
from domain.errors import Conflict, InvalidInput
from domain.patient import ConsentScope
from domain.views import VIEWS

MM_PER_INCH = 25.4
# Room kept at the bottom of a cell for its caption, and in the margins for header/footer.
CAPTION_MM = 6.0
HEADER_MM = 12.0
FOOTER_MM = 8.0
MAX_CELLS = 64
# Untagged images this close to a milestone's date stand in for it (a visit a few weeks
# off is still the same treatment stage; two months off usually is not).
MILESTONE_WINDOW_DAYS = 45
# Unscored images rank as average rather than worst: the quality worker may simply not
# have run yet, and radiographs are never scored.
NEUTRAL_QUALITY = 0.5
_EPS = 1e-6

LATEST = "latest"
FIRST = "first"

RADIOGRAPH_VIEWS: dict[str, str] = {
    RadiographType.LATERAL_CEPH.value: "lateral cephalogram",
    RadiographType.PA_CEPH.value: "postero-anterior cephalogram",
    RadiographType.PANORAMIC.value: "panoramic radiograph",
}

PLACEHOLDERS = frozenset({
    "patient_name", "patient_id", "birth_date", "date", "milestone", "clinic_name",
    "doctor_name", "title", "view", "view_name", "captured_at",
})

_MILESTONE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")
_HEX = re.compile(r"^#[0-9A-Fa-f]{6}$")


# --- page geometry -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageSize:
    name: str
    width_mm: float  # as printed in portrait
    height_mm: float


A4 = PageSize("A4", 210.0, 297.0)
LETTER = PageSize("Letter", 215.9, 279.4)
PAGE_SIZES: dict[str, PageSize] = {"a4": A4, "letter": LETTER}


def custom_page(width_mm: float, height_mm: float, name: str = "custom") -> PageSize:
    for value in (width_mm, height_mm):
        if not (math.isfinite(value) and 50.0 <= value <= 1200.0):
            raise InvalidInput("invalid_page_size", "page sides must be 50 to 1200 mm")
    return PageSize(name, float(width_mm), float(height_mm))


class Orientation(StrEnum):
    PORTRAIT = "portrait"
    LANDSCAPE = "landscape"


@dataclass(frozen=True, slots=True)
class Margins:
    top: float = 20.0
    right: float = 10.0
    bottom: float = 14.0
    left: float = 10.0


@dataclass(frozen=True, slots=True)
class Frame:
    """A rectangle in mm on the page, top-left origin."""

    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def bottom(self) -> float:
        return self.y + self.height

    def overlaps(self, other: Frame) -> bool:
        # Touching edges is not overlapping: adjacent cells share a border line.
        return (
            self.x < other.right - _EPS
            and other.x < self.right - _EPS
            and self.y < other.bottom - _EPS
            and other.y < self.bottom - _EPS
        )

    def contains(self, other: Frame) -> bool:
        return (
            other.x >= self.x - _EPS
            and other.y >= self.y - _EPS
            and other.right <= self.right + _EPS
            and other.bottom <= self.bottom + _EPS
        )

    def inset(self, mm: float) -> Frame:
        return Frame(self.x + mm, self.y + mm, self.width - 2 * mm, self.height - 2 * mm)


class Fit(StrEnum):
    FIT = "fit"  # the whole image, letterboxed
    FILL = "fill"  # covers the frame, cropped centrally


def fitted_box(area: Frame, width_px: int, height_px: int, fit: Fit) -> Frame:
    """Where a ``width_px`` x ``height_px`` picture lands in ``area``: letterboxed and centred
    for ``fit``, the whole area for ``fill`` (the picture is cropped instead)."""
    if fit is Fit.FILL or width_px <= 0 or height_px <= 0:
        return area
    scale = min(area.width / width_px, area.height / height_px)
    width, height = width_px * scale, height_px * scale
    return Frame(area.x + (area.width - width) / 2, area.y + (area.height - height) / 2,
                 width, height)


def cover_crop(width_px: int, height_px: int, area: Frame) -> tuple[float, float, float, float]:
    """The central region of the picture (left, top, right, bottom in its pixels) that has
    the area's aspect ratio, for ``fill``."""
    aspect = area.width / area.height
    if width_px / height_px > aspect:
        keep = height_px * aspect
        return ((width_px - keep) / 2, 0.0, (width_px + keep) / 2, float(height_px))
    keep = width_px / aspect
    return (0.0, (height_px - keep) / 2, float(width_px), (height_px + keep) / 2)


def target_pixels(box: Frame, dpi: float, available: tuple[float, float]) -> tuple[int, int]:
    """Pixels a picture needs to print ``box`` at ``dpi``, never more than the source has
    (upscaling adds bytes, not detail)."""
    want_w, want_h = box.width / MM_PER_INCH * dpi, box.height / MM_PER_INCH * dpi
    scale = min(1.0, available[0] / want_w, available[1] / want_h)
    return max(1, round(want_w * scale)), max(1, round(want_h * scale))


def page_dimensions(page: PageSize, orientation: Orientation) -> tuple[float, float]:
    short, long = sorted((page.width_mm, page.height_mm))
    return (long, short) if orientation is Orientation.LANDSCAPE else (short, long)


def content_box(page: PageSize, orientation: Orientation, margins: Margins) -> Frame:
    width, height = page_dimensions(page, orientation)
    return Frame(
        margins.left,
        margins.top,
        width - margins.left - margins.right,
        height - margins.top - margins.bottom,
    )


# --- what a cell shows -----------------------------------------------------------------------


class Align(StrEnum):
    LEFT = "left"
    CENTER = "center"
    RIGHT = "right"


@dataclass(frozen=True, slots=True)
class ViewSlot:
    """A protocol view (ADA-1100 code, or a radiograph type) at a milestone selector:
    ``latest``, ``first`` or a milestone name such as ``initial`` or ``debond``."""

    view: str
    milestone: str = LATEST


@dataclass(frozen=True, slots=True)
class ImageRef:
    image_id: str


@dataclass(frozen=True, slots=True)
class TextBlock:
    text: str
    size_pt: float = 10.0
    bold: bool = False
    align: Align = Align.LEFT
    middle: bool = False  # centred vertically in the frame
    milestone: str | None = None  # what {milestone} means here, else the collage's


@dataclass(frozen=True, slots=True)
class Logo:
    pass


@dataclass(frozen=True, slots=True)
class MeasurementTable:
    analysis: str = "steiner"
    keys: tuple[str, ...] = ()  # measurement keys to show, in order; all when empty
    title: str | None = None


Content = ViewSlot | ImageRef | TextBlock | Logo | MeasurementTable


@dataclass(frozen=True, slots=True)
class CellOptions:
    fit: Fit = Fit.FIT
    caption: str | None = None  # placeholders allowed, e.g. "{view_name}, {captured_at}"
    border: bool = False


@dataclass(frozen=True, slots=True)
class Cell:
    frame: Frame
    content: Content
    options: CellOptions = field(default_factory=CellOptions)

    @property
    def image_area(self) -> Frame:
        """Where the picture goes: the frame less the caption strip."""
        if not self.options.caption:
            return self.frame
        f = self.frame
        return Frame(f.x, f.y, f.width, max(f.height - CAPTION_MM, _EPS))

    @property
    def caption_area(self) -> Frame | None:
        if not self.options.caption:
            return None
        f = self.frame
        return Frame(f.x, f.bottom - CAPTION_MM, f.width, CAPTION_MM)


def slot_label(content: Content) -> str:
    """How a slot is named in explanations and on a placeholder."""
    match content:
        case ViewSlot(view=view):
            return view
        case ImageRef(image_id=image_id):
            return f"image {image_id}"
        case MeasurementTable(analysis=analysis):
            return f"{ANALYSES[analysis][0] if analysis in ANALYSES else analysis} table"
        case Logo():
            return "logo"
        case _:
            return "text"


def view_name(code: str) -> str:
    if code in VIEWS:
        return VIEWS[code].name
    return RADIOGRAPH_VIEWS.get(code, code)


@dataclass(frozen=True, slots=True)
class CollageTemplate:
    """Validated on construction: every instance is renderable."""

    name: str
    cells: tuple[Cell, ...]
    page: PageSize = A4
    orientation: Orientation = Orientation.PORTRAIT
    margins: Margins = field(default_factory=Margins)
    title: str = "{patient_name}"
    header: bool = True
    footer: bool = True
    allow_overlap: bool = False

    def __post_init__(self) -> None:
        validate(self)

    @property
    def size_mm(self) -> tuple[float, float]:
        return page_dimensions(self.page, self.orientation)

    @property
    def content(self) -> Frame:
        return content_box(self.page, self.orientation, self.margins)


# --- validation ------------------------------------------------------------------------------


def _finite_positive(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def check_placeholders(text: str, where: str) -> None:
    """Only plain known names: ``{patient_name}`` yes, ``{x.attr}``/``{x!r}``/``{x:>9}`` no,
    so a template can never reach into objects or be used to probe them."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError:
        raise InvalidInput("invalid_text", f"{where}: unbalanced braces") from None
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            raise InvalidInput(
                "unknown_placeholder",
                f"{where}: unknown placeholder {{{name[:32]}}}; known: "
                + ", ".join(sorted(PLACEHOLDERS)),
            )


def check_milestone(selector: str, where: str) -> None:
    if not isinstance(selector, str) or not _MILESTONE.match(selector):
        raise InvalidInput(
            "invalid_milestone",
            f"{where}: milestone must be 'latest', 'first' or a name of letters, digits, "
            "'_', '-', '.' or spaces (at most 64)",
        )


def check_view(view: str, where: str) -> None:
    if view not in VIEWS and view not in RADIOGRAPH_VIEWS:
        raise InvalidInput(
            "unknown_view",
            f"{where}: {view[:16]!r} is not a known ADA-1100 view code or radiograph type",
        )


def _check_content(content: Content, where: str) -> None:
    match content:
        case ViewSlot(view=view, milestone=milestone):
            check_view(view, where)
            check_milestone(milestone, where)
        case ImageRef(image_id=image_id):
            if not image_id or len(image_id) > 128:
                raise InvalidInput("invalid_image_id", f"{where}: image id must be 1-128 chars")
        case TextBlock() as block:
            if not (_finite_positive(block.size_pt) and 4 <= block.size_pt <= 96):
                raise InvalidInput("invalid_font_size", f"{where}: font size must be 4-96 pt")
            if len(block.text) > 4000:
                raise InvalidInput("text_too_long", f"{where}: text is over 4000 characters")
            check_placeholders(block.text, where)
            if block.milestone is not None:
                check_milestone(block.milestone, where)
        case MeasurementTable(analysis=analysis, title=title):
            if analysis not in ANALYSES:
                raise InvalidInput(
                    "unknown_analysis",
                    f"{where}: unknown analysis {analysis[:32]!r}; known: {', '.join(ANALYSES)}",
                )
            if title:
                check_placeholders(title, where)
        case Logo():
            pass
        case _:
            raise InvalidInput("invalid_cell", f"{where}: unknown cell content")


def _check_page(template: CollageTemplate) -> Frame:
    m = template.margins
    if any(not (math.isfinite(v) and v >= 0) for v in (m.top, m.right, m.bottom, m.left)):
        raise InvalidInput("invalid_margins", "margins must be zero or positive")
    if template.header and m.top < HEADER_MM:
        raise InvalidInput("invalid_margins", f"a header needs a top margin of {HEADER_MM} mm")
    if template.footer and m.bottom < FOOTER_MM:
        raise InvalidInput(
            "invalid_margins", f"a footer needs a bottom margin of {FOOTER_MM} mm"
        )
    box = template.content
    if box.width <= 10 or box.height <= 10:
        raise InvalidInput("invalid_margins", "the margins leave no room on the page")
    return box


def validate(template: CollageTemplate) -> None:
    """Raises ``InvalidInput`` with a stable code for the first problem found."""
    if not template.name or len(template.name) > 120:
        raise InvalidInput("invalid_template_name", "a template needs a name of 1-120 chars")
    if not template.cells:
        raise InvalidInput("empty_template", "a template needs at least one cell")
    if len(template.cells) > MAX_CELLS:
        raise InvalidInput("too_many_cells", f"a template has at most {MAX_CELLS} cells")
    check_placeholders(template.title, "title")
    box = _check_page(template)
    for index, cell in enumerate(template.cells):
        where = f"cell {index}"
        f = cell.frame
        if not all(map(_finite_positive, (f.width, f.height))) or not all(
            isinstance(v, int | float) and math.isfinite(v) for v in (f.x, f.y)
        ):
            raise InvalidInput("invalid_cell_size", f"{where}: width and height must be > 0")
        if cell.options.caption and f.height <= CAPTION_MM + 1:
            raise InvalidInput(
                "invalid_cell_size", f"{where}: too low for a caption ({CAPTION_MM} mm)"
            )
        if not box.contains(f):
            raise InvalidInput(
                "cell_outside_page",
                f"{where}: frame ({f.x:g}, {f.y:g}, {f.width:g}x{f.height:g} mm) is outside "
                f"the printable area ({box.x:g}, {box.y:g}, {box.width:g}x{box.height:g} mm)",
            )
        _check_content(cell.content, where)
        if cell.options.caption:
            check_placeholders(cell.options.caption, where)
    if not template.allow_overlap:
        for i, a in enumerate(template.cells):
            for j in range(i + 1, len(template.cells)):
                if a.frame.overlaps(template.cells[j].frame):
                    raise InvalidInput("cells_overlap", f"cells {i} and {j} overlap")


# --- pre-built layouts -----------------------------------------------------------------------


def grid(area: Frame, rows: int, cols: int, gutter: float = 3.0) -> list[list[Frame]]:
    """``rows`` x ``cols`` equal frames filling ``area``, ``gutter`` mm apart."""
    width = (area.width - gutter * (cols - 1)) / cols
    height = (area.height - gutter * (rows - 1)) / rows
    return [
        [Frame(area.x + c * (width + gutter), area.y + r * (height + gutter), width, height)
         for c in range(cols)]
        for r in range(rows)
    ]


def _photo_cell(view: str, frame: Frame, milestone: str, caption: str | None = None) -> Cell:
    return Cell(frame, ViewSlot(view, milestone), CellOptions(caption=caption))


ABO_EIGHT_ROWS: tuple[tuple[str | None, ...], ...] = (
    ("EV15", "EV19", "EV01"),
    ("IV25", None, "IV27"),  # the centre holds the patient block
    ("IV01", "IV07", "IV18"),
)
FULL_SERIES_ROWS: tuple[tuple[str, ...], ...] = (
    ("EV15", "EV19", "EV01", "EV08"),
    ("EV38", "IV01", "IV07", "IV18"),
    ("IV25", "IV27", "IV11", "IV14"),
)
PATIENT_BLOCK = "{patient_name}\n{milestone}\n{date}"


def abo_eight(
    page: PageSize = A4, milestone: str = LATEST, margins: Margins | None = None
) -> CollageTemplate:
    """The ABO 8-photo composite: 3 extraoral, 2 occlusal, 3 intraoral in occlusion."""
    margins = margins or Margins()
    box = content_box(page, Orientation.LANDSCAPE, margins)
    frames = grid(box, 3, 3)
    cells = []
    for r, row in enumerate(ABO_EIGHT_ROWS):
        for c, view in enumerate(row):
            if view is None:
                # With "latest"/"first", {milestone} names the visit the photos come from.
                named = None if milestone in (LATEST, FIRST) else milestone
                block = TextBlock(PATIENT_BLOCK, size_pt=12, align=Align.CENTER, middle=True,
                                  milestone=named)
                cells.append(Cell(frames[r][c], block))
            else:
                cells.append(_photo_cell(view, frames[r][c], milestone))
    return CollageTemplate("ABO 8-photo", tuple(cells), page, Orientation.LANDSCAPE, margins,
                           title="{patient_name} — ABO records — {milestone}")


def full_series(
    page: PageSize = A4, milestone: str = LATEST, margins: Margins | None = None
) -> CollageTemplate:
    """The full 12-view photo series, captioned with each view's name."""
    margins = margins or Margins()
    frames = grid(content_box(page, Orientation.LANDSCAPE, margins), 3, 4)
    cells = tuple(
        _photo_cell(view, frames[r][c], milestone, "{view} {view_name}")
        for r, row in enumerate(FULL_SERIES_ROWS)
        for c, view in enumerate(row)
    )
    return CollageTemplate("Full 12-view series", cells, page, Orientation.LANDSCAPE, margins,
                           title="{patient_name} — photo series — {milestone}")


def before_after(
    view: str = "EV19",
    before: str = "initial",
    after: str = LATEST,
    page: PageSize = A4,
    margins: Margins | None = None,
) -> CollageTemplate:
    margins = margins or Margins()
    left, right = grid(content_box(page, Orientation.LANDSCAPE, margins), 1, 2, gutter=4)[0]
    cells = (
        _photo_cell(view, left, before, "Before — {milestone}, {captured_at}"),
        _photo_cell(view, right, after, "After — {milestone}, {captured_at}"),
    )
    return CollageTemplate("Before/after", cells, page, Orientation.LANDSCAPE, margins,
                           title="{patient_name} — before and after — {view_name}")


def best_grid(count: int, area: Frame, aspect: float = 1.5, gutter: float = 3.0,
              caption: float = CAPTION_MM) -> tuple[int, int]:
    """(rows, cols) giving ``count`` pictures of ``aspect`` the largest size in ``area``."""
    best: tuple[float, int, int] = (-1.0, 1, count)
    for cols in range(1, count + 1):
        rows = math.ceil(count / cols)
        width = (area.width - gutter * (cols - 1)) / cols
        height = (area.height - gutter * (rows - 1)) / rows - caption
        if width <= 0 or height <= 0:
            continue
        picture_width = min(width, height * aspect)
        best = max(best, (picture_width, rows, cols), key=lambda t: t[0])
    return best[1], best[2]


def _check_milestones(milestones: Sequence[str], most: int = 24) -> None:
    if not 1 <= len(milestones) <= most:
        raise InvalidInput("invalid_milestones", f"give 1 to {most} milestones")
    for m in milestones:
        check_milestone(m, "milestones")


def progress_timeline(
    view: str,
    milestones: Sequence[str],
    page: PageSize = A4,
    margins: Margins | None = None,
) -> CollageTemplate:
    """One view across N milestones, in reading order, on the grid that makes them largest."""
    check_view(view, "view")
    _check_milestones(milestones)
    margins = margins or Margins()
    box = content_box(page, Orientation.LANDSCAPE, margins)
    rows, cols = best_grid(len(milestones), box)
    frames = [f for row in grid(box, rows, cols) for f in row]
    cells = tuple(
        _photo_cell(view, frames[i], m, "{milestone}, {captured_at}")
        for i, m in enumerate(milestones)
    )
    return CollageTemplate("Progress timeline", cells, page, Orientation.LANDSCAPE, margins,
                           title="{patient_name} — progress — {view} {view_name}")


def ceph_pano_sheet(
    page: PageSize = A4,
    milestone: str = LATEST,
    analysis: str = "steiner",
    margins: Margins | None = None,
) -> CollageTemplate:
    """Lateral ceph on the left (portrait film), panoramic top right, analysis below it."""
    margins = margins or Margins()
    box = content_box(page, Orientation.LANDSCAPE, margins)
    gutter = 4.0
    left_width = box.width * 0.45
    right = Frame(box.x + left_width + gutter, box.y, box.width - left_width - gutter,
                  box.height)
    pano_height = min(right.width / 2.0 + CAPTION_MM, right.height * 0.5)
    cells = (
        Cell(Frame(box.x, box.y, left_width, box.height),
             ViewSlot(RadiographType.LATERAL_CEPH.value, milestone),
             CellOptions(caption="Lateral cephalogram, {captured_at}")),
        Cell(Frame(right.x, right.y, right.width, pano_height),
             ViewSlot(RadiographType.PANORAMIC.value, milestone),
             CellOptions(caption="Panoramic radiograph, {captured_at}")),
        Cell(Frame(right.x, right.y + pano_height + gutter, right.width,
                   right.height - pano_height - gutter),
             MeasurementTable(analysis)),
    )
    return CollageTemplate("Ceph and panoramic", cells, page, Orientation.LANDSCAPE, margins,
                           title="{patient_name} — radiographs — {milestone}")


SMILE_VIEWS = ("EV19", "EV38")


def smile_progress(
    milestones: Sequence[str], page: PageSize = A4, margins: Margins | None = None
) -> CollageTemplate:
    """Frontal smile above close-up smile, one column per milestone."""
    _check_milestones(milestones, most=8)
    margins = margins or Margins()
    frames = grid(content_box(page, Orientation.LANDSCAPE, margins), 2, len(milestones))
    cells = tuple(
        _photo_cell(view, frames[r][c], m, "{milestone}, {captured_at}")
        for r, view in enumerate(SMILE_VIEWS)
        for c, m in enumerate(milestones)
    )
    return CollageTemplate("Smile progress", cells, page, Orientation.LANDSCAPE, margins,
                           title="{patient_name} — smile progress")


LAYOUTS: dict[str, Callable[..., CollageTemplate]] = {
    "abo_8": abo_eight,
    "full_series_12": full_series,
    "before_after": before_after,
    "progress_timeline": progress_timeline,
    "ceph_pano": ceph_pano_sheet,
    "smile_progress": smile_progress,
}


def prebuilt(name: str, **params: Any) -> CollageTemplate:
    if name not in LAYOUTS:
        raise InvalidInput(
            "unknown_layout", f"unknown layout {name[:40]!r}; known: {', '.join(LAYOUTS)}"
        )
    try:
        return LAYOUTS[name](**params)
    except TypeError:
        raise InvalidInput("invalid_layout_parameters", f"bad parameters for {name}") from None


# --- resolving a template against the patient's images --------------------------------------


class Purpose(StrEnum):
    CLINICAL = "clinical"
    MARKETING = "marketing"
    EDUCATIONAL = "educational"


# Clinical use is the patient's own care, covered by the consent the images were taken
# under; anything shown outside it needs the patient's consent for that use.
REQUIRED_SCOPE: dict[Purpose, ConsentScope] = {
    Purpose.MARKETING: ConsentScope.MARKETING,
    Purpose.EDUCATIONAL: ConsentScope.EDUCATIONAL,
}


@dataclass(frozen=True, slots=True)
class CollageImage:
    """What resolve needs to know of one image (from the gallery read model)."""

    id: str
    view: str | None
    milestone: str | None
    captured_at: datetime
    quality: float | None = None  # 0..1, higher is better
    deleted: bool = False
    consent_scopes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TableData:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class ResolvedCell:
    index: int
    cell: Cell
    image: CollageImage | None = None
    text: str | None = None
    caption: str | None = None
    table: TableData | None = None
    missing: bool = False
    explanation: str = ""

    @property
    def label(self) -> str:
        return slot_label(self.cell.content)


@dataclass(frozen=True, slots=True)
class MissingSlot:
    index: int
    label: str  # e.g. "IV07"
    milestone: str | None
    reason: str

    @property
    def placeholder(self) -> str:
        return f"{self.label} — missing"


@dataclass(frozen=True, slots=True)
class ResolvedCollage:
    template: CollageTemplate
    purpose: Purpose
    title: str
    cells: tuple[ResolvedCell, ...]
    missing: tuple[MissingSlot, ...]
    fields: Mapping[str, str]

    @property
    def image_ids(self) -> tuple[str, ...]:
        return tuple(c.image.id for c in self.cells if c.image is not None)


def fill_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Substitutes known placeholders; absent values become empty, never ``{name}``."""
    out = []
    for literal, name, _spec, _conversion in string.Formatter().parse(text):
        out.append(literal)
        if name is not None:
            out.append(values.get(name, ""))
    return "".join(out)


def _day(moment: datetime) -> date:
    return moment.date()


def _quality(image: CollageImage) -> float:
    return NEUTRAL_QUALITY if image.quality is None else image.quality


def _session(image: CollageImage) -> str:
    # One visit: its milestone when linked, else its calendar day.
    return image.milestone.casefold() if image.milestone else _day(image.captured_at).isoformat()


@dataclass(frozen=True, slots=True)
class _Stage:
    """The candidates for one slot at its milestone, and how to describe them."""

    images: tuple[CollageImage, ...]
    where: str  # "at debond", "in the latest session (debond, 2024-05-02)"
    target: date | None = None  # the milestone's date, when closeness matters
    by_closeness: bool = False  # untagged stand-ins: the nearest visit wins over quality


def _stage(
    images: Sequence[CollageImage], selector: str, dates: Mapping[str, date]
) -> _Stage | None:
    if selector in (LATEST, FIRST):
        pick = max if selector == LATEST else min
        anchor = pick(images, key=lambda i: i.captured_at)
        session = _session(anchor)
        chosen = tuple(i for i in images if _session(i) == session)
        described = anchor.milestone or _day(anchor.captured_at).isoformat()
        return _Stage(chosen, f"in the {selector} session ({described})")
    key = selector.casefold()
    target = dates.get(key)
    tagged = tuple(i for i in images if i.milestone and i.milestone.casefold() == key)
    if tagged:
        return _Stage(tagged, f"at {selector}", target)
    if target is None:
        return None
    near = tuple(
        i
        for i in images
        if not i.milestone and abs((_day(i.captured_at) - target).days) <= MILESTONE_WINDOW_DAYS
    )
    if not near:
        return None
    where = f"untagged within {MILESTONE_WINDOW_DAYS} days of {selector} ({target.isoformat()})"
    return _Stage(near, where, target, by_closeness=True)


def _days_off(image: CollageImage, target: date | None) -> int:
    return 0 if target is None else abs((_day(image.captured_at) - target).days)


def _criterion(image: CollageImage, criterion: str, stage: _Stage) -> float:
    """Smaller is better for every criterion, so one sort serves them all."""
    if criterion == "quality":
        return -round(_quality(image), 3)
    if criterion == "closeness":
        return float(_days_off(image, stage.target))
    return -image.captured_at.timestamp()  # recency


def _rank(stage: _Stage) -> tuple[list[CollageImage], tuple[str, ...]]:
    """Candidates best first, and the ranking criteria in the order they were applied."""
    criteria = ("quality", "closeness", "recency")
    if stage.by_closeness:
        criteria = ("closeness", "quality", "recency")
    ordered = sorted(
        stage.images, key=lambda i: (tuple(_criterion(i, c, stage) for c in criteria), i.id)
    )
    return ordered, criteria


def _explain(view: str, stage: _Stage, ordered: list[CollageImage],
             criteria: tuple[str, ...]) -> str:
    best = ordered[0]
    what = f"{view} {stage.where}"
    if len(ordered) == 1:
        return f"only {what}"
    second = ordered[1]
    decider = next(
        (c for c in criteria if _criterion(best, c, stage) != _criterion(second, c, stage)),
        "id",
    )
    among = f"among {len(ordered)} {what}"
    if decider == "quality":
        return f"best quality ({_quality(best):.2f}) {among}"
    if decider == "closeness":
        return f"closest to the milestone date ({_days_off(best, stage.target)} days off) {among}"
    if decider == "recency":
        return f"most recent of equal quality {among}"
    return f"first by id of equal quality {among}"


def _consented(images: Iterable[CollageImage], scope: ConsentScope | None) -> list[CollageImage]:
    return [i for i in images if scope is None or scope.value in i.consent_scopes]


def _refuse(scope: ConsentScope, purpose: Purpose, image_id: str) -> Conflict:
    return Conflict(
        "consent_required",
        f"{scope.value} consent is required to use image {image_id} for {purpose.value} use",
    )


def _pick_view(
    slot: ViewSlot,
    images: Sequence[CollageImage],
    dates: Mapping[str, date],
    purpose: Purpose,
) -> tuple[CollageImage | None, str]:
    of_view = [i for i in images if i.view == slot.view]
    live = [i for i in of_view if not i.deleted]
    if not live:
        return None, f"no {slot.view} image" + (" (all deleted)" if of_view else "")
    stage = _stage(live, slot.milestone, dates)
    if stage is None:
        return None, f"no {slot.view} image at {slot.milestone}"
    scope = REQUIRED_SCOPE.get(purpose)
    allowed = _consented(stage.images, scope)
    if scope is not None and not allowed:
        raise _refuse(scope, purpose, stage.images[0].id)
    ordered, criteria = _rank(replace(stage, images=tuple(allowed)))
    explanation = _explain(slot.view, stage, ordered, criteria)
    skipped_deleted = len(of_view) - len(live)
    if skipped_deleted:
        explanation += f"; {skipped_deleted} deleted skipped"
    if scope is not None and len(allowed) < len(stage.images):
        explanation += f"; {len(stage.images) - len(allowed)} without {scope.value} consent skipped"
    return ordered[0], explanation


def _pick_explicit(
    ref: ImageRef, images: Sequence[CollageImage], purpose: Purpose
) -> tuple[CollageImage | None, str]:
    image = next((i for i in images if i.id == ref.image_id), None)
    if image is None:
        return None, f"image {ref.image_id} is not available"
    if image.deleted:
        return None, f"image {ref.image_id} is deleted"
    scope = REQUIRED_SCOPE.get(purpose)
    if scope is not None and scope.value not in image.consent_scopes:
        raise _refuse(scope, purpose, image.id)
    return image, "chosen explicitly"


def ceph_table(result: AnalysisResult, keys: Sequence[str] = (), title: str | None = None
               ) -> TableData:
    """A printable table of one analysis: measurement, value, norm, interpretation."""
    measurements = result.measurements
    if keys:
        by_key = {m.key: m for m in measurements}
        measurements = tuple(by_key[k] for k in keys if k in by_key)
    return TableData(
        title=title or f"{result.name} analysis",
        columns=("Measurement", "Value", "Norm", "Interpretation"),
        rows=tuple(_table_row(m) for m in measurements),
    )


_UNIT = {"deg": "°", "mm": " mm", "%": " %"}


def _table_row(m: CephMeasurement) -> tuple[str, str, str, str]:
    unit = _UNIT.get(m.unit, f" {m.unit}")
    value = f"{m.value:.1f}{unit}" if m.computable and m.value is not None else "—"
    norm = "—"
    if m.norm is not None and m.norm.mean is not None:
        sd = f" ± {m.norm.sd:g}" if m.norm.sd is not None else ""
        norm = f"{m.norm.mean:g}{sd}{unit}"
    elif m.norm is not None and m.norm.range_low is not None and m.norm.range_high is not None:
        norm = f"{m.norm.range_low:g}\u2013{m.norm.range_high:g}{unit}"
    interpretation = m.interpretation if m.computable else "not computable"
    return (m.name, value, norm, interpretation)


def _image_values(
    image: CollageImage | None, content: Content, base: Mapping[str, str]
) -> dict[str, str]:
    """Placeholder values for an image cell's caption: its own view, milestone and date."""
    values = dict(base)
    view = content.view if isinstance(content, ViewSlot) else image.view if image else None
    if view:
        values["view"], values["view_name"] = view, view_name(view)
    if isinstance(content, ViewSlot) and content.milestone not in (LATEST, FIRST):
        values["milestone"] = content.milestone
    elif image is not None and image.milestone:
        values["milestone"] = image.milestone
    if image is not None:
        values["captured_at"] = _day(image.captured_at).isoformat()
    return values


Pick = tuple[CollageImage | None, str]


def _pick(
    content: Content,
    images: Sequence[CollageImage],
    dates: Mapping[str, date],
    purpose: Purpose,
) -> Pick | None:
    if isinstance(content, ViewSlot):
        return _pick_view(content, images, dates, purpose)
    if isinstance(content, ImageRef):
        return _pick_explicit(content, images, purpose)
    return None


def _common_milestone(picks: Iterable[Pick]) -> str | None:
    milestones = {image.milestone for image, _ in picks if image and image.milestone}
    return milestones.pop() if len(milestones) == 1 else None


def resolve(
    template: CollageTemplate,
    available_images: Sequence[CollageImage],
    *,
    purpose: Purpose = Purpose.CLINICAL,
    milestone_dates: Mapping[str, date] | None = None,
    analyses: Sequence[AnalysisResult] = (),
    fields: Mapping[str, str] | None = None,
    has_logo: bool = True,
) -> ResolvedCollage:
    """Picks what fills every cell; raises ``Conflict("consent_required")`` when the purpose
    needs a consent scope that the images for a slot lack.

    ``fields`` gives placeholder values (patient_name, date, clinic_name, ...);
    ``milestone_dates`` maps milestone names to their dates (from the treatment module).
    """
    dates = {k.casefold(): v for k, v in (milestone_dates or {}).items()}
    base = {k: str(v) for k, v in (fields or {}).items() if k in PLACEHOLDERS}
    picks: dict[int, Pick] = {}
    for index, cell in enumerate(template.cells):
        pick = _pick(cell.content, available_images, dates, purpose)
        if pick is not None:
            picks[index] = pick
    # "{milestone}" in a title or text means the visit shown, when every photo is from one.
    common = _common_milestone(picks.values())
    if common and "milestone" not in base:
        base["milestone"] = common
    first_view = next(
        (c.content.view for c in template.cells if isinstance(c.content, ViewSlot)), None
    )
    if first_view:
        base.setdefault("view", first_view)
        base.setdefault("view_name", view_name(first_view))
    by_analysis = {a.key: a for a in analyses}
    cells = tuple(
        _resolve_cell(index, cell, picks.get(index), base, by_analysis, has_logo)
        for index, cell in enumerate(template.cells)
    )
    missing = tuple(
        MissingSlot(c.index, c.label,
                    c.cell.content.milestone if isinstance(c.cell.content, ViewSlot) else None,
                    c.explanation)
        for c in cells if c.missing
    )
    return ResolvedCollage(
        template=template,
        purpose=purpose,
        title=fill_placeholders(template.title, base),
        cells=cells,
        missing=missing,
        fields=base,
    )


def _resolve_cell(
    index: int,
    cell: Cell,
    pick: Pick | None,
    base: Mapping[str, str],
    analyses: Mapping[str, AnalysisResult],
    has_logo: bool,
) -> ResolvedCell:
    content = cell.content
    if pick is not None:
        image, why = pick
        caption = cell.options.caption
        values = _image_values(image, content, base)
        # A missing slot shows its placeholder, not a caption with empty fields.
        return ResolvedCell(
            index, cell, image=image,
            caption=fill_placeholders(caption, values) if caption and image else None,
            missing=image is None, explanation=why,
        )
    match content:
        case TextBlock(text=text, milestone=milestone):
            values = dict(base)
            if milestone is not None:
                values["milestone"] = milestone
            return ResolvedCell(index, cell, text=fill_placeholders(text, values),
                                explanation="text")
        case MeasurementTable(analysis=key, keys=keys, title=title):
            result = analyses.get(key)
            if result is None:
                return ResolvedCell(index, cell, missing=True,
                                    explanation=f"no {ANALYSES[key][0]} analysis available")
            table = ceph_table(result, keys, fill_placeholders(title, base) if title else None)
            return ResolvedCell(index, cell, table=table, explanation=f"{result.name} analysis")
        case _:
            if not has_logo:
                return ResolvedCell(index, cell, missing=True, explanation="no clinic logo set")
            return ResolvedCell(index, cell, explanation="clinic logo")


# --- branding and multi-page documents -------------------------------------------------------


def hex_colour(value: str) -> tuple[int, int, int]:
    if not isinstance(value, str) or not _HEX.match(value):
        raise InvalidInput("invalid_colour", f"colour {str(value)[:16]!r} is not #RRGGBB")
    return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)


@dataclass(frozen=True, slots=True)
class Branding:
    clinic_name: str
    primary: str = "#1F4E79"  # header text and rules
    accent: str = "#DCE6F2"  # table header fill
    text: str = "#222222"
    logo_id: str | None = None  # loaded through the same loader as images
    address_lines: tuple[str, ...] = ()
    footer_note: str = "Confidential: contains patient health information"

    def __post_init__(self) -> None:
        for colour in (self.primary, self.accent, self.text):
            hex_colour(colour)


@dataclass(frozen=True, slots=True)
class CollagePage:
    collage: ResolvedCollage


@dataclass(frozen=True, slots=True)
class ImagePage:
    image_id: str
    title: str
    caption: str = ""
    page: PageSize = A4
    orientation: Orientation = Orientation.LANDSCAPE


@dataclass(frozen=True, slots=True)
class TablePage:
    title: str
    tables: tuple[TableData, ...]
    page: PageSize = A4
    orientation: Orientation = Orientation.PORTRAIT


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    label: str
    when: date
    image_id: str | None = None


@dataclass(frozen=True, slots=True)
class TimelinePage:
    title: str
    entries: tuple[TimelineEntry, ...]
    page: PageSize = A4
    orientation: Orientation = Orientation.LANDSCAPE


PresentationPage = CollagePage | ImagePage | TablePage | TimelinePage


@dataclass(frozen=True, slots=True)
class LetterImage:
    image_id: str
    caption: str = ""


@dataclass(frozen=True, slots=True)
class ReferralLetter:
    addressee: tuple[str, ...]  # name first, then address lines
    subject: str  # "Re: <patient>, born <date>"
    salutation: str
    paragraphs: tuple[str, ...]
    signer_name: str
    signer_title: str = ""
    letter_date: date | None = None
    closing: str = "Kind regards,"
    images: tuple[LetterImage, ...] = ()
    ceph_summary: TableData | None = None
    signature_image_id: str | None = None
    page: PageSize = A4


# --- storing templates (event payloads, GraphQL input) ---------------------------------------


def _content_to_dict(content: Content) -> dict[str, Any]:
    match content:
        case ViewSlot(view=view, milestone=milestone):
            return {"kind": "view", "view": view, "milestone": milestone}
        case ImageRef(image_id=image_id):
            return {"kind": "image", "image_id": image_id}
        case TextBlock() as b:
            return {"kind": "text", "text": b.text, "size_pt": b.size_pt, "bold": b.bold,
                    "align": b.align.value, "middle": b.middle, "milestone": b.milestone}
        case MeasurementTable(analysis=analysis, keys=keys, title=title):
            return {"kind": "table", "analysis": analysis, "keys": list(keys), "title": title}
        case _:
            return {"kind": "logo"}


def template_to_dict(template: CollageTemplate) -> dict[str, Any]:
    """A JSON-ready form; ``template_from_dict`` reads it back (and validates)."""
    return {
        "name": template.name,
        "page": {"name": template.page.name, "width_mm": template.page.width_mm,
                 "height_mm": template.page.height_mm},
        "orientation": template.orientation.value,
        "margins": {"top": template.margins.top, "right": template.margins.right,
                    "bottom": template.margins.bottom, "left": template.margins.left},
        "title": template.title,
        "header": template.header,
        "footer": template.footer,
        "allow_overlap": template.allow_overlap,
        "cells": [
            {"frame": [c.frame.x, c.frame.y, c.frame.width, c.frame.height],
             "content": _content_to_dict(c.content),
             "fit": c.options.fit.value, "caption": c.options.caption,
             "border": c.options.border}
            for c in template.cells
        ],
    }


def _content_from_dict(raw: Mapping[str, Any]) -> Content:
    kind = raw.get("kind")
    if kind == "view":
        view = str(raw["view"]).strip()
        view = view.upper() if view.upper() in VIEWS else view.lower()
        return ViewSlot(view, str(raw.get("milestone") or LATEST))
    if kind == "image":
        return ImageRef(str(raw["image_id"]))
    if kind == "text":
        return TextBlock(str(raw["text"]), float(raw.get("size_pt", 10.0)),
                         bool(raw.get("bold", False)), Align(raw.get("align", "left")),
                         bool(raw.get("middle", False)), raw.get("milestone"))
    if kind == "table":
        return MeasurementTable(str(raw.get("analysis", "steiner")),
                                tuple(str(k) for k in raw.get("keys", ())), raw.get("title"))
    if kind == "logo":
        return Logo()
    raise InvalidInput("invalid_cell", f"unknown cell kind {str(kind)[:20]!r}")


def _page_from_dict(raw: Mapping[str, Any]) -> PageSize:
    name = str(raw.get("name", "A4"))
    if name.casefold() in PAGE_SIZES:
        return PAGE_SIZES[name.casefold()]
    return custom_page(float(raw["width_mm"]), float(raw["height_mm"]), name[:40])


def template_from_dict(raw: Mapping[str, Any]) -> CollageTemplate:
    try:
        margins = raw.get("margins") or {}
        cells = tuple(
            Cell(Frame(*(float(v) for v in c["frame"])), _content_from_dict(c["content"]),
                 CellOptions(Fit(c.get("fit", "fit")), c.get("caption"),
                             bool(c.get("border", False))))
            for c in raw["cells"]
        )
        return CollageTemplate(
            name=str(raw["name"]),
            cells=cells,
            page=_page_from_dict(raw.get("page") or {}),
            orientation=Orientation(raw.get("orientation", "portrait")),
            margins=Margins(**{k: float(v) for k, v in margins.items()}),
            title=str(raw.get("title", "{patient_name}")),
            header=bool(raw.get("header", True)),
            footer=bool(raw.get("footer", True)),
            allow_overlap=bool(raw.get("allow_overlap", False)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInput("invalid_template", f"malformed template ({type(error).__name__})"
                           ) from None
