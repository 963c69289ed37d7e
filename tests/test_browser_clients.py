"""Browser apps on other origins against a real server, in headless Debian Chromium.

- OHIF, unchanged: its own build (npm @ohif/app dist/, fetched by infra/ohif/install.sh)
  served with the app-config.js `orthovault ohif-config` writes, opened with a token: the
  study list shows the stored study, opening it draws the instance (DOM and pixels).
- A page of an allowed origin runs a GraphQL query, a QIDO query and a subscription
  handshake with a token and gets answers; the same page from an origin not allowed
  (``localhost`` instead of ``127.0.0.1``: another origin, same server) gets none.
"""

from __future__ import annotations

import io
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
from browser_support import chromium, free_port, static_site
from dicom_support import DicomStack, dicom_bytes
from PIL import Image as PILImage
from pydicom.uid import generate_uid

from api.ohif_config import app_config_js

pytest_plugins = ("dicom_fixtures",)

PAGE_PORT = free_port()
ALLOWED = f"http://127.0.0.1:{PAGE_PORT}"
NOT_ALLOWED = f"http://localhost:{PAGE_PORT}"
DICOM_STACK_SETTINGS = {"cors_origins": ALLOWED}
INSTALL = Path(__file__).parents[1] / "infra" / "ohif" / "install.sh"
PROBE = b"<!doctype html><title>probe</title><body>another origin</body>"


def _ohif_dist() -> Path:
    """The pinned OHIF build (a no-op when `make test` already fetched it)."""
    done = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, check=True,
                          timeout=600)
    return Path(done.stdout.strip().splitlines()[-1])


def _radiograph() -> np.ndarray:
    """A dark film with one bright square: easy to find again in a screenshot."""
    pixels = np.full((256, 256), 200, np.uint16)
    pixels[64:192, 64:192] = 3800
    return pixels


@pytest.fixture(scope="module")
def site(dicom_stack: DicomStack) -> dict[str, object]:
    clinic = f"clinic-{uuid.uuid4().hex[:8]}"
    external = f"OV-{uuid.uuid4().hex[:6]}"
    patient = dicom_stack.register(clinic, external_id=external, family="Hopper",
                                   given="Grace")
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    data = dicom_bytes(_radiograph(), modality="DX", patient_id=external,
                       patient_name="Hopper^Grace", study_uid=study, series_uid=series,
                       sop_uid=sop, sop_class="1.2.840.10008.5.1.4.1.1.1",
                       WindowCenter=2000, WindowWidth=4000, SeriesDescription="Ceph film",
                       SeriesNumber=1, InstanceNumber=1, AccessionNumber="ACC-OHIF")
    response = dicom_stack.client.post(
        "/dicomweb/studies", headers={**dicom_stack.headers(clinic),
                                      "Content-Type": 'multipart/related; '
                                      'type="application/dicom"; boundary=b0'},
        content=b"--b0\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--b0--\r\n")
    assert response.status_code == 200, response.text
    config = app_config_js(f"{dicom_stack.base_url}/dicomweb").encode()
    files = {"/app-config.js": ("text/javascript", config),
             "/probe.html": ("text/html", PROBE)}
    token = dicom_stack.headers(clinic)["Authorization"].removeprefix("Bearer ")
    with static_site(PAGE_PORT, _ohif_dist(), files), chromium() as browser:
        yield {"browser": browser, "token": token, "study": study, "sop": sop,
               "patient": str(patient), "external": external, "stack": dicom_stack}


