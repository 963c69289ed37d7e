"""Commands for reports (collages rendered for a patient), mixed into the imaging service.

Users request, share and revoke; the report worker (``workers/report_renderer.py``) records
renderings, failures and supersessions. Worker commands are idempotent: each says exactly
which version or change it is about, and does nothing when the report already moved past
it, so an event replayed after a crash records nothing twice.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.collage import Purpose
from domain.consent_rules import Purpose as ConsentPurpose
from domain.errors import Conflict, Gone, InvalidInput, NotFound
from domain.permissions import Grant, Permission, require
from domain.report import (
    MAX_LINK_DAYS,
    DownloadChannel,
    Report,
    ReportDownload,
    ReportSpec,
    ReportStatus,
    ShareAudience,
)
from domain.values import Actor, BlobRef

MIN_LINK = timedelta(minutes=5)
Command = TypeVar("Command", bound=Callable[..., Any])


def _retrying(command: Command) -> Command:
    """``domain.imaging.retry_on_conflict``, looked up late (that module imports this one)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from domain.imaging import retry_on_conflict

        return retry_on_conflict(command)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def use_purpose(purpose: Purpose) -> ConsentPurpose | None:
    """The consent rule a report's intended use falls under; None for clinical care."""
    if purpose is Purpose.CLINICAL:
        return None
    return ConsentPurpose(purpose.value)


class ReportCommands:
    """Uses ``repository``, ``_save``, ``get_patient`` and ``check_use_consent`` (from
    ``domain/consent_rules.py``: records the refusal, then raises 409 ``consent_required``)
    of the application it is mixed into."""

    repository: Any
    _save: Any
    get_patient: Any
    check_use_consent: Any
    check_photograph_consent: Any

    def _check_use(self, actor: Actor, patient_id: UUID, purpose: Purpose) -> None:
        consent_purpose = use_purpose(purpose)
        if consent_purpose is not None:
            self.check_use_consent(actor, patient_id, consent_purpose, datetime.now(UTC))

    # ---- users -----------------------------------------------------------------------------

    def request_report(self, actor: Actor, patient_id: UUID, spec: ReportSpec) -> tuple[UUID, int]:
        self.get_patient(patient_id, actor)  # tenancy first: another clinic's id is 404
        require(actor, Permission.EXPORT)
        self._check_use(actor, patient_id, spec.purpose)
        if spec.shows_photographs():
            self.check_photograph_consent(actor, self.get_patient(patient_id, actor))
        report = Report(clinic_id=actor.clinic_id, patient_id=patient_id, spec=spec.to_dict(),
                        actor=actor)
        return report.id, self._save(report)

    def report(self, actor: Actor, report_id: UUID) -> Report:
        """Tenancy first: another clinic's report does not exist for this caller."""
        require(actor, Permission.VIEW, Grant.THUMBNAILS, Grant.METADATA)
        try:
            report = self.repository.get(report_id)
        except (AggregateNotFoundError, Gone):
            raise NotFound("report_not_found", "no such report") from None
        if not isinstance(report, Report) or report.clinic_id != actor.clinic_id:
            raise NotFound("report_not_found", "no such report")
        return report

    @_retrying
    def share_report(self, actor: Actor, report_id: UUID, *, audience: ShareAudience,
                     expires_in: timedelta, version: int | None = None
                     ) -> tuple[str, int, datetime, int]:
        """A new link id for one rendered version; returns (link id, version, expiry, position).
        The caller signs the link (the signing key is not the domain's)."""
        report = self.report(actor, report_id)
        require(actor, Permission.EXPORT)
        if not MIN_LINK <= expires_in <= timedelta(days=MAX_LINK_DAYS):
            raise InvalidInput("invalid_expiry",
                               f"a link lasts from 5 minutes to {MAX_LINK_DAYS} days")
        chosen = version if version is not None else len(report.renditions)
        if report.rendition(chosen) is None:
            if version is None:
                raise Conflict("report_not_rendered", "the report has not been rendered yet")
            raise NotFound("report_version_not_found", f"the report has no version {version}")
        now = datetime.now(UTC)
        # Consent is checked again at sharing: it may have been revoked since the request.
        self._check_use(actor, report.patient_id, report.report_spec.purpose)
        link_id = secrets.token_hex(8)
        expires_at = (now + expires_in).replace(microsecond=0)
        report.share(clinic_id=report.clinic_id, patient_id=report.patient_id,
                     link_id=link_id, version=chosen, audience=audience.value,
                     expires_at=expires_at, actor=actor)
        return link_id, chosen, expires_at, self._save(report)

    @_retrying
    def revoke_report_share(self, actor: Actor, report_id: UUID, link_id: str) -> int:
        report = self.report(actor, report_id)
        require(actor, Permission.EXPORT)
        share = report.shares.get(link_id)
        if share is None:
            raise NotFound("link_not_found", "no such link on this report")
        if share.revoked:
            return 0
        report.revoke_share(clinic_id=report.clinic_id, patient_id=report.patient_id,
                            link_id=link_id, actor=actor)
        return self._save(report)

    def record_report_download(self, actor: Actor, report: Report, version: int,
                               channel: DownloadChannel, link_id: str | None) -> int:
        record = ReportDownload(clinic_id=report.clinic_id, report_id=report.id,
                                patient_id=report.patient_id, version=version,
                                channel=channel.value, link_id=link_id, actor=actor)
        return self._save(record)

    # ---- the report worker ---------------------------------------------------------------------

    def record_report_rendering(self, actor: Actor, report_id: UUID, *, version: int,
                                blob: BlobRef, pages: int, image_versions: dict[str, int],
                                missing: list[str]) -> int:
        """Records version ``version``; nothing if the report already has it."""
        report: Report = self.repository.get(report_id)
        if not report.needs_rendering or report.next_version != version:
            return 0
        report.record_rendering(clinic_id=report.clinic_id, patient_id=report.patient_id,
                                version=version, blob=blob, pages=pages,
                                image_versions=image_versions, missing=missing,
                                rendered_at=datetime.now(UTC), actor=actor)
        return self._save(report)

    def record_report_failure(self, actor: Actor, report_id: UUID, *, version: int,
                              code: str) -> int:
        report: Report = self.repository.get(report_id)
        if not report.needs_rendering or report.next_version != version:
            return 0
        report.record_failure(clinic_id=report.clinic_id, patient_id=report.patient_id,
                              version=version, code=code, actor=actor)
        return self._save(report)

    def supersede_report(self, actor: Actor, report_id: UUID, *, image_id: UUID,
                         image_version: int, cause_position: int) -> int:
        """The report shows ``image_id`` at an older version than ``image_version``: mark
        it for a new rendering. Nothing when it is already pending or already newer."""
        report: Report = self.repository.get(report_id)
        if report.status != ReportStatus.RENDERED.value:
            return 0
        used = report.used_version_of(image_id)
        if used is None or used >= image_version:
            return 0
        report.supersede(clinic_id=report.clinic_id, patient_id=report.patient_id,
                         image_id=image_id, image_version=image_version,
                         cause_position=cause_position, actor=actor)
        return self._save(report)
