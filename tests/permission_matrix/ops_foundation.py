"""Patients, images and their bytes, protocols and capture sessions: the foundation.

Classified from the practice's table: reading a patient, an image's metadata or a capture
session is metadata (front desk and billing see it); pixels beyond a thumbnail, and an
image's event history, need full view; tags, categories, notes and treatment milestones are
clinical edits (annotate); protocols are clinic settings (admin).
"""

from __future__ import annotations

import uuid
from datetime import date

from conftest import jpeg_bytes, upload
from domain.permissions import Grant, Permission
from permission_matrix import foundation_targets as t
from permission_matrix.spec import Headers, Operation, Outcome, World, rest_outcome

P, G = Permission, Grant
METADATA = {P.VIEW: (G.THUMBNAILS, G.METADATA)}
ANNOTATE = {P.ANNOTATE: (G.OWN,)}
# Front desk may capture documents or photos into an open session, never a bare photo.
CAPTURE_PHOTO = {P.CAPTURE: ()}
FRONT_DESK_LIMITED = {"front_desk": "capture_limited"}

PATIENT = """query($id: ID!){ patient(id: $id){ id givenName images(first: 5){ edges {
    node { id } } } } }"""
IMAGE = "query($id: ID!){ image(id: $id){ id category tags } }"
HISTORY = "query($id: ID!){ imageHistory(id: $id){ version type actorUser } }"
TIMELINE = """query($id: ID!){ treatmentTimeline(patientId: $id){ phases { imageCount } } }"""
PROTOCOLS = "query($id: ID){ photoProtocols(protocolId: $id){ id name slots { code } } }"
SESSION = "query($id: ID!){ captureSession(id: $id){ id status } }"
SESSIONS = "query($day: Date!){ captureSessions(day: $day){ id status } }"

REGISTER = "mutation($i: RegisterPatientInput!){ registerPatient(input: $i){ id } }"
TAG = "mutation($i: TagImageInput!){ tagImage(input: $i){ id tags } }"
UNTAG = "mutation($i: TagImageInput!){ untagImage(input: $i){ id tags } }"
CATEGORISE = """mutation($i: CategoriseImageInput!){ categoriseImage(input: $i){ id
    category } }"""
NOTE = "mutation($i: AddImageNoteInput!){ addImageNote(input: $i){ id } }"
DELETE = "mutation($i: DeleteImageInput!){ deleteImage(input: $i){ id status } }"
RESTORE = "mutation($i: RestoreImageInput!){ restoreImage(input: $i){ id status } }"
DESTROY = "mutation($i: DestroyImageInput!){ destroyImage(input: $i){ id } }"
DEFINE = "mutation($i: DefineProtocolInput!){ defineProtocol(input: $i){ id } }"
REVISE = "mutation($i: ReviseProtocolInput!){ reviseProtocol(input: $i){ id name } }"
RETIRE = "mutation($id: ID!){ retireProtocol(protocolId: $id){ id retired } }"
OPEN = "mutation($i: OpenCaptureSessionInput!){ openCaptureSession(input: $i){ id } }"
CLOSE = "mutation($id: ID!){ closeCaptureSession(sessionId: $id){ id status } }"
RECORD = "mutation($i: RecordMilestoneInput!){ recordMilestone(input: $i){ id kind } }"
LINK = "mutation($i: LinkImageInput!){ linkImageToMilestone(input: $i){ id } }"
UNLINK = "mutation($i: UnlinkImageInput!){ unlinkImageFromMilestone(input: $i){ id } }"


# ---- queries -------------------------------------------------------------------------

def _patient(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, PATIENT, {"id": t.patient(world)})


def _image(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, IMAGE, {"id": t.image(world, "read")})


def _history(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, HISTORY, {"id": t.image(world, "read")})


def _timeline(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, TIMELINE, {"id": t.patient(world)})


def _protocols(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, PROTOCOLS, {"id": t.protocol(world)})


def _session(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, SESSION, {"id": t.session(world)})


def _sessions(world: World, headers: Headers) -> Outcome:
    t.session(world)  # today's session, so the list has something to show
    return world.gql(headers, SESSIONS, {"day": date.today().isoformat()})


