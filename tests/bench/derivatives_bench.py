"""Derivative generation (1600 px preview + 256 px thumbnail, JPEG) per image.

Ours (DCT-scaled decode via Pillow ``draft``) against naive Pillow (full decode, then
resize) and pyvips ``thumbnail_buffer``, on a generated 24-megapixel JPEG and the real
21-megapixel cephalogram. Each method's peak memory is measured in its own subprocess.
"""

from __future__ import annotations

import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPEATS = 5
NAIVE_TARGET = 2.0  # at least 2x faster than naive Pillow (issue 3)
PYVIPS_SLACK = 1.2  # no slower than 1.2x pyvips' time
MEMORY_TARGET_MB = 150.0  # peak memory per image
CEPH = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "ceph" / "B1893L12.jpg"


def photo_24mp() -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:4000, 0:6000]
    base = np.stack([x * 255 // 5999, y * 255 // 3999, (x + y) % 256], axis=-1)
    pixels = np.clip(base + rng.integers(-12, 12, size=base.shape), 0, 255).astype("uint8")
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def ours(data: bytes) -> None:
    from adapters.image_codec import make_derivatives

    make_derivatives(data)


def naive_pillow(data: bytes) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    for size in (1600, 256):
        copy = image.copy()
        copy.thumbnail((size, size), Image.Resampling.LANCZOS)
        copy.convert("RGB").save(io.BytesIO(), "JPEG", quality=85)


def pyvips_thumbnail(data: bytes) -> None:
    import pyvips

    preview = pyvips.Image.thumbnail_buffer(data, 1600).copy_memory()
    preview.jpegsave_buffer(Q=85)
    preview.thumbnail_image(256).jpegsave_buffer(Q=85)


METHODS = {"orthovault (draft)": ours, "naive Pillow": naive_pillow, "pyvips": pyvips_thumbnail}


def _time(method, data: bytes) -> float:
    method(data)  # warm-up: imports, caches
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        method(data)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _peak_mb(method_name: str, path: Path) -> float:
    """Peak RSS growth of one call, in a fresh interpreter with imports already loaded.

    Reads VmHWM (reset by exec) rather than ru_maxrss, which Linux carries over from the
    parent across fork and exec.
    """
    code = (
        "import json, re, sys\n"
        "def hwm():\n"
        "    text = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', text).group(1))\n"
        "sys.path[:0] = [" + repr(str(Path(__file__).resolve().parents[2])) + ", "
        + repr(str(Path(__file__).resolve().parent)) + "]\n"
        "import derivatives_bench as b\n"
        "import adapters.image_codec, PIL.Image, pyvips\n"
        f"data = open({str(path)!r}, 'rb').read()\n"
        "before = hwm()\n"
        f"b.METHODS[{method_name!r}](data)\n"
        "after = hwm()\n"
        "print(json.dumps((after - before) / 1024))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.strip().splitlines()[-1])


def run(tmp: Path) -> dict:
    inputs = {"24 MP photo (6000x4000)": photo_24mp(), "ceph film B1893L12 (4096x5120)":
              CEPH.read_bytes()}
    rows, summary = [], []
    for label, data in inputs.items():
        path = tmp / (label.split()[0] + ".jpg")
        path.write_bytes(data)
        times = {name: _time(method, data) for name, method in METHODS.items()}
        peaks = {name: _peak_mb(name, path) for name in METHODS}
        ours_time = times["orthovault (draft)"]
        for name in METHODS:
            rows.append([label, name, f"{times[name] * 1000:.0f}", f"{peaks[name]:.0f}",
                         f"{times[name] / ours_time:.2f}"])
        rows.append([label, "→ speed-up vs naive / vs pyvips", "", "",
                     f"{times['naive Pillow'] / ours_time:.2f}x / "
                     f"{times['pyvips'] / ours_time:.2f}x"])
        summary.append(_headline(label, times, peaks))
    return {
        "title": "Derivatives: preview 1600 px + thumbnail 256 px",
        "columns": ["input", "method", "median ms", "peak RSS growth MB",
                    "time ÷ orthovault"],
        "rows": rows,
        "notes": "Targets (issue 3): ≥2x faster than naive Pillow, no slower than 1.2x "
                 "pyvips, <150 MB per image. Quality scoring is not part of this figure yet.",
        "summary": summary,
    }


def _headline(label: str, times: dict[str, float], peaks: dict[str, float]) -> dict:
    """One summary row per input, against both baselines and the three targets of issue 3."""
    ours_time, ours_peak = times["orthovault (draft)"], peaks["orthovault (draft)"]
    vs_naive = times["naive Pillow"] / ours_time
    vs_pyvips = times["pyvips"] / ours_time
    checks = {f"≥{NAIVE_TARGET:.0f}x naive": vs_naive >= NAIVE_TARGET,
              f"≤{PYVIPS_SLACK}x pyvips time": ours_time <= PYVIPS_SLACK * times["pyvips"],
              f"<{MEMORY_TARGET_MB:.0f} MB": ours_peak < MEMORY_TARGET_MB}
    failed = [name for name, ok in checks.items() if not ok]
    return {
        "what": f"Derivatives (1600 px preview + 256 px thumbnail), {label}",
        "ours": f"{ours_time * 1000:.0f} ms, peak +{ours_peak:.0f} MB",
        "baseline": f"naive Pillow {times['naive Pillow'] * 1000:.0f} ms; "
                    f"pyvips {times['pyvips'] * 1000:.0f} ms",
        "ratio": f"{vs_naive:.2f}x naive; {vs_pyvips:.2f}x pyvips",
        "target": ", ".join(checks) + " (issue 3): "
                  + ("met" if not failed else "NOT met: " + ", ".join(failed)),
    }


if __name__ == "__main__":
    import tempfile

    print(json.dumps(run(Path(tempfile.mkdtemp())), indent=2))
