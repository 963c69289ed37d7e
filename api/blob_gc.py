"""`orthovault gc`: removes blobs that no recorded event refers to.

Every blob lives under the id of the aggregate whose events record it (an image's original,
derivatives and tile pack under the image id, a report's PDF under the report id, …). An
upload stores its original before the ``Captured`` event commits, so a crash between the two
leaves a folder that no aggregate owns — an orphan, never acknowledged to anyone. Likewise a
crash mid-write leaves a temporary file behind, and a subject whose key was destroyed
(crypto-shredded) leaves ciphertext nobody can read. ``gc`` removes all three.

A grace period protects uploads in flight: a subject folder touched more recently than that
is left alone, because its event may be about to commit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

import structlog
from eventsourcing.application import AggregateNotFoundError

from adapters.blob_store import BlobBackend
from domain.errors import Gone
from domain.imaging import Imaging

log = structlog.get_logger("orthovault.gc")
DEFAULT_GRACE = timedelta(hours=24)


@dataclass
class GcReport:
    subjects_checked: int = 0
    orphans: list[str] = field(default_factory=list)
    shredded: list[str] = field(default_factory=list)
    unfinished_writes: int = 0
    skipped_recent: int = 0
    skipped_unknown: list[str] = field(default_factory=list)


def collect_garbage(app: Imaging, backend: BlobBackend, *, grace: timedelta = DEFAULT_GRACE,
                    dry_run: bool = False, now: float | None = None) -> GcReport:
    report = GcReport()
    cutoff = (time.time() if now is None else now) - grace.total_seconds()
    for subject, modified in list(backend.subjects()):
        report.subjects_checked += 1
        if modified > cutoff:
            report.skipped_recent += 1
            continue
        state = _subject_state(app, subject)
        if state == "unknown":
            report.skipped_unknown.append(subject)  # not ours to judge: leave it
            continue
        if state == "live":
            continue
        (report.orphans if state == "orphan" else report.shredded).append(subject)
        if not dry_run:
            backend.delete_prefix(f"{subject}/")
    for path, modified in list(backend.unfinished_writes()):
        if modified <= cutoff:
            report.unfinished_writes += 1
            if not dry_run:
                backend.remove_unfinished(path)
    log.info("gc_done", checked=report.subjects_checked, orphans=len(report.orphans),
             shredded=len(report.shredded), unfinished=report.unfinished_writes,
             recent=report.skipped_recent, dry_run=dry_run)
    return report


def _subject_state(app: Imaging, subject: str) -> str:
    try:
        subject_id = UUID(subject)
    except ValueError:
        return "unknown"
    try:
        app.repository.get(subject_id)
    except AggregateNotFoundError:
        return "orphan"
    except Gone:
        return "shredded"
    return "live"
