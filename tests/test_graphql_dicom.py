"""DICOM reconciliation over GraphQL: list the held objects, then reassign or reject them."""

from __future__ import annotations

import hashlib
import io
import uuid
from typing import Any

import pytest
from dicom_support import DicomStack, dicom_bytes

from api.dicom_ingest import IngestOutcome, ingest_dicom

pytest_plugins = ("dicom_fixtures",)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

ITEMS = """{ dicomReconciliations { id status reasons patientId
             header { patientId patientName birthDate } modality sopInstanceUid } }"""
REASSIGN = """mutation($id: ID!, $patient: ID!) {
  reassignDicomReconciliation(id: $id, patientId: $patient) { id status imageId } }"""
RESOLVE = """mutation($id: ID!) { resolveDicomReconciliation(id: $id) { status imageId } }"""
REJECT = """mutation($id: ID!, $reason: String!) {
  rejectDicomReconciliation(id: $id, reason: $reason) { id status imageId } }"""


def _clinic() -> str:
    return f"clinic-{uuid.uuid4().hex[:8]}"


def _gql(stack: DicomStack, clinic: str, query: str, role: str = "clinic_admin",
         **variables: Any) -> dict[str, Any]:
    response = stack.client.post("/graphql", json={"query": query, "variables": variables},
                                 headers=stack.headers(clinic, role))
    assert response.status_code == 200, response.text
    return response.json()


def _codes(result: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in result.get("errors", [])]


def _hold(stack: DicomStack, clinic: str, data: bytes, patient: uuid.UUID | None = None
          ) -> uuid.UUID:
    result = ingest_dicom(stack.services, stack.actor(clinic), patient, io.BytesIO(data),
                          hashlib.sha256(data).hexdigest())
    assert result.outcome is IngestOutcome.RECONCILIATION
    stack.wait_index(result.position)
    return result.reconciliation_id


def test_list_reassign_and_reject(dicom_stack: DicomStack) -> None:
    stack = dicom_stack
    clinic = _clinic()
    mary = stack.register(clinic, external_id="GQ-1", given="Mary", family="Shelley")
    unknown = _hold(stack, clinic, dicom_bytes(patient_id="GQ-404", patient_name="Doe^Jane"))
    wrong = _hold(stack, clinic, dicom_bytes(patient_id="GQ-1", patient_name="Byron^Ada"),
                  mary)

    listed = _gql(stack, clinic, ITEMS)["data"]["dicomReconciliations"]
    by_id = {item["id"]: item for item in listed}
    assert set(by_id) == {str(unknown), str(wrong)}
    assert by_id[str(unknown)]["reasons"] == ["unknown_patient_id"]
    assert by_id[str(unknown)]["header"]["patientName"] == "Doe^Jane"
    assert by_id[str(wrong)]["patientId"] == str(mary)
    assert by_id[str(wrong)]["reasons"] == ["patient_name_mismatch"]
    # PHI of held objects: capture rights only; another clinic sees none of it.
    assert _codes(_gql(stack, clinic, ITEMS, "read_only")) == ["permission_denied"]
    assert _gql(stack, _clinic(), ITEMS)["data"]["dicomReconciliations"] == []
    foreign = _gql(stack, _clinic(), REJECT, id=str(unknown), reason="not ours")
    assert _codes(foreign) == ["reconciliation_not_found"]

    needs = _gql(stack, clinic, RESOLVE, id=str(unknown))
    assert _codes(needs) == ["reconciliation_needs_patient"]
    filed = _gql(stack, clinic, REASSIGN, "doctor", id=str(unknown), patient=str(mary))
    node = filed["data"]["reassignDicomReconciliation"]
    assert node["status"] == "reassigned" and node["imageId"]
    image = stack.services.app.get_image(uuid.UUID(node["imageId"]), stack.actor(clinic))
    assert image.patient_id == mary and image.original.media_type == "application/dicom"

    rejected = _gql(stack, clinic, REJECT, id=str(wrong), reason="another practice's film")
    assert rejected["data"]["rejectDicomReconciliation"] == {
        "id": str(wrong), "status": "rejected", "imageId": None}
    again = _gql(stack, clinic, REJECT, id=str(wrong), reason="twice")
    assert _codes(again) == ["reconciliation_closed"]
    stack.wait_all()
    assert _gql(stack, clinic, ITEMS)["data"]["dicomReconciliations"] == []
