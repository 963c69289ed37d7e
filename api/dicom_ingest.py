"""Turning a received DICOM object into a filed image, or a reconciliation item.

The discipline of ``api/image_upload.py`` holds: every check (parse, pixel decode, permission,
patient, consent) runs before any byte is kept; the sealed original is durable before its
event commits; if the event does not commit, the blob is removed again.

Idempotency comes from DICOM itself: an object's SOP Instance UID names it, so the image id
(and the reconciliation item id) is derived from (clinic, SOP Instance UID). A modality that
resends after a lost acknowledgement gets the same answer and stores nothing twice; a resend
with different bytes under the same UID is refused.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import IO, Any
from uuid import UUID

import structlog
from eventsourcing.persistence import IntegrityError

from adapters import dicom_codec
from adapters.dicom_codec import DicomInstance
from adapters.dicom_export import view_code_of
from adapters.isolated_decoding import check_renders_isolated, pixel_fingerprint_isolated
from api.errors import database_unavailable
from api.services import Services
from domain.errors import Conflict, Gone, InvalidInput, OrthovaultError, Unprocessable
from domain.image import ImageCategory
from domain.imaging import NewImage
from domain.patient import Patient
from domain.permissions import Permission, require
from domain.reconciliation import (
    DICOM_SOURCE,
    DicomDemographics,
    DicomReconciliation,
    MismatchReason,
    NewReconciliation,
    mismatches,
)
from domain.values import Actor, BlobRef
from domain.views import VIEWS

log = structlog.get_logger("orthovault.dicom_ingest")

DICOM_MEDIA_TYPE = "application/dicom"
INSTANCE_NAMESPACE = uuid.UUID("0b6b7f7e-51a4-4c0e-8d8e-2f6f3f2a9c11")
MISSING_UID = "dicom_missing_uid"
# The category follows from the modality; automatic categorisation has nothing to add.
CATEGORY_SOURCE = "dicom"

# Dental modalities (ORTHODONTICS.md): everything else is kept, as "other".
_CATEGORIES: dict[str, ImageCategory] = {
    "PX": ImageCategory.RADIOGRAPH,
    "DX": ImageCategory.RADIOGRAPH,
    "CR": ImageCategory.RADIOGRAPH,
    "IO": ImageCategory.RADIOGRAPH,
    "CT": ImageCategory.SCAN,  # CBCT
    "XC": ImageCategory.PHOTO,
}


class IngestOutcome(StrEnum):
    FILED = "filed"
    RECONCILIATION = "reconciliation"


@dataclass(frozen=True)
class DicomIngestResult:
    outcome: IngestOutcome
    image_id: UUID | None
    reconciliation_id: UUID | None
    patient_id: UUID | None
    position: int
    replayed: bool
    instance: DicomInstance
    reasons: tuple[str, ...] = ()
    captured_position: int = 0  # the ImageCaptured event's, which the gallery applies


# VL Photographic Image Storage: a photograph whatever modality it claims, so it never
# passes as "other" without the patient's consent.
VL_PHOTOGRAPHIC_IMAGE = "1.2.840.10008.5.1.4.1.1.77.1.4"


def category_for(modality: str | None, sop_class_uid: str | None = None) -> ImageCategory:
    if (sop_class_uid or "").strip() == VL_PHOTOGRAPHIC_IMAGE:
        return ImageCategory.PHOTO
    return _CATEGORIES.get((modality or "").strip().upper(), ImageCategory.OTHER)


def photo_view(data: bytes, category: ImageCategory) -> tuple[ImageCategory, str | None]:
    """A photograph's ADA-1100 view (View Code Sequence) and the category it implies."""
    if category is not ImageCategory.PHOTO:
        return category, None
    view = view_code_of(data)
    if view is None:
        return category, None
    return (ImageCategory.INTRAORAL if VIEWS[view].intraoral else ImageCategory.EXTRAORAL), view


def instance_image_id(clinic_id: str, sop_instance_uid: str) -> UUID:
    return uuid.uuid5(INSTANCE_NAMESPACE, f"image\x1f{clinic_id}\x1f{sop_instance_uid}")


def reconciliation_id(clinic_id: str, sop_instance_uid: str) -> UUID:
    return uuid.uuid5(INSTANCE_NAMESPACE, f"reconciliation\x1f{clinic_id}\x1f{sop_instance_uid}")


