"""Each consent rule of issue 7: clinical photography at capture, marketing and educational
use at export/sharing, expiry, revocation, a guardian's consent for a minor, every refusal
recorded as an event, and the consent report served to admins."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from conftest import graphql, jpeg_bytes, register_patient, stored_events, upload, wait_until
from domain.consent_rules import ConsentRefusal, Purpose
from domain.errors import Conflict, NotFound, PermissionDenied
from domain.values import Actor

REGISTER = """mutation($i: RegisterPatientInput!){ registerPatient(input: $i){ id } }"""
GRANT = """mutation($i: GrantConsentInput!){ grantConsent(input: $i){
    consents { scope grantedBy expiresAt active } } }"""
REVOKE = """mutation($i: RevokeConsentInput!){ revokeConsent(input: $i){ consents { scope } } }"""
CONSENTS = """query($id: ID!){ patient(id: $id){ consents { scope grantedBy } } }"""
REPORT = """query($scope: ConsentScope!, $only: Boolean!, $first: Int!, $after: String){
    consentReport(scope: $scope, onlyWithImages: $only, first: $first, after: $after){
      scope patients { patientId externalId status expiredAt photographCount photographIds }
      pageInfo { hasNextPage endCursor } } }"""


def _register(client, headers, birth: str, guardian: bool = False) -> str:
    values = {"externalId": f"C-{uuid.uuid4().hex[:6]}", "givenName": "Ada",
              "familyName": "Byron", "birthDate": birth, "sex": "female"}
    if guardian:
        values["guardian"] = {"name": "Anne Byron", "relationship": "mother"}
    result = graphql(client, headers, REGISTER, {"i": values})
    assert "errors" not in result, result
    return result["data"]["registerPatient"]["id"]


def _grant(client, headers, patient_id: str, scope: str, **extra) -> dict:
    return graphql(client, headers, GRANT, {"i": {"patientId": patient_id, "scope": scope,
                                                  **extra}})


def _refusals(client, patient_id: str) -> list[tuple[str, str, str]]:
    return [(r.purpose, r.scope, r.status) for r in stored_events(client, ConsentRefusal.Recorded)
            if str(r.patient_id) == patient_id]


def _images(client, clinic: str, patient_id: str) -> int:
    gallery = client.app.state.services.gallery
    return len(gallery.images_of_patient(clinic, UUID(patient_id), first=100).images)


def test_capture_needs_active_photography_consent_and_refusals_are_recorded(client, auth,
                                                                            clinic):
    doctor = auth("doctor")
    patient_id = register_patient(client, doctor, consent=False)
    refused = upload(client, doctor, patient_id, jpeg_bytes(seed=1))
    assert refused.status_code == 409 and refused.json()["code"] == "consent_required"
    assert _refusals(client, patient_id) == [("capture", "clinical_photography", "missing")]

    # Expiry: allowed while the consent runs, refused (and recorded) once it has ended.
    expires = datetime.now(UTC) + timedelta(seconds=15)  # a loaded machine is slow
    assert "errors" not in _grant(client, doctor, patient_id, "CLINICAL_PHOTOGRAPHY",
                                  expiresAt=expires.isoformat())
    accepted = upload(client, doctor, patient_id, jpeg_bytes(seed=2))
    assert accepted.status_code == 201, accepted.text
    wait_until(lambda: datetime.now(UTC) > expires + timedelta(milliseconds=50), timeout=30)
    expired = upload(client, doctor, patient_id, jpeg_bytes(seed=3))
    assert expired.status_code == 409 and expired.json()["code"] == "consent_required"

    # Revocation: a fresh grant works until it is revoked.
    assert "errors" not in _grant(client, doctor, patient_id, "CLINICAL_PHOTOGRAPHY")
    assert upload(client, doctor, patient_id, jpeg_bytes(seed=4)).status_code == 201
    assert graphql(client, doctor, REVOKE, {"i": {"patientId": patient_id,
                                                 "scope": "CLINICAL_PHOTOGRAPHY"}})[
        "data"]["revokeConsent"]["consents"] == []
    assert upload(client, doctor, patient_id, jpeg_bytes(seed=5)).json()["code"] == \
        "consent_required"
    assert _refusals(client, patient_id) == [
        ("capture", "clinical_photography", "missing"),
        ("capture", "clinical_photography", "expired"),
        ("capture", "clinical_photography", "missing"),
    ]
    # Nothing of a refused upload is kept: two accepted images, no more.
    wait_until(lambda: _images(client, clinic, patient_id) == 2)
    # A radiograph is not photography, and the server keeps serving.
    assert upload(client, doctor, patient_id, jpeg_bytes(seed=6),
                  fields={"category": "radiograph"}).status_code == 201


def test_a_minors_consent_comes_from_a_guardian(client, auth):
    front = auth("front_desk")
    minor = _register(client, front, "2015-06-01", guardian=True)
    refused = _grant(client, front, minor, "MARKETING", grantedBy="patient")
    assert refused["errors"][0]["extensions"]["code"] == "guardian_consent_required"
    assert refused["errors"][0]["extensions"]["status"] == 409
    assert graphql(client, front, CONSENTS, {"id": minor})["data"]["patient"]["consents"] == []
    # Unstated, a minor's consent is recorded as the guardian's.
    granted = _grant(client, front, minor, "MARKETING")["data"]["grantConsent"]["consents"]
    assert granted[0]["grantedBy"] == "guardian"
    assert _grant(client, front, minor, "EDUCATIONAL", grantedBy="guardian")[
        "data"]["grantConsent"]["consents"][0]["grantedBy"] == "guardian"

    adult = _register(client, front, "1980-01-01")
    assert _grant(client, front, adult, "MARKETING")["data"]["grantConsent"]["consents"][0][
        "grantedBy"] == "patient"
    # An adult may have a guardian too (e.g. a legal representative).
    assert "errors" not in _grant(client, front, adult, "EDUCATIONAL", grantedBy="guardian")
    assert _grant(client, front, adult, "EDUCATIONAL", grantedBy="neighbour")["errors"][0][
        "extensions"]["code"] == "invalid_granted_by"


@pytest.mark.parametrize(("purpose", "scope"), [(Purpose.MARKETING, "MARKETING"),
                                                (Purpose.EDUCATIONAL, "EDUCATIONAL")])
def test_marketing_and_educational_use_need_their_own_scope(client, auth, clinic, purpose,
                                                           scope):
    app = client.app.state.services.app
    admin = auth("clinic_admin")
    patient_id = register_patient(client, admin)  # clinical photography only
    doctor = Actor(user_id="dr-who", role="doctor", clinic_id=clinic)
    now = datetime.now(UTC)
    with pytest.raises(Conflict) as refused:
        app.check_use_consent(doctor, UUID(patient_id), purpose, now)
    assert refused.value.code == "consent_required"

    _grant(client, admin, patient_id, scope,
           expiresAt=(now + timedelta(days=365)).isoformat())
    assert app.check_use_consent(doctor, UUID(patient_id), purpose, now).id == UUID(patient_id)
    other = Purpose.EDUCATIONAL if purpose is Purpose.MARKETING else Purpose.MARKETING
    with pytest.raises(Conflict):
        app.check_use_consent(doctor, UUID(patient_id), other, now)
    # Next year the consent has expired.
    with pytest.raises(Conflict, match="expired"):
        app.check_use_consent(doctor, UUID(patient_id), purpose, now + timedelta(days=400))
    graphql(client, admin, REVOKE, {"i": {"patientId": patient_id, "scope": scope}})
    with pytest.raises(Conflict):
        app.check_use_consent(doctor, UUID(patient_id), purpose, now)

    # Export needs imaging:export; another clinic's patient does not exist.
    with pytest.raises(PermissionDenied):
        app.check_use_consent(Actor("ro", "read_only", clinic), UUID(patient_id), purpose, now)
    with pytest.raises(NotFound):
        app.check_use_consent(Actor("dr", "doctor", "elsewhere"), UUID(patient_id), purpose,
                              now)
    assert _refusals(client, patient_id) == [
        (purpose.value, purpose.value, "missing"), (other.value, other.value, "missing"),
        (purpose.value, purpose.value, "expired"), (purpose.value, purpose.value, "missing"),
    ]


def test_consent_report_names_patients_and_affected_photographs(client, auth, clinic):
    admin = auth("clinic_admin")
    revoked = register_patient(client, admin)
    photos = [upload(client, admin, revoked, jpeg_bytes(seed=s)).json()["id"] for s in (7, 8)]
    xray = upload(client, admin, revoked, jpeg_bytes(seed=9),
                  fields={"category": "radiograph"}).json()["id"]
    graphql(client, admin, REVOKE, {"i": {"patientId": revoked,
                                         "scope": "CLINICAL_PHOTOGRAPHY"}})
    never = register_patient(client, admin, consent=False)
    consented = register_patient(client, admin)
    expiring = register_patient(client, admin, consent=False)
    ends = datetime.now(UTC) + timedelta(seconds=15)
    _grant(client, admin, expiring, "CLINICAL_PHOTOGRAPHY", expiresAt=ends.isoformat())
    expiring_photo = upload(client, admin, expiring, jpeg_bytes(seed=10)).json()["id"]
    time.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 0.1)

    def report(only: bool = False, first: int = 50, after: str | None = None) -> dict:
        result = graphql(client, admin, REPORT, {"scope": "CLINICAL_PHOTOGRAPHY",
                                                 "only": only, "first": first, "after": after})
        assert "errors" not in result, result
        return result["data"]["consentReport"]

    rows = {r["patientId"]: r for r in report()["patients"]}
    assert set(rows) == {revoked, never, expiring}
    assert consented not in rows
    assert rows[revoked]["status"] == "missing"
    assert sorted(rows[revoked]["photographIds"]) == sorted(photos)  # not the radiograph
    assert xray not in rows[revoked]["photographIds"]
    assert rows[revoked]["photographCount"] == 2
    assert rows[expiring]["status"] == "expired"
    assert rows[expiring]["photographIds"] == [expiring_photo]
    assert rows[never]["photographIds"] == [] and rows[never]["photographCount"] == 0
    # "Images whose consent has since been revoked or expired": patients without images drop.
    assert {r["patientId"] for r in report(only=True)["patients"]} == {revoked, expiring}
    # Pagination by patient id.
    first = report(first=2)
    assert first["pageInfo"]["hasNextPage"] is True and len(first["patients"]) == 2
    rest = report(first=2, after=first["pageInfo"]["endCursor"])
    assert rest["pageInfo"]["hasNextPage"] is False
    assert {r["patientId"] for r in first["patients"] + rest["patients"]} == set(rows)
    # Marketing: nobody consented, so every patient of the clinic is listed.
    marketing = graphql(client, admin, REPORT, {"scope": "MARKETING", "only": False,
                                                "first": 50, "after": None})
    assert len(marketing["data"]["consentReport"]["patients"]) == 4

    for role in ("doctor", "front_desk", "read_only"):
        denied = graphql(client, auth(role), REPORT, {"scope": "CLINICAL_PHOTOGRAPHY",
                                                      "only": False, "first": 5, "after": None})
        assert denied["errors"][0]["extensions"]["code"] == "permission_denied"
    # Another clinic's admin sees none of these patients.
    outsider = graphql(client, auth("clinic_admin", clinic_id=f"{clinic}-x"), REPORT,
                       {"scope": "CLINICAL_PHOTOGRAPHY", "only": False, "first": 50,
                        "after": None})
    assert outsider["data"]["consentReport"]["patients"] == []
    bad = graphql(client, admin, REPORT, {"scope": "CLINICAL_PHOTOGRAPHY", "only": False,
                                          "first": 5, "after": "not-a-cursor"})
    assert bad["errors"][0]["extensions"]["code"] == "invalid_id"
