"""REST for DICOM reconciliation: list the held objects, then file (resolve, reassign) or
reject each. Capture rights are needed throughout: the items show what a header claimed about
a patient (PHI), and filing them is a capture."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.dicom_ingest import file_reconciliation, reject_reconciliation
from api.rest_images import current_actor, services_of
from domain.permissions import Permission, require
from domain.values import Actor

router = APIRouter(prefix="/api/v1/dicom/reconciliations", tags=["dicom"])
ActorDep = Annotated[Actor, Depends(current_actor)]


@router.get("")
def list_open(request: Request, actor: ActorDep) -> JSONResponse:
    require(actor, Permission.CAPTURE)
    items = services_of(request).dicom_index.open_reconciliations(actor.clinic_id)
    return JSONResponse([
        {"id": str(i.item_id), "patientId": str(i.patient_id) if i.patient_id else None,
         "reasons": i.reasons, "sopInstanceUid": i.sop_uid, "studyInstanceUid": i.study_uid,
         "modality": i.modality, "openedAt": i.opened_at.isoformat()}
        for i in items
    ])


@router.get("/{item_id}")
def get_item(item_id: UUID, request: Request, actor: ActorDep) -> JSONResponse:
    require(actor, Permission.CAPTURE)
    item = services_of(request).app.get_reconciliation(item_id, actor)
    header: dict[str, Any] = item.dicom.get("patient") or {}
    return JSONResponse({
        "id": str(item.id), "status": item.status, "reasons": item.reasons,
        "patientId": str(item.patient_id) if item.patient_id else None,
        "candidates": [str(c) for c in item.candidates],
        "imageId": str(item.image_id) if item.image_id else None,
        "header": {"patientId": header.get("id"), "patientName": header.get("name"),
                   "birthDate": header.get("birth_date"), "sex": header.get("sex")},
        "modality": item.dicom.get("modality"),
        "studyInstanceUid": item.dicom.get("study_instance_uid"),
        "sopInstanceUid": item.dicom.get("sop_instance_uid"),
    })


@router.post("/{item_id}/resolve", status_code=201)
async def resolve(item_id: UUID, request: Request, actor: ActorDep) -> JSONResponse:
    """File the object to the patient it was sent for, the mismatch having been reviewed."""
    image_id = await run_in_threadpool(file_reconciliation, services_of(request), actor,
                                       item_id)
    return JSONResponse({"imageId": str(image_id)}, status_code=201,
                        headers={"Location": f"/api/v1/images/{image_id}"})


@router.post("/{item_id}/reassign", status_code=201)
async def reassign(item_id: UUID, request: Request, actor: ActorDep,
                   patient_id: Annotated[UUID, Body(embed=True, alias="patientId")]
                   ) -> JSONResponse:
    image_id = await run_in_threadpool(file_reconciliation, services_of(request), actor,
                                       item_id, patient_id)
    return JSONResponse({"imageId": str(image_id)}, status_code=201,
                        headers={"Location": f"/api/v1/images/{image_id}"})


@router.post("/{item_id}/reject")
async def reject(item_id: UUID, request: Request, actor: ActorDep,
                 reason: Annotated[str, Body(embed=True, max_length=500)]) -> JSONResponse:
    await run_in_threadpool(reject_reconciliation, services_of(request), actor, item_id, reason)
    return JSONResponse({"id": str(item_id), "status": "rejected"})