def dicom_metadata(info: DicomInstance) -> dict[str, Any]:
    """What ``Image.MetadataExtracted(source="dicom")`` records: JSON-safe values only."""
    spacing = info.pixel_spacing
    return {
        "study_instance_uid": info.study_instance_uid,
        "series_instance_uid": info.series_instance_uid,
        "sop_instance_uid": info.sop_instance_uid,
        "sop_class_uid": info.sop_class_uid,
        "transfer_syntax_uid": info.transfer_syntax_uid,
        "modality": info.modality,
        "body_part_examined": info.body_part_examined,
        "view_position": info.view_position,
        "rows": info.rows,
        "columns": info.columns,
        "number_of_frames": info.number_of_frames,
        "photometric_interpretation": info.photometric_interpretation,
        "pixel_spacing": None if spacing is None else {
            "row_mm": spacing.row_mm, "column_mm": spacing.column_mm,
            "source": spacing.source.value, "magnification": spacing.magnification,
        },
        "study_date": info.study_date.isoformat() if info.study_date else None,
        "study_description": info.study_description,
        "series_description": info.series_description,
        "images_in_acquisition": info.images_in_acquisition,
        "study_time": info.study_time,
        "accession_number": info.accession_number,
        "series_number": info.series_number,
        "instance_number": info.instance_number,
        # PHI: only ever inside sealed event state and the DICOM read model.
        "patient": {
            "id": info.patient_id, "name": info.patient_name,
            "birth_date": info.patient_birth_date.isoformat() if info.patient_birth_date
            else None,
            "sex": info.patient_sex,
        },
    }


def _captured_on(day: date | None) -> datetime:
    """Midday of the study date (DICOM dates carry no zone); today's studies: now."""
    now = datetime.now(UTC)
    if day is None or day >= now.date():
        return now
    return datetime.combine(day, time(12, 0), tzinfo=UTC)


def _demographics(info: DicomInstance) -> DicomDemographics:
    return DicomDemographics(info.patient_id, info.patient_name, info.patient_birth_date)


def parse_instance(data: bytes, *, max_pixels: int) -> DicomInstance:
    """Everything that can refuse an object, before anything is kept."""
    info = dicom_codec.read_dicom(data)
    if not info.has_pixel_data:
        raise Unprocessable(dicom_codec.NO_PIXEL_DATA, "The DICOM object has no pixel data.")
    for name, value in (("StudyInstanceUID", info.study_instance_uid),
                        ("SeriesInstanceUID", info.series_instance_uid),
                        ("SOPInstanceUID", info.sop_instance_uid)):
        if not value or len(value) > 64:
            raise Unprocessable(MISSING_UID, f"The DICOM object has no valid {name}.")
    # One frame decoded proves the transfer syntax is supported and the pixels are whole
    # enough to show: the upload path's "decode once" check, for DICOM.
    frame = info.number_of_frames // 2 if info.number_of_frames > 1 else 0
    check_renders_isolated(data, frame, max_pixels=max_pixels)  # in a child process
    return info


@dataclass(frozen=True)
class _Match:
    patient: Patient | None
    reasons: list[str]
    candidates: list[UUID]


def _match(services: Services, actor: Actor, target: Patient | None,
           info: DicomInstance) -> _Match:
    demographics = _demographics(info)
    if target is not None:
        reasons = [r.value for r in mismatches(target, demographics)]
        return _Match(target if not reasons else None, reasons, [target.id])
    if not info.patient_id:
        return _Match(None, [MismatchReason.NO_PATIENT_ID.value], [])
    found = services.dicom_index.patients_by_external_id(actor.clinic_id, info.patient_id)
    if not found:
        return _Match(None, [MismatchReason.UNKNOWN_PATIENT_ID.value], [])
    if len(found) > 1:
        return _Match(None, [MismatchReason.AMBIGUOUS_PATIENT_ID.value], found)
    patient = services.app.get_patient(found[0], actor)
    # A matching PatientID is not enough: a colliding id from another system with another
    # name or birth date is exactly the wrong-patient case reconciliation exists for.
    reasons = [r.value for r in mismatches(patient, demographics)]
    return _Match(patient if not reasons else None, reasons, [patient.id])


