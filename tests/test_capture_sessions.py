"""Photo protocols and capture sessions: the standard series end to end."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from conftest import graphql, jpeg_bytes, register_patient, upload

OPEN = """mutation($i: OpenCaptureSessionInput!){ openCaptureSession(input: $i){
    id status milestone chair appointmentId completeness { filled required missingRequired
    missingOptional complete } } }"""
SESSION = """query($id: ID!){ captureSession(id: $id){ id status filled { code imageId }
    completeness { filled required missingRequired missingOptional complete } } }"""
DAY = """query($day: Date!, $chair: String){ captureSessions(day: $day, chair: $chair){
    id chair status completeness { missingRequired complete } } }"""
DEFINE = """mutation($i: DefineProtocolInput!){ defineProtocol(input: $i){
    id name builtin slots { code required } } }"""
PROTOCOLS = """{ photoProtocols { id name builtin retired slots { code label required } } }"""

STANDARD_VIEWS = ["EV15", "EV19", "EV01", "EV08", "EV38", "IV07", "IV01", "IV18", "IV24",
                  "IV26"]


def _open(client, headers, patient_id, **extra):
    values = {"patientId": patient_id, "milestone": "initial_records", "chair": "2",
              "appointmentId": "APT-1", "scheduledAt": datetime.now(UTC).isoformat(), **extra}
    result = graphql(client, headers, OPEN, {"i": values})
    assert "errors" not in result, result
    return result["data"]["openCaptureSession"]


def _code(result):
    return result["errors"][0]["extensions"]["code"]


def test_standard_series_session_to_complete(client, auth):
    headers = auth("clinical_staff")
    patient_id = register_patient(client, headers)
    protocols = graphql(client, headers, PROTOCOLS)["data"]["photoProtocols"]
    standard = protocols[0]
    assert standard["builtin"] and len(standard["slots"]) == 11
    session = _open(client, headers, patient_id)
    assert session["status"] == "scheduled"
    assert session["completeness"]["required"] == 8 and not session["completeness"]["complete"]

    for index, view in enumerate(STANDARD_VIEWS):
        response = upload(client, headers, patient_id, jpeg_bytes(320, 240, seed=index),
                          fields={"session_id": session["id"], "view": view})
        assert response.status_code == 201, response.text
        if index == 4:
            halfway = graphql(client, headers, SESSION, {"id": session["id"]})
            state = halfway["data"]["captureSession"]
            assert state["status"] == "open"
            assert state["completeness"]["missingRequired"] == ["IV07", "IV01", "IV18", "IV24",
                                                               "IV26"]
    done = graphql(client, headers, SESSION, {"id": session["id"]})["data"]["captureSession"]
    assert done["status"] == "complete"
    assert done["completeness"] == {"filled": 10, "required": 8, "missingRequired": [],
                                    "missingOptional": ["IV11"], "complete": True}
    assert sorted(f["code"] for f in done["filled"]) == sorted(STANDARD_VIEWS)

    today = datetime.now(UTC).date().isoformat()
    listed = graphql(client, headers, DAY, {"day": today, "chair": "2"})["data"][
        "captureSessions"]
    assert [s["id"] for s in listed] == [session["id"]]
    assert listed[0]["completeness"]["complete"] is True
    assert graphql(client, headers, DAY, {"day": today, "chair": "9"})["data"][
        "captureSessions"] == []
    closed = graphql(client, headers, """mutation($id: ID!){ closeCaptureSession(sessionId: $id){
        status } }""", {"id": session["id"]})
    assert closed["data"]["closeCaptureSession"]["status"] == "closed"
    refused = upload(client, headers, patient_id, jpeg_bytes(),
                     fields={"session_id": session["id"], "view": "IV11"})
    assert (refused.status_code, refused.json()["code"]) == (409, "session_closed")


def test_uploads_into_a_session_are_checked(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    other_patient = register_patient(client, headers)
    session = _open(client, headers, patient_id)
    cases = [
        ({"session_id": session["id"], "view": "IV27"}, patient_id, 400, "unknown_slot"),
        ({"session_id": session["id"]}, patient_id, 400, "slot_required"),
        ({"session_id": session["id"], "view": "IV07"}, other_patient, 409,
         "session_patient_mismatch"),
        ({"session_id": "00000000-0000-4000-8000-000000000000", "view": "IV07"}, patient_id,
         404, "session_not_found"),
        ({"session_id": "nope", "view": "IV07"}, patient_id, 400, "invalid_id"),
    ]
    for fields, target, status, code in cases:
        r = upload(client, headers, target, jpeg_bytes(), fields=fields)
        assert (r.status_code, r.json()["code"]) == (status, code), fields
    outsider = auth("doctor", clinic_id="elsewhere")
    assert _code(graphql(client, outsider, SESSION, {"id": session["id"]})) == "session_not_found"


def test_front_desk_may_upload_photos_only_into_an_open_session(client, auth):
    admin = auth("clinic_admin")
    patient_id = register_patient(client, admin)
    front = auth("front_desk")
    session = _open(client, front, patient_id)
    assert upload(client, front, patient_id, jpeg_bytes()).json()["code"] == "capture_limited"
    into = upload(client, front, patient_id, jpeg_bytes(),
                  fields={"session_id": session["id"], "view": "EV15"})
    assert into.status_code == 201
    xray = upload(client, front, patient_id, jpeg_bytes(),
                  fields={"session_id": session["id"], "view": "IV07",
                          "category": "radiograph"})
    assert xray.json()["code"] == "capture_limited"


def test_concurrent_uploads_fill_their_slots(client, auth):
    headers = auth("doctor")
    patient_id = register_patient(client, headers)
    session = _open(client, headers, patient_id)
    views = ["IV07", "IV01", "IV18", "IV24"]
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(
            lambda v: upload(client, headers, patient_id, jpeg_bytes(seed=len(v) + ord(v[-1])),
                             fields={"session_id": session["id"], "view": v}), views))
    assert [r.status_code for r in responses] == [201] * 4
    state = graphql(client, headers, SESSION, {"id": session["id"]})["data"]["captureSession"]
    assert sorted(f["code"] for f in state["filled"]) == sorted(views)


def test_custom_protocols(client, auth):
    admin = auth("clinic_admin")
    created = graphql(client, admin, DEFINE, {"i": {"name": "Quick progress", "slots": [
        {"code": "IV07", "label": "Front"}, {"code": "EV19", "label": "Smile",
                                             "required": False}]}})
    protocol = created["data"]["defineProtocol"]
    assert protocol["slots"] == [{"code": "IV07", "required": True},
                                 {"code": "EV19", "required": False}]
    listed = graphql(client, admin, PROTOCOLS)["data"]["photoProtocols"]
    assert [p["name"] for p in listed][1:] == ["Quick progress"]
    assert _code(graphql(client, auth("doctor"), DEFINE, {"i": {"name": "x", "slots": [
        {"code": "IV07", "label": "Front"}]}})) == "permission_denied"
    for slots, code in [([], "empty_protocol"), ([{"code": "ZZ01", "label": "?"}], "unknown_view"),
                        ([{"code": "IV07", "label": "a"}, {"code": "IV07", "label": "b"}],
                         "duplicate_slot")]:
        assert _code(graphql(client, admin, DEFINE, {"i": {"name": "x", "slots": slots}})) == code

    patient_id = register_patient(client, admin)
    session = _open(client, admin, patient_id, protocolId=protocol["id"])
    assert session["completeness"]["required"] == 1
    upload(client, admin, patient_id, jpeg_bytes(), fields={"session_id": session["id"],
                                                             "view": "IV07"})
    state = graphql(client, admin, SESSION, {"id": session["id"]})["data"]["captureSession"]
    assert state["status"] == "complete"

    revised = graphql(client, admin, """mutation($i: ReviseProtocolInput!){ reviseProtocol(
        input: $i){ name slots { code } } }""", {"i": {"protocolId": protocol["id"],
        "name": "Quick progress v2", "slots": [{"code": "IV01", "label": "Right"}]}})
    assert revised["data"]["reviseProtocol"] == {"name": "Quick progress v2",
                                                 "slots": [{"code": "IV01"}]}
    graphql(client, admin, """mutation($id: ID!){ retireProtocol(protocolId: $id){ retired } }""",
            {"id": protocol["id"]})
    refused = graphql(client, admin, OPEN, {"i": {"patientId": patient_id,
                                                  "protocolId": protocol["id"]}})
    assert _code(refused) == "protocol_retired"
    standard_id = listed[0]["id"]
    assert _code(graphql(client, admin, """mutation($id: ID!){ retireProtocol(protocolId: $id){
        id } }""", {"id": standard_id})) == "protocol_builtin"
    assert _code(graphql(client, admin, OPEN, {"i": {"patientId": patient_id,
                                                     "milestone": "someday"}})) == \
        "invalid_milestone"