# ---- mutations -----------------------------------------------------------------------

def _register(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, REGISTER, {"i": {
        "externalId": f"M-{uuid.uuid4().hex[:6]}", "givenName": "Grace",
        "familyName": "Hopper", "birthDate": "2011-05-04", "sex": "female"}})


def _tag(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, TAG, {"i": {"imageId": t.image(world, "tag"), "tag": "class ii"}})


def _untag(world: World, headers: Headers) -> Outcome:
    image_id = t.image(world, "untag")
    world.setup_gql(TAG, {"i": {"imageId": image_id, "tag": "crossbite"}})
    return world.gql(headers, UNTAG, {"i": {"imageId": image_id, "tag": "crossbite"}})


def _categorise(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, CATEGORISE, {"i": {
        "imageId": t.image(world, "categorise"), "category": "intraoral", "view": "IV07"}})


def _note(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, NOTE, {"i": {"imageId": t.image(world, "note"),
                                           "text": "Lower midline shifted 2 mm left."}})


def _delete(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, DELETE, {"i": {"imageId": t.new_image(world), "reason": "blur"}})


def _restore(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, RESTORE, {"i": {"imageId": t.deleted_image(world)}})


def _destroy(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, DESTROY, {"i": {"imageId": t.new_image(world),
                                              "reason": "uploaded to the wrong patient"}})


def _define(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, DEFINE, {"i": {"name": f"Matrix {uuid.uuid4().hex[:6]}",
                                             "slots": t.SLOTS}})


def _revise(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, REVISE, {"i": {"protocolId": t.protocol(world),
                                             "name": "Matrix revised", "slots": t.SLOTS}})


def _retire(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, RETIRE, {"id": t.new_protocol(world)})


def _open(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, OPEN, {"i": {"patientId": t.patient(world), "chair": "2"}})


def _close(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, CLOSE, {"id": t.new_session(world)})


def _record(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, RECORD, {"i": {"patientId": t.patient(world), "kind": "debond",
                                             "occurredOn": "2025-03-01"}})


def _link(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, LINK, {"i": {"imageId": t.image(world, "link"),
                                           "milestoneId": t.milestone(world)}})


def _unlink(world: World, headers: Headers) -> Outcome:
    return world.gql(headers, UNLINK, {"i": {"imageId": t.linked_image(world)}})


# ---- REST ----------------------------------------------------------------------------

def _upload_photo(world: World, headers: Headers) -> Outcome:
    seed = uuid.uuid4().int % 100_000
    return rest_outcome(upload(world.client, headers, t.patient(world), jpeg_bytes(seed=seed)))


def _upload_batch(world: World, headers: Headers) -> Outcome:
    """A batch answers 200 with a verdict per file; a refused file's code is the outcome."""
    files = [("files", (f"IV07_{n}.jpg", jpeg_bytes(seed=uuid.uuid4().int % 100_000),
                        "image/jpeg")) for n in range(2)]
    response = world.client.post(f"/api/v1/patients/{t.patient(world)}/image-batches",
                                 files=files, headers=headers)
    outcome = rest_outcome(response)
    if outcome.code != t.OK:
        return outcome
    refused = [r for r in response.json()["results"] if r["status"] != "accepted"]
    return Outcome(refused[0].get("code", refused[0]["status"]) if refused else t.OK,
                   response.status_code)


def _guidance(world: World, headers: Headers) -> Outcome:
    return rest_outcome(world.client.post(
        f"/api/v1/capture-sessions/{t.session(world)}/guidance",
        files={"frame": ("frame.jpg", jpeg_bytes(seed=3), "image/jpeg")},
        data={"slot": "EV15"}, headers=headers))


def _get(path: str):
    def call(world: World, headers: Headers) -> Outcome:
        image_id = (t.tiled_image if path.startswith("tiles/") else t.served_image)(world)
        return rest_outcome(world.client.get(f"/api/v1/images/{image_id}/{path}",
                                             headers=headers))

    return call