def ingest_dicom(
    services: Services, actor: Actor, patient_id: UUID | None, handle: IO[bytes], sha256: str,
    *, filename: str = "", wait: bool = True,
) -> DicomIngestResult:
    """File one DICOM object for ``patient_id`` (or the patient its PatientID names).

    Objects whose header contradicts the chart are held as a reconciliation item instead.
    ``wait=False`` skips read-your-writes, for callers that store many objects and wait once
    (STOW-RS) or whose sender never reads back (C-STORE).
    """
    app = services.app
    app.check_dicom_capture(actor)
    target = app.get_patient(patient_id, actor) if patient_id is not None else None
    handle.seek(0)
    data = handle.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise InvalidInput("checksum_mismatch", "the received bytes do not match their hash")
    info = parse_instance(data, max_pixels=services.settings.max_image_pixels)
    sop_uid = str(info.sop_instance_uid)
    category, view = photo_view(data, category_for(info.modality, info.sop_class_uid))
    metadata = {**dicom_metadata(info), "view_code": view}
    image_id = instance_image_id(actor.clinic_id, sop_uid)
    item_id = reconciliation_id(actor.clinic_id, sop_uid)
    if app.exists(image_id):
        return _replay_image(services, actor, image_id, patient_id, data, sha256, info)
    if app.exists(item_id):
        return _replay_item(services, actor, item_id, data, sha256, info)

    match = _match(services, actor, target, info)
    name = (filename or f"{sop_uid}.dcm")[:255]
    if match.patient is None:
        return _hold(services, actor, item_id, target, match, data, info, category, name,
                     metadata)
    # Consent and the front-desk limits, before a byte is kept.
    app.check_capture(actor, match.patient.id, category)
    original = services.blobs.put_bytes(
        image_id, f"original-{secrets.token_hex(4)}", data, DICOM_MEDIA_TYPE,
        owner_id=match.patient.id,
    )
    new = NewImage(
        image_id=image_id, patient_id=match.patient.id, original=original,
        width=info.columns or 0, height=info.rows or 0, category=category,
        view=view, captured_at=_captured_on(info.study_date), tags=[], filename=name,
        category_source=CATEGORY_SOURCE,
    )
    try:
        written = app.capture_dicom_image(actor, new, metadata)
    except IntegrityError:
        # The same object won a race a moment ago (a modality retrying): keep the first.
        services.blobs.backend.delete_key(original.key)
        return _replay_image(services, actor, image_id, patient_id, data, sha256, info)
    except BaseException as error:
        if not database_unavailable(error):  # else the commit may have happened: keep it
            services.blobs.backend.delete_key(original.key)
        raise
    if wait:
        services.wait_for_read_models(written.captured_position)
    return DicomIngestResult(IngestOutcome.FILED, image_id, None, match.patient.id,
                             written.position, replayed=False, instance=info,
                             captured_position=written.captured_position)


def _hold(
    services: Services, actor: Actor, item_id: UUID, target: Patient | None, match: _Match,
    data: bytes, info: DicomInstance, category: ImageCategory, filename: str,
    metadata: dict[str, Any],
) -> DicomIngestResult:
    original = services.blobs.put_bytes(
        item_id, f"original-{secrets.token_hex(4)}", data, DICOM_MEDIA_TYPE,
        owner_id=target.id if target is not None else None,
    )
    new = NewReconciliation(
        item_id=item_id, patient_id=target.id if target is not None else None,
        reasons=match.reasons, candidates=match.candidates, original=original,
        category=category, width=info.columns or 0, height=info.rows or 0,
        filename=filename, dicom=metadata,
    )
    try:
        written = services.app.open_reconciliation(actor, new)
    except IntegrityError:
        services.blobs.backend.delete_key(original.key)
        return _replay_item(services, actor, item_id, data, original.sha256, info)
    except BaseException as error:
        if not database_unavailable(error):  # else the commit may have happened: keep it
            services.blobs.backend.delete_key(original.key)
        raise
    return DicomIngestResult(IngestOutcome.RECONCILIATION, None, item_id, new.patient_id,
                             written.position, replayed=False, instance=info,
                             reasons=tuple(match.reasons))


def _same_pixels(services: Services, owner_id: UUID, stored: BlobRef, data: bytes,
                 sha256: str) -> bool:
    """Whether a resend holds the stored object's image: the same bytes, or the same decoded
    pixels in another transfer syntax (``storescu -xi`` after a plain send)."""
    if stored.sha256 == sha256:
        return True
    try:
        return (pixel_fingerprint_isolated(services.blobs.read(owner_id, stored))
                == pixel_fingerprint_isolated(data))
    except OrthovaultError:
        return False


def _same_patient(stored_header: dict[str, Any], info: DicomInstance) -> bool:
    """A resend names the patient the stored object named (its PatientID)."""
    stored_id = (stored_header.get("patient") or {}).get("id")
    return (stored_id or "").strip() == (info.patient_id or "").strip()


def _check_resend(services: Services, owner_id: UUID, stored: BlobRef,
                  stored_header: dict[str, Any], data: bytes, sha256: str,
                  info: DicomInstance) -> None:
    """A resend of a stored instance is answered as stored; only a real conflict fails."""
    if not _same_patient(stored_header, info):
        raise Conflict("dicom_instance_elsewhere",
                       "this SOP Instance UID is already stored for another patient")
    if not _same_pixels(services, owner_id, stored, data, sha256):
        raise Conflict("dicom_instance_conflict",
                       "this SOP Instance UID is already stored with other pixel data")