def _bright_square_shown(png: bytes) -> bool:
    """The film's bright square on its dark ground, found in a canvas screenshot: the rows
    and columns mostly bright form one band each, of equal length, and fill their box."""
    grey = np.asarray(PILImage.open(io.BytesIO(png)).convert("L"), dtype=np.int32)
    bright = grey > 200
    rows = np.flatnonzero(bright.mean(axis=1) > 0.2)
    columns = np.flatnonzero(bright.mean(axis=0) > 0.2)
    if len(rows) < 50 or len(columns) < 50 or (grey < 60).mean() < 0.3:
        return False
    height, width = np.ptp(rows) + 1, np.ptp(columns) + 1
    box = bright[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
    return len(rows) == height and len(columns) == width and box.mean() > 0.95 \
        and 0.9 < height / width < 1.1


def _dismiss(page: object, label: str) -> None:
    """OHIF's first-visit notices (a guided tour, a use notice) sit over the viewport."""
    button = page.get_by_text(label, exact=True)  # type: ignore[attr-defined]
    if button.count():
        button.first.click()


def test_ohif_opens_the_study_list_and_draws_the_instance(site: dict) -> None:
    context = site["browser"].new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{ALLOWED}/?token={site['token']}")
    # The study list: our patient's study, found by QIDO with the token.
    row = page.get_by_text("Hopper, Grace").first
    row.wait_for(timeout=90_000)
    assert "token=" not in page.url  # taken off the address bar, kept in this tab only
    assert page.get_by_text("ACC-OHIF").count() == 1  # AccessionNumber: a QIDO default
    row.click()
    page.get_by_role("button", name="Basic Viewer").first.click(timeout=30_000)
    page.wait_for_url("**/viewer**", timeout=30_000)
    assert site["study"] in page.url
    # The study browser lists the series (QIDO), the viewport's overlay names it (metadata).
    page.get_by_text("Ceph film").nth(1).wait_for(timeout=90_000)
    canvas = page.locator("canvas.cornerstone-canvas").first
    canvas.wait_for(timeout=60_000)
    shown = False
    for _ in range(90):  # the frame arrives by WADO-RS, is decoded, then drawn
        _dismiss(page, "Skip all")
        _dismiss(page, "Confirm and hide")
        if _bright_square_shown(canvas.screenshot()):
            shown = True
            break
        page.wait_for_timeout(1000)
    context.close()
    assert shown, errors


GRAPHQL = "query($id: ID!){ patient(id: $id){ id } }"
PROBE_SCRIPT = """async ({ api, token, patient, external, query }) => {
  const out = {};
  try {
    const answer = await fetch(api + '/graphql', { method: 'POST',
      headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
      body: JSON.stringify({ query, variables: { id: patient } }) });
    out.graphql = await answer.json();
  } catch (error) { out.graphql = 'refused: ' + error; }
  try {
    const answer = await fetch(api + '/dicomweb/studies?PatientID=' + encodeURIComponent(
      external), { headers: { Authorization: 'Bearer ' + token,
                             Accept: 'application/dicom+json' } });
    out.qido = { status: answer.status, body: await answer.json() };
  } catch (error) { out.qido = 'refused: ' + error; }
  out.websocket = await new Promise((resolve) => {
    const socket = new WebSocket(api.replace('http', 'ws') + '/graphql',
                                 'graphql-transport-ws');
    socket.onopen = () => socket.send(JSON.stringify(
      { type: 'connection_init', payload: { Authorization: 'Bearer ' + token } }));
    socket.onmessage = (event) => { resolve(JSON.parse(event.data).type); socket.close(); };
    socket.onclose = () => resolve('closed');
    socket.onerror = () => resolve('refused');
  });
  return out;
}"""


def _probe(site: dict, origin: str) -> dict:
    context = site["browser"].new_context()
    page = context.new_page()
    page.goto(f"{origin}/probe.html")
    stack: DicomStack = site["stack"]
    result = page.evaluate(PROBE_SCRIPT, {"api": stack.base_url, "token": site["token"],
                                          "patient": site["patient"], "external": site["external"],
                                          "query": GRAPHQL})
    context.close()
    return result


def test_a_page_of_an_allowed_origin_gets_answers_and_others_none(site: dict) -> None:
    allowed = _probe(site, ALLOWED)
    assert allowed["graphql"] == {"data": {"patient": {"id": site["patient"]}}}
    assert allowed["qido"]["status"] == 200
    [study] = allowed["qido"]["body"]
    assert study["0020000D"]["Value"] == [site["study"]]
    assert allowed["websocket"] == "connection_ack"
    refused = _probe(site, NOT_ALLOWED)
    assert str(refused["graphql"]).startswith("refused: TypeError")
    assert str(refused["qido"]).startswith("refused: TypeError")
    assert refused["websocket"] in ("refused", "closed")
