"""The audit export download: CSV, JSON Lines and a FHIR Bundle, verifiable offline."""

from __future__ import annotations

import io
import json
from uuid import UUID

from conftest import jpeg_bytes, register_patient, upload, wait_until
from projections.audit import verify_entries
from projections.audit_export import AUDIT_EVENT_TYPE, read_csv, read_jsonl


def test_admin_downloads_the_clinics_audit_in_three_formats(client, auth, clinic):
    admin = auth("clinic_admin")
    patient = register_patient(client, admin)
    image = upload(client, admin, patient, jpeg_bytes(seed=71)).json()["id"]
    assert client.get(f"/api/v1/images/{image}/original", headers=admin).status_code in (200,
                                                                                          202)
    audit = client.app.state.services.audit
    wait_until(lambda: any(e.action == "image.viewed.original"
                           for e in audit.search(clinic, patient_id=UUID(patient)).entries))

    got = client.get("/api/v1/audit/export", params={"format": "jsonl", "patientId": patient},
                     headers=admin)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("application/x-ndjson")
    assert got.headers["content-disposition"].startswith('attachment; filename="audit-')
    entries = list(read_jsonl(io.StringIO(got.text)))
    assert {e.patient_id for e in entries} == {UUID(patient)}
    assert {"patient.registered", "image.captured", "image.viewed.original"} <= {
        e.action for e in entries}
    assert int(got.headers["x-audit-entries"]) == len(entries)
    # A filtered export verifies entry by entry; the whole clinic's too.
    assert verify_entries(entries, linked=False).ok

    csv = client.get("/api/v1/audit/export", params={"format": "csv", "patientId": patient},
                     headers=admin)
    assert list(read_csv(io.StringIO(csv.text))) == entries

    fhir = client.get("/api/v1/audit/export", params={"format": "fhir", "imageId": image},
                      headers=admin)
    bundle = json.loads(fhir.text)
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    assert bundle["resourceType"] == "Bundle" and bundle["entry"]
    for item in bundle["entry"]:
        resource = item["resource"]
        assert resource["resourceType"] == "AuditEvent"
        assert resource["type"]["system"] == AUDIT_EVENT_TYPE
        assert resource["recorded"] and resource["agent"] and resource["source"]

    # Admins only; another clinic's admin gets that clinic's (empty) trail, not this one.
    assert client.get("/api/v1/audit/export", headers=auth("doctor")).status_code == 403
    other = client.get("/api/v1/audit/export", params={"patientId": patient},
                       headers=auth("clinic_admin", clinic_id=f"{clinic}-z"))
    assert other.status_code == 200 and other.text == ""
    for params in ({"format": "xml"}, {"patientId": "nope"}, {"since": "yesterday"}):
        bad = client.get("/api/v1/audit/export", params=params, headers=admin)
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_request", params
    # The server keeps serving.
    assert client.get("/api/v1/audit/export", params={"patientId": patient},
                      headers=admin).status_code == 200
