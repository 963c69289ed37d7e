"""A populated installation, made through the public API as a practice would: patients,
photos, a DICOM radiograph, an annotation, a cephalometric tracing, an album, a rendered
report, a destroyed image. Used by the backup/restore test and by the generator of the
recorded event log (tests/data/recorded_log/generate.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from conftest import graphql, jpeg_bytes, upload, wait_until

REGISTER = """mutation($i: RegisterPatientInput!) { registerPatient(input: $i) { id } }"""
GRANT = """mutation($i: GrantConsentInput!) { grantConsent(input: $i) { id } }"""
ANNOTATE = """mutation($i: AddAnnotationInput!) { addAnnotation(input: $i) { id } }"""
TRACE = """mutation($img: ID!) { startTracing(imageId: $img) { id version } }"""
ALBUM = """mutation($i: CreateAlbumInput!) { createAlbum(input: $i) { id } }"""
ALBUM_ADD = """mutation($i: AlbumImagesInput!) { addImagesToAlbum(input: $i) { id } }"""
REPORT = """mutation($i: RequestReportInput!) { requestReport(input: $i) { id } }"""
REPORT_STATE = """query($id: ID!) { report(id: $id) { status
    versions { version sha256 downloadUrl } } }"""
DESTROY = """mutation($i: DestroyImageInput!) { destroyImage(input: $i) { id } }"""
TAG = """mutation($i: TagImageInput!) { tagImage(input: $i) { id tags } }"""
GALLERY = """query($id: ID!) { patient(id: $id) { id givenName familyName externalId
    images(first: 50) { edges { node { id status category view tags capturedAt } } } } }"""
ALBUM_QUERY = """query($id: ID!) { album(id: $id) { name imageCount
    images(first: 20) { edges { node { id } } } } }"""
ANNOTATIONS = """query($img: ID!) { imageAnnotations(imageId: $img) { id kind version } }"""


def ok(client: TestClient, headers: dict[str, str], query: str,
       variables: dict[str, Any]) -> dict[str, Any]:
    result = graphql(client, headers, query, variables)
    assert "errors" not in result, result
    return result["data"]


def dicom_bytes(external_id: str) -> bytes:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    dataset = dcmread(get_testdata_file("CT_small.dcm"))
    dataset.PatientID = external_id
    dataset.PatientName = "Lovelace^Ada"
    dataset.PatientBirthDate = "20120401"
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


@dataclass
class Installation:
    patients: list[str] = field(default_factory=list)
    photos: list[str] = field(default_factory=list)
    dicom: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    albums: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    annotated: str = ""


def register(client: TestClient, headers: dict[str, str], external_id: str, given: str,
             family: str) -> str:
    patient = ok(client, headers, REGISTER, {"i": {
        "externalId": external_id, "givenName": given, "familyName": family,
        "birthDate": "2012-04-01", "sex": "female"}})["registerPatient"]["id"]
    ok(client, headers, GRANT, {"i": {"patientId": patient, "scope": "CLINICAL_PHOTOGRAPHY"}})
    return patient


def add_photo(client: TestClient, headers: dict[str, str], patient: str, seed: int,
              **fields: str) -> str:
    response = upload(client, headers, patient, jpeg_bytes(320, 240, seed=seed),
                      filename=f"photo-{seed}.jpg", fields=fields)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def populate(client: TestClient, headers: dict[str, str], tag: str = "") -> Installation:
    """``headers``: a clinic admin's (may destroy). Waits for derivatives and the report."""
    made = Installation()
    first = register(client, headers, f"REC-1{tag}", "Ada", "Lovelace")
    second = register(client, headers, f"REC-2{tag}", "Grace", "Hopper")
    made.patients = [first, second]
    for day, (patient, view) in enumerate(((first, "IV07"), (first, "IV07"),
                                           (first, "EV01"), (second, "EV01"))):
        when = datetime(2024, 3, day + 1, 9, tzinfo=UTC).isoformat()
        made.photos.append(add_photo(client, headers, patient, seed=100 + day, view=view,
                                     category="intraoral" if view == "IV07" else "extraoral",
                                     captured_at=when))
    ok(client, headers, TAG, {"i": {"imageId": made.photos[0], "tag": "progress"}})
    response = upload(client, headers, first, dicom_bytes(f"REC-1{tag}"), filename="ct.dcm",
                      content_type="application/dicom")
    assert response.status_code == 201, response.text
    made.dicom.append(response.json()["id"])
    made.annotated = made.photos[2]
    ok(client, headers, ANNOTATE, {"i": {"imageId": made.annotated, "kind": "line",
                                         "points": [[0, 0], [30, 40]], "label": "midline"}})
    made.photos.append(add_photo(client, headers, first, seed=150, category="radiograph"))
    ok(client, headers, TRACE, {"img": made.photos[-1]})
    album = ok(client, headers, ALBUM, {"i": {"name": "Debond smiles"}})["createAlbum"]["id"]
    ok(client, headers, ALBUM_ADD, {"i": {"albumId": album, "imageIds": made.photos[:2]}})
    made.albums.append(album)
    for image in made.photos + made.dicom:  # thumbnails made: nothing left in flight
        wait_until(lambda i=image: client.get(f"/api/v1/images/{i}/thumbnail",
                                              headers=headers).status_code == 200, timeout=60)
    report = ok(client, headers, REPORT, {"i": {
        "patientId": first, "layout": "before_after", "view": "IV07", "before": "first",
        "after": "latest", "format": "PNG", "page": "LETTER"}})["requestReport"]["id"]
    made.reports.append(report)
    wait_until(lambda: ok(client, headers, REPORT_STATE, {"id": report})["report"]["status"]
               == "rendered", timeout=90)
    doomed = add_photo(client, headers, second, seed=199, view="EV01", category="extraoral")
    wait_until(lambda: client.get(f"/api/v1/images/{doomed}/thumbnail",
                                  headers=headers).status_code == 200, timeout=60)
    ok(client, headers, DESTROY, {"i": {"imageId": doomed, "reason": "erasure request"}})
    made.destroyed.append(doomed)
    return made


def observed(client: TestClient, headers: dict[str, str], made: Installation,
             images: list[str]) -> dict[str, Any]:
    """What users see of the installation: listings, bytes, albums, annotations, reports."""
    seen: dict[str, Any] = {
        "patients": {p: ok(client, headers, GALLERY, {"id": p})["patient"]
                     for p in made.patients},
        "albums": {a: ok(client, headers, ALBUM_QUERY, {"id": a})["album"] for a in made.albums},
        "annotations": ok(client, headers, ANNOTATIONS, {"img": made.annotated}),
        "bytes": {},
        "reports": {},
    }
    for image in images:
        for kind in ("original", "thumbnail"):
            response = client.get(f"/api/v1/images/{image}/{kind}", headers=headers)
            assert response.status_code == 200, (image, kind, response.text)
            seen["bytes"][f"{image}/{kind}"] = response.content
    for report in made.reports:
        node = ok(client, headers, REPORT_STATE, {"id": report})["report"]
        download = client.get(node["versions"][0]["downloadUrl"], headers=headers)
        seen["reports"][report] = (node["versions"][0]["sha256"], download.content)
    return seen
