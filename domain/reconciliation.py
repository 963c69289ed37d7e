"""DICOM objects that cannot be filed as they arrived, and filing DICOM images.

A modality that sends an image with another patient's PatientID, a misspelt name or a wrong
birth date must not silently land in the wrong chart (the classic wrong-patient error). Such
an object is held as a :class:`DicomReconciliation` item until someone with capture rights
files it to the intended patient (resolve), to another patient (reassign), or rejects it.

``ReconciliationCommands`` is a mixin for ``domain.imaging.Imaging``: it relies on the
application's ``repository``, ``_save``, ``get_patient`` and ``check_capture``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event

from domain.errors import Conflict, InvalidInput, NotFound
from domain.image import Image, ImageCategory
from domain.patient import Patient
from domain.permissions import Grant, Permission, require
from domain.values import Actor, BlobRef

if TYPE_CHECKING:
    from domain.imaging import NewImage, Written

DICOM_SOURCE = "dicom"
MAX_REASON = 500


class ReconciliationStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"  # filed to the patient it was sent for, after review
    REASSIGNED = "reassigned"  # filed to another patient
    REJECTED = "rejected"  # not filed; the held copy is discarded


class MismatchReason(StrEnum):
    PATIENT_ID = "patient_id_mismatch"
    PATIENT_NAME = "patient_name_mismatch"
    BIRTH_DATE = "birth_date_mismatch"
    NO_PATIENT_ID = "no_patient_id"
    UNKNOWN_PATIENT_ID = "unknown_patient_id"
    AMBIGUOUS_PATIENT_ID = "ambiguous_patient_id"


@dataclass(frozen=True)
class DicomDemographics:
    """Who the DICOM header says the object belongs to (PHI)."""

    patient_id: str | None
    patient_name: str | None  # DICOM PN: Family^Given^Middle^Prefix^Suffix
    birth_date: date | None


def _folded(text: str) -> str:
    """Case, accents, spaces and punctuation do not make a name different."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"[\W_]+", "", plain.casefold())


def split_person_name(value: str) -> tuple[str, str]:
    """(family, given) from a DICOM PN; only the alphabetic group counts."""
    alphabetic = value.split("=", 1)[0]
    parts = alphabetic.split("^")
    family = parts[0].strip()
    given = parts[1].strip() if len(parts) > 1 else ""
    return family, given


def mismatches(patient: Patient, dicom: DicomDemographics) -> list[MismatchReason]:
    """What in the header contradicts the chart. Absent header values contradict nothing."""
    reasons: list[MismatchReason] = []
    if dicom.patient_id and dicom.patient_id.strip() != patient.external_id.strip():
        reasons.append(MismatchReason.PATIENT_ID)
    if dicom.patient_name:
        family, given = split_person_name(dicom.patient_name)
        # Only the first given name: modalities often drop middle names.
        first_given = given.split()[0] if given.split() else ""
        chart_given = patient.given_name.split()[0] if patient.given_name.split() else ""
        if (family and _folded(family) != _folded(patient.family_name)) or (
            first_given and _folded(first_given) != _folded(chart_given)
        ):
            reasons.append(MismatchReason.PATIENT_NAME)
    if dicom.birth_date is not None and dicom.birth_date != patient.birth_date:
        reasons.append(MismatchReason.BIRTH_DATE)
    return reasons


class DicomReconciliation(Aggregate):
    @staticmethod
    def create_id(item_id: UUID) -> UUID:
        # Derived from (clinic, SOP Instance UID): a resent object finds its item.
        return item_id

    @event("Opened")
    def __init__(
        self,
        *,
        item_id: UUID,
        clinic_id: str,
        patient_id: UUID | None,
        reasons: list[str],
        candidates: list[UUID],
        original: BlobRef,
        category: str,
        width: int,
        height: int,
        filename: str,
        dicom: dict[str, Any],
        actor: Actor,
    ) -> None:
        self.clinic_id = clinic_id
        self.patient_id = patient_id  # the patient it was sent for, if any
        self.reasons = list(reasons)
        self.candidates = list(candidates)
        self.original = original
        self.category = category
        self.width = width
        self.height = height
        self.filename = filename
        self.dicom = dict(dicom)
        self.status = ReconciliationStatus.OPEN.value
        self.image_id: UUID | None = None
        self.filed_patient_id: UUID | None = None

    @event("Resolved")
    def resolve(self, *, patient_id: UUID, image_id: UUID, actor: Actor) -> None:
        self.status = ReconciliationStatus.RESOLVED.value
        self.filed_patient_id = patient_id
        self.image_id = image_id

    @event("Reassigned")
    def reassign(self, *, patient_id: UUID, image_id: UUID, actor: Actor) -> None:
        self.status = ReconciliationStatus.REASSIGNED.value
        self.filed_patient_id = patient_id
        self.image_id = image_id

    @event("Rejected")
    def reject(self, *, reason: str, actor: Actor) -> None:
        self.status = ReconciliationStatus.REJECTED.value

    @property
    def is_open(self) -> bool:
        return self.status == ReconciliationStatus.OPEN.value


@dataclass(frozen=True)
class NewReconciliation:
    item_id: UUID
    patient_id: UUID | None
    reasons: list[str]
    candidates: list[UUID]
    original: BlobRef
    category: ImageCategory
    width: int
    height: int
    filename: str
    dicom: dict[str, Any]


@dataclass(frozen=True)
class Filed:
    """A filed DICOM image: the log positions of its capture and of the whole write.

    Read models follow different topics (the gallery ignores metadata), so each waits for
    the position of an event it actually applies.
    """

    id: UUID
    captured_position: int
    position: int


