"""Report requests and share links (pure): validation codes, signing, expiry, tampering."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from domain import collage as c
from domain import share_link
from domain.errors import ErrorKind, Gone, InvalidInput, NotFound
from domain.report import LAYOUT_PARAMETERS, PRESENTATION, ReportSpec

SECRET = "s" * 40
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_every_prebuilt_layout_has_a_request_form() -> None:
    assert set(LAYOUT_PARAMETERS) == {*c.LAYOUTS, PRESENTATION}
    minimal = {"progress_timeline": {"view": "IV07", "milestones": ("initial", "debond")},
               "smile_progress": {"milestones": ("initial", "debond")}}
    for layout in c.LAYOUTS:
        for page in ("a4", "letter"):
            spec = ReportSpec(layout=layout, page=page, **minimal.get(layout, {}))
            (template,) = spec.templates()
            assert template.page.name.casefold() == page
            assert ReportSpec.from_dict(spec.to_dict()) == spec


def test_a_case_presentation_shares_its_parameters_among_its_pages() -> None:
    spec = ReportSpec(layout=PRESENTATION, view="IV07", milestones=("initial", "debond"),
                      pages=("abo_8", "progress_timeline", "before_after", "smile_progress"))
    templates = spec.templates()
    assert [t.name for t in templates] == ["ABO 8-photo", "Progress timeline", "Before/after",
                                           "Smile progress"]
    assert {cell.content.view for cell in templates[1].cells} == {"IV07"}
    assert len(templates[1].cells) == 2 and len(templates[3].cells) == 4
    assert ReportSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(("fields", "code"), [
    ({"layout": "nope"}, "unknown_layout"),
    ({"layout": "abo_8", "fmt": "gif"}, "unsupported_format"),
    ({"layout": "abo_8", "page": "a3"}, "invalid_page_size"),
    ({"layout": "abo_8", "view": "IV07"}, "invalid_layout_parameters"),
    ({"layout": "full_series_12", "milestones": ("initial",)}, "invalid_layout_parameters"),
    ({"layout": "progress_timeline", "view": "IV07"}, "invalid_layout_parameters"),
    ({"layout": "before_after", "view": "ZZ01"}, "unknown_view"),
    ({"layout": "before_after", "before": "x/y"}, "invalid_milestone"),
    ({"layout": "smile_progress", "milestones": tuple(f"m{i}" for i in range(9))},
     "invalid_milestones"),
    ({"layout": "abo_8", "pages": ("abo_8",)}, "invalid_layout_parameters"),
    ({"layout": PRESENTATION}, "invalid_pages"),
    ({"layout": PRESENTATION, "pages": ("abo_8",) * 13}, "invalid_pages"),
    ({"layout": PRESENTATION, "pages": (PRESENTATION,)}, "invalid_pages"),
    ({"layout": PRESENTATION, "pages": ("abo_8", "nope")}, "unknown_layout"),
    ({"layout": PRESENTATION, "pages": ("smile_progress",)}, "invalid_layout_parameters"),
    ({"layout": PRESENTATION, "pages": ("abo_8",), "fmt": "png"}, "unsupported_format"),
])
def test_bad_requests_have_stable_codes(fields: dict[str, object], code: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        ReportSpec(**fields)  # type: ignore[arg-type]
    assert excinfo.value.code == code
    assert excinfo.value.kind is ErrorKind.INVALID


def claim(expires: datetime) -> share_link.LinkClaim:
    return share_link.LinkClaim(uuid4(), 2, "abc123", "clinic-1", expires)


def test_a_signed_link_verifies_until_it_expires() -> None:
    original = claim(NOW + timedelta(hours=1))
    token = share_link.sign(original, SECRET)
    assert share_link.verify(token, SECRET, NOW) == original
    with pytest.raises(Gone) as excinfo:
        share_link.verify(token, SECRET, NOW + timedelta(hours=1))
    assert excinfo.value.code == "link_expired"


def _reencode(token: str, **changes: object) -> str:
    payload, signature = token.split(".")
    raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw.update(changes)
    body = base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")
    return f"{body}.{signature}"


@pytest.mark.parametrize("mutate", [
    lambda t: _reencode(t, v=1),  # another version of the same report
    lambda t: _reencode(t, e=2_000_000_000),  # a later expiry
    lambda t: _reencode(t, c="clinic-2"),  # another clinic
    lambda t: t[:-3],  # a truncated signature
    lambda t: t.replace(".", ""),
    lambda t: "",
    lambda t: "x" * 700,
    lambda t: "!!!.???",
])
def test_an_altered_link_is_not_found(mutate) -> None:  # type: ignore[no-untyped-def]
    token = share_link.sign(claim(NOW + timedelta(hours=1)), SECRET)
    with pytest.raises(NotFound) as excinfo:
        share_link.verify(mutate(token), SECRET, NOW)
    assert excinfo.value.code == "link_invalid"


def test_another_servers_secret_does_not_verify() -> None:
    token = share_link.sign(claim(NOW + timedelta(hours=1)), SECRET)
    with pytest.raises(NotFound):
        share_link.verify(token, "t" * 40, NOW)
