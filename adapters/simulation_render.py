"""Pixels and pages for simulations: outcome previews, set-up images, overlays, exports.

Pure computation lives in ``domain/`` (growth, VTO, photo warp) and
``adapters/setup_analysis.py``; this module turns their results into the images and files
a clinician shows: the warped profile photo beside the original (watermarked SIMULATION),
the set-up's colour maps, stage thumbnails and animation strip, the forecast or plan drawn
over the ceph, and CSV / PDF exports. No storage I/O: bytes in, bytes out.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Image as FlowImage
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from adapters.image_codec import decode_at_least
from adapters.mesh_codec import load_mesh, render_thumbnail, to_glb
from adapters.setup_analysis import (
    ARCHES,
    SetupStage,
    analyse_setup,
    displacement_image,
    distance_map,
    icp,
)
from domain.photo_warp import Similarity, backward_map, sample_bilinear, watermark_simulation
from domain.simulation import plain
from domain.vto import PROFILE_ORDER

# Photos are warped at most this large (long side): a thin-plate spline over a 24-megapixel
# original would take minutes and show nothing more on a screen or a page.
PREVIEW_WARP_PX = 2048
JPEG_QUALITY = 88
THUMBNAIL_PX = 256
# The spline is evaluated on a grid this coarse and interpolated in between.
FIELD_STEP_PX = 4
# Border anchors per image side: they hold the frame still so the warp stays local.
_ANCHORS_PER_SIDE = 4


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", optimize=False)
    return out.getvalue()


# --- outcome preview --------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlPoints:
    """Where soft-tissue points are on the photo now and where the simulation puts them."""

    codes: tuple[str, ...]
    current: np.ndarray  # (n, 2) photo pixels
    predicted: np.ndarray


def soft_tissue_control_points(
    landmarks: Mapping[str, Sequence[float]], shifts: Sequence[Mapping[str, Any]],
    registration: Similarity,
) -> ControlPoints:
    """Profile points of the tracing, before and after, carried onto the photo.

    ``shifts`` are the source simulation's recorded landmark shifts (ceph pixels); profile
    points without a shift stay where they are and pin the warp.
    """
    moved = {s["code"]: (float(s["dx_px"]), float(s["dy_px"])) for s in shifts}
    codes = tuple(c for c in PROFILE_ORDER if c in landmarks)
    current = np.array([landmarks[c] for c in codes], dtype=np.float64).reshape(-1, 2)
    delta = np.array([moved.get(c, (0.0, 0.0)) for c in codes], dtype=np.float64).reshape(-1, 2)
    return ControlPoints(codes, registration.apply(current), registration.apply(current + delta))


def _border_anchors(width: int, height: int) -> np.ndarray:
    xs = np.linspace(0, width - 1, _ANCHORS_PER_SIDE + 1)
    ys = np.linspace(0, height - 1, _ANCHORS_PER_SIDE + 1)
    points = {(x, 0.0) for x in xs} | {(x, height - 1.0) for x in xs}
    points |= {(0.0, y) for y in ys} | {(width - 1.0, y) for y in ys}
    return np.array(sorted(points), dtype=np.float64)


def _labelled(image: Image.Image, text: str) -> Image.Image:
    band = max(24, image.height // 24)
    out = Image.new("RGB", (image.width, image.height + band), (255, 255, 255))
    out.paste(image.convert("RGB"), (0, band))
    ImageDraw.Draw(out).text((8, band // 4), text, fill=(0, 0, 0))
    return out


def coarse_warp_field(shape: tuple[int, int], src: np.ndarray, dst: np.ndarray,
                      step: int = FIELD_STEP_PX) -> np.ndarray:
    """:func:`domain.photo_warp.warp_field`, with the spline evaluated every ``step`` pixels
    and interpolated bilinearly in between.

    The spline bends on the scale of the control points' spacing (tens of pixels), so
    between nodes 4 px apart it is nearly linear: the field stays within a quarter of a pixel
    of the exact one (worst next to a control point, tested), for 1/16 of the spline
    evaluations.
    """
    height, width = int(shape[0]), int(shape[1])
    mapping = backward_map(src, dst)
    node_x = np.arange(0, width + step, step, dtype=np.float64)
    node_y = np.arange(0, height + step, step, dtype=np.float64)
    gx, gy = np.meshgrid(node_x, node_y)
    nodes = mapping.apply(np.stack([gx.ravel(), gy.ravel()], axis=1)).reshape(
        len(node_y), len(node_x), 2)
    ys, xs = np.mgrid[0:height, 0:width]
    where = np.stack([xs / step, ys / step], axis=-1).astype(np.float64)
    return np.stack([sample_bilinear(nodes[..., k], where) for k in (0, 1)], axis=-1)


def outcome_preview(photo: bytes, photo_width: int, points: ControlPoints
                    ) -> tuple[bytes, bytes, dict[str, Any]]:
    """(warped photo JPEG, side-by-side JPEG, summary), both marked SIMULATION.

    Control points are in the photo's full-size pixels (``photo_width`` wide); the warp
    runs on a copy at most :data:`PREVIEW_WARP_PX` on its long side.
    """
    decoded = decode_at_least(photo, PREVIEW_WARP_PX).convert("RGB")
    if max(decoded.size) > PREVIEW_WARP_PX:
        decoded.thumbnail((PREVIEW_WARP_PX, PREVIEW_WARP_PX), Image.Resampling.LANCZOS)
    scale = decoded.width / max(photo_width, 1)
    pixels = np.asarray(decoded)
    anchors = _border_anchors(decoded.width, decoded.height)
    src = np.vstack([points.current * scale, anchors])
    dst = np.vstack([points.predicted * scale, anchors])
    warped = sample_bilinear(pixels, coarse_warp_field(pixels.shape[:2], src, dst), fill=0.0)
    marked = watermark_simulation(warped)
    original_marked = Image.fromarray(pixels)
    prediction = Image.fromarray(marked)
    side = Image.new("RGB", (decoded.width * 2, decoded.height), (255, 255, 255))
    side.paste(original_marked, (0, 0))
    side.paste(prediction, (decoded.width, 0))
    comparison = _labelled(side, "Current  |  SIMULATION: predicted soft-tissue outcome "
                                 "(average-based estimate)")
    movement = np.linalg.norm(points.predicted - points.current, axis=1) if len(points.codes) \
        else np.zeros(0)
    summary = {
        "warped_width": decoded.width, "warped_height": decoded.height,
        "control_points": [
            {"code": c, "from": points.current[i].tolist(), "to": points.predicted[i].tolist(),
             "shift_px": float(movement[i])} for i, c in enumerate(points.codes)
        ],
        "max_shift_px": float(movement.max()) if len(movement) else 0.0,
        "method": "thin-plate spline (every 4 px, bilinear between), backward-mapped; border"
                  " pinned",
    }
    return _jpeg(prediction), _jpeg(comparison), summary


# --- tracings drawn over the ceph ---------------------------------------------------------------


def tracing_overlay(base: Image.Image | None, scale: float,
                    current: Mapping[str, Sequence[float]],
                    predicted: Mapping[str, Sequence[float]], title: str) -> Image.Image:
    """Current landmarks (blue) and predicted ones (red) with the soft-tissue profiles.

    ``scale`` turns tracing pixels into ``base`` pixels; without a base the points are drawn
    on white, framed to fit.
    """
    if base is None:
        all_points = np.array([*current.values(), *predicted.values()], dtype=np.float64)
        low, high = all_points.min(axis=0), all_points.max(axis=0)
        span = float(max((high - low).max(), 1.0))
        scale = 700.0 / span
        offset = 50.0 - low * scale
        canvas = Image.new("RGB", (800, 800), (255, 255, 255))
    else:
        offset = np.zeros(2)
        canvas = base.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    radius = max(3, canvas.width // 300)

    def at(p: Sequence[float]) -> tuple[float, float]:
        return (float(p[0]) * scale + offset[0], float(p[1]) * scale + offset[1])

    for points, colour in ((current, (40, 110, 220)), (predicted, (220, 40, 40))):
        profile = [at(points[c]) for c in PROFILE_ORDER if c in points]
        if len(profile) > 1:
            draw.line(profile, fill=colour, width=max(1, radius // 2))
        for p in points.values():
            x, y = at(p)
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=colour,
                         width=max(1, radius // 2))
    return _labelled(canvas, f"{title} - blue: current, red: SIMULATION (average-based estimate)")


# --- aligner set-ups ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupFiles:
    """Mesh bytes per stage and arch, and an optional later real scan per arch."""

    stages: Mapping[int, Mapping[str, tuple[bytes, str]]]  # number -> arch -> (data, filename)
    scans: Mapping[str, tuple[bytes, str]]


def _strip(thumbnails: Mapping[int, Mapping[str, Image.Image]]) -> Image.Image:
    numbers = sorted(thumbnails)
    arches = [a for a in ARCHES if any(a in thumbnails[n] for n in numbers)]
    label = 20
    strip = Image.new("RGB", (THUMBNAIL_PX * len(numbers), (THUMBNAIL_PX * len(arches)) + label),
                      (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for column, number in enumerate(numbers):
        draw.text((column * THUMBNAIL_PX + 6, 4), f"stage {number}", fill=(0, 0, 0))
        for row, arch in enumerate(arches):
            if arch in thumbnails[number]:
                strip.paste(thumbnails[number][arch],
                            (column * THUMBNAIL_PX, label + row * THUMBNAIL_PX))
    return strip


def analyse_setup_files(files: SetupFiles, step_limit_mm: float
                        ) -> tuple[dict[str, Any], dict[str, tuple[bytes, str]]]:
    """(result, outputs by name -> (bytes, media type)) for one set-up import."""
    meshes = {n: {arch: load_mesh(data, name) for arch, (data, name) in by_arch.items()}
              for n, by_arch in files.stages.items()}
    stages = [SetupStage(n, upper=m.get("upper"), lower=m.get("lower"))
              for n, m in meshes.items()]
    analysis = analyse_setup(stages, step_limit_mm=step_limit_mm)
    outputs: dict[str, tuple[bytes, str]] = {}
    thumbnails: dict[int, dict[str, Image.Image]] = {}
    for number, by_arch in sorted(meshes.items()):
        for arch, info in by_arch.items():
            thumb = render_thumbnail(info, THUMBNAIL_PX)
            thumbnails.setdefault(number, {})[arch] = thumb
            outputs[f"stage_{number}_{arch}.png"] = (_png(thumb), "image/png")
            outputs[f"stage_{number}_{arch}.glb"] = (to_glb(info), "model/gltf-binary")
    outputs["strip.png"] = (_png(_strip(thumbnails)), "image/png")
    first = analysis.stage_numbers[0]
    for total in analysis.totals:
        image = displacement_image(meshes[first][total.arch], total.per_vertex_mm)
        outputs[f"movement_{total.arch}.png"] = (_png(image), "image/png")
    result: dict[str, Any] = {
        "stage_numbers": list(analysis.stage_numbers),
        "arches": list(analysis.arches),
        "step_limit_mm": analysis.step_limit_mm,
        "stats": plain(analysis.stats),
        "steps": [_movement(m) for m in analysis.steps],
        "totals": [_movement(m) for m in analysis.totals],
        "flagged_steps": [
            {"arch": m.arch, "from_stage": m.from_stage, "to_stage": m.to_stage,
             "max_mm": m.max_mm} for m in analysis.steps if m.exceeds_step_limit
        ],
        "comparisons": [],
    }
    last = analysis.stage_numbers[-1]
    for arch, (data, name) in files.scans.items():
        planned = meshes[last][arch]
        scan = load_mesh(data, name)
        registration = icp(scan, planned)
        aligned = registration.apply(np.asarray(scan.mesh.vertices))
        distances = distance_map(aligned, planned)
        aligned_mesh = scan.mesh.copy()
        aligned_mesh.vertices = aligned
        image = displacement_image(aligned_mesh, distances.distances_mm)
        outputs[f"comparison_{arch}.png"] = (_png(image), "image/png")
        result["comparisons"].append({
            "arch": arch, "planned_stage": last,
            "registration": {
                "rotation_deg": registration.rotation_deg,
                "translation_mm": registration.translation.tolist(),
                "matrix": registration.matrix.tolist(),
                "rms_mm": registration.rms_mm, "iterations": registration.iterations,
                "converged": registration.converged,
            },
            "distance": plain(distances.summary),
        })
    return result, outputs


def _movement(m: Any) -> dict[str, Any]:
    return {
        "arch": m.arch, "from_stage": m.from_stage, "to_stage": m.to_stage, "method": m.method,
        "mean_vector_mm": list(m.mean_vector_mm) if m.mean_vector_mm else None,
        "mean_mm": m.mean_mm, "p95_mm": m.p95_mm, "max_mm": m.max_mm,
        "exceeds_step_limit": m.exceeds_step_limit,
    }


# --- exports ------------------------------------------------------------------------------------


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else (f"{v:.4f}" if isinstance(v, float) else v)
                         for v in row])
    return out.getvalue().encode()


def report_tables(kind: str, result: Mapping[str, Any]) -> list[tuple[str, list[str],
                                                                       list[list[Any]]]]:
    """The tables a report of this simulation shows: (title, header, rows)."""
    if kind == "setup_analysis":
        steps = [[m["arch"], m["from_stage"], m["to_stage"], m["method"], m["mean_mm"],
                  m["p95_mm"], m["max_mm"], "yes" if m["exceeds_step_limit"] else "no",
                  *(m["mean_vector_mm"] or [None, None, None])]
                 for m in [*result["steps"], *result["totals"]]]
        tables = [("Stage-to-stage movement (last rows: first to last stage)",
                   ["arch", "from", "to", "method", "mean mm", "p95 mm", "max mm",
                    "over limit", "mean dx", "mean dy", "mean dz"], steps)]
        comparisons = [[c["arch"], c["planned_stage"], c["registration"]["rms_mm"],
                        c["distance"]["mean_mm"], c["distance"]["p95_mm"],
                        c["distance"]["max_mm"], c["distance"]["within_0_25_pct"],
                        c["distance"]["within_0_5_pct"]] for c in result["comparisons"]]
        if comparisons:
            tables.append(("Real scan against the planned final stage",
                           ["arch", "stage", "ICP rms mm", "mean mm", "p95 mm", "max mm",
                            "% within 0.25", "% within 0.5"], comparisons))
        return tables
    if kind in ("growth_forecast", "vto"):
        measures = [[m["name"], m["unit"], m["current"], m["predicted"], m["change"]]
                    for m in result["measurement_changes"]]
        shifts = [[s["code"], s["anterior_mm"], s["inferior_mm"], s["dx_px"], s["dy_px"]]
                  for s in result["shifts"]]
        return [("Measurements", ["measurement", "unit", "current", "predicted", "change"],
                 measures),
                ("Landmark shifts", ["landmark", "anterior mm", "inferior mm", "dx px",
                                     "dy px"], shifts)]
    if kind == "smile_design":
        sides = [[p["side"], p["central_width"], p["lateral_width"], p["canine_width"],
                  p["central_to_lateral"], p["lateral_to_canine"], p["red_lateral_pct"],
                  p["red_canine_pct"]] for p in result["proportions"]]
        return [(f"Tooth proportions ({result['unit']}; golden ideal 1.618)",
                 ["side", "central", "lateral", "canine", "central:lateral",
                  "lateral:canine", "RED lateral %", "RED canine %"], sides)]
    points = [[p["code"], *p["from"], *p["to"], p["shift_px"]]
              for p in result.get("control_points", [])]
    return [("Soft-tissue control points on the photo",
             ["point", "from x", "from y", "to x", "to y", "shift px"], points)]


def export_csv(kind: str, result: Mapping[str, Any]) -> bytes:
    """The report's main table (for a set-up: the staging report) as CSV."""
    _title, header, rows = report_tables(kind, result)[0]
    return _csv(header, rows)


