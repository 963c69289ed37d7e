"""Reports end to end: GraphQL request → background rendering → encrypted blob → download,
consent for marketing use, signed expiring share links, and re-rendering as a new version
when an image the report shows changes.

The generated patient's photos are flat colours (with photo-like noise), one per view, so
the rendered page can be checked visually: page 1 is rasterised with poppler's
``pdftoppm`` and the mean colour of each cell must be the colour of the view placed there.
"""

from __future__ import annotations

import colorsys
import io
import os
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pypdf import PdfReader

from api.rest_reports import link_token
from conftest import graphql, register_patient, stored_events, upload, wait_until
from domain import collage as c
from domain.consent_rules import ConsentRefusal
from domain.report import Report, ReportDownload

SERIES = [v for row in c.FULL_SERIES_ROWS for v in row]
SOURCE = (900, 600)
CHECK_DPI = 50

REQUEST = """
mutation($input: RequestReportInput!) {
  requestReport(input: $input) { id status layout purpose format }
}"""
REPORT = """
query($id: ID!) {
  report(id: $id) { id patientId status failure layout
    versions { version pages mediaType size sha256 missing imageIds downloadUrl }
    shares { linkId version revoked } }
}"""
REPORTS = """query($p: ID!) { reports(patientId: $p) { id status versions { version } } }"""
SHARE = """
mutation($input: ShareReportInput!) {
  shareReport(input: $input) { linkId url version expiresAt }
}"""
REVOKE = """
mutation($r: ID!, $l: String!) { revokeReportShare(reportId: $r, linkId: $l) {
  shares { linkId revoked } } }"""
GRANT = """
mutation($input: GrantConsentInput!) { grantConsent(input: $input) { id } }"""
CATEGORISE = """
mutation($input: CategoriseImageInput!) { categoriseImage(input: $input) { id view } }"""


