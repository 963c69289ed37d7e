"""The Modality Worklist a clinic's X-ray units and scanners query: today's capture sessions.

A capture session is the practice's record that a patient is in for imaging today (booked
from an appointment or opened at the chair). Each session that is not closed becomes one
requested procedure, offered as one scheduled step per imaging modality the listener serves
(panoramic, cephalometric, intra-oral, CBCT by default): the session does not say which
machine the patient will see, and a unit asks only for its own modality anyway. So the
operator picks the patient from the list instead of typing a PatientID, and the objects it
sends carry the chart's PatientID, name and birth date, which is what ``ingest_dicom``
matches on.

Identifiers are derived from the session, so every query answers the same ones: the
Accession Number and Requested Procedure ID are the first 16 hex digits of the session id,
the Study Instance UID is the session id as a ``2.25`` UUID-derived UID (PS3.5 B.2), so
everything a unit acquires for one session forms one study.

Sessions carry no station: their steps match any Scheduled Station AE Title asked for.
Demographics come from the DICOM index read model (no event decryption per query); the
answers are PHI and leave only over the DICOM association, never in logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from uuid import UUID

from adapters.dimse_scp import WorklistItem, WorklistProvider
from api.services import Services
from projections.capture_sessions import SessionRow
from projections.dicom_index import PatientDemographics

DEFAULT_MODALITIES: tuple[str, ...] = ("PX", "DX", "IO", "CT")

# What the step is, in the words the unit's operator reads (ORTHODONTICS.md modalities).
STEP_DESCRIPTIONS: dict[str, str] = {
    "PX": "Panoramic radiograph",
    "DX": "Cephalometric radiograph",
    "CR": "Radiograph (CR)",
    "IO": "Intra-oral radiograph",
    "CT": "CBCT",
    "XC": "Clinical photographs",
}

_DICOM_SEX = {"female": "F", "male": "M", "other": "O"}


def accession_number(session_id: UUID) -> str:
    """SH, at most 16 characters: unique enough per clinic and stable per session."""
    return session_id.hex[:16].upper()


def study_uid(session_id: UUID) -> str:
    return f"2.25.{session_id.int}"


def person_name(family: str, given: str) -> str:
    return f"{family}^{given}"


def _procedure_description(row: SessionRow) -> str:
    return f"Orthodontic records: {row.milestone.replace('_', ' ')}"


def items_for_session(row: SessionRow, patient: PatientDemographics,
                      modalities: Sequence[str]) -> list[WorklistItem]:
    accession = accession_number(row.id)
    start = (row.scheduled_at or row.opened_at).astimezone()  # DA/TM are local time
    return [
        WorklistItem(
            patient_id=patient.external_id,
            patient_name=person_name(patient.family_name, patient.given_name),
            birth_date=patient.birth_date,
            sex=_DICOM_SEX.get(patient.sex),
            accession_number=accession,
            study_instance_uid=study_uid(row.id),
            requested_procedure_id=accession,
            requested_procedure_description=_procedure_description(row),
            modality=modality,
            scheduled_start=start.replace(tzinfo=None),
            step_id=f"{accession[:13]}-{modality}"[:16],
            step_description=STEP_DESCRIPTIONS.get(modality, modality),
            station_ae_title=None,
        )
        for modality in modalities
    ]


def session_worklist(services: Services, clinic_id: str, day: date,
                     modalities: Sequence[str] = DEFAULT_MODALITIES) -> list[WorklistItem]:
    """One clinic's worklist for ``day``: each session not yet closed, once per modality."""
    rows = services.sessions.on_day(clinic_id, day)
    people = services.dicom_index.demographics(clinic_id, [r.patient_id for r in rows])
    items: list[WorklistItem] = []
    for row in rows:
        patient = people.get(row.patient_id)
        if patient is None:  # destroyed, or the index has not caught up: nothing to offer
            continue
        items.extend(items_for_session(row, patient, modalities))
    return items


def worklist_provider(services: Services, clinic_id: str,
                      modalities: Iterable[str] = DEFAULT_MODALITIES) -> WorklistProvider:
    """What ``DimseServer`` calls per C-FIND: today's list, read fresh each time."""
    chosen = tuple(m.strip().upper() for m in modalities if m.strip())

    def provide() -> list[WorklistItem]:
        return session_worklist(services, clinic_id, datetime.now().astimezone().date(),
                                chosen)

    return provide
