"""Delete with approval (two-person rule): a doctor's delete is a request that a clinic
admin approves (soft delete) or declines; each step is an event in the audit."""

from __future__ import annotations

from uuid import UUID

import pytest

from conftest import bearer, graphql, jpeg_bytes, register_patient, token_for, upload, wait_until

REQUEST = """mutation($i: RequestImageDeletionInput!){ requestImageDeletion(input: $i){
    id imageId status round requestedBy decidedBy } }"""
APPROVE = """mutation($i: DecideImageDeletionInput!){ approveImageDeletion(input: $i){
    status round requestedBy decidedBy } }"""
DECLINE = """mutation($i: DecideImageDeletionInput!){ declineImageDeletion(input: $i){
    status round decidedBy } }"""
STATUS = """query($id: ID!){ deletionRequest(imageId: $id){ status round } }"""
IMAGE = """query($id: ID!){ image(id: $id){ status } }"""
DELETE = """mutation($i: DeleteImageInput!){ deleteImage(input: $i){ status } }"""
RESTORE = """mutation($i: RestoreImageInput!){ restoreImage(input: $i){ status } }"""


def _code(result: dict) -> str:
    return result["errors"][0]["extensions"]["code"]


def _user(shared_settings, role: str, clinic: str, user: str) -> dict[str, str]:
    return bearer(token_for(shared_settings, role, clinic, user=user))


@pytest.fixture
def image(client, auth) -> str:
    admin = auth("clinic_admin")
    patient_id = register_patient(client, admin)
    return upload(client, admin, patient_id, jpeg_bytes(seed=21)).json()["id"]


def test_doctor_requests_and_admin_approves(client, auth, clinic, shared_settings, image):
    doctor = _user(shared_settings, "doctor", clinic, "dr-a")
    admin = _user(shared_settings, "clinic_admin", clinic, "admin-a")
    # A doctor's direct delete is refused: it must be a request.
    assert _code(graphql(client, doctor, DELETE, {"i": {"imageId": image}})) == \
        "approval_required"
    requested = graphql(client, doctor, REQUEST, {"i": {"imageId": image,
                                                        "reason": "wrong patient"}})
    assert requested["data"]["requestImageDeletion"] | {"id": None} == {
        "id": None, "imageId": image, "status": "pending", "round": 1,
        "requestedBy": "dr-a", "decidedBy": None}
    assert graphql(client, doctor, IMAGE, {"id": image})["data"]["image"]["status"] == "active"
    assert _code(graphql(client, doctor, REQUEST, {"i": {"imageId": image, "reason": "x"}})) \
        == "deletion_already_requested"

    # Only a clinic admin decides: not the doctor, not another doctor.
    for role, user in (("doctor", "dr-a"), ("doctor", "dr-b"), ("clinical_staff", "cs")):
        assert _code(graphql(client, _user(shared_settings, role, clinic, user), APPROVE,
                             {"i": {"imageId": image}})) == "permission_denied"
    # Another clinic's admin cannot even see it.
    outsider = _user(shared_settings, "clinic_admin", f"{clinic}-x", "admin-x")
    assert _code(graphql(client, outsider, APPROVE, {"i": {"imageId": image}})) == \
        "image_not_found"

    approved = graphql(client, admin, APPROVE, {"i": {"imageId": image}})
    assert approved["data"]["approveImageDeletion"] == {
        "status": "approved", "round": 1, "requestedBy": "dr-a", "decidedBy": "admin-a"}
    assert graphql(client, admin, IMAGE, {"id": image})["data"]["image"]["status"] == "deleted"
    assert _code(graphql(client, admin, APPROVE, {"i": {"imageId": image}})) == \
        "deletion_request_not_pending"
    # Soft delete only: the admin can restore within the recovery window.
    assert graphql(client, admin, RESTORE, {"i": {"imageId": image}})["data"][
        "restoreImage"]["status"] == "active"

    audit = client.app.state.services.audit
    wait_until(lambda: [e.action for e in audit.search(clinic, image_id=None,
                                                       patient_id=None).entries
                        if e.action.startswith("deletion_request.")] == [
        "deletion_request.opened", "deletion_request.requested", "deletion_request.approved"])
    entries = [e for e in audit.search(clinic).entries
               if e.action in ("deletion_request.approved", "image.soft_deleted")]
    # Approval and soft delete are one transaction: adjacent log positions, same approver.
    assert [e.action for e in entries] == ["deletion_request.approved", "image.soft_deleted"]
    assert entries[1].position == entries[0].position + 1
    assert {e.actor_user for e in entries} == {"admin-a"}