def _replay_image(services: Services, actor: Actor, image_id: UUID, patient_id: UUID | None,
                  data: bytes, sha256: str, info: DicomInstance) -> DicomIngestResult:
    try:
        image = services.app.get_image(image_id, actor)
    except Gone:
        raise Conflict("dicom_instance_destroyed",
                       "an object with this SOP Instance UID was destroyed") from None
    if patient_id is not None and image.patient_id != patient_id:
        raise Conflict("dicom_instance_elsewhere",
                       "this SOP Instance UID is already filed for another patient")
    _check_resend(services, image.id, image.original, image.metadata.get(DICOM_SOURCE, {}),
                  data, sha256, info)
    return DicomIngestResult(IngestOutcome.FILED, image_id, None, image.patient_id, 0,
                             replayed=True, instance=info)


def _replay_item(services: Services, actor: Actor, item_id: UUID, data: bytes, sha256: str,
                 info: DicomInstance) -> DicomIngestResult:
    item = services.app.get_reconciliation(item_id, actor)
    _check_resend(services, item.id, item.original, item.dicom, data, sha256, info)
    if item.image_id is not None:
        return DicomIngestResult(IngestOutcome.FILED, item.image_id, item_id,
                                 item.filed_patient_id, 0, replayed=True, instance=info)
    return DicomIngestResult(IngestOutcome.RECONCILIATION, None, item_id, item.patient_id, 0,
                             replayed=True, instance=info, reasons=tuple(item.reasons))


# ---- reconciliation: filing or rejecting a held object ---------------------------------


def _filed_copy(services: Services, item: DicomReconciliation, patient_id: UUID,
                image_id: UUID) -> BlobRef:
    # The held copy is sealed under the item's key; the image needs one under its own.
    data = services.blobs.read(item.id, item.original)
    return services.blobs.put_bytes(image_id, f"original-{secrets.token_hex(4)}", data,
                                    DICOM_MEDIA_TYPE, owner_id=patient_id)


def file_reconciliation(services: Services, actor: Actor, item_id: UUID,
                        patient_id: UUID | None = None) -> UUID:
    """Resolve (``patient_id`` None: to the patient it was sent for) or reassign it.

    Returns the new image's id. The held copy is removed once the image is committed.
    """
    app = services.app
    require(actor, Permission.CAPTURE)
    item = app.get_reconciliation(item_id, actor)
    if not item.is_open:
        raise Conflict("reconciliation_closed", f"the item is already {item.status}")
    target = patient_id or item.patient_id
    if target is None:
        raise InvalidInput("reconciliation_needs_patient",
                           "the object was sent for no patient; name one to reassign it to")
    reassign = patient_id is not None and patient_id != item.patient_id
    app.get_patient(target, actor)
    app.check_capture(actor, target, ImageCategory(item.category))
    sop_uid = str(item.dicom.get("sop_instance_uid"))
    image_id = instance_image_id(actor.clinic_id, sop_uid)
    original = _filed_copy(services, item, target, image_id)
    study_date = item.dicom.get("study_date")
    captured = _captured_on(date.fromisoformat(study_date) if study_date else None)
    new = NewImage(
        image_id=image_id, patient_id=target, original=original, width=item.width,
        height=item.height, category=ImageCategory(item.category),
        view=item.dicom.get("view_code"),
        captured_at=captured, tags=[], filename=item.filename,
        category_source=CATEGORY_SOURCE,
    )
    command = app.reassign_reconciliation if reassign else app.resolve_reconciliation
    try:
        written = command(actor, item_id, new)
    except BaseException as error:
        if not database_unavailable(error):  # else the commit may have happened: keep it
            services.blobs.backend.delete_key(original.key)
        raise
    services.blobs.backend.delete_key(item.original.key)
    services.wait_for_read_models(written.captured_position)
    return image_id


def reject_reconciliation(services: Services, actor: Actor, item_id: UUID, reason: str) -> int:
    item = services.app.get_reconciliation(item_id, actor)
    position = services.app.reject_reconciliation(actor, item_id, reason).position
    services.blobs.backend.delete_key(item.original.key)
    return position


# ---- the REST upload path ---------------------------------------------------------------


def store_dicom_upload(services: Services, actor: Actor, patient_id: UUID,
                       handle: IO[bytes], sha256: str, filename: str) -> DicomIngestResult:
    """What ``store_upload`` calls when the sniffed type is application/dicom.

    The Idempotency-Key is not needed: the SOP Instance UID already makes resends safe.
    """
    return ingest_dicom(services, actor, patient_id, handle, sha256, filename=filename)
