"""DICOM through the ordinary upload endpoint: filed when the patient matches, held when not."""

from __future__ import annotations

import io

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from conftest import GALLERY, graphql, upload, wait_until

REGISTER = """mutation($i: RegisterPatientInput!){ registerPatient(input: $i){ id } }"""


def _dicom(patient_id: str, family: str, given: str, birth: str) -> bytes:
    dataset = dcmread(get_testdata_file("CT_small.dcm"))
    dataset.PatientID = patient_id
    dataset.PatientName = f"{family}^{given}"
    dataset.PatientBirthDate = birth
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_dicom_upload_is_filed_or_held(client, auth):
    headers = auth("doctor")
    patient_id = graphql(client, headers, REGISTER, {"i": {
        "externalId": "DCM-1", "givenName": "Ada", "familyName": "Lovelace",
        "birthDate": "2012-04-01", "sex": "female"}})["data"]["registerPatient"]["id"]
    filed = upload(client, headers, patient_id, _dicom("DCM-1", "Lovelace", "Ada", "20120401"),
                   filename="ct.dcm", content_type="application/dicom")
    assert filed.status_code == 201, filed.text
    node = wait_until(lambda: graphql(client, headers, GALLERY, {"id": patient_id, "first": 5})[
        "data"]["patient"]["images"]["edges"])[0]["node"]
    assert node["category"] in ("scan", "radiograph")
    held = upload(client, headers, patient_id, _dicom("OTHER-9", "Byron", "George", "19800101"),
                  filename="other.dcm", content_type="application/dicom")
    assert held.status_code == 202, held.text
    assert held.json()["reconciliationId"] and held.json()["reasons"]
    assert len(graphql(client, headers, GALLERY, {"id": patient_id, "first": 5})["data"][
        "patient"]["images"]["edges"]) == 1