def colour_of(index: int, count: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(index / count, 0.75, 0.85)
    return round(r * 255), round(g * 255), round(b * 255)


def flat_jpeg(colour: tuple[int, int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-12, 12, size=(SOURCE[1], SOURCE[0], 3), dtype=np.int16)
    pixels = (noise + np.array(colour, dtype=np.int16)).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def category_of(view: str) -> str:
    return "intraoral" if view.startswith("IV") else "extraoral"


def make_patient(client: TestClient, headers: dict[str, str], views: list[str],
                 name: tuple[str, str] = ("Zoë", "Ortiz-Łukasik"),
                 captured: datetime | None = None) -> tuple[str, dict[str, str],
                                                            dict[str, tuple[int, int, int]]]:
    """A patient with one flat-colour photo per view; returns (patient, view -> image id,
    image id -> colour). Waits for the photo worker so later changes are deliberate."""
    patient_id = register_patient(client, headers, given_name=name[0], family_name=name[1])
    ids: dict[str, str] = {}
    colours: dict[str, tuple[int, int, int]] = {}
    when = captured or datetime(2024, 5, 2, 10, tzinfo=UTC)
    for index, view in enumerate(views):
        colour = colour_of(index, len(views))
        response = upload(client, headers, patient_id, flat_jpeg(colour, index + 7),
                          filename=f"{view}.jpg",
                          fields={"view": view, "category": category_of(view),
                                  "captured_at": when.isoformat()})
        assert response.status_code == 201, response.text
        ids[view] = response.json()["id"]
        colours[ids[view]] = colour
    gallery = client.app.state.services.gallery
    clinic = client.app.state.services.app.get_patient(
        uuid.UUID(patient_id), _actor(client, headers)).clinic_id
    for image_id in ids.values():
        wait_until(lambda i=image_id: gallery.image(clinic, uuid.UUID(i)).has_derivatives)
    return patient_id, ids, colours


def _actor(client: TestClient, headers: dict[str, str]) -> Any:
    from api.auth import bearer_token, verify_token

    services = client.app.state.services
    return verify_token(services.tokens, bearer_token(headers["Authorization"]), "")


def request(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    return graphql(client, headers, REQUEST, {"input": fields})


def rendered(client: TestClient, headers: dict[str, str], report_id: str,
             versions: int = 1) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        node = graphql(client, headers, REPORT, {"id": report_id})["data"]["report"]
        if node["status"] == "failed":
            raise AssertionError(node)
        return node if node["status"] == "rendered" and len(node["versions"]) >= versions \
            else None

    return wait_until(done, timeout=60)


def error_of(result: dict[str, Any]) -> tuple[str, int]:
    extensions = result["errors"][0]["extensions"]
    return extensions["code"], extensions["status"]


@pytest.fixture(scope="module")
def pdftoppm() -> str:
    found = shutil.which("pdftoppm")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("pdftoppm (poppler-utils) is required in CI")
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    return found


def rasterise(pdftoppm: str, pdf: bytes, folder: Path) -> Image.Image:
    (folder / "doc.pdf").write_bytes(pdf)
    subprocess.run([pdftoppm, "-r", str(CHECK_DPI), "-png", "-f", "1", "-l", "1",
                    "-singlefile", str(folder / "doc.pdf"), str(folder / "page")], check=True)
    with Image.open(folder / "page.png") as shot:
        return shot.convert("RGB")


def mean_colour(shot: Image.Image, box: c.Frame) -> np.ndarray:
    scale = CHECK_DPI / c.MM_PER_INCH
    dx, dy = box.width * 0.2, box.height * 0.2
    crop = (round((box.x + dx) * scale), round((box.y + dy) * scale),
            round((box.right - dx) * scale), round((box.bottom - dy) * scale))
    return np.asarray(shot.crop(crop), dtype=float).reshape(-1, 3).mean(axis=0)


def embedded_widths(page: Any) -> list[int]:
    widths = []
    for ref in page["/Resources"].get("/XObject", {}).values():
        obj = ref.get_object()
        if obj["/Subtype"] == "/Image" and "DCTDecode" in str(obj["/Filter"]):
            widths.append(int(obj["/Width"]))
    return sorted(widths)


def download(client: TestClient, headers: dict[str, str], url: str) -> bytes:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return response.content


# --- rendering a pre-built layout for a generated patient ----------------------------------


def test_full_series_report_renders_in_the_background(client: TestClient, auth: Any,
                                                     pdftoppm: str, tmp_path: Path) -> None:
    headers = auth("doctor")
    patient_id, ids, colours = make_patient(client, headers, SERIES)
    result = request(client, headers, patientId=patient_id, layout="full_series_12")
    assert "errors" not in result, result
    assert result["data"]["requestReport"]["status"] == "requested"
    report_id = result["data"]["requestReport"]["id"]
    node = rendered(client, headers, report_id)
    (version,) = node["versions"]
    assert version["version"] == 1 and version["pages"] == 1 and version["missing"] == []
    assert sorted(version["imageIds"]) == sorted(ids.values())

    pdf = download(client, headers, version["downloadUrl"])
    assert len(pdf) == version["size"]
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    page = reader.pages[0]
    assert (float(page.mediabox.width), float(page.mediabox.height)) == pytest.approx(
        (841.89, 595.28), abs=0.5)  # A4 landscape
    template = c.full_series(c.A4)
    boxes = {cell.content.view: c.fitted_box(cell.image_area, *SOURCE, cell.options.fit)
             for cell in template.cells}
    # Each photo embedded at 300 dpi for its box (the 900 px source is the ceiling).
    want = sorted(min(round(b.width / c.MM_PER_INCH * 300), SOURCE[0]) for b in boxes.values())
    got = embedded_widths(page)
    assert len(got) == 12
    for g, w in zip(got, want, strict=True):
        assert abs(g - w) <= 0.1 * w, (g, w)
    text = page.extract_text()
    assert "Zoë Ortiz-Łukasik" in text and "Page 1 of 1" in text
    assert "IV07 Frontal" in text or "IV07" in text

    shot = rasterise(pdftoppm, pdf, tmp_path)
    for view, box in boxes.items():
        seen = mean_colour(shot, box)
        assert np.abs(seen - np.array(colours[ids[view]])).max() < 16, (view, seen)

    # The stored blob is sealed (not a readable PDF on disk); the events carry who/whose.
    services = client.app.state.services
    blob_key = f"{report_id}/v1.pdf"
    on_disk = list(services.settings.blob_dir.rglob("v1.pdf"))
    sealed = [p for p in on_disk if str(p).endswith(blob_key)]
    assert sealed and not sealed[0].read_bytes().startswith(b"%PDF")
    rendered_events = [e for e in stored_events(client, Report.Rendered)
                       if str(e.originator_id) == report_id]
    assert len(rendered_events) == 1
    event = rendered_events[0]
    assert str(event.patient_id) == patient_id and event.actor.user_id == "system:reports"
    assert event.clinic_id == event.actor.clinic_id
    downloads = [e for e in stored_events(client, ReportDownload.Recorded)
                 if str(e.report_id) == report_id]
    assert [(d.channel, d.version, d.actor.role) for d in downloads] == [("api", 1, "doctor")]


def test_before_after_png_and_listing(client: TestClient, auth: Any) -> None:
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    first, last = colour_of(0, 2), colour_of(1, 2)
    for n, (colour, day) in enumerate(((first, 1), (last, 20))):
        response = upload(client, headers, patient_id, flat_jpeg(colour, 40 + n),
                          fields={"view": "IV07", "category": "intraoral",
                                  "captured_at": datetime(2024, 3, day, tzinfo=UTC).isoformat()})
        assert response.status_code == 201, response.text
    result = request(client, headers, patientId=patient_id, layout="before_after",
                     view="IV07", before="first", after="latest", format="PNG",
                     page="LETTER")
    assert "errors" not in result, result
    report_id = result["data"]["requestReport"]["id"]
    listed = graphql(client, headers, REPORTS, {"p": patient_id})["data"]["reports"]
    assert [r["id"] for r in listed] == [report_id]  # read-your-writes
    node = rendered(client, headers, report_id)
    png = download(client, headers, node["versions"][0]["downloadUrl"])
    with Image.open(io.BytesIO(png)) as shot:
        assert shot.format == "PNG"
        assert shot.size == (round(279.4 / 25.4 * 150), round(215.9 / 25.4 * 150))
        template = c.before_after("IV07", "first", "latest", c.LETTER)
        scale = 150 / c.MM_PER_INCH
        for cell, colour in zip(template.cells, (first, last), strict=True):
            b = c.fitted_box(cell.image_area, *SOURCE, cell.options.fit)
            b = b.inset(min(b.width, b.height) * 0.2)
            seen = np.asarray(shot.convert("RGB").crop(
                (round(b.x * scale), round(b.y * scale), round(b.right * scale),
                 round(b.bottom * scale))), dtype=float).reshape(-1, 3).mean(axis=0)
            assert np.abs(seen - np.array(colour)).max() < 16


def test_bad_requests_are_refused_and_nothing_is_stored(client: TestClient, auth: Any,
                                                        clinic: str) -> None:
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    cases = [
        ({"layout": "collage_of_dreams"}, "unknown_layout"),
        ({"layout": "progress_timeline", "view": "IV07"}, "invalid_layout_parameters"),
        ({"layout": "abo_8", "view": "IV07"}, "invalid_layout_parameters"),
        ({"layout": "before_after", "view": "XX99"}, "unknown_view"),
        ({"layout": "progress_timeline", "view": "IV07", "milestones": ["bad/name"]},
         "invalid_milestone"),
    ]
    for fields, code in cases:
        result = request(client, headers, patientId=patient_id, **fields)
        assert error_of(result) == (code, 400), (fields, result)
    assert error_of(request(client, headers, patientId=str(uuid.uuid4()), layout="abo_8")) \
        == ("patient_not_found", 404)
    # Another clinic's patient is not found either; front desk may not export.
    other = auth("doctor", clinic_id=f"{clinic}-other")
    assert error_of(request(client, other, patientId=patient_id, layout="abo_8")) == (
        "patient_not_found", 404)
    assert error_of(request(client, auth("front_desk"), patientId=patient_id,
                            layout="abo_8")) == ("permission_denied", 403)
    assert graphql(client, headers, REPORTS, {"p": patient_id})["data"]["reports"] == []
    assert not [e for e in stored_events(client, Report.Requested)
                if str(e.patient_id) == patient_id]
    assert client.get("/healthz").status_code == 200


# --- consent ---------------------------------------------------------------------------------


def test_marketing_use_needs_the_patients_marketing_consent(client: TestClient,
                                                            auth: Any) -> None:
    headers = auth("doctor")
    patient_id, _ids, _colours = make_patient(client, headers, ["EV19", "IV07"])
    result = request(client, headers, patientId=patient_id, layout="before_after",
                     view="EV19", purpose="MARKETING")
    assert error_of(result) == ("consent_required", 409)
    assert graphql(client, headers, REPORTS, {"p": patient_id})["data"]["reports"] == []
    assert not [e for e in stored_events(client, Report.Requested)
                if str(e.patient_id) == patient_id]
    refusals = [e for e in stored_events(client, ConsentRefusal.Recorded)
                if str(e.patient_id) == patient_id]
    assert [(r.scope, r.purpose) for r in refusals] == [("marketing", "marketing")]

    granted = graphql(client, headers, GRANT, {"input": {"patientId": patient_id,
                                                          "scope": "MARKETING"}})
    assert "errors" not in granted, granted
    result = request(client, headers, patientId=patient_id, layout="before_after",
                     view="EV19", purpose="MARKETING")
    assert "errors" not in result, result
    report_id = result["data"]["requestReport"]["id"]
    rendered(client, headers, report_id)
    share = graphql(client, headers, SHARE, {"input": {"reportId": report_id}})
    url = share["data"]["shareReport"]["url"]
    assert client.get(url).status_code == 200

    # Withdrawn consent: no new shares, and the existing link stops working.
    revoked = graphql(client, headers, """mutation($input: RevokeConsentInput!) {
        revokeConsent(input: $input) { id } }""",
                      {"input": {"patientId": patient_id, "scope": "MARKETING"}})
    assert "errors" not in revoked, revoked
    again = graphql(client, headers, SHARE, {"input": {"reportId": report_id}})
    assert error_of(again) == ("consent_required", 409)
    response = client.get(url)
    assert response.status_code == 409 and response.json()["code"] == "consent_required"


# --- share links -----------------------------------------------------------------------------


def test_share_links_are_signed_expiring_revocable_and_logged(client: TestClient, auth: Any,
                                                              clinic: str) -> None:
    headers = auth("doctor")
    patient_id, _ids, _colours = make_patient(client, headers, ["EV19", "IV07"])
    report_id = request(client, headers, patientId=patient_id, layout="before_after",
                        view="IV07")["data"]["requestReport"]["id"]
    node = rendered(client, headers, report_id)
    share = graphql(client, headers, SHARE, {"input": {"reportId": report_id,
                                                        "expiresInHours": 24}})
    assert "errors" not in share, share
    link = share["data"]["shareReport"]
    response = client.get(link["url"])  # no sign-in needed
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.content == download(client, headers, node["versions"][0]["downloadUrl"])
    assert "Zo" not in response.headers.get("content-disposition", "")  # ids only

    token = link["url"].rsplit("/", 1)[1]
    payload, signature = token.split(".")
    for forged in (payload + "." + signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB"),
                   payload[:-1] + "." + signature, "garbage", "a.b.c"):
        response = client.get(f"/api/v1/report-links/{forged}")
        assert response.status_code == 404 and response.json()["code"] == "link_invalid"

    # A genuinely signed link whose time is up.
    services = client.app.state.services
    report = services.app.repository.get(uuid.UUID(report_id))
    expired = link_token(services, report, link["linkId"], 1,
                         datetime.now(UTC) - timedelta(seconds=1))
    response = client.get(f"/api/v1/report-links/{expired}")
    assert response.status_code == 410 and response.json()["code"] == "link_expired"

    # Sharing is for this clinic's exporters only; a bad expiry is refused.
    other = auth("doctor", clinic_id=f"{clinic}-other")
    assert error_of(graphql(client, other, SHARE, {"input": {"reportId": report_id}})) == (
        "report_not_found", 404)
    assert error_of(graphql(client, headers, SHARE, {"input": {
        "reportId": report_id, "expiresInHours": 24 * 365}})) == ("invalid_expiry", 400)

    revoked = graphql(client, headers, REVOKE, {"r": report_id, "l": link["linkId"]})
    assert revoked["data"]["revokeReportShare"]["shares"] == [
        {"linkId": link["linkId"], "revoked": True}]
    response = client.get(link["url"])
    assert response.status_code == 410 and response.json()["code"] == "link_revoked"

    downloads = [e for e in stored_events(client, ReportDownload.Recorded)
                 if str(e.report_id) == report_id]
    assert [d.channel for d in downloads].count("link") == 1
    (by_link,) = [d for d in downloads if d.channel == "link"]
    assert by_link.link_id == link["linkId"] and by_link.actor.role == "share_link"
    assert str(by_link.patient_id) == patient_id
    assert client.get("/healthz").status_code == 200


# --- regeneration ----------------------------------------------------------------------------


def test_a_changed_image_re_renders_the_report_as_a_new_version(client: TestClient,
                                                               auth: Any, pdftoppm: str,
                                                               tmp_path: Path) -> None:
    headers = auth("doctor")
    patient_id, ids, colours = make_patient(client, headers, ["IV07", "IV18"])
    report_id = request(client, headers, patientId=patient_id, layout="before_after",
                        view="IV07", before="first", after="latest"
                        )["data"]["requestReport"]["id"]
    first = rendered(client, headers, report_id)["versions"][0]
    assert first["imageIds"] == [ids["IV07"]]

    # IV18 is re-categorised as IV07: not in the report, so nothing happens to it …
    moved = graphql(client, headers, CATEGORISE, {"input": {
        "imageId": ids["IV18"], "category": "intraoral", "view": "IV07"}})
    assert "errors" not in moved, moved
    # … while re-categorising the IV07 shown makes a new version.
    moved = graphql(client, headers, CATEGORISE, {"input": {
        "imageId": ids["IV07"], "category": "intraoral", "view": "IV18"}})
    assert "errors" not in moved, moved
    node = rendered(client, headers, report_id, versions=2)
    old, new = node["versions"]
    assert old == first  # version 1 is kept, unchanged
    assert new["version"] == 2 and new["imageIds"] == [ids["IV18"]]
    assert new["sha256"] != old["sha256"]
    assert download(client, headers, old["downloadUrl"]) != download(
        client, headers, new["downloadUrl"])
    shot = rasterise(pdftoppm, download(client, headers, new["downloadUrl"]), tmp_path)
    cell = c.before_after("IV07", "first", "latest").cells[0]
    box = c.fitted_box(cell.image_area, *SOURCE, cell.options.fit)
    assert np.abs(mean_colour(shot, box) - np.array(colours[ids["IV18"]])).max() < 16

    supersessions = [e for e in stored_events(client, Report.Superseded)
                     if str(e.originator_id) == report_id]
    assert [str(e.image_id) for e in supersessions] == [ids["IV07"]]
    # Replaying the rendering is a no-op: each version is recorded once.
    services = client.app.state.services
    assert services.app.record_report_rendering(
        _actor(client, headers), uuid.UUID(report_id), version=2,
        blob=services.app.repository.get(uuid.UUID(report_id)).latest.blob, pages=1,
        image_versions={}, missing=[]) == 0
    assert len(services.app.repository.get(uuid.UUID(report_id)).renditions) == 2


def test_a_deleted_image_leaves_a_labelled_placeholder_in_the_new_version(
        client: TestClient, auth: Any) -> None:
    headers = auth("clinic_admin")
    patient_id, ids, _colours = make_patient(client, headers, ["EV19", "IV07"])
    report_id = request(client, headers, patientId=patient_id, layout="before_after",
                        view="EV19")["data"]["requestReport"]["id"]
    rendered(client, headers, report_id)
    deleted = graphql(client, headers, """mutation($input: DeleteImageInput!) {
        deleteImage(input: $input) { id status } }""", {"input": {"imageId": ids["EV19"]}})
    assert "errors" not in deleted, deleted
    node = rendered(client, headers, report_id, versions=2)
    assert node["versions"][1]["imageIds"] == []
    assert node["versions"][1]["missing"] == ["EV19 — missing", "EV19 — missing"]
    pdf = download(client, headers, node["versions"][1]["downloadUrl"])
    assert "EV19 — missing" in PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


def test_replaying_the_log_through_a_fresh_worker_records_nothing_twice(
        client: TestClient, auth: Any) -> None:
    """Resumable: a worker that restarts from an old position (lost tracking, a crash
    between recording a result and its tracking) sees events again and must add nothing."""
    from eventsourcing.persistence import Tracking
    from eventsourcing.postgres import PostgresTrackingRecorder
    from eventsourcing.utils import get_topic

    from api.services import tracking_recorder
    from workers.report_renderer import TOPICS, ReportRenderer

    headers = auth("doctor")
    patient_id, ids, _colours = make_patient(client, headers, ["IV07"])
    report_id = request(client, headers, patientId=patient_id, layout="before_after",
                        view="IV07")["data"]["requestReport"]["id"]
    rendered(client, headers, report_id)
    moved = graphql(client, headers, CATEGORISE, {"input": {
        "imageId": ids["IV07"], "category": "intraoral", "view": "IV18"}})
    assert "errors" not in moved, moved
    rendered(client, headers, report_id, versions=2)

    services = client.app.state.services
    report_topics = [get_topic(t) for t in (Report.Requested, Report.Rendered,
                                            Report.Superseded, Report.RenderFailed)]

    def report_events() -> int:
        notes = services.app.recorder.select_notifications(start=None, limit=1_000_000,
                                                          topics=report_topics)
        return sum(1 for n in notes if str(n.originator_id) == report_id)

    before = report_events()
    tracking = tracking_recorder(services.env, f"replay_{uuid.uuid4().hex[:8]}",
                                 PostgresTrackingRecorder)
    try:
        worker = ReportRenderer(services.app, services.blobs, services.gallery,
                                services.sessions, services.reports, tracking)
        notes = services.app.recorder.select_notifications(start=None, limit=1_000_000,
                                                          topics=list(TOPICS))
        mine = {report_id, ids["IV07"]}
        for note in notes:
            if str(note.originator_id) in mine:
                worker(services.app.mapper.to_domain_event(note),
                       Tracking(services.app.name, note.id))
        assert report_events() == before
        assert len(services.app.repository.get(uuid.UUID(report_id)).renditions) == 2
    finally:
        tracking.datastore.close()


def test_a_marketing_report_is_not_re_rendered_once_consent_is_withdrawn(
        client: TestClient, auth: Any) -> None:
    headers = auth("doctor")
    patient_id, ids, _colours = make_patient(client, headers, ["IV07"])
    assert "errors" not in graphql(client, headers, GRANT, {"input": {
        "patientId": patient_id, "scope": "MARKETING"}})
    report_id = request(client, headers, patientId=patient_id, layout="before_after",
                        view="IV07", purpose="MARKETING")["data"]["requestReport"]["id"]
    rendered(client, headers, report_id)
    assert "errors" not in graphql(client, headers, """mutation($input: RevokeConsentInput!) {
        revokeConsent(input: $input) { id } }""", {"input": {"patientId": patient_id,
                                                             "scope": "MARKETING"}})
    assert "errors" not in graphql(client, headers, CATEGORISE, {"input": {
        "imageId": ids["IV07"], "category": "intraoral", "view": "IV07"}})

    def failed() -> dict[str, Any] | None:
        node = graphql(client, headers, REPORT, {"id": report_id})["data"]["report"]
        return node if node["status"] == "failed" else None

    node = wait_until(failed, timeout=60)
    assert node["failure"] == "consent_required"
    assert len(node["versions"]) == 1  # the old version stays; no new one without consent


def test_the_layouts_are_listed(client: TestClient, auth: Any) -> None:
    result = graphql(client, auth("read_only"), """{ reportLayouts { name description
        parameters requiredParameters } }""")
    layouts = {row["name"]: row for row in result["data"]["reportLayouts"]}
    assert set(layouts) == {*c.LAYOUTS, "case_presentation"}
    assert layouts["progress_timeline"]["requiredParameters"] == ["view", "milestones"]
    assert "before" in layouts["before_after"]["parameters"]


def test_a_case_presentation_is_one_pdf_with_a_page_per_layout(client: TestClient,
                                                              auth: Any, pdftoppm: str,
                                                              tmp_path: Path) -> None:
    headers = auth("doctor")
    patient_id, ids, colours = make_patient(client, headers, SERIES)
    result = request(client, headers, patientId=patient_id, layout="case_presentation",
                     view="IV07", before="first",
                     pages=["full_series_12", "before_after", "abo_8"])
    assert "errors" not in result, result
    node = rendered(client, headers, result["data"]["requestReport"]["id"])
    (version,) = node["versions"]
    assert version["pages"] == 3
    pdf = download(client, headers, version["downloadUrl"])
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 3
    texts = [p.extract_text() for p in reader.pages]
    assert all(f"Page {n} of 3" in t for n, t in enumerate(texts, start=1))
    assert "photo series" in texts[0] and "before and after" in texts[1]
    assert "ABO records" in texts[2]
    assert len(embedded_widths(reader.pages[2])) == 8
    # Page 2 visually: the before/after pair of IV07 (one image, shown twice).
    (tmp_path / "doc.pdf").write_bytes(pdf)
    subprocess.run([pdftoppm, "-r", str(CHECK_DPI), "-png", "-f", "2", "-l", "2",
                    "-singlefile", str(tmp_path / "doc.pdf"), str(tmp_path / "p2")],
                   check=True)
    with Image.open(tmp_path / "p2.png") as shot:
        shot = shot.convert("RGB")
        for cell in c.before_after("IV07", "first").cells:
            box = c.fitted_box(cell.image_area, *SOURCE, cell.options.fit)
            assert np.abs(mean_colour(shot, box) - np.array(colours[ids["IV07"]])).max() < 16

    refused = request(client, headers, patientId=patient_id, layout="case_presentation",
                      pages=["abo_8"], format="PNG")
    assert error_of(refused) == ("unsupported_format", 400)
