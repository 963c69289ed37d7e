"""Patient registration and consent: validation with stable codes, nothing recorded."""

from __future__ import annotations

import pytest

from conftest import graphql

REGISTER = """mutation($i: RegisterPatientInput!){ registerPatient(input: $i){
    id externalId givenName familyName birthDate sex consents { scope } } }"""
GRANT = """mutation($i: GrantConsentInput!){ grantConsent(input: $i){
    consents { scope grantedBy expiresAt active } } }"""


def _input(**overrides):
    values = {"externalId": "P-1", "givenName": "Ada", "familyName": "Lovelace",
              "birthDate": "2013-05-06", "sex": "female"}
    values.update(overrides)
    return {"i": values}


def test_register_a_minor_with_guardian_and_expiring_consent(client, auth):
    headers = auth("front_desk")
    created = graphql(client, headers, REGISTER, _input(
        guardian={"name": "Grace Lovelace", "relationship": "mother", "phone": "+1 555"}))
    patient = created["data"]["registerPatient"]
    assert patient["externalId"] == "P-1" and patient["sex"] == "female"
    granted = graphql(client, headers, GRANT, {"i": {
        "patientId": patient["id"], "scope": "MARKETING", "grantedBy": "guardian",
        "expiresAt": "2099-01-01T00:00:00+00:00"}})
    consent = granted["data"]["grantConsent"]["consents"][0]
    assert consent == {"scope": "MARKETING", "grantedBy": "guardian",
                       "expiresAt": "2099-01-01T00:00:00+00:00", "active": True}


@pytest.mark.parametrize(("overrides", "code"), [
    ({"birthDate": "2999-01-01"}, "invalid_birth_date"),
    ({"sex": "dragon"}, "invalid_sex"),
    ({"givenName": "   "}, "invalid_field"),
    ({"externalId": "x" * 201}, "invalid_field"),
    ({"guardian": {"name": " ", "relationship": "mother"}}, "invalid_guardian"),
])
def test_invalid_registrations_are_refused(client, auth, overrides, code):
    result = graphql(client, auth("doctor"), REGISTER, _input(**overrides))
    assert result["errors"][0]["extensions"]["code"] == code
    assert result["data"] is None


def test_invalid_consents_are_refused(client, auth):
    headers = auth("doctor")
    patient_id = graphql(client, headers, REGISTER, _input())["data"]["registerPatient"]["id"]
    for extra, code in [({"grantedBy": "neighbour"}, "invalid_granted_by"),
                        ({"expiresAt": "2001-01-01T00:00:00+00:00"}, "consent_already_expired")]:
        result = graphql(client, headers, GRANT, {"i": {
            "patientId": patient_id, "scope": "EDUCATIONAL", **extra}})
        assert result["errors"][0]["extensions"]["code"] == code
    bad_scope = graphql(client, headers, GRANT, {"i": {"patientId": patient_id,
                                                       "scope": "EVERYTHING"}})
    assert bad_scope["errors"][0]["extensions"]["code"] == "invalid_query"
    assert graphql(client, headers, """query($id: ID!){ patient(id: $id){ consents { scope } } }""",
                   {"id": patient_id})["data"]["patient"]["consents"] == []
