"""Report worker: renders requested reports in the background and re-renders them as a new
version when an image they show changes.

Follows the log in order, resuming from its own tracking position:

* ``Report.Requested`` / ``Report.Superseded``: resolve the layout against the patient's
  images (gallery read model; milestones from capture sessions), decode each picked
  original only as large as its cell prints (``adapters/collage_renderer.py``), store the
  output as a blob sealed with the report's key (owned by the patient) and record
  ``Report.Rendered`` with the version of every image used. A report that cannot be
  rendered (consent revoked meanwhile, no image decodable …) is ``RenderFailed`` with a code.
* an image change (re-categorised, new derivatives, deleted, restored): every report whose
  latest version shows an older version of that image is ``Superseded``.
* ``Report.Rendered``: if an image changed between being read and the rendering being
  recorded, supersede right away (the change's own event was seen before the report
  listed the image).

Each step is idempotent (the report's state says what is left to do; blob names are fixed
per version), so an event replayed after a crash records nothing twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import structlog
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.utils import get_topic

from adapters import collage_renderer
from adapters.blob_store import BlobCorrupted, EncryptedBlobStore
from adapters.image_codec import RASTER_TYPES
from domain import collage
from domain.errors import Gone, OrthovaultError
from domain.image import Image
from domain.imaging import Imaging
from domain.patient import ConsentScope, Patient
from domain.report import Report
from domain.values import Actor
from projections.gallery import GalleryImage, GalleryView
from projections.reports import (
    STALE_TOPICS,
    PatientMilestones,
    ReportsView,
    patient_milestones,
)

log = structlog.get_logger("orthovault.workers.reports")

NAME = "report_renderer_v1"
TOPICS = tuple(get_topic(c) for c in (Report.Requested, Report.Superseded, Report.Rendered)
               ) + STALE_TOPICS
_STALE = (Image.Categorised, Image.DerivativesGenerated, Image.SoftDeleted, Image.Restored)
WORKER = "system:reports"
ATTEMPTS = 3
MAX_CANDIDATES = 2000
# Gallery quality grades as the ranking score ``domain/collage.py`` expects (0..1).
QUALITY_SCORE = {"pass": 0.9, "warn": 0.6, "fail": 0.2}


@dataclass(frozen=True)
class Output:
    rendered: collage_renderer.Rendered
    image_versions: dict[str, int]  # image id -> the image aggregate's version drawn
    missing: list[str]  # placeholders drawn for slots with no image


def _actor(clinic_id: str) -> Actor:
    return Actor(user_id=WORKER, role="system", clinic_id=clinic_id)


class ReportRenderer:
    def __init__(self, app: Imaging, blobs: EncryptedBlobStore, gallery: GalleryView,
                 sessions: Any, reports: ReportsView, tracking: TrackingRecorder,
                 wait_timeout: float = 30.0):
        self.app = app
        self.blobs = blobs
        self.gallery = gallery
        self.sessions = sessions
        self.reports = reports
        self.tracking = tracking
        self.wait_timeout = wait_timeout

    def __call__(self, event: Any, tracking: Tracking) -> None:
        if isinstance(event, Report.Requested | Report.Superseded):
            self._render(event.originator_id)
        elif isinstance(event, Report.Rendered):
            self._check_fresh(event)
        elif isinstance(event, _STALE):
            self._supersede_showing(event, tracking.notification_id)
        self.tracking.insert_tracking(tracking)

    # ---- superseding ---------------------------------------------------------------------

    def _supersede_showing(self, event: Any, position: int) -> None:
        # The reports view must have applied everything up to this change before we ask it
        # which reports show the image; a timeout raises and the runner retries from here.
        self.reports.wait(self.app.name, position, timeout=self.wait_timeout)
        for report_id in self.reports.reports_showing(event.originator_id,
                                                      event.originator_version):
            self._supersede(report_id, event.originator_id, event.originator_version, position)

    def _supersede(self, report_id: UUID, image_id: UUID, image_version: int,
                   position: int) -> None:
        for _attempt in range(ATTEMPTS):
            try:
                report: Report = self.app.repository.get(report_id)
                self.app.supersede_report(_actor(report.clinic_id), report_id,
                                          image_id=image_id, image_version=image_version,
                                          cause_position=position)
                return
            except IntegrityError:
                continue
            except Gone:
                return

    def _check_fresh(self, event: Report.Rendered) -> None:
        """Changes that make a report stale and landed after the rendering read the image
        (other new versions, such as tiles or a quality report, change nothing drawn)."""
        for image_id, used in event.image_versions.items():
            try:
                later = list(self.app.events.get(UUID(image_id), gt=used))
            except (Gone, AggregateNotFoundError):
                continue
            stale = [e for e in later if isinstance(e, _STALE)]
            if stale:
                self._supersede(event.originator_id, UUID(image_id),
                                stale[-1].originator_version, 0)
                return

    # ---- rendering -----------------------------------------------------------------------

    def _render(self, report_id: UUID) -> None:
        for _attempt in range(ATTEMPTS):
            try:
                report: Report = self.app.repository.get(report_id)
            except Gone:
                return  # the patient was destroyed
            if not report.needs_rendering:
                return
            actor = _actor(report.clinic_id)
            version = report.next_version
            if report.cause_position:
                self._wait_for_gallery(report.cause_position)
            try:
                outcome = self._produce(report)
            except OrthovaultError as error:
                self._fail(actor, report, version, error.code)
                return
            except (BlobCorrupted, OSError, ValueError) as error:
                log.warning("report_render_failed", report_id=str(report.id),
                            error=type(error).__name__)
                self._fail(actor, report, version, "render_error")
                return
            rendered = outcome.rendered
            # A fixed name per version: a retried rendering overwrites, never adds.
            name = f"v{version}.{report.report_spec.fmt}"
            blob = self.blobs.put_bytes(report.id, name, rendered.data, rendered.media_type,
                                        owner_id=report.patient_id)
            try:
                self.app.record_report_rendering(
                    actor, report.id, version=version, blob=blob, pages=rendered.pages,
                    image_versions=outcome.image_versions, missing=outcome.missing)
            except IntegrityError:
                continue  # the report changed meanwhile (shared, say): look again
            return

    def _fail(self, actor: Actor, report: Report, version: int, code: str) -> None:
        for _attempt in range(ATTEMPTS):
            try:
                self.app.record_report_failure(actor, report.id, version=version, code=code)
                return
            except IntegrityError:
                continue

    def _wait_for_gallery(self, position: int) -> None:
        try:
            self.gallery.wait(self.app.name, position, timeout=self.wait_timeout)
        except TimeoutError:
            log.warning("report_gallery_lag", position=position)

    def _candidates(self, report: Report, patient: Patient,
                    milestones: PatientMilestones) -> list[collage.CollageImage]:
        now = datetime.now(UTC)
        scopes = frozenset(s.value for s in ConsentScope if patient.has_consent(s, now))
        rows: list[GalleryImage] = []
        after = None
        while len(rows) < MAX_CANDIDATES:
            page = self.gallery.images_of_patient(report.clinic_id, report.patient_id,
                                                  first=200, after=after)
            rows += page.images
            if not page.has_next_page:
                break
            after = page.end_cursor
        return [
            collage.CollageImage(
                id=str(row.id), view=row.view, milestone=milestones.of_image.get(str(row.id)),
                captured_at=row.captured_at,
                quality=QUALITY_SCORE.get(str((row.quality or {}).get("status"))),
                deleted=row.status != "active", consent_scopes=scopes)
            for row in rows if row.media_type in RASTER_TYPES
        ]

    def _resolve(self, report: Report
                 ) -> tuple[list[collage.ResolvedCollage], dict[str, Image]]:
        """Picks from the gallery, then checks each pick against its aggregate: a pick the
        gallery has not caught up with yet (re-categorised or deleted a moment ago) is
        picked again once the gallery shows the change."""
        spec = report.report_spec
        patient: Patient = self.app.repository.get(report.patient_id)
        milestones = patient_milestones(self.sessions, report.clinic_id, report.patient_id)
        fields = {"patient_name": f"{patient.given_name} {patient.family_name}",
                  "patient_id": patient.external_id,
                  "birth_date": patient.birth_date.isoformat(),
                  "date": datetime.now(UTC).date().isoformat(),
                  "clinic_name": report.clinic_id}
        deadline = time.monotonic() + self.wait_timeout
        while True:
            candidates = self._candidates(report, patient, milestones)
            pages = [collage.resolve(template, candidates, purpose=spec.purpose,
                                     milestone_dates=milestones.dates, fields=fields,
                                     has_logo=False)
                     for template in spec.templates()]
            images = {i: self.app.repository.get(UUID(i))
                      for page in pages for i in page.image_ids}
            by_id = {c.id: c for c in candidates}
            stale = [i for i, image in images.items()
                     if image.view != by_id[i].view or image.is_deleted != by_id[i].deleted]
            if not stale or time.monotonic() > deadline:
                if stale:
                    log.warning("report_gallery_lag", report_id=str(report.id))
                return pages, images
            time.sleep(0.2)

    def _produce(self, report: Report) -> Output:
        spec = report.report_spec
        pages, images = self._resolve(report)

        def load(image_id: str) -> bytes:
            image = images[image_id]
            return self.blobs.read(image.id, image.original)

        branding = collage.Branding(clinic_name=report.clinic_id)
        if spec.is_presentation:
            rendered = collage_renderer.render_presentation(
                [collage.CollagePage(page) for page in pages], load, branding=branding)
        elif spec.fmt == "pdf":
            rendered = collage_renderer.render_pdf(pages[0], load, branding=branding)
        else:
            rendered = collage_renderer.render_raster(pages[0], load, branding=branding,
                                                      fmt=spec.fmt)
        versions = {image_id: image.version for image_id, image in images.items()}
        return Output(rendered, versions,
                      [m.placeholder for page in pages for m in page.missing])
