"""Consent on every path (issue 17): wherever an image becomes or is used as a clinical
photograph, the patient's clinical photography consent is checked by the one rule
(``ConsentCommands.check_photograph_consent``), and a refusal stores nothing."""

from __future__ import annotations

import io
import uuid
import zipfile
from datetime import UTC, datetime
from uuid import UUID

import numpy as np
from dicom_support import dicom_bytes

from api.folder_import import DeviceFolder
from conftest import (
    GALLERY,
    blob_subjects,
    graphql,
    jpeg_bytes,
    stored_events,
    upload,
)
from domain.consent_rules import ConsentRefusal
from domain.image import Image
from domain.values import Actor

REGISTER = """mutation($i: RegisterPatientInput!){ registerPatient(input: $i){ id } }"""
GRANT = """mutation($i: GrantConsentInput!){ grantConsent(input: $i){ id } }"""
REVOKE = """mutation($i: RevokeConsentInput!){ revokeConsent(input: $i){ id } }"""
CATEGORISE = """mutation($i: CategoriseImageInput!){ categoriseImage(input: $i){
  id category view } }"""
OPEN = """mutation($i: OpenCaptureSessionInput!){ openCaptureSession(input: $i){ id } }"""
REQUEST_REPORT = """mutation($i: RequestReportInput!){ requestReport(input: $i){ id } }"""
SMILE = """mutation($i: SmileDesignInput!){ runSmileDesign(input: $i){ id } }"""
VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"


def pt(x: float, y: float) -> dict[str, float]:
    return {"x": x, "y": y}


SMILE_CLICKS = {
    "glabella": pt(320, 50), "subnasale": pt(320, 200), "chin": pt(320, 420),
    "dentalMidline": pt(322, 300),
    "incisalEdges": [pt(290, 300), pt(305, 305), pt(322, 308), pt(339, 305), pt(354, 300)],
    "lowerLip": [pt(285, 320), pt(322, 335), pt(359, 320)],
    "rightContacts": [pt(306, 300), pt(296, 300), pt(290, 300)],
    "leftContacts": [pt(338, 300), pt(348, 300), pt(354, 300)],
}


def _code(result: dict) -> str | None:
    errors = result.get("errors")
    return errors[0]["extensions"]["code"] if errors else None


def _captured(client, patient: str) -> set[UUID]:
    return {e.originator_id for e in stored_events(client, Image.Captured)
            if str(e.patient_id) == patient}


def _photo_zip() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("IV01_right.jpg", jpeg_bytes(seed=72))
        z.writestr("photo.jpg", jpeg_bytes(seed=73))
    return archive.getvalue()


