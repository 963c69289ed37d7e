"""What the permission matrix cannot see for the foundation's operations.

The matrix skips its other-clinic check for operations that address no id
(``captureSessions``, ``photoProtocols`` without an id, ``registerPatient``,
``defineProtocol``): these tests make sure those lists and creations stay per clinic. It
also calls each operation one way only; the time-travel (``asOf``) and destroyed-image
paths of the image queries are pinned here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from conftest import graphql, jpeg_bytes, register_patient, upload

DEFINE = """mutation($i: DefineProtocolInput!){ defineProtocol(input: $i){ id } }"""
OPEN = """mutation($i: OpenCaptureSessionInput!){ openCaptureSession(input: $i){ id } }"""
SESSIONS = """query($day: Date!){ captureSessions(day: $day, includeClosed: true){ id } }"""
PROTOCOLS = """query{ photoProtocols { id builtin } }"""
REGISTER = """mutation($i: RegisterPatientInput!){ registerPatient(input: $i){ id } }"""
PATIENT = """query($id: ID!){ patient(id: $id){ id } }"""
IMAGE_AS_OF = """query($id: ID!, $t: DateTime!){ image(id: $id, asOf: $t){ id category } }"""
HISTORY = """query($id: ID!){ imageHistory(id: $id){ version } }"""
CATEGORISE = """mutation($i: CategoriseImageInput!){ categoriseImage(input: $i){ id } }"""
DESTROY = """mutation($i: DestroyImageInput!){ destroyImage(input: $i){ id } }"""


def _data(result: dict) -> dict:
    assert not result.get("errors"), result
    return result["data"]


def test_another_clinic_lists_none_of_this_clinics_sessions_or_protocols(client, auth, clinic):
    admin = auth("clinic_admin")
    outsider = auth("super_admin", clinic_id=f"other-{clinic}")
    patient_id = register_patient(client, admin)
    protocol_id = _data(graphql(client, admin, DEFINE, {"i": {
        "name": "Aligner check", "slots": [{"code": "EV15", "label": "Frontal smiling"}]}}))[
        "defineProtocol"]["id"]
    session_id = _data(graphql(client, admin, OPEN, {"i": {
        "patientId": patient_id, "scheduledAt": datetime.now(UTC).isoformat()}}))[
        "openCaptureSession"]["id"]
    today = {"day": date.today().isoformat()}

    owner_sessions = _data(graphql(client, admin, SESSIONS, today))["captureSessions"]
    assert [s["id"] for s in owner_sessions] == [session_id]
    assert _data(graphql(client, outsider, SESSIONS, today))["captureSessions"] == []

    owner_protocols = _data(graphql(client, admin, PROTOCOLS))["photoProtocols"]
    assert protocol_id in [p["id"] for p in owner_protocols]
    # The other clinic sees the built-in standard series only.
    assert [p["builtin"] for p in _data(graphql(client, outsider, PROTOCOLS))[
        "photoProtocols"]] == [True]


def test_a_patient_registered_by_another_clinic_stays_there(client, auth, clinic):
    admin = auth("clinic_admin")
    outsider = auth("super_admin", clinic_id=f"other-{clinic}")
    patient = {"externalId": "SAME-1", "givenName": "Ada", "familyName": "Byron",
               "birthDate": "2010-12-10", "sex": "female"}
    ours = _data(graphql(client, admin, REGISTER, {"i": patient}))["registerPatient"]["id"]
    # The same chart number elsewhere is another clinic's own patient, not ours.
    theirs = _data(graphql(client, outsider, REGISTER, {"i": patient}))["registerPatient"]["id"]
    assert theirs != ours
    for headers, foreign in ((admin, theirs), (outsider, ours)):
        errors = graphql(client, headers, PATIENT, {"id": foreign})["errors"]
        assert errors[0]["extensions"]["code"] == "patient_not_found"


def _code(result: dict) -> str:
    return result["errors"][0]["extensions"]["code"]


def _image(client, headers, patient_id: str, seed: int, **fields: str) -> str:
    response = upload(client, headers, patient_id, jpeg_bytes(seed=seed), fields=fields or None)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_front_desk_sees_no_radiograph_in_the_past_either(client, auth):
    admin, desk = auth("clinic_admin"), auth("front_desk")
    patient_id = register_patient(client, admin)
    xray = _image(client, admin, patient_id, 401, category="radiograph")
    photo = _image(client, admin, patient_id, 402)
    # A photo filed as a radiograph later is a radiograph for every moment.
    recategorised = _image(client, admin, patient_id, 403)
    moment = datetime.now(UTC).isoformat()
    _data(graphql(client, admin, CATEGORISE, {"i": {"imageId": recategorised,
                                                      "category": "radiograph"}}))
    now = datetime.now(UTC).isoformat()
    assert _data(graphql(client, desk, IMAGE_AS_OF, {"id": photo, "t": now}))["image"][
        "category"] == "photo"
    for image_id, at in ((xray, now), (recategorised, moment)):
        assert _code(graphql(client, desk, IMAGE_AS_OF, {"id": image_id, "t": at})) \
            == "image_not_found"
    assert _data(graphql(client, admin, IMAGE_AS_OF, {"id": xray, "t": now}))["image"][
        "category"] == "radiograph"


def test_a_destroyed_image_is_not_found_for_another_clinic(client, auth, clinic):
    admin = auth("clinic_admin")
    outsider = auth("super_admin", clinic_id=f"other-{clinic}")
    patient_id = register_patient(client, admin)
    image_id = _image(client, admin, patient_id, 404)
    _data(graphql(client, admin, DESTROY, {"i": {"imageId": image_id, "reason": "wrong chart"}}))
    now = datetime.now(UTC).isoformat()
    for query, variables in ((IMAGE_AS_OF, {"id": image_id, "t": now}),
                             (HISTORY, {"id": image_id})):
        result = graphql(client, outsider, query, variables)
        assert (_code(result), result["errors"][0]["extensions"]["status"]) == (
            "image_not_found", 404)
        # Its own clinic may still learn that it was destroyed.
        assert _code(graphql(client, admin, query, variables)) == "subject_destroyed"