OPERATIONS = [
    Operation("query patient", METADATA, _patient, not_found="patient_not_found"),
    Operation("query image", METADATA, _image, not_found="image_not_found"),
    # The history is the image's audit trail (who did what, when): clinical record, not
    # the image's descriptive metadata, so the code's full-view reading is kept.
    Operation("query imageHistory", {P.VIEW: ()}, _history, not_found="image_not_found"),
    Operation("query treatmentTimeline", METADATA, _timeline, not_found="patient_not_found"),
    # Protocols are the clinic's settings; every member may read which views to shoot.
    Operation("query photoProtocols", METADATA, _protocols, not_found="protocol_not_found"),
    Operation("query captureSession", METADATA, _session, not_found="session_not_found"),
    Operation("query captureSessions", METADATA, _sessions, takes_id=False),
    # Front desk registers patients and collects their consent forms (the code's reading
    # of "limited capture"); billing and read-only may not.
    Operation("mutation registerPatient", {P.CAPTURE: (G.DOCUMENTS,)}, _register,
              takes_id=False),
    Operation("mutation tagImage", ANNOTATE, _tag, not_found="image_not_found"),
    Operation("mutation untagImage", ANNOTATE, _untag, not_found="image_not_found"),
    Operation("mutation categoriseImage", ANNOTATE, _categorise, not_found="image_not_found"),
    Operation("mutation addImageNote", ANNOTATE, _note, not_found="image_not_found"),
    Operation("mutation deleteImage", {P.DELETE: ()}, _delete, not_found="image_not_found"),
    Operation("mutation restoreImage", {P.DELETE: ()}, _restore, not_found="image_not_found"),
    Operation("mutation destroyImage", {P.DELETE: ()}, _destroy, not_found="image_not_found"),
    Operation("mutation defineProtocol", {P.ADMIN: ()}, _define, takes_id=False),
    Operation("mutation reviseProtocol", {P.ADMIN: ()}, _revise,
              not_found="protocol_not_found"),
    Operation("mutation retireProtocol", {P.ADMIN: ()}, _retire,
              not_found="protocol_not_found"),
    # Opening and closing the session is what lets front desk upload into it.
    Operation("mutation openCaptureSession", {P.CAPTURE: (G.DOCUMENTS,)}, _open,
              not_found="patient_not_found"),
    Operation("mutation closeCaptureSession", {P.CAPTURE: (G.DOCUMENTS,)}, _close,
              not_found="session_not_found"),
    Operation("mutation recordMilestone", ANNOTATE, _record, not_found="patient_not_found"),
    Operation("mutation linkImageToMilestone", ANNOTATE, _link, not_found="image_not_found"),
    Operation("mutation unlinkImageFromMilestone", ANNOTATE, _unlink,
              not_found="image_not_found"),
    Operation("subscription imageEvents", METADATA, t.image_events,
              not_found="patient_not_found"),
    Operation("POST /api/v1/patients/{patient_id}/images", CAPTURE_PHOTO, _upload_photo,
              overrides=FRONT_DESK_LIMITED, not_found="patient_not_found"),
    Operation("POST /api/v1/patients/{patient_id}/image-batches", CAPTURE_PHOTO, _upload_batch,
              overrides=FRONT_DESK_LIMITED, not_found="patient_not_found"),
    Operation("POST /api/v1/capture-sessions/{session_id}/guidance",
              {P.CAPTURE: (G.DOCUMENTS,)}, _guidance, not_found="session_not_found"),
    Operation("GET /api/v1/images/{image_id}/tiles/image.dzi", {P.VIEW: ()},
              _get("tiles/image.dzi"), not_found="image_not_found"),
    Operation("GET /api/v1/images/{image_id}/tiles/image_files/{level}/{tile}", {P.VIEW: ()},
              _get("tiles/image_files/0/0_0.jpg"), not_found="image_not_found"),
    Operation("GET /api/v1/images/{image_id}/thumbnail", {P.VIEW: (G.THUMBNAILS,)},
              _get("thumbnail"), not_found="image_not_found"),
    Operation("GET /api/v1/images/{image_id}/preview", {P.VIEW: ()}, _get("preview"),
              not_found="image_not_found"),
    Operation("GET /api/v1/images/{image_id}/original", {P.VIEW: ()}, _get("original"),
              not_found="image_not_found"),
]
