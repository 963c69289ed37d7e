"""A DICOM network (DIMSE) listener: C-ECHO, C-STORE and Modality Worklist C-FIND.

X-ray units and CBCT scanners push images with C-STORE and ask the worklist which patients
are scheduled, so that the images they send carry the right PatientID. This adapter speaks
the protocol (pynetdicom) and nothing else: what a stored object becomes is the ``store``
callable's business (the API layer files it through ``ingest_dicom``), and the worklist
comes from a ``worklist`` callable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import structlog
from pydicom.dataset import Dataset
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    _config,
    evt,
)
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

from adapters import dicom_status
from domain.errors import OrthovaultError

# pynetdicom logs the identifiers of C-FIND requests and responses (patient names, ids,
# birth dates) at INFO: never in our logs, whichever side of the association we are on.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False

log = structlog.get_logger("orthovault.dimse")

SUCCESS = dicom_status.SUCCESS
PENDING = 0xFF00
CANCELLED = 0xFE00
REFUSED_OUT_OF_RESOURCES = dicom_status.REFUSED_OUT_OF_RESOURCES
REFUSED_NOT_AUTHORISED = dicom_status.REFUSED_NOT_AUTHORISED
DOES_NOT_MATCH_SOP_CLASS = dicom_status.DOES_NOT_MATCH_SOP_CLASS
CANNOT_UNDERSTAND = dicom_status.CANNOT_UNDERSTAND
FIND_UNABLE_TO_PROCESS = 0xC001

# Files one encoded object; returns its status (Success, or Warning 0xB000 when held).
StoreHandler = Callable[[bytes], int]


@dataclass(frozen=True)
class WorklistItem:
    """One scheduled procedure step, as a modality's worklist shows it (PHI)."""

    patient_id: str
    patient_name: str  # DICOM PN, Family^Given
    birth_date: date | None
    sex: str | None
    accession_number: str
    study_instance_uid: str
    requested_procedure_id: str
    requested_procedure_description: str
    modality: str
    scheduled_start: datetime
    step_id: str
    step_description: str
    station_ae_title: str | None = None


WorklistProvider = Callable[[], Iterable[WorklistItem]]


def store_status(error: BaseException) -> int:
    if isinstance(error, OrthovaultError):
        return dicom_status.failure_status(error.code)
    # Anything else (the database gone for a moment) is ours, not the sender's: retryable.
    return REFUSED_OUT_OF_RESOURCES


# ---- worklist matching (PS3.4 C.2.2.2) ----------------------------------------------------


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{regex}$", re.IGNORECASE if ignore_case else 0)


def matches_text(query: Any, value: str | None, *, ignore_case: bool = False) -> bool:
    """Universal matching for an empty key; single-value or wildcard matching otherwise."""
    wanted = str(query or "").strip()
    if not wanted or wanted == "*":
        return True
    return bool(_wildcard(wanted, ignore_case=ignore_case).match(str(value or "")))


def matches_date(query: Any, value: date) -> bool:
    """``YYYYMMDD``, ``YYYYMMDD-``, ``-YYYYMMDD`` or ``YYYYMMDD-YYYYMMDD``."""
    wanted = str(query or "").strip()
    if not wanted:
        return True
    low, dash, high = wanted.partition("-")
    day = value.strftime("%Y%m%d")
    if not dash:
        return day == low
    return (not low or day >= low) and (not high or day <= high)


