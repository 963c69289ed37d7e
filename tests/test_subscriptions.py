"""GraphQL subscriptions over a real websocket (graphql-transport-ws) on the session app."""

from __future__ import annotations

from typing import Any

from starlette.testclient import WebSocketTestSession

from conftest import jpeg_bytes, register_patient, upload

EVENTS = """subscription($patient: ID!, $kinds: [String!]) {
  imageEvents(patientId: $patient, kinds: $kinds) {
    kind imageId patientId position image { id status category thumbnailUrl }
  }
}"""
PROTOCOL = ["graphql-transport-ws"]


def _open(ws: WebSocketTestSession, headers: dict[str, str] | None, patient: str,
          kinds: list[str] | None = None) -> None:
    ws.send_json({"type": "connection_init", "payload": headers or {}})
    assert ws.receive_json() == {"type": "connection_ack"}
    ws.send_json({"id": "1", "type": "subscribe", "payload": {
        "query": EVENTS, "variables": {"patient": patient, "kinds": kinds}}})


def _next(ws: WebSocketTestSession) -> dict[str, Any]:
    message = ws.receive_json()
    assert message["type"] == "next", message
    assert "errors" not in message["payload"], message
    return message["payload"]["data"]["imageEvents"]


def _error_code(ws: WebSocketTestSession) -> str:
    message = ws.receive_json()
    if message["type"] == "error":
        return message["payload"][0]["extensions"]["code"]
    assert message["type"] == "next", message
    return message["payload"]["errors"][0]["extensions"]["code"]


def test_a_patients_image_events_arrive_live_after_the_gallery_has_them(client, auth):
    headers = auth("doctor")
    patient = register_patient(client, headers)
    other = register_patient(client, headers)
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        _open(ws, headers, patient, ["captured", "derivatives_generated"])
        upload(client, headers, other, jpeg_bytes(seed=31))  # another patient: not announced
        image = upload(client, headers, patient, jpeg_bytes(seed=32)).json()["id"]
        captured = _next(ws)
        assert (captured["kind"], captured["imageId"], captured["patientId"]) == (
            "captured", image, patient)
        processed = _next(ws)
        assert (processed["kind"], processed["imageId"]) == ("derivatives_generated", image)
        assert processed["position"] > captured["position"]
        # Sent after the gallery applied it: the node already has its thumbnail.
        assert processed["image"]["thumbnailUrl"]
        ws.send_json({"id": "1", "type": "complete"})


def test_subscriptions_are_authorised_like_queries(client, auth):
    patient = register_patient(client, auth("doctor"))
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        _open(ws, None, patient)
        assert _error_code(ws) == "missing_token"
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        _open(ws, auth("doctor", clinic_id="another-clinic-ws"), patient)
        assert _error_code(ws) == "patient_not_found"  # 404 semantics, never 403
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        _open(ws, auth("doctor"), patient, ["exploded"])
        assert _error_code(ws) == "invalid_kind"
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        _open(ws, {"Authorization": "Bearer not-a-token"}, patient)
        assert _error_code(ws) not in ("", None, "internal_error")


def test_front_desk_is_never_told_about_radiographs(client, auth):
    doctor, desk = auth("doctor"), auth("front_desk")
    patient = register_patient(client, doctor)
    with client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        _open(ws, desk, patient, ["captured"])
        xray = upload(client, doctor, patient, jpeg_bytes(seed=33),
                      fields={"category": "radiograph"})
        assert xray.status_code == 201, xray.text
        photo = upload(client, doctor, patient, jpeg_bytes(seed=34)).json()["id"]
        event = _next(ws)
        assert event["imageId"] == photo  # the radiograph before it was skipped