def test_no_path_makes_a_clinical_photograph_without_consent(client, auth, clinic, tmp_path):
    doctor, desk = auth("doctor"), auth("front_desk")
    external = f"NOC-{uuid.uuid4().hex[:6]}"
    patient = graphql(client, doctor, REGISTER, {"i": {
        "externalId": external, "givenName": "Ada", "familyName": "Lovelace",
        "birthDate": "2012-04-01", "sex": "female"}})["data"]["registerPatient"]["id"]
    # Used while consent was active: a photograph for the report and simulation paths.
    assert _code(graphql(client, doctor, GRANT, {"i": {
        "patientId": patient, "scope": "CLINICAL_PHOTOGRAPHY"}})) is None
    earlier = upload(client, doctor, patient, jpeg_bytes(640, 480, seed=70),
                     fields={"view": "EV19", "category": "extraoral"})
    assert earlier.status_code == 201, earlier.text
    assert _code(graphql(client, doctor, REVOKE, {"i": {
        "patientId": patient, "scope": "CLINICAL_PHOTOGRAPHY"}})) is None
    # A document is fine without consent (front desk's own route too).
    document = upload(client, desk, patient, jpeg_bytes(seed=71),
                      fields={"category": "document"})
    assert document.status_code == 201, document.text
    document_id = document.json()["id"]

    captured = _captured(client, patient)
    blobs = blob_subjects(client)
    refusals = len(stored_events(client, ConsentRefusal.Recorded))
    refused: list[str] = []

    def expect_409(response, path: str) -> None:
        assert response.status_code == 409, (path, response.text)
        assert response.json()["code"] == "consent_required", path
        refused.append(path)

    # 1. Single uploads: a view code, a photograph category, no category at all.
    for fields in ({"view": "IV07"}, {"category": "intraoral"}, {}):
        expect_409(upload(client, doctor, patient, jpeg_bytes(seed=80), fields=fields),
                   f"upload {fields}")

    # 2. Batch and zip import: every photograph is rejected, nothing else stops.
    batch = client.post(f"/api/v1/patients/{patient}/image-batches", headers=doctor, files=[
        ("files", ("IV07_front.jpg", jpeg_bytes(seed=81), "image/jpeg")),
        ("files", ("visit.zip", _photo_zip(), "application/zip"))])
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert len(results) == 3 and {r["code"] for r in results} == {"consent_required"}
    refused.append("batch and zip")

    # 3. A capture session's slot, by REST and by the chair's watched folder.
    session = graphql(client, doctor, OPEN, {"i": {
        "patientId": patient, "chair": "c17", "scheduledAt": datetime.now(UTC).isoformat()}})[
        "data"]["openCaptureSession"]["id"]
    expect_409(upload(client, doctor, patient, jpeg_bytes(seed=82),
                      fields={"sessionId": session, "view": "EV15"}), "capture session")
    device = DeviceFolder(client.app.state.services, Actor("device:c17", "clinical_staff",
                                                           clinic), tmp_path, "c17",
                          settle_seconds=0.0)
    (tmp_path / "IMG_0001.jpg").write_bytes(jpeg_bytes(seed=83))
    device.poll(now=0.0)
    [watched] = device.poll(now=1.0)
    assert (watched.status, watched.code) == ("rejected", "consent_required")
    refused.append("watch folder")

    # 4. DICOM photographs: an XC object, and a VL Photographic Image whatever its modality.
    rgb = np.full((48, 64, 3), 120, dtype=np.uint8)
    for modality, sop_class in (("XC", VL_PHOTOGRAPHIC), ("OT", VL_PHOTOGRAPHIC)):
        data = dicom_bytes(rgb, modality=modality, patient_id=external, sop_class=sop_class)
        expect_409(upload(client, doctor, patient, data, filename="photo.dcm",
                          content_type="application/dicom"), f"DICOM {modality}")

    # 5. Recategorising a document into a photograph (with a view code), and front desk
    #    may not recategorise at all.
    turned = graphql(client, doctor, CATEGORISE, {"i": {
        "imageId": document_id, "category": "intraoral", "view": "IV07"}})
    assert _code(turned) == "consent_required", turned
    refused.append("categoriseImage")
    assert _code(graphql(client, desk, CATEGORISE, {"i": {
        "imageId": document_id, "category": "intraoral", "view": "IV07"}})) == \
        "permission_denied"
    still = graphql(client, doctor, GALLERY, {"id": patient, "first": 10})["data"]["patient"][
        "images"]["edges"]
    assert {e["node"]["id"]: e["node"]["category"] for e in still}[document_id] == "document"

    # 6. Using a photograph: a report that shows photographs, a simulation on one.
    report = graphql(client, doctor, REQUEST_REPORT, {"i": {
        "patientId": patient, "layout": "full_series_12"}})
    assert _code(report) == "consent_required", report
    refused.append("report")
    smile = graphql(client, doctor, SMILE, {"i": {
        "patientId": patient, "photoImageId": earlier.json()["id"], **SMILE_CLICKS}})
    assert _code(smile) == "consent_required", smile
    refused.append("simulation")

    # Nothing of any of it was kept; each refusal is on record for the audit.
    assert _captured(client, patient) == captured
    assert blob_subjects(client) == blobs
    recorded = stored_events(client, ConsentRefusal.Recorded)[refusals:]
    # One refusal per path, the batch's three files each.
    assert len([e for e in recorded if str(e.patient_id) == patient]) == len(refused) + 2
