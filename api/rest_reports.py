"""REST for report bytes: a signed-in download, and the signed share link.

Both record a ``ReportDownload`` (who, which report version, through which channel) before
the bytes go out. A share link needs no sign-in: its signature is the authority, checked
together with the report's state (revoked links, another clinic's report) and, for
marketing or educational reports, the patient's consent at the moment of download.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api.rest_images import ActorDep, services_of
from api.services import Services
from domain import share_link
from domain.errors import Gone, NotFound
from domain.permissions import Permission, require
from domain.report import DownloadChannel, Rendition, Report
from domain.report_commands import use_purpose
from domain.values import Actor

router = APIRouter(prefix="/api/v1", tags=["reports"])
LINK_PATH = "/api/v1/report-links/"
EXTENSIONS = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg"}


def link_token(services: Services, report: Report, link_id: str, version: int,
               expires_at: datetime) -> str:
    claim = share_link.LinkClaim(report.id, version, link_id, report.clinic_id, expires_at)
    return share_link.sign(claim, services.tokens.secret)


def _version(report: Report, version: int | None) -> Rendition:
    chosen = report.rendition(version if version is not None else len(report.renditions))
    if chosen is None:
        if version is None:
            raise NotFound("report_not_rendered", "the report has not been rendered yet")
        raise NotFound("report_version_not_found", f"the report has no version {version}")
    return chosen


def _bytes_response(services: Services, report: Report, rendition: Rendition) -> Response:
    try:
        data = services.blobs.read(report.id, rendition.blob)
    except Gone:
        raise NotFound("report_not_found", "no such report") from None
    ext = EXTENSIONS.get(rendition.blob.media_type, "bin")
    return Response(data, media_type=rendition.blob.media_type, headers={
        # The file name carries ids only: a patient's name in a header could reach logs.
        "Content-Disposition": f'attachment; filename="report-{report.id}-v{rendition.version}'
                               f'.{ext}"',
        "Cache-Control": "private, no-store",
        "ETag": f'"{rendition.blob.sha256}"',
    })


def _download(services: Services, actor: Actor, report_id: UUID, version: int | None
              ) -> Response:
    require(actor, Permission.VIEW)  # the whole picture, not thumbnails or metadata
    report = services.app.report(actor, report_id)
    rendition = _version(report, version)
    services.app.record_report_download(actor, report, rendition.version,
                                        DownloadChannel.API, None)
    return _bytes_response(services, report, rendition)


@router.get("/reports/{report_id}/download")
async def download_report(report_id: UUID, request: Request, actor: ActorDep,
                          version: Annotated[int | None, Query(ge=1)] = None) -> Response:
    """The latest (or the given) version of a rendered report, as stored."""
    return await run_in_threadpool(_download, services_of(request), actor, report_id, version)


def _by_link(services: Services, token: str) -> Response:
    now = datetime.now(UTC)
    claim = share_link.verify(token, services.tokens.secret, now)
    invalid = NotFound("link_invalid", "this link is not valid")
    try:
        report = services.app.repository.get(claim.report_id)
    except Exception:  # never existed, or shredded with the patient
        raise invalid from None
    if not isinstance(report, Report) or report.clinic_id != claim.clinic_id:
        raise invalid
    share = report.shares.get(claim.link_id)
    if share is None or share.version != claim.version:
        raise invalid
    if share.revoked:
        raise Gone("link_revoked", "this link was withdrawn by the practice")
    if now >= share.expires_at:
        raise Gone("link_expired", "this link has expired; ask the practice for a new one")
    actor = Actor(user_id=f"link:{claim.link_id}", role="share_link",
                  clinic_id=report.clinic_id)
    purpose = use_purpose(report.report_spec.purpose)
    if purpose is not None:
        # Consent may have been revoked after sharing: the link stops working with it.
        patient = services.app.repository.get(report.patient_id)
        services.app.check_consent(actor, patient, purpose, now)
    rendition = _version(report, claim.version)
    services.app.record_report_download(actor, report, rendition.version,
                                        DownloadChannel.LINK, claim.link_id)
    return _bytes_response(services, report, rendition)


@router.get("/report-links/{token}")
async def download_shared_report(token: str, request: Request) -> Response:
    """A shared report through its signed link: 404 ``link_invalid`` when altered,
    410 ``link_expired`` / ``link_revoked``, 409 ``consent_required`` when the patient
    withdrew the consent the report's use needs."""
    return await run_in_threadpool(_by_link, services_of(request), token)
