"""``make bench``: run every benchmark, print the tables, rewrite docs/performance.md.

Each ``*_bench.py`` beside this file exposes ``run(tmp_dir) -> dict`` with ``title``,
``columns``, ``rows`` and ``notes``. Benchmarks compare against baselines run in the same
process on the same inputs, so the ratios hold even when the machine is busy.
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


def _markdown(result: dict) -> str:
    lines = [f"### {result['title']}", "", "| " + " | ".join(result["columns"]) + " |",
             "|" + "---|" * len(result["columns"])]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in result["rows"]]
    if result.get("notes"):
        lines += ["", result["notes"]]
    # Each section keeps its own stamp: a partial run leaves the others' as they were.
    lines += ["", f"_Measured {datetime.now(UTC):%Y-%m-%d} on {_machine()}._"]
    return "\n".join(lines) + "\n"


def _merge(previous: str, fresh: list[str]) -> list[str]:
    """A partial run replaces its own sections and keeps the others from the last run."""
    kept = {}
    for chunk in previous.split("### ")[1:]:
        kept[chunk.splitlines()[0]] = "### " + chunk.rstrip() + "\n"
    for section in fresh:
        kept[section.splitlines()[0].removeprefix("### ")] = section
    return list(kept.values())


def main(selected: list[str]) -> None:
    sys.path[:0] = [str(ROOT), str(HERE)]
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
        text = _markdown(result)
        print(text, flush=True)
        sections.append(text)
    current = DOC.read_text() if DOC.exists() else ""
    if selected and BEGIN in current:
        sections = _merge(current.partition(BEGIN)[2].partition(END)[0], sections)
    stamp = f"Last run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {_machine()}.\n\n"
    body = BEGIN + "\n" + stamp + "\n".join(sections) + END
    if BEGIN in current and END in current:
        head, _, rest = current.partition(BEGIN)
        _, _, tail = rest.partition(END)
        DOC.write_text(head + body + tail)
    else:
        DOC.write_text(current.rstrip() + "\n\n" + body + "\n")
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
