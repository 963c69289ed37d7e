"""GraphQL for DICOM reconciliation and 3D data (CBCT volumes, intraoral scans).

Reconciliation items show what a DICOM header claimed about a patient (PHI) and filing one
is a capture, so every field and mutation here needs the full capture grant, as the REST
routes in ``api/rest_reconciliation.py`` do; both call the same ``api/dicom_ingest``
functions. Volume and scan details need ``imaging:3d_view``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.dicom_ingest import file_reconciliation, reject_reconciliation
from api.graphql_context import actor_of, blocking, parse_id
from api.mesh_upload import MESH_SOURCE
from api.services import Services
from domain.cbct import VOLUME_MEDIA_TYPE, VOLUME_SOURCE, VOLUME_VIEWS
from domain.errors import NotFound
from domain.image import Image
from domain.permissions import Grant, Permission, grant, require
from domain.reconciliation import DicomReconciliation
from domain.values import Actor


@strawberry.type
class DicomHeaderPatient:
    """What the object's header says about its patient (PHI)."""

    patient_id: str | None
    patient_name: str | None
    birth_date: str | None
    sex: str | None


@strawberry.type(name="DicomReconciliation")
class ReconciliationNode:
    id: strawberry.ID
    status: str
    reasons: list[str]
    patient_id: strawberry.ID | None
    candidates: list[strawberry.ID]
    image_id: strawberry.ID | None
    header: DicomHeaderPatient
    modality: str | None
    study_instance_uid: str | None
    sop_instance_uid: str | None
    opened_at: datetime | None


def _id(value: Any) -> strawberry.ID | None:
    return strawberry.ID(str(value)) if value else None


def _node(item: DicomReconciliation) -> ReconciliationNode:
    header = item.dicom.get("patient") or {}
    return ReconciliationNode(
        id=strawberry.ID(str(item.id)), status=item.status, reasons=list(item.reasons),
        patient_id=_id(item.patient_id), candidates=[strawberry.ID(str(c))
                                                     for c in item.candidates],
        image_id=_id(item.image_id),
        header=DicomHeaderPatient(patient_id=header.get("id"), patient_name=header.get("name"),
                                  birth_date=header.get("birth_date"), sex=header.get("sex")),
        modality=item.dicom.get("modality"),
        study_instance_uid=item.dicom.get("study_instance_uid"),
        sop_instance_uid=item.dicom.get("sop_instance_uid"),
        opened_at=item.created_on,
    )


@strawberry.type
class CbctVolume:
    image_id: strawberry.ID
    slice_count: int
    dimensions: list[int] | None  # columns, rows, slices
    spacing_mm: list[float] | None  # x, y, z
    study_instance_uid: str | None
    series_instance_uid: str | None
    views: list[str]  # for /api/v1/images/{id}/volume/{view}
    failure: str | None


@strawberry.type
class MeshScan:
    image_id: strawberry.ID
    format: str
    arch: str | None
    paired_with: strawberry.ID | None
    stats: JSON


def _image_3d(services: Services, actor: Actor, image_id: strawberry.ID) -> Image:
    image = services.app.get_image(parse_id(image_id, "imageId"), actor)
    # As the REST 3D routes: a soft-deleted image exists only for those who may restore it.
    if image.is_deleted and grant(actor.role, Permission.DELETE) is not Grant.FULL:
        raise NotFound("image_not_found", "no such image")
    require(actor, Permission.VIEW_3D)
    return image


def _volume(services: Services, actor: Actor, image_id: strawberry.ID) -> CbctVolume:
    image = _image_3d(services, actor, image_id)
    if image.original.media_type != VOLUME_MEDIA_TYPE:
        raise NotFound("not_a_volume", "this image is not a CBCT volume")
    meta = image.metadata.get(VOLUME_SOURCE, {})
    return CbctVolume(
        image_id=strawberry.ID(str(image.id)), slice_count=int(meta.get("slice_count", 0)),
        dimensions=meta.get("dimensions"), spacing_mm=meta.get("spacing_mm"),
        study_instance_uid=meta.get("study_instance_uid"),
        series_instance_uid=meta.get("series_instance_uid"),
        views=list(VOLUME_VIEWS) if image.derivatives else [],
        failure=image.processing_failure,
    )


def _mesh(services: Services, actor: Actor, image_id: strawberry.ID) -> MeshScan:
    image = _image_3d(services, actor, image_id)
    meta = dict(image.metadata.get(MESH_SOURCE) or {})
    if not meta:
        raise NotFound("not_a_scan", "this image is not a 3D scan")
    fmt, arch, paired = meta.pop("format"), meta.pop("arch", None), meta.pop("paired_with", None)
    return MeshScan(image_id=strawberry.ID(str(image.id)), format=fmt, arch=arch,
                    paired_with=_id(paired), stats=meta)


@strawberry.type
class DicomQuery:
    @strawberry.field(description="DICOM objects held because their patient did not match.")
    async def dicom_reconciliations(self, info: Info) -> list[ReconciliationNode]:
        actor = actor_of(info)
        require(actor, Permission.CAPTURE)
        services: Services = info.context.services
        rows = await blocking(services.dicom_index.open_reconciliations, actor.clinic_id)
        items = [await blocking(services.app.get_reconciliation, r.item_id, actor)
                 for r in rows]
        return [_node(item) for item in items]

    @strawberry.field
    async def dicom_reconciliation(self, info: Info, id: strawberry.ID) -> ReconciliationNode:
        actor = actor_of(info)
        require(actor, Permission.CAPTURE)
        services: Services = info.context.services
        return _node(await blocking(services.app.get_reconciliation, parse_id(id, "id"), actor))

    @strawberry.field(description="A CBCT volume's geometry and planes (imaging:3d_view).")
    async def cbct_volume(self, info: Info, image_id: strawberry.ID) -> CbctVolume:
        return await blocking(_volume, info.context.services, actor_of(info), image_id)

    @strawberry.field(description="An intraoral scan's statistics (imaging:3d_view).")
    async def mesh_scan(self, info: Info, image_id: strawberry.ID) -> MeshScan:
        return await blocking(_mesh, info.context.services, actor_of(info), image_id)


async def _item(services: Services, actor: Actor, item_id: Any) -> ReconciliationNode:
    return _node(await blocking(services.app.get_reconciliation, item_id, actor))


@strawberry.type
class DicomMutation:
    @strawberry.mutation(description="File a held object to the patient it was sent for.")
    async def resolve_dicom_reconciliation(self, info: Info,
                                           id: strawberry.ID) -> ReconciliationNode:
        actor = actor_of(info)
        services: Services = info.context.services
        item_id = parse_id(id, "id")
        await blocking(file_reconciliation, services, actor, item_id)
        return await _item(services, actor, item_id)

    @strawberry.mutation(description="File a held object to another patient of the clinic.")
    async def reassign_dicom_reconciliation(self, info: Info, id: strawberry.ID,
                                            patient_id: strawberry.ID) -> ReconciliationNode:
        actor = actor_of(info)
        services: Services = info.context.services
        item_id = parse_id(id, "id")
        await blocking(file_reconciliation, services, actor, item_id,
                       parse_id(patient_id, "patientId"))
        return await _item(services, actor, item_id)

    @strawberry.mutation(description="Refuse a held object; its copy is deleted.")
    async def reject_dicom_reconciliation(self, info: Info, id: strawberry.ID,
                                          reason: str) -> ReconciliationNode:
        actor = actor_of(info)
        services: Services = info.context.services
        item_id = parse_id(id, "id")
        await blocking(reject_reconciliation, services, actor, item_id, reason[:500])
        return await _item(services, actor, item_id)
