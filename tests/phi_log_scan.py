"""Scan everything the app logged during the test run for the PHI the tests put in.

Tests register patients as Ada Lovelace, Grace Hopper and friends and put ``Phimarker…``
strings in names, file names, tags and notes. Whatever the app logs while a test runs —
structlog JSON from requests, projections and workers, and records of any library logger —
lands in that test's captured stderr and log sections; this plugin reads them all and
fails the session if one of those strings appears. The test client's own request lines
(httpx) are left out: they are the client's log, not the server's.
"""

from __future__ import annotations

import pytest

PHI_MARKERS = ("lovelace", "hopper", "byron", "phimarker")
CLIENT_LINES = ("HTTP Request:", "httpx:")

# A report carries the sections of the phases before it too: keep each line once.
_leaks: dict[str, None] = {}


def leaked_markers(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        if any(line.lstrip().startswith(prefix) or prefix in line[:40]
               for prefix in CLIENT_LINES):
            continue
        lowered = line.lower()
        found += [f"{marker}: {line[:200]}" for marker in PHI_MARKERS if marker in lowered]
    return found


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for title, text in report.sections:
        if "stderr" in title or "log" in title:
            _leaks.update(dict.fromkeys(f"{report.nodeid} {leak}" for leak in leaked_markers(text)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _leaks and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _leaks:
        terminalreporter.section("PHI found in logs", red=True)
        for leak in list(_leaks)[:50]:
            terminalreporter.write_line(leak)
        terminalreporter.write_line(f"{len(_leaks)} log line(s) hold PHI markers")