def _image(actor: Actor, new: NewImage) -> Image:
    return Image(
        image_id=new.image_id, clinic_id=actor.clinic_id, patient_id=new.patient_id,
        original=new.original, width=new.width, height=new.height,
        category=new.category.value, view=new.view, captured_at=new.captured_at,
        tags=list(new.tags), filename=new.filename, actor=actor,
        category_source=new.category_source,
    )


class ReconciliationCommands:
    """DICOM filing commands; mixed into ``Imaging`` (see the module docstring)."""

    repository: Any

    if TYPE_CHECKING:
        def _save(self, *aggregates: Aggregate) -> int: ...
        def save(self, *aggregates: Aggregate) -> list[Any]: ...
        def get_patient(self, patient_id: UUID, actor: Actor) -> Patient: ...
        def check_capture(
            self, actor: Actor, patient_id: UUID, category: ImageCategory
        ) -> Patient: ...

    def check_dicom_capture(self, actor: Actor) -> None:
        """DICOM objects are clinical images, never documents: the full capture grant."""
        from domain.imaging import raise_limited_capture

        if require(actor, Permission.CAPTURE, Grant.DOCUMENTS) is Grant.DOCUMENTS:
            raise_limited_capture()

    def _save_filed(self, image: Image, *others: Aggregate) -> Filed:
        recordings = self.save(image, *others)
        positions = [r.notification.id for r in recordings]
        return Filed(image.id, positions[0], positions[-1])

    def capture_dicom_image(
        self, actor: Actor, new: NewImage, metadata: dict[str, Any]
    ) -> Filed:
        """ImageCaptured and its DICOM metadata in one transaction: never one without the
        other, so the DICOM index never holds an image it cannot address by UID."""
        self.check_dicom_capture(actor)
        self.check_capture(actor, new.patient_id, new.category)
        image = _image(actor, new)
        image.record_metadata(source=DICOM_SOURCE, metadata=metadata, actor=actor)
        return self._save_filed(image)

    def open_reconciliation(self, actor: Actor, new: NewReconciliation) -> Written:
        from domain.imaging import Written

        self.check_dicom_capture(actor)
        if new.patient_id is not None:
            self.get_patient(new.patient_id, actor)
        item = DicomReconciliation(
            item_id=new.item_id, clinic_id=actor.clinic_id, patient_id=new.patient_id,
            reasons=list(new.reasons), candidates=list(new.candidates), original=new.original,
            category=new.category.value, width=new.width, height=new.height,
            filename=new.filename, dicom=new.dicom, actor=actor,
        )
        return Written(item.id, self._save(item))

    def get_reconciliation(self, item_id: UUID, actor: Actor) -> DicomReconciliation:
        try:
            item = self.repository.get(item_id)
        except AggregateNotFoundError:
            item = None
        if not isinstance(item, DicomReconciliation) or item.clinic_id != actor.clinic_id:
            raise NotFound("reconciliation_not_found", "no such reconciliation item")
        return item

    def _open_item(self, actor: Actor, item_id: UUID) -> DicomReconciliation:
        require(actor, Permission.CAPTURE)
        item = self.get_reconciliation(item_id, actor)
        if not item.is_open:
            raise Conflict("reconciliation_closed", f"the item is already {item.status}")
        return item

    def _file(
        self, actor: Actor, item: DicomReconciliation, new: NewImage, *, reassign: bool
    ) -> Filed:
        if new.original.sha256 != item.original.sha256:
            raise InvalidInput("reconciliation_blob_mismatch", "the filed copy differs")
        self.check_capture(actor, new.patient_id, ImageCategory(item.category))
        image = _image(actor, new)
        image.record_metadata(source=DICOM_SOURCE, metadata=item.dicom, actor=actor)
        if reassign:
            item.reassign(patient_id=new.patient_id, image_id=image.id, actor=actor)
        else:
            item.resolve(patient_id=new.patient_id, image_id=image.id, actor=actor)
        # One transaction: the item is closed exactly when its image exists.
        return self._save_filed(image, item)

    def resolve_reconciliation(self, actor: Actor, item_id: UUID, new: NewImage) -> Filed:
        """File the held object to the patient it was sent for, the mismatch reviewed."""
        item = self._open_item(actor, item_id)
        if item.patient_id is None:
            raise InvalidInput("reconciliation_needs_patient",
                               "the object was sent for no patient; reassign it instead")
        if new.patient_id != item.patient_id:
            raise InvalidInput("reconciliation_patient_mismatch",
                               "resolve files to the patient it was sent for; use reassign")
        return self._file(actor, item, new, reassign=False)

    def reassign_reconciliation(self, actor: Actor, item_id: UUID, new: NewImage) -> Filed:
        """File the held object to another patient of the clinic."""
        item = self._open_item(actor, item_id)
        if new.patient_id == item.patient_id:
            raise InvalidInput("reconciliation_same_patient",
                               "that is the patient it was sent for; use resolve")
        self.get_patient(new.patient_id, actor)
        return self._file(actor, item, new, reassign=True)

    def reject_reconciliation(self, actor: Actor, item_id: UUID, reason: str) -> Written:
        from domain.imaging import Written

        item = self._open_item(actor, item_id)
        if not reason.strip():
            raise InvalidInput("reason_required", "say why the object is rejected")
        item.reject(reason=reason.strip()[:MAX_REASON], actor=actor)
        return Written(item.id, self._save(item))
