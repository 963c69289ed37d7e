"""``make bench``: run every benchmark, print the tables, rewrite docs/performance.md.

Each ``*_bench.py`` beside this file exposes ``run(tmp_dir) -> dict`` with ``title``,
``columns``, ``rows``, ``notes`` and ``summary`` (headline rows for the table at the top;
``bench_summary.py`` holds everything here that is neither measuring nor writing).
Benchmarks compare against baselines run in the same process on the same inputs, so the
ratios hold even when the machine is busy.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},"
            f" {platform.platform(terse=True)}")


def main(selected: list[str]) -> None:
    sys.path[:0] = [str(ROOT), str(HERE)]
    from bench_summary import merge, render_block, render_section

    names = sorted(p.stem for p in HERE.glob("*_bench.py"))
    names = [n for n in names if not selected or any(s in n for s in selected)]
    sections = []
    for name in names:
        module = importlib.import_module(name)
        if not hasattr(module, "run"):
            continue
        print(f"== {name}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            result = module.run(Path(tmp))
        text = render_section(result, f"{datetime.now(UTC):%Y-%m-%d}", _machine())
        print(text, flush=True)
        sections.append(text)
    current = DOC.read_text() if DOC.exists() else ""
    if selected and BEGIN in current:
        sections = merge(current.partition(BEGIN)[2].partition(END)[0], sections)
    stamp = f"Last run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {_machine()}."
    body = BEGIN + render_block(sections, stamp) + END
    if BEGIN in current and END in current:
        head, _, rest = current.partition(BEGIN)
        _, _, tail = rest.partition(END)
        DOC.write_text(head + body + tail)
    else:
        DOC.write_text(current.rstrip() + "\n\n" + body + "\n")
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
