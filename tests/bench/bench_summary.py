"""The pure half of ``make bench``: sections, their hidden summary rows, the merge of a
partial run, and the summary table at the top of the generated block in docs/performance.md.

A benchmark's ``run()`` returns ``title``, ``columns``, ``rows``, ``notes`` and ``summary``:
headline rows ``{"what", "ours", "baseline", "ratio", "target"}`` (strings it formatted from
what it measured). Each section carries its rows, stamped with the date, in an HTML comment
so that a partial run (``make bench BENCH=name``) rebuilds the whole table from the sections
it keeps, including ones measured earlier. No I/O here: ``run.py`` does the measuring and
the writing.
"""

from __future__ import annotations

import json
import re

SUMMARY_FIELDS = ("what", "ours", "baseline", "ratio", "target")
SUMMARY_COLUMNS = ("benchmark", "ours", "baseline", "ratio", "target", "date")
_COMMENT = re.compile(r"^<!-- summary: (.*) -->$", re.MULTILINE)
_SECTION = re.compile(r"^### ", re.MULTILINE)
_ESCAPED_HYPHEN = "\\u002d"  # JSON's escape for "-"
RATIO_LEGEND = ("Ratio: ours against the baseline, above 1x means ours is better (throughput "
                "ours ÷ baseline, time baseline ÷ ours, budget ÷ our p95). Details, inputs "
                "and method per benchmark below.")


def encode_summary(rows: list[dict]) -> str:
    """One line of HTML comment holding ``rows`` as JSON (hidden when rendered)."""
    text = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    # "--" may only occur inside JSON strings, where the escape reads back the same; a
    # comment must not contain "-->" (or, strictly, "--").
    text = text.replace("--", "-" + _ESCAPED_HYPHEN)
    return f"<!-- summary: {text} -->"


def decode_summary(section: str) -> list[dict] | None:
    """The summary rows a section carries, or None for a section written before them."""
    found = _COMMENT.search(section)
    if found is None:
        return None
    try:
        rows = json.loads(found.group(1))
    except json.JSONDecodeError:
        return None
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else None


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(columns: list[str] | tuple[str, ...], rows: list[list]) -> list[str]:
    return (["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows])


def render_section(result: dict, date: str, machine: str) -> str:
    """One benchmark's section: heading, table, notes, stamp, hidden summary rows."""
    lines = [f"### {result['title']}", "", *_table(result["columns"], result["rows"])]
    if result.get("notes"):
        lines += ["", result["notes"]]
    # Each section keeps its own stamp: a partial run leaves the others' as they were.
    lines += ["", f"_Measured {date} on {machine}._"]
    summary = [{**{k: str(row.get(k, "")) for k in SUMMARY_FIELDS}, "date": date}
               for row in result.get("summary", [])]
    if summary:
        lines += ["", encode_summary(summary)]
    return "\n".join(lines) + "\n"


def title_of(section: str) -> str:
    return section.splitlines()[0].removeprefix("### ").strip()


def split_sections(block: str) -> list[str]:
    """The ``### `` sections of a generated block; the stamp and summary before them go."""
    return ["### " + chunk.rstrip() + "\n" for chunk in _SECTION.split(block)[1:]]


def merge(previous_block: str, fresh: list[str]) -> list[str]:
    """A partial run replaces its own sections and keeps the others from the last run."""
    kept = {title_of(section): section for section in split_sections(previous_block)}
    for section in fresh:
        kept[title_of(section)] = section
    return list(kept.values())


def render_summary(sections: list[str]) -> str:
    """The table of every section's headline rows, in section order."""
    rows, missing = [], []
    for section in sections:
        summary = decode_summary(section)
        if summary is None:
            missing.append(title_of(section))
            continue
        rows += [[row.get(k, "") for k in (*SUMMARY_FIELDS, "date")] for row in summary]
    lines = ["## Summary", "", RATIO_LEGEND, ""]
    lines += _table(SUMMARY_COLUMNS, rows) if rows else ["_No benchmark has a summary yet._"]
    if missing:
        lines += ["", "Not in this table (measured before summaries existed; rerun with "
                  "`make bench BENCH=name`): " + "; ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def render_block(sections: list[str], last_run: str) -> str:
    """Everything between the begin and end markers (markers excluded)."""
    return (f"\n{last_run}\n\n" + render_summary(sections) + "\n## Benchmarks\n\n"
            + "\n".join(sections))