def _item_dataset(item: WorklistItem) -> Dataset:
    step = Dataset()
    step.Modality = item.modality
    step.ScheduledStationAETitle = item.station_ae_title or ""
    step.ScheduledProcedureStepStartDate = item.scheduled_start.strftime("%Y%m%d")
    step.ScheduledProcedureStepStartTime = item.scheduled_start.strftime("%H%M%S")
    step.ScheduledProcedureStepID = item.step_id
    step.ScheduledProcedureStepDescription = item.step_description
    step.ScheduledPerformingPhysicianName = ""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names are not all Latin-1
    ds.PatientName = item.patient_name
    ds.PatientID = item.patient_id
    ds.PatientBirthDate = item.birth_date.strftime("%Y%m%d") if item.birth_date else ""
    ds.PatientSex = item.sex or ""
    ds.AccessionNumber = item.accession_number
    ds.StudyInstanceUID = item.study_instance_uid
    ds.RequestedProcedureID = item.requested_procedure_id
    ds.RequestedProcedureDescription = item.requested_procedure_description
    ds.ReferringPhysicianName = ""
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def worklist_matches(query: Dataset, item: WorklistItem) -> bool:
    if not (matches_text(query.get("PatientID"), item.patient_id)
            and matches_text(query.get("PatientName"), item.patient_name, ignore_case=True)
            and matches_text(query.get("AccessionNumber"), item.accession_number)):
        return False
    steps = query.get("ScheduledProcedureStepSequence")
    if not steps:
        return True
    step = steps[0]
    # A step bound to no station (a capture session) may be performed at any of them.
    station_ok = item.station_ae_title is None or matches_text(
        step.get("ScheduledStationAETitle"), item.station_ae_title)
    return (matches_text(step.get("Modality"), item.modality)
            and station_ok
            and matches_date(step.get("ScheduledProcedureStepStartDate"),
                             item.scheduled_start.date()))


def worklist_response(query: Dataset, item: WorklistItem) -> Dataset:
    """The query's keys, filled from the item (return keys the item lacks stay empty)."""
    full = _item_dataset(item)
    response = Dataset()
    response.SpecificCharacterSet = full.SpecificCharacterSet
    for element in query:
        keyword = element.keyword
        if keyword and keyword in full:
            response[keyword] = full[keyword]
        elif keyword and keyword != "SpecificCharacterSet":
            response.add(element)
    return response


# ---- the server ----------------------------------------------------------------------------


class DimseServer:
    def __init__(self, ae_title: str, store: StoreHandler,
                 worklist: WorklistProvider | None = None, *, host: str = "127.0.0.1",
                 port: int = 11112) -> None:
        if not 1 <= len(ae_title.strip()) <= 16:
            raise ValueError("an AE title is 1-16 characters")
        self.ae_title = ae_title.strip()
        self.host = host
        self.port = port
        self._store = store
        self._worklist = worklist or (lambda: ())
        self._server: Any = None
        self.ae = AE(ae_title=self.ae_title)
        self.ae.require_called_aet = True  # a modality configured for another node is refused
        self.ae.add_supported_context(Verification)
        self.ae.add_supported_context(ModalityWorklistInformationFind)
        for context in AllStoragePresentationContexts:
            # Keep whatever compression the modality uses; decoding happens later.
            self.ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)

    def _handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        return [
            (evt.EVT_C_ECHO, lambda _event: SUCCESS),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
        ]

    def _on_store(self, event: Any) -> int | Dataset:
        try:
            return self._store(event.encoded_dataset())
        except Exception as error:
            status = store_status(error)
            code = getattr(error, "code", type(error).__name__)
            log.warning("c_store_refused", status=hex(status), code=code,
                        calling_ae=str(event.assoc.requestor.ae_title))
            answer = Dataset()
            answer.Status = status
            answer.ErrorComment = str(code)[:64]  # our stable code: no PHI
            return answer

    def _on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        if event.request.AffectedSOPClassUID != ModalityWorklistInformationFind:
            yield FIND_UNABLE_TO_PROCESS, None
            return
        query = event.identifier
        try:
            items = list(self._worklist())
        except Exception as error:
            log.warning("worklist_failed", error=type(error).__name__)
            yield FIND_UNABLE_TO_PROCESS, None
            return
        for item in items:
            if event.is_cancelled:
                yield CANCELLED, None
                return
            if worklist_matches(query, item):
                yield PENDING, worklist_response(query, item)

    def start(self) -> None:
        """Listen in background threads (returns at once)."""
        self._server = self.ae.start_server((self.host, self.port), block=False,
                                            evt_handlers=self._handlers())

    def serve_forever(self) -> None:
        self.ae.start_server((self.host, self.port), block=True, evt_handlers=self._handlers())

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.ae.shutdown()