def export_pdf(title: str, notice: str, kind: str, result: Mapping[str, Any],
               images: Sequence[bytes], *, prediction: bool = True) -> bytes:
    """One case-presentation page (A4): title, the notice (marked SIMULATION for a
    prediction), images, tables."""
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm,
                            topMargin=15 * mm, bottomMargin=15 * mm, title=title,
                            subject="SIMULATION" if prediction else "design guides")
    styles = getSampleStyleSheet()
    story: list[Any] = [Paragraph(title, styles["Title"]),
                        Paragraph(f"<b>SIMULATION</b> - {notice}" if prediction else notice,
                                  styles["Normal"]),
                        Spacer(1, 4 * mm)]
    width = A4[0] - 30 * mm
    for data in images:
        picture = Image.open(io.BytesIO(data))
        height = width * picture.height / picture.width
        story += [FlowImage(io.BytesIO(data), width=width, height=min(height, 120 * mm),
                            kind="proportional"), Spacer(1, 4 * mm)]
    for table_title, header, rows in report_tables(kind, result):
        cells = [header, *[["" if v is None else (f"{v:.2f}" if isinstance(v, float) else
                                                  str(v)) for v in row] for row in rows]]
        table = Table(cells, repeatRows=1)
        table.setStyle(TableStyle([
            ("FONTSIZE", (0, 0), (-1, -1), 7),
            ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ]))
        story += [Paragraph(table_title, styles["Heading3"]), table, Spacer(1, 4 * mm)]
    doc.build(story)
    return out.getvalue()
