"""Replay: an image and a patient as they stood at a past moment, and an image's history."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from conftest import graphql, jpeg_bytes, register_patient, upload

TAG = """mutation($i: TagImageInput!){ tagImage(input: $i){ tags } }"""
AS_OF = """query($id: ID!, $at: DateTime){ image(id: $id, asOf: $at){ tags status } }"""
HISTORY = """query($id: ID!){ imageHistory(id: $id){ version type actorUser actorRole
    redacted } }"""
PATIENT_AS_OF = """query($id: ID!, $at: DateTime){ patient(id: $id, asOf: $at){
    consents { scope } } }"""


def test_time_travel_to_before_a_tag(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    image_id = upload(client, headers, patient_id, jpeg_bytes(seed=61),
                      fields={"tags": "initial"}).json()["id"]
    time.sleep(0.05)
    before_tag = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    graphql(client, headers, TAG, {"i": {"imageId": image_id, "tag": "debond"}})
    then = graphql(client, headers, AS_OF, {"id": image_id, "at": before_tag})
    assert then["data"]["image"]["tags"] == ["initial"]
    now = graphql(client, headers, AS_OF, {"id": image_id, "at": None})
    assert now["data"]["image"]["tags"] == ["initial", "debond"]
    too_early = graphql(client, headers, AS_OF, {"id": image_id, "at": "2001-01-01T00:00:00Z"})
    assert too_early["errors"][0]["extensions"]["code"] == "image_not_found"

    history = graphql(client, headers, HISTORY, {"id": image_id})["data"]["imageHistory"]
    assert history[0] == {"version": 1, "type": "Captured", "actorUser": "user-doctor",
                          "actorRole": "doctor", "redacted": False}
    assert [h["type"] for h in history if h["actorUser"] == "user-doctor"][-1] == "Tagged"
    outsider = auth("doctor", clinic_id="elsewhere")
    assert graphql(client, outsider, HISTORY, {"id": image_id})["errors"][0]["extensions"][
        "code"] == "image_not_found"


def test_patient_as_of_before_consent(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers, consent=False)
    time.sleep(0.05)
    before = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    graphql(client, headers, """mutation($i: GrantConsentInput!){ grantConsent(input: $i){
        id } }""", {"i": {"patientId": patient_id, "scope": "MARKETING"}})
    assert graphql(client, headers, PATIENT_AS_OF, {"id": patient_id, "at": before})["data"][
        "patient"]["consents"] == []
    assert graphql(client, headers, PATIENT_AS_OF, {"id": patient_id, "at": None})["data"][
        "patient"]["consents"] == [{"scope": "MARKETING"}]
