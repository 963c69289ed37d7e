"""The one-page cephalometric report (PDF) and the tracing overlay (PNG/JPEG).

The overlay draws the placed landmarks and the reference lines of the analyses (SN, FH,
N-A, N-B, the mandibular and palatal planes, the incisor axes, the facial plane) on the
radiograph, decoded only as large as the page needs. The page puts the overlay beside a
table of every measurement with its value, norm, deviation in SDs and interpretation, and
says which calibration and which norms version were used, so the printed numbers can be
reproduced. Text is plain Helvetica (PDF standard font): the report stays searchable and
its text extractable, which the tests rely on.

No storage I/O here: the caller hands over the image bytes (or None: then the tracing is
drawn on a blank canvas of the image's size).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas as pdf_canvas
from reportlab.platypus import Frame, KeepInFrame, Paragraph, Table, TableStyle

from adapters.image_codec import decode_at_least
from domain.cephalometry.analyses import AnalysisResult, CephMeasurement

OVERLAY_LONGEST = 1600  # px: sharp at the page's ~110 mm image box even when zoomed
# Reference lines of the analyses, drawn where both ends are placed.
LINES: tuple[tuple[str, str, str], ...] = (
    ("S", "N", "#ffd400"),  # SN
    ("Po", "Or", "#00d0ff"),  # Frankfort horizontal
    ("N", "A", "#ff7a00"),
    ("N", "B", "#ff7a00"),
    ("N", "Pog", "#b0ff00"),  # facial plane
    ("Go", "Me", "#ff3b3b"),  # mandibular plane
    ("Go", "Gn", "#ff3b3b"),
    ("ANS", "PNS", "#c77dff"),  # palatal plane
    ("U1_apex", "U1", "#ffffff"),  # incisor axes
    ("L1_apex", "L1", "#ffffff"),
    ("S", "Ar", "#7dffb2"),
    ("Ar", "Go", "#7dffb2"),
    ("Ba", "N", "#4da3ff"),
    ("Pt", "Gn", "#4da3ff"),
    ("Prn", "Pog_s", "#ff9ad5"),  # E-plane
)
UNIT_LABEL = {"deg": "°", "mm": "mm", "%": "%"}


@dataclass(frozen=True)
class ReportHeader:
    """What the page says about where the numbers come from (ids, never names)."""

    tracing_id: str
    tracing_version: int
    image_id: str
    patient_ref: str
    age_years: float | None
    sex: str | None
    calibration: str  # e.g. "0.0469 mm/px (scan_resolution, magnification 1.057)"
    norms_version: str
    generated_at: str


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def render_overlay(image_bytes: bytes | None, size: tuple[int, int],
                   landmarks: Mapping[str, Sequence[float]]) -> Image.Image:
    """The radiograph (or a blank canvas of ``size``) with the tracing drawn on it, RGB.

    ``landmarks`` are in original-image pixels; the picture is scaled to at most
    ``OVERLAY_LONGEST`` pixels and the points with it.
    """
    width, height = size
    if image_bytes is not None:
        picture = decode_at_least(image_bytes, OVERLAY_LONGEST)
        if max(picture.size) > OVERLAY_LONGEST:
            picture.thumbnail((OVERLAY_LONGEST, OVERLAY_LONGEST), Image.Resampling.LANCZOS)
        picture = picture.convert("RGB")
    else:
        scale = min(1.0, OVERLAY_LONGEST / max(width, height))
        picture = Image.new("RGB", (max(1, round(width * scale)), max(1, round(height * scale))),
                            "#202020")
    sx, sy = picture.width / width, picture.height / height
    draw = ImageDraw.Draw(picture)
    stroke = max(2, round(max(picture.size) / 500))
    points = {c: (float(p[0]) * sx, float(p[1]) * sy) for c, p in landmarks.items()}
    for a, b, colour in LINES:
        if a in points and b in points:
            draw.line([points[a], points[b]], fill=colour, width=stroke)
    font = _font(max(12, round(max(picture.size) / 80)))
    r = stroke * 2
    for code, (x, y) in points.items():
        draw.ellipse([x - r, y - r, x + r, y + r], fill="#ff2020", outline="#ffffff")
        draw.text((x + r + 2, y - r - 2), code, fill="#ffff80", font=font,
                  stroke_width=1, stroke_fill="#000000")
    return picture


def overlay_png(image_bytes: bytes | None, size: tuple[int, int],
                landmarks: Mapping[str, Sequence[float]]) -> bytes:
    out = io.BytesIO()
    render_overlay(image_bytes, size, landmarks).save(out, "PNG", optimize=False)
    return out.getvalue()


def _value(m: CephMeasurement) -> str:
    if not m.computable or m.value is None:
        return "n/c"
    return f"{m.value:.1f}{UNIT_LABEL.get(m.unit, m.unit)}"


def _norm(m: CephMeasurement) -> str:
    n = m.norm
    if n is None:
        return "-"
    unit = UNIT_LABEL.get(m.unit, m.unit)
    if n.mean is not None and n.sd:
        return f"{n.mean:g} ± {n.sd:g}{unit}"
    if n.range_low is not None and n.range_high is not None:
        return f"{n.range_low:g} to {n.range_high:g}{unit}"
    return f"{n.mean:g}{unit}" if n.mean is not None else "-"


def _table(results: Sequence[AnalysisResult]) -> Table:
    cell = ParagraphStyle("cell", fontName="Helvetica", fontSize=6.5, leading=7.6)
    head = ParagraphStyle("head", parent=cell, fontName="Helvetica-Bold")
    rows: list[list[object]] = [[Paragraph(h, head) for h in
                                 ("Measurement", "Value", "Norm", "SD", "Interpretation")]]
    style: list[tuple[object, ...]] = [
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde4ee")),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 1),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
    ]
    for result in results:
        style.append(("SPAN", (0, len(rows)), (-1, len(rows))))
        style.append(("BACKGROUND", (0, len(rows)), (-1, len(rows)), colors.HexColor("#f1f1f1")))
        rows.append([Paragraph(result.name, head), "", "", "", ""])
        for m in result.measurements:
            deviation = "" if m.deviation_sd is None else f"{m.deviation_sd:+.1f}"
            rows.append([Paragraph(m.name, cell), Paragraph(_value(m), cell),
                         Paragraph(_norm(m), cell), Paragraph(deviation, cell),
                         Paragraph(m.interpretation, cell)])
    table = Table(rows, colWidths=[118, 42, 62, 26, 232], repeatRows=1)
    table.setStyle(TableStyle(style))
    return table


def render_report(*, header: ReportHeader, overlay: Image.Image,
                  results: Sequence[AnalysisResult]) -> bytes:
    """One A4 landscape page: the overlay on the left, the table on the right."""
    out = io.BytesIO()
    page_w, page_h = landscape(A4)
    pdf = pdf_canvas.Canvas(out, pagesize=(page_w, page_h), invariant=True)
    pdf.setTitle(f"Cephalometric analysis {header.tracing_id}")
    pdf.setAuthor("orthovault")
    margin = 28
    pdf.setFont("Helvetica-Bold", 13)
    pdf.drawString(margin, page_h - margin - 4, "Cephalometric analysis")
    pdf.setFont("Helvetica", 7)
    lines = [
        f"Tracing {header.tracing_id} (version {header.tracing_version}) on image "
        f"{header.image_id}; patient {header.patient_ref}",
        "Age {}; sex {}; norms version {}; generated {}".format(
            f"{header.age_years:.1f} years" if header.age_years is not None else "unknown",
            header.sex or "unknown", header.norms_version, header.generated_at),
        f"Calibration: {header.calibration}",
    ]
    for i, text in enumerate(lines):
        pdf.drawString(margin, page_h - margin - 18 - 9 * i, text)
    top = page_h - margin - 48
    # Left: the overlay, fitted into its box with its aspect ratio kept.
    box_w, box_h = 300.0, top - margin
    scale = min(box_w / overlay.width, box_h / overlay.height)
    draw_w, draw_h = overlay.width * scale, overlay.height * scale
    buffer = io.BytesIO()
    overlay.save(buffer, "JPEG", quality=88)
    buffer.seek(0)
    pdf.drawImage(ImageReader(buffer), margin, top - draw_h, draw_w, draw_h)
    # Right: the table, shrunk if needed so the report stays one page.
    left = margin + box_w + 14
    frame = Frame(left, margin, page_w - left - margin, top - margin, leftPadding=0,
                  rightPadding=0, topPadding=0, bottomPadding=0, showBoundary=0)
    frame.addFromList([KeepInFrame(page_w - left - margin, top - margin, [_table(results)],
                                   mode="shrink")], pdf)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def superimposition_png(first_mm: Mapping[str, Sequence[float]],
                        second_mm: Mapping[str, Sequence[float]], *, size: int = 1200) -> bytes:
    """Both tracings in the first tracing's frame (mm): first in blue, second in red, each
    shared landmark joined by its displacement, the reference lines of both drawn."""
    points = [*first_mm.values(), *second_mm.values()]
    if not points:
        raise ValueError("nothing to draw")
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    span = max(max(xs) - min(xs), max(ys) - min(ys), 1.0)
    margin = 0.08 * span
    scale = size / (span + 2 * margin)
    width = round((max(xs) - min(xs) + 2 * margin) * scale)
    height = round((max(ys) - min(ys) + 2 * margin) * scale)
    picture = Image.new("RGB", (max(width, 1), max(height, 1)), "white")
    draw = ImageDraw.Draw(picture)

    def px(p: Sequence[float]) -> tuple[float, float]:
        return ((float(p[0]) - min(xs) + margin) * scale, (float(p[1]) - min(ys) + margin) * scale)

    font = _font(max(10, size // 90))
    for tracing, colour in ((first_mm, "#1f5fd6"), (second_mm, "#d62728")):
        for a, b, _ in LINES:
            if a in tracing and b in tracing:
                draw.line([px(tracing[a]), px(tracing[b])], fill=colour, width=2)
        for p in tracing.values():
            x, y = px(p)
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
    for code, p in first_mm.items():
        if code in second_mm:
            draw.line([px(p), px(second_mm[code])], fill="#000000", width=1)
            x, y = px(p)
            draw.text((x + 6, y - 6), code, fill="#333333", font=font)
    draw.text((10, 10), "first tracing", fill="#1f5fd6", font=font)
    draw.text((10, 14 + size // 90), "second tracing", fill="#d62728", font=font)
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()
