"""Targets for the foundation's matrix entries: patients, images, protocols, sessions.

Everything hangs off this area's own patient (another area may revoke the world patient's
consent or delete the world's shared image). Read-only targets are built once; targets an
operation consumes are built fresh by the clinic admin right before the call.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.testclient import WebSocketTestSession

from conftest import jpeg_bytes, register_patient, upload, wait_until
from permission_matrix.spec import Headers, Outcome, World, gql_outcome

OK = "ok"
SLOTS = [{"code": "EV15", "label": "Frontal smiling"}]
# Over DeepZoom's 4-megapixel threshold, so the tiles worker builds a pyramid for it.
LARGE = (2200, 2000)

DEFINE = """mutation($i: DefineProtocolInput!){ defineProtocol(input: $i){ id } }"""
OPEN = """mutation($i: OpenCaptureSessionInput!){ openCaptureSession(input: $i){ id } }"""
DELETE = """mutation($i: DeleteImageInput!){ deleteImage(input: $i){ id status } }"""
RECORD = """mutation($i: RecordMilestoneInput!){ recordMilestone(input: $i){ id } }"""
LINK = """mutation($i: LinkImageInput!){ linkImageToMilestone(input: $i){ id } }"""
TAG = """mutation($i: TagImageInput!){ tagImage(input: $i){ id } }"""
EVENTS = """subscription($patient: ID!, $kinds: [String!]) {
  imageEvents(patientId: $patient, kinds: $kinds) { kind imageId image { id } } }"""


def patient(world: World) -> str:
    return world.once("foundation:patient", lambda w: register_patient(w.client, w.admin))


def new_image(world: World, size: tuple[int, int] = (640, 480), **fields: str) -> str:
    """A new photo of this area's patient, with pixels unlike any other upload's."""
    seed = uuid.uuid4().int % 100_000
    response = upload(world.client, world.admin, patient(world),
                      jpeg_bytes(*size, seed=seed), fields=fields or None)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def image(world: World, purpose: str) -> str:
    """One shared photo per purpose, so one operation's changes never meet another's."""
    return world.once(f"foundation:image:{purpose}", new_image)


def served_image(world: World) -> str:
    """A photo whose thumbnail and preview exist (the derivatives worker has run)."""

    def build(w: World) -> str:
        image_id = new_image(w)
        wait_until(lambda: w.client.get(f"/api/v1/images/{image_id}/preview",
                                        headers=w.admin).status_code == 200)
        return image_id

    return world.once("foundation:served-image", build)


def tiled_image(world: World) -> str:
    """A large photo whose DeepZoom pyramid is ready."""

    def build(w: World) -> str:
        image_id = new_image(w, LARGE)
        wait_until(lambda: w.client.get(f"/api/v1/images/{image_id}/tiles/image.dzi",
                                        headers=w.admin).status_code == 200, timeout=90)
        return image_id

    return world.once("foundation:tiled-image", build)


def deleted_image(world: World) -> str:
    image_id = new_image(world)
    world.setup_gql(DELETE, {"i": {"imageId": image_id, "reason": "matrix"}})
    return image_id


def new_protocol(world: World) -> str:
    name = f"Matrix {uuid.uuid4().hex[:6]}"
    return world.setup_gql(DEFINE, {"i": {"name": name, "slots": SLOTS}})[
        "defineProtocol"]["id"]


def protocol(world: World) -> str:
    return world.once("foundation:protocol", new_protocol)


def new_session(world: World) -> str:
    """An open capture session of this area's patient, scheduled for now (so today's)."""
    return world.setup_gql(OPEN, {"i": {"patientId": patient(world),
                                        "scheduledAt": datetime.now(UTC).isoformat()}})[
        "openCaptureSession"]["id"]


def session(world: World) -> str:
    return world.once("foundation:session", new_session)


def milestone(world: World) -> str:
    def build(w: World) -> str:
        ident = f"m-{uuid.uuid4().hex[:8]}"
        w.setup_gql(RECORD, {"i": {"patientId": patient(w), "kind": "progress",
                                   "occurredOn": "2024-01-15", "milestoneId": ident}})
        return ident

    return world.once("foundation:milestone", build)


def linked_image(world: World) -> str:
    """The shared unlink target, (re-)linked by the admin so every role finds it linked."""
    image_id = image(world, "unlink")
    world.setup_gql(LINK, {"i": {"imageId": image_id, "milestoneId": milestone(world)}})
    return image_id


# ---- the imageEvents subscription over a real websocket -------------------------------

PROTOCOL = ["graphql-transport-ws"]
ATTEMPTS = 20
PATIENCE = 1.5  # seconds to wait for a message before nudging the image again


def _receive(ws: WebSocketTestSession, seconds: float) -> dict[str, Any] | None:
    """The next message, or None if none came in time.

    Starlette's ``receive_json`` blocks forever; this waits on the same stream (a private
    attribute of the test session) but gives up, so a missing event fails instead of hangs.
    """

    async def get() -> Any:
        with anyio.move_on_after(seconds):
            return await ws._send_rx.receive()
        return None

    message = ws.portal.call(get)
    if message is None:
        return None
    ws._raise_on_close(message)
    return json.loads(message["text"])


def _outcome(message: dict[str, Any]) -> Outcome:
    if message["type"] == "error":
        return Outcome(message["payload"][0].get("extensions", {}).get("code", "no_code"))
    assert message["type"] == "next", message
    outcome = gql_outcome(message["payload"])
    if outcome.code == OK:
        assert message["payload"]["data"]["imageEvents"]["kind"] == "tagged", message
    return outcome


def image_events(world: World, headers: Headers) -> Outcome:
    """Subscribe to this area's patient, then tag one of its photos (as the admin) until
    an event or an error arrives: the subscription starts from "now", so a tag made before
    the server registered it is simply retried."""
    patient_id, image_id = patient(world), image(world, "events")
    with world.client.websocket_connect("/graphql", subprotocols=PROTOCOL) as ws:
        ws.send_json({"type": "connection_init", "payload": headers})
        ack = ws.receive_json()
        if ack["type"] != "connection_ack":
            return _outcome(ack)
        ws.send_json({"id": "1", "type": "subscribe", "payload": {
            "query": EVENTS, "variables": {"patient": patient_id, "kinds": ["tagged"]}}})
        for _ in range(ATTEMPTS):
            message = _receive(ws, PATIENCE)
            if message is not None:
                ws.send_json({"id": "1", "type": "complete"})
                return _outcome(message)
            world.setup_gql(TAG, {"i": {"imageId": image_id,
                                        "tag": f"ws-{uuid.uuid4().hex[:6]}"}})
    raise AssertionError("the subscription neither answered nor failed")
