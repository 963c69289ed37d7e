"""Cephalometric report on the real 4096x5120 radiograph (B1893L12).

Times, in one process on the same inputs: every analysis on the 35-point tracing; the
tracing overlay decoded by JPEG DCT scaling (ours) against a full-size decode then resize
(the naive way); the whole one-page PDF. The ratio, not the absolute time, is the claim.

``python tests/bench/ceph_bench.py`` prints the table; ``make bench`` picks up ``run``.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CEPH = ROOT.parent / "shared" / "testdata" / "ceph" / "B1893L12.jpg"
TRACING = ROOT / "tests" / "data" / "b1893l12_tracing.json"
RUNS = 5


def _median(action, runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(_tmp: Path | None = None) -> dict:
    sys.path.insert(0, str(ROOT))
    from PIL import Image

    from adapters.ceph_report_pdf import (
        OVERLAY_LONGEST,
        ReportHeader,
        render_overlay,
        render_report,
    )
    from domain.cephalometry.analyses import analyze

    doc = json.loads(TRACING.read_text())
    landmarks = doc["landmarks"]
    mm = 25.4 / doc["dpi"] / (doc["source_to_detector_mm"] / doc["source_to_patient_mm"])
    data = CEPH.read_bytes()

    analysis = _median(lambda: analyze(landmarks, mm, age=12, sex="male"), 50)
    ours = _median(lambda: render_overlay(data, (4096, 5120), landmarks))

    def naive() -> None:
        full = Image.open(io.BytesIO(data))
        full.load()
        full = full.convert("RGB")
        full.thumbnail((OVERLAY_LONGEST, OVERLAY_LONGEST), Image.Resampling.LANCZOS)

    baseline = _median(naive)
    results = analyze(landmarks, mm, age=12, sex="male")
    header = ReportHeader("bench", 1, "bench", "bench", 12.0, "male", f"{mm:.5f} mm/px",
                          "bench", "bench")
    report = _median(lambda: render_report(
        header=header, overlay=render_overlay(data, (4096, 5120), landmarks), results=results))
    return {
        "title": "Cephalometric report (B1893L12, 4096x5120, 35 landmarks)",
        "columns": ["step", "median", "note"],
        "rows": [
            ["all 7 analyses (33 measurements)", f"{analysis * 1e3:.2f} ms", "pure domain"],
            ["overlay, DCT-scaled decode (ours)", f"{ours * 1e3:.0f} ms",
             f"{baseline / ours:.1f}x faster than the naive decode"],
            ["naive: full decode, then resize (decode only)", f"{baseline * 1e3:.0f} ms",
             "baseline"],
            ["one-page PDF report (overlay + table)", f"{report * 1e3:.0f} ms", ""],
        ],
        "notes": f"Median of {RUNS} runs (50 for the analyses) in one process; tracing from "
                 "tests/data/b1893l12_tracing.json.",
        "summary": [{
            "what": "Ceph tracing overlay, 4096x5120 film (DCT-scaled decode)",
            "ours": f"{ours * 1e3:.0f} ms",
            "baseline": f"naive full decode + resize {baseline * 1e3:.0f} ms",
            "ratio": f"{baseline / ours:.1f}x",
            "target": "none set (issue 5)",
        }],
    }


if __name__ == "__main__":
    result = run()
    for row in result["rows"]:
        print(" | ".join(row))
