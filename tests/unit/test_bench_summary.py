"""The pure half of ``make bench`` (tests/bench/bench_summary.py): hidden summary rows,
the merge of a partial run, and the summary table at the top of docs/performance.md."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_summary import (
    SUMMARY_COLUMNS,
    decode_summary,
    encode_summary,
    merge,
    render_block,
    render_section,
    render_summary,
    split_sections,
)

MACHINE = "x86_64, 2 cores"


def _result(title: str, ours: str, **extra: object) -> dict:
    return {
        "title": title,
        "columns": ["what", "value"],
        "rows": [["ours", ours], ["baseline", "10"]],
        "notes": "Measured in one process.",
        "summary": [{"what": title, "ours": ours, "baseline": "naive 10 ms",
                     "ratio": "2.0x", "target": "≥2x (issue 3): met", **extra}],
    }


def _rows_of(table: str) -> list[list[str]]:
    """Data rows of the first markdown table in ``table`` (header and rule skipped)."""
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]


def test_summary_comment_round_trips_awkward_text():
    rows = [{"what": "relay -> consumer --> done", "ours": "p95 <!-- 35 ms", "ratio": "1x",
             "baseline": 'quote " and | pipe', "target": "≥3x — ünïcode", "date": "2026-11-30"}]

    comment = encode_summary(rows)

    assert "\n" not in comment
    # Nothing inside may end (or, strictly, contain "--" in) the HTML comment early.
    assert "--" not in comment.removeprefix("<!--").removesuffix("-->")
    assert decode_summary(f"### Title\n\nsome text\n\n{comment}\n") == rows


def test_section_carries_its_summary_with_its_date():
    section = render_section(_result("Collage", "5 ms"), "2026-11-30", MACHINE)

    assert section.startswith("### Collage\n")
    assert "_Measured 2026-11-30 on x86_64, 2 cores._" in section
    assert decode_summary(section) == [{"what": "Collage", "ours": "5 ms",
                                        "baseline": "naive 10 ms", "ratio": "2.0x",
                                        "target": "≥2x (issue 3): met",
                                        "date": "2026-11-30"}]


def test_section_without_summary_carries_no_comment():
    result = _result("Old", "1 ms")
    del result["summary"]

    section = render_section(result, "2026-11-01", MACHINE)

    assert "<!-- summary" not in section
    assert decode_summary(section) is None


def test_summary_table_lists_every_row_in_section_order():
    sections = [render_section(_result("B bench", "7 ms"), "2026-11-29", MACHINE),
                render_section(_result("A bench", "3 ms"), "2026-11-30", MACHINE)]

    table = render_summary(sections)

    assert "| " + " | ".join(SUMMARY_COLUMNS) + " |" in table
    assert _rows_of(table) == [
        ["B bench", "7 ms", "naive 10 ms", "2.0x", "≥2x (issue 3): met", "2026-11-29"],
        ["A bench", "3 ms", "naive 10 ms", "2.0x", "≥2x (issue 3): met", "2026-11-30"],
    ]


def test_summary_table_escapes_pipes_in_cells():
    section = render_section(_result("Pipes", "a | b"), "2026-11-30", MACHINE)

    table = render_summary([section])

    assert "| Pipes | a \\| b |" in table


def test_sections_from_older_runs_contribute_no_row_but_are_named():
    old = _result("Old bench", "9 ms")
    del old["summary"]
    sections = [render_section(old, "2026-11-01", MACHINE),
                render_section(_result("New bench", "1 ms"), "2026-11-30", MACHINE)]

    table = render_summary(sections)

    assert [row[0] for row in _rows_of(table)] == ["New bench"]
    assert "Not in this table" in table and "Old bench" in table


def test_partial_run_keeps_earlier_sections_and_their_summaries():
    earlier = [render_section(_result("Ceph", "60 ms"), "2026-11-28", MACHINE),
               render_section(_result("Search", "900 ms"), "2026-11-28", MACHINE),
               render_section(_result("Guidance", "14 ms"), "2026-11-28", MACHINE)]
    previous = render_block(earlier, "Last run 2026-11-28 10:00 UTC — machine.")
    fresh = [render_section(_result("Search", "40 ms"), "2026-11-30", MACHINE)]

    sections = merge(previous, fresh)
    table = render_summary(sections)

    assert [s.splitlines()[0] for s in sections] == ["### Ceph", "### Search", "### Guidance"]
    assert _rows_of(table) == [
        ["Ceph", "60 ms", "naive 10 ms", "2.0x", "≥2x (issue 3): met", "2026-11-28"],
        ["Search", "40 ms", "naive 10 ms", "2.0x", "≥2x (issue 3): met", "2026-11-30"],
        ["Guidance", "14 ms", "naive 10 ms", "2.0x", "≥2x (issue 3): met", "2026-11-28"],
    ]


def test_merge_appends_a_new_benchmark_and_ignores_the_summary_heading():
    previous = render_block([render_section(_result("Ceph", "60 ms"), "2026-11-28", MACHINE)],
                            "Last run 2026-11-28 10:00 UTC — machine.")

    sections = merge(previous, [render_section(_result("Relay", "1 ms"), "2026-11-30",
                                               MACHINE)])

    assert [s.splitlines()[0] for s in sections] == ["### Ceph", "### Relay"]


def test_block_round_trips_through_a_rerun_unchanged():
    sections = [render_section(_result("Ceph", "60 ms"), "2026-11-28", MACHINE),
                render_section(_result("Load", "29 req/s"), "2026-11-29", MACHINE)]
    block = render_block(sections, "Last run 2026-11-29 10:00 UTC — machine.")

    assert split_sections(block) == sections
    assert render_block(merge(block, []), "Last run 2026-11-29 10:00 UTC — machine.") == block


def test_block_puts_stamp_then_summary_then_sections():
    sections = [render_section(_result("Ceph", "60 ms"), "2026-11-28", MACHINE)]

    block = render_block(sections, "Last run 2026-11-28 10:00 UTC — machine.")

    stamp = block.index("Last run")
    summary = block.index("## Summary")
    details = block.index("### Ceph")
    assert stamp < summary < block.index("| Ceph | 60 ms") < details
