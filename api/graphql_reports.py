"""GraphQL for reports: the pre-built layouts, requesting a report, listing a patient's
reports with their versions, and signed share links.

Rendering happens in the background (``workers/report_renderer.py``): ``requestReport``
answers at once with status ``requested``; a client polls ``report``/``reports`` until the
status is ``rendered`` and then downloads ``versions[].downloadUrl``.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

import strawberry
from strawberry.types import Info

from api.graphql_context import actor_of, blocking, parse_id
from api.rest_reports import LINK_PATH, link_token
from api.services import Services
from domain.collage import Purpose
from domain.permissions import Grant, Permission, require
from domain.report import (
    LAYOUT_DESCRIPTIONS,
    LAYOUT_PARAMETERS,
    REQUIRED_PARAMETERS,
    Report,
    ReportSpec,
    ShareAudience,
)
from domain.values import Actor


@strawberry.enum
class ReportPurpose(enum.Enum):
    CLINICAL = "clinical"
    MARKETING = "marketing"
    EDUCATIONAL = "educational"


@strawberry.enum
class ReportFormat(enum.Enum):
    PDF = "pdf"
    PNG = "png"
    JPEG = "jpeg"


@strawberry.enum(name="ReportPageSize")
class PageSize(enum.Enum):
    A4 = "a4"
    LETTER = "letter"


@strawberry.enum
class ShareAudienceKind(enum.Enum):
    PATIENT = "patient"
    REFERRAL = "referral"


@strawberry.type(name="ReportLayout")
class Layout:
    name: str
    description: str
    parameters: list[str]
    required_parameters: list[str]


@strawberry.type
class ReportVersion:
    version: int
    pages: int
    media_type: str
    size: int
    sha256: str
    rendered_at: datetime
    missing: list[str]
    image_ids: list[strawberry.ID]
    download_url: str


@strawberry.type
class ReportShare:
    link_id: str
    version: int
    audience: str
    expires_at: datetime
    revoked: bool


@strawberry.type(name="Report")
class ReportNode:
    id: strawberry.ID
    patient_id: strawberry.ID
    layout: str
    purpose: str
    format: str
    status: str
    failure: str | None
    versions: list[ReportVersion]
    shares: list[ReportShare]


@strawberry.type
class SharedLink:
    link_id: str
    url: str
    version: int
    expires_at: datetime


@strawberry.input
class RequestReportInput:
    patient_id: strawberry.ID
    layout: str
    page: PageSize = PageSize.A4
    format: ReportFormat = ReportFormat.PDF
    purpose: ReportPurpose = ReportPurpose.CLINICAL
    view: str | None = None
    milestone: str | None = None
    before: str | None = None
    after: str | None = None
    milestones: list[str] | None = None
    pages: list[str] | None = None  # case_presentation: the layouts, in order


@strawberry.input
class ShareReportInput:
    report_id: strawberry.ID
    audience: ShareAudienceKind = ShareAudienceKind.PATIENT
    expires_in_hours: int = 72
    version: int | None = None


def _node(report: Report) -> ReportNode:
    spec = report.report_spec
    return ReportNode(
        id=strawberry.ID(str(report.id)), patient_id=strawberry.ID(str(report.patient_id)),
        layout=spec.layout, purpose=spec.purpose.value, format=spec.fmt,
        status=report.status, failure=report.failure,
        versions=[ReportVersion(
            version=r.version, pages=r.pages, media_type=r.blob.media_type, size=r.blob.size,
            sha256=r.blob.sha256, rendered_at=r.rendered_at, missing=list(r.missing),
            image_ids=[strawberry.ID(i) for i in r.image_versions],
            download_url=f"/api/v1/reports/{report.id}/download?version={r.version}",
        ) for r in report.renditions],
        shares=[ReportShare(link_id=s.link_id, version=s.version, audience=s.audience,
                            expires_at=s.expires_at, revoked=s.revoked)
                for s in report.shares.values()],
    )


def _spec(input: RequestReportInput) -> ReportSpec:
    return ReportSpec(
        layout=input.layout, page=input.page.value, purpose=Purpose(input.purpose.value),
        fmt=input.format.value, view=input.view, milestone=input.milestone,
        before=input.before, after=input.after, milestones=tuple(input.milestones or ()),
        pages=tuple(input.pages or ()))


def _reports_of(services: Services, actor: Actor, patient_id: str) -> list[ReportNode]:
    patient = services.app.get_patient(parse_id(patient_id, "patientId"), actor)  # tenancy
    # Asked here too, not only per row: a patient without reports must not skip the check.
    require(actor, Permission.VIEW, Grant.THUMBNAILS, Grant.METADATA)
    rows = services.reports.reports_of_patient(actor.clinic_id, patient.id)
    return [_node(services.app.report(actor, row.id)) for row in rows]


@strawberry.type
class ReportsQuery:
    @strawberry.field(description="The pre-built report layouts and the parameters each takes.")
    def report_layouts(self) -> list[Layout]:
        return [Layout(name=name, description=LAYOUT_DESCRIPTIONS[name],
                       parameters=["page", *LAYOUT_PARAMETERS[name]],
                       required_parameters=list(REQUIRED_PARAMETERS.get(name, ())))
                for name in LAYOUT_PARAMETERS]

    @strawberry.field(description="A patient's reports, newest first.")
    async def reports(self, info: Info, patient_id: strawberry.ID) -> list[ReportNode]:
        actor = actor_of(info)
        return await blocking(_reports_of, info.context.services, actor, patient_id)

    @strawberry.field
    async def report(self, info: Info, id: strawberry.ID) -> ReportNode:
        actor = actor_of(info)
        services: Services = info.context.services
        return _node(await blocking(services.app.report, actor, parse_id(id, "id")))


@strawberry.type
class ReportsMutation:
    @strawberry.mutation(description="Queue a report; it renders in the background.")
    async def request_report(self, info: Info, input: RequestReportInput) -> ReportNode:
        actor = actor_of(info)
        services: Services = info.context.services
        spec = _spec(input)  # validated before anything is stored
        report_id, position = await blocking(
            services.app.request_report, actor, parse_id(input.patient_id, "patientId"), spec)
        await blocking(services.wait_for_read_models, position, services.reports)
        return _node(await blocking(services.app.report, actor, report_id))

    @strawberry.mutation(description="A signed link to one rendered version, expiring.")
    async def share_report(self, info: Info, input: ShareReportInput) -> SharedLink:
        actor = actor_of(info)
        services: Services = info.context.services
        report_id = parse_id(input.report_id, "reportId")
        link_id, version, expires_at, _position = await blocking(
            services.app.share_report, actor, report_id,
            audience=ShareAudience(input.audience.value),
            expires_in=timedelta(hours=input.expires_in_hours), version=input.version)
        report = await blocking(services.app.report, actor, report_id)
        token = link_token(services, report, link_id, version, expires_at)
        return SharedLink(link_id=link_id, url=LINK_PATH + token, version=version,
                          expires_at=expires_at)

    @strawberry.mutation
    async def revoke_report_share(self, info: Info, report_id: strawberry.ID,
                                  link_id: str) -> ReportNode:
        actor = actor_of(info)
        services: Services = info.context.services
        rid = parse_id(report_id, "reportId")
        await blocking(services.app.revoke_report_share, actor, rid, link_id)
        return _node(await blocking(services.app.report, actor, rid))