def test_admin_declines_and_doctor_may_ask_again(client, auth, clinic, shared_settings, image):
    doctor = _user(shared_settings, "doctor", clinic, "dr-c")
    admin = _user(shared_settings, "clinic_admin", clinic, "admin-c")
    assert _code(graphql(client, doctor, STATUS, {"id": image})) == "deletion_request_not_found"
    graphql(client, doctor, REQUEST, {"i": {"imageId": image, "reason": "blurred"}})
    declined = graphql(client, admin, DECLINE, {"i": {"imageId": image,
                                                      "note": "needed for records"}})
    assert declined["data"]["declineImageDeletion"] == {
        "status": "declined", "round": 1, "decidedBy": "admin-c"}
    assert graphql(client, doctor, IMAGE, {"id": image})["data"]["image"]["status"] == "active"
    assert _code(graphql(client, admin, DECLINE, {"i": {"imageId": image}})) == \
        "deletion_request_not_pending"
    again = graphql(client, doctor, REQUEST, {"i": {"imageId": image, "reason": "blurred"}})
    assert again["data"]["requestImageDeletion"]["round"] == 2
    assert graphql(client, doctor, STATUS, {"id": image})["data"]["deletionRequest"] == {
        "status": "pending", "round": 2}


def test_nobody_approves_their_own_request(client, auth, clinic, shared_settings, image):
    first = _user(shared_settings, "clinic_admin", clinic, "admin-1")
    second = _user(shared_settings, "clinic_admin", clinic, "admin-2")
    graphql(client, first, REQUEST, {"i": {"imageId": image, "reason": "duplicate"}})
    assert _code(graphql(client, first, APPROVE, {"i": {"imageId": image}})) == "own_request"
    assert graphql(client, second, APPROVE, {"i": {"imageId": image}})["data"][
        "approveImageDeletion"]["status"] == "approved"


@pytest.mark.parametrize("role", ["clinical_staff", "front_desk", "billing", "read_only"])
def test_roles_without_delete_cannot_request(client, auth, image, role):
    result = graphql(client, auth(role), REQUEST, {"i": {"imageId": image, "reason": "x"}})
    assert _code(result) == "permission_denied"
    assert _code(graphql(client, auth("clinic_admin"), STATUS, {"id": image})) == \
        "deletion_request_not_found"


def test_bad_requests_store_nothing(client, auth, image):
    doctor = auth("doctor")
    assert _code(graphql(client, doctor, REQUEST, {"i": {"imageId": image, "reason": "  "}})) \
        == "reason_required"
    assert _code(graphql(client, doctor, REQUEST, {"i": {"imageId": "nope", "reason": "x"}})) \
        == "invalid_id"
    assert _code(graphql(client, doctor, REQUEST, {"i": {"imageId": str(UUID(int=7)),
                                                         "reason": "x"}})) == "image_not_found"
    assert _code(graphql(client, doctor, STATUS, {"id": image})) == "deletion_request_not_found"
    # A deleted image needs no request.
    graphql(client, auth("clinic_admin"), DELETE, {"i": {"imageId": image}})
    assert _code(graphql(client, doctor, REQUEST, {"i": {"imageId": image, "reason": "x"}})) \
        == "image_deleted"


PENDING = """{ pendingDeletionRequests(first: 20){ imageId status requestedBy } }"""
DESTROY = """mutation($i: DestroyImageInput!){ destroyImage(input: $i){ id } }"""


def test_pending_requests_are_listed_and_shredded_with_their_image(client, auth, clinic,
                                                                   shared_settings):
    from domain.deletion_requests import request_id_for
    from domain.events import ShreddedEvent

    admin = _user(shared_settings, "clinic_admin", clinic, "admin-p")
    doctor = _user(shared_settings, "doctor", clinic, "dr-p")
    patient_id = register_patient(client, admin)
    first, second = (upload(client, admin, patient_id, jpeg_bytes(seed=s)).json()["id"]
                     for s in (22, 23))
    for image_id in (first, second):
        graphql(client, doctor, REQUEST, {"i": {"imageId": image_id,
                                                "reason": "Ada asked, see letter"}})
    audit = client.app.state.services.audit
    wait_until(lambda: len(audit.search(clinic, action="deletion_request.requested").entries)
               == 2)
    listed = graphql(client, admin, PENDING)["data"]["pendingDeletionRequests"]
    assert listed == [{"imageId": first, "status": "pending", "requestedBy": "dr-p"},
                      {"imageId": second, "status": "pending", "requestedBy": "dr-p"}]
    assert _code(graphql(client, doctor, PENDING)) == "permission_denied"
    assert graphql(client, auth("clinic_admin", clinic_id=f"{clinic}-p"), PENDING)[
        "data"]["pendingDeletionRequests"] == []
    graphql(client, admin, APPROVE, {"i": {"imageId": first}})
    assert [r["imageId"] for r in graphql(client, admin, PENDING)["data"][
        "pendingDeletionRequests"]] == [second]

    # Destroying the image shreds its request too: the free-text reason is gone with it.
    graphql(client, admin, DESTROY, {"i": {"imageId": second, "reason": "erasure"}})
    app = client.app.state.services.app
    assert app.key_store.is_destroyed(request_id_for(UUID(second)))
    assert all(isinstance(e, ShreddedEvent) for e in app.events.get(request_id_for(
        UUID(second))))
    assert graphql(client, admin, PENDING)["data"]["pendingDeletionRequests"] == []
