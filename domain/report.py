"""The Report aggregate: a collage rendered for a patient, its versions and its share links.

Life cycle: ``Requested`` → ``Rendered`` (version 1, a blob) → ``Superseded`` when an image
it shows changes (re-categorised, new derivatives, deleted or restored) → ``Rendered``
(version 2; version 1's blob is kept) … A rendering that cannot be done is ``RenderFailed``
with a stable code. ``Shared``/``ShareRevoked`` record signed links to one version.

Every event carries ``actor``, ``patient_id`` and ``clinic_id``: the event-store mapper
seals the report's events with its own key owned by the patient, so destroying the patient
shreds the report too. Downloads are ``ReportDownload`` records: one-event aggregates in the
clear (ids only), like ``domain/access.py``'s access records.

``ReportSpec`` is what a user asks for: a pre-built layout (``domain/collage.py``), its
parameters, the output format and the intended use. It is validated when built, so an
invalid request is refused before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import collage
from domain.errors import InvalidInput
from domain.events import PhiFree
from domain.values import Actor, BlobRef
from domain.views import VIEWS

FORMATS = {"pdf": "application/pdf", "png": "image/png", "jpeg": "image/jpeg"}
MAX_LINK_DAYS = 90
PRESENTATION = "case_presentation"
MAX_PRESENTATION_PAGES = 12


class ReportStatus(StrEnum):
    REQUESTED = "requested"  # waiting for its first rendering
    RENDERED = "rendered"  # the latest version is current
    SUPERSEDED = "superseded"  # an image changed: a new version is being rendered
    FAILED = "failed"


class ShareAudience(StrEnum):
    PATIENT = "patient"  # the patient portal
    REFERRAL = "referral"  # a referring dentist


@dataclass(frozen=True, slots=True)
class ReportSpec:
    """A pre-built layout with its parameters (only the parameters the layout takes), or a
    case presentation: several pre-built layouts as the pages of one PDF, sharing the
    parameters (each page takes those its layout takes)."""

    layout: str
    page: str = "a4"
    purpose: collage.Purpose = collage.Purpose.CLINICAL
    fmt: str = "pdf"
    view: str | None = None
    milestone: str | None = None
    before: str | None = None
    after: str | None = None
    milestones: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()  # the layouts of a case presentation, in order

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise InvalidInput("unsupported_format", "format must be pdf, png or jpeg")
        if self.page.casefold() not in collage.PAGE_SIZES:
            raise InvalidInput("invalid_page_size", "page must be a4 or letter")
        if self.layout == PRESENTATION:
            if not 1 <= len(self.pages) <= MAX_PRESENTATION_PAGES:
                raise InvalidInput("invalid_pages", f"a case presentation has 1 to "
                                   f"{MAX_PRESENTATION_PAGES} pages")
            if self.fmt != "pdf":
                raise InvalidInput("unsupported_format", "a case presentation is a PDF")
        elif self.pages:
            raise InvalidInput("invalid_layout_parameters", f"{self.layout} does not take pages")
        self.templates()  # raises InvalidInput for an unknown layout or bad parameters

    @property
    def is_presentation(self) -> bool:
        return self.layout == PRESENTATION

    def _build(self, layout: str, strict: bool) -> collage.CollageTemplate:
        """``strict``: a parameter the layout does not take is an error (a single layout);
        otherwise it is simply not passed (a presentation page)."""
        if layout == PRESENTATION:
            raise InvalidInput("invalid_pages", "a presentation cannot contain one")
        given: dict[str, Any] = {"page": collage.PAGE_SIZES[self.page.casefold()]}
        named: dict[str, Any] = {"view": self.view, "milestone": self.milestone,
                                 "before": self.before, "after": self.after,
                                 "milestones": tuple(self.milestones) or None}
        accepted = LAYOUT_PARAMETERS.get(layout, ())
        for name, value in named.items():
            if value is None:
                continue
            if name in accepted:
                given[name] = value
            elif strict and layout in LAYOUT_PARAMETERS:
                raise InvalidInput("invalid_layout_parameters", f"{layout} does not take {name}")
        for required in REQUIRED_PARAMETERS.get(layout, ()):
            if required not in given:
                raise InvalidInput("invalid_layout_parameters", f"{layout} needs {required}")
        return collage.prebuilt(layout, **given)

    def templates(self) -> tuple[collage.CollageTemplate, ...]:
        """One template per page."""
        if self.is_presentation:
            return tuple(self._build(layout, strict=False) for layout in self.pages)
        return (self._build(self.layout, strict=True),)

    def shows_photographs(self) -> bool:
        """Whether any page has a photograph slot (an ADA-1100 view or a chosen image)."""
        return any(
            isinstance(cell.content, collage.ImageRef)
            or (isinstance(cell.content, collage.ViewSlot) and cell.content.view in VIEWS)
            for template in self.templates() for cell in template.cells)

    @property
    def media_type(self) -> str:
        return FORMATS[self.fmt]

    def to_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "page": self.page.casefold(),
                "purpose": self.purpose.value, "fmt": self.fmt, "view": self.view,
                "milestone": self.milestone, "before": self.before, "after": self.after,
                "milestones": list(self.milestones), "pages": list(self.pages)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ReportSpec:
        return cls(layout=raw["layout"], page=raw["page"],
                   purpose=collage.Purpose(raw["purpose"]), fmt=raw["fmt"],
                   view=raw.get("view"), milestone=raw.get("milestone"),
                   before=raw.get("before"), after=raw.get("after"),
                   milestones=tuple(raw.get("milestones") or ()),
                   pages=tuple(raw.get("pages") or ()))


# Which optional parameters each pre-built layout takes (besides ``page``), and which it needs.
LAYOUT_PARAMETERS: dict[str, tuple[str, ...]] = {
    "abo_8": ("milestone",),
    "full_series_12": ("milestone",),
    "before_after": ("view", "before", "after"),
    "progress_timeline": ("view", "milestones"),
    "ceph_pano": ("milestone",),
    "smile_progress": ("milestones",),
    PRESENTATION: ("view", "milestone", "before", "after", "milestones", "pages"),
}
REQUIRED_PARAMETERS: dict[str, tuple[str, ...]] = {
    "progress_timeline": ("view", "milestones"),
    "smile_progress": ("milestones",),
    PRESENTATION: ("pages",),
}
LAYOUT_DESCRIPTIONS: dict[str, str] = {
    "abo_8": "ABO 8-photo composite (3 extraoral, 2 occlusal, 3 intraoral)",
    "full_series_12": "Full 12-view photo series",
    "before_after": "Before/after pair of one view",
    "progress_timeline": "Progress timeline: one view across milestones",
    "ceph_pano": "Lateral ceph, panoramic and cephalometric table",
    "smile_progress": "Smile progress: frontal and close-up smile per milestone",
    PRESENTATION: "Case presentation: several of the layouts above as the pages of one PDF",
}


@dataclass(frozen=True, slots=True)
class Rendition:
    version: int
    blob: BlobRef
    pages: int
    image_versions: dict[str, int]  # image id -> the image aggregate's version used
    missing: tuple[str, ...]  # placeholders drawn, e.g. "panoramic — missing"
    rendered_at: datetime


@dataclass(frozen=True, slots=True)
class Share:
    link_id: str
    version: int
    audience: str
    expires_at: datetime
    revoked: bool = False


class Report(Aggregate):
    @event("Requested")
    def __init__(self, *, clinic_id: str, patient_id: UUID, spec: dict[str, Any],
                 actor: Actor) -> None:
        self.clinic_id = clinic_id
        self.patient_id = patient_id
        self.spec = dict(spec)
        self.status = ReportStatus.REQUESTED.value
        self.renditions: list[Rendition] = []
        self.shares: dict[str, Share] = {}
        self.failure: str | None = None
        self.requested_by = actor.user_id
        self.cause_position = 0  # log position of the image change being caught up with

    @property
    def report_spec(self) -> ReportSpec:
        return ReportSpec.from_dict(self.spec)

    @property
    def next_version(self) -> int:
        return len(self.renditions) + 1

    @property
    def needs_rendering(self) -> bool:
        return self.status in (ReportStatus.REQUESTED.value, ReportStatus.SUPERSEDED.value)

    @property
    def latest(self) -> Rendition | None:
        return self.renditions[-1] if self.renditions else None

    def rendition(self, version: int) -> Rendition | None:
        if 1 <= version <= len(self.renditions):
            return self.renditions[version - 1]
        return None

    def used_version_of(self, image_id: UUID) -> int | None:
        latest = self.latest
        return None if latest is None else latest.image_versions.get(str(image_id))

    @event("Rendered")
    def record_rendering(self, *, clinic_id: str, patient_id: UUID, version: int,
                         blob: BlobRef, pages: int, image_versions: dict[str, int],
                         missing: list[str], rendered_at: datetime, actor: Actor) -> None:
        self.renditions.append(Rendition(version, blob, pages, dict(image_versions),
                                         tuple(missing), rendered_at))
        self.status = ReportStatus.RENDERED.value
        self.failure = None

    @event("RenderFailed")
    def record_failure(self, *, clinic_id: str, patient_id: UUID, version: int, code: str,
                       actor: Actor) -> None:
        self.status = ReportStatus.FAILED.value
        self.failure = code

    @event("Superseded")
    def supersede(self, *, clinic_id: str, patient_id: UUID, image_id: UUID,
                  image_version: int, cause_position: int, actor: Actor) -> None:
        """An image it shows changed; the next rendering will be a new version."""
        self.status = ReportStatus.SUPERSEDED.value
        self.cause_position = cause_position

    @event("Shared")
    def share(self, *, clinic_id: str, patient_id: UUID, link_id: str, version: int,
              audience: str, expires_at: datetime, actor: Actor) -> None:
        self.shares[link_id] = Share(link_id, version, audience, expires_at)

    @event("ShareRevoked")
    def revoke_share(self, *, clinic_id: str, patient_id: UUID, link_id: str,
                     actor: Actor) -> None:
        share = self.shares[link_id]
        self.shares[link_id] = Share(share.link_id, share.version, share.audience,
                                     share.expires_at, revoked=True)


class DownloadChannel(StrEnum):
    API = "api"  # a signed-in user of the clinic
    LINK = "link"  # someone holding a share link


class ReportDownload(Aggregate):
    """One download of one report version, one aggregate (never contends with the report)."""

    class Recorded(PhiFree, Aggregate.Created):
        clinic_id: str
        report_id: UUID
        patient_id: UUID
        version: int
        channel: str
        link_id: str | None
        actor: Actor

    @event(Recorded)
    def __init__(self, *, clinic_id: str, report_id: UUID, patient_id: UUID, version: int,
                 channel: str, link_id: str | None, actor: Actor) -> None:
        self.clinic_id = clinic_id
        self.report_id = report_id
        self.patient_id = patient_id
        self.version = version
        self.channel = channel
        self.link_id = link_id
