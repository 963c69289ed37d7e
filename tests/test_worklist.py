"""Modality Worklist C-FIND answered from the clinic's open capture sessions.

Through pynetdicom's own C-FIND SCU (and DCMTK's ``findscu`` where installed): the unit
picks the patient from the list, and what it then sends is filed to that patient.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from dicom_support import DicomStack, dicom_bytes, parse
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    DigitalXRayImageStorageForPresentation,
    ModalityWorklistInformationFind,
)

from adapters.dimse_scp import DimseServer
from api.cli_dicom import build_server
from api.dicom_worklist import accession_number, study_uid

pytest_plugins = ("dicom_fixtures",)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clinic() -> str:
    return f"clinic-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def clinic() -> str:
    return _clinic()


@pytest.fixture
def listener(dicom_stack: DicomStack, clinic: str) -> Iterator[DimseServer]:
    # No worklist passed: the listener's own, read from the clinic's capture sessions.
    server = build_server(dicom_stack.services, ae_title="ORTHOVAULT", clinic_id=clinic,
                          host="127.0.0.1", port=_free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _open_session(stack: DicomStack, clinic: str, patient: uuid.UUID, *,
                  at: datetime | None = None, appointment: str | None = None) -> uuid.UUID:
    session_id, position = stack.services.app.open_capture_session(
        stack.actor(clinic), patient, milestone="initial_records",
        appointment_id=appointment or f"appt-{uuid.uuid4().hex[:6]}", chair="chair-2",
        scheduled_at=at or datetime.now(UTC))
    assert stack.services.wait_for_read_models(position, stack.services.sessions)
    return session_id


def _query(**step: str) -> Dataset:
    query = Dataset()
    query.PatientName = ""
    query.PatientID = ""
    query.PatientBirthDate = ""
    query.PatientSex = ""
    query.AccessionNumber = ""
    query.StudyInstanceUID = ""
    query.RequestedProcedureDescription = ""
    sps = Dataset()
    sps.Modality = step.get("Modality", "")
    sps.ScheduledStationAETitle = step.get("ScheduledStationAETitle", "")
    sps.ScheduledProcedureStepStartDate = step.get("ScheduledProcedureStepStartDate", "")
    sps.ScheduledProcedureStepStartTime = ""
    sps.ScheduledProcedureStepDescription = ""
    query.ScheduledProcedureStepSequence = [sps]
    return query


def _find(server: DimseServer, query: Dataset) -> list[Dataset]:
    ae = AE(ae_title="PANO1")
    ae.add_requested_context(ModalityWorklistInformationFind)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", server.port, ae_title="ORTHOVAULT")
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_find(query, ModalityWorklistInformationFind))
    finally:
        assoc.release()
    statuses = [status.Status for status, _ in responses if status]
    assert statuses and statuses[-1] == 0x0000, [hex(s) for s in statuses]
    return [identifier for status, identifier in responses
            if status and status.Status == 0xFF00]


def test_open_sessions_are_the_worklist(dicom_stack: DicomStack, clinic: str,
                                        listener: DimseServer) -> None:
    stack = dicom_stack
    ada = stack.register(clinic, external_id="WL-1", given="Ada", family="Lovelace",
                         birth=date(2012, 4, 1))
    grace = stack.register(clinic, external_id="WL-2", given="Grace", family="Hopper")
    mary = stack.register(clinic, external_id="WL-3", given="Mary", family="Shelley")
    session = _open_session(stack, clinic, ada)
    closed = _open_session(stack, clinic, grace)
    _, position = stack.services.app.close_capture_session(stack.actor(clinic), closed)
    assert stack.services.wait_for_read_models(position, stack.services.sessions)
    _open_session(stack, clinic, mary, at=datetime.now(UTC) + timedelta(days=2))
    # Another clinic's patient in for imaging today is not on this clinic's list.
    other = _clinic()
    _open_session(stack, other, stack.register(other, external_id="WL-1", given="Eve",
                                               family="Other"))

    [answer] = _find(listener, _query(Modality="PX"))
    assert answer.PatientID == "WL-1"
    assert str(answer.PatientName) == "Lovelace^Ada"
    assert answer.PatientBirthDate == "20120401" and answer.PatientSex == "F"
    assert answer.AccessionNumber == accession_number(session)
    assert answer.StudyInstanceUID == study_uid(session)
    assert "initial records" in answer.RequestedProcedureDescription
    step = answer.ScheduledProcedureStepSequence[0]
    assert step.Modality == "PX" and step.ScheduledProcedureStepDescription
    assert step.ScheduledProcedureStepStartDate == datetime.now().astimezone().strftime("%Y%m%d")

    # With no modality asked: one step per modality the listener schedules, same study.
    every = _find(listener, _query())
    assert sorted(a.ScheduledProcedureStepSequence[0].Modality for a in every) == \
        ["CT", "DX", "IO", "PX"]
    assert {a.StudyInstanceUID for a in every} == {study_uid(session)}
    # Sessions are bound to no station: a unit asking for its own AE title still sees them.
    assert len(_find(listener, _query(Modality="CT", ScheduledStationAETitle="CBCT1"))) == 1
    assert _find(listener, _query(Modality="XC")) == []  # not scheduled by default
    tomorrow = (datetime.now().astimezone() + timedelta(days=1)).strftime("%Y%m%d")
    assert _find(listener, _query(Modality="PX", ScheduledProcedureStepStartDate=tomorrow)) == []

    # The unit acquires with what it picked: the object is filed to the patient, unreviewed.
    picked = parse(dicom_bytes(patient_id=answer.PatientID, patient_name=str(answer.PatientName),
                               birth_date=answer.PatientBirthDate, modality="DX",
                               study_uid=answer.StudyInstanceUID,
                               sop_class=DigitalXRayImageStorageForPresentation,
                               AccessionNumber=answer.AccessionNumber))
    ae = AE(ae_title="CEPH1")
    ae.add_requested_context(DigitalXRayImageStorageForPresentation)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="ORTHOVAULT")
    try:
        assert assoc.send_c_store(picked).Status == 0x0000
    finally:
        assoc.release()
    stack.wait_all()
    filed = stack.services.dicom_index.instance_by_sop(clinic, picked.SOPInstanceUID)
    assert filed is not None and filed.patient_id == ada
    assert filed.study_uid == study_uid(session)

    # Closing the session takes the patient off the list.
    _, position = stack.services.app.close_capture_session(stack.actor(clinic), session)
    assert stack.services.wait_for_read_models(position, stack.services.sessions)
    assert _find(listener, _query()) == []


@pytest.mark.skipif(shutil.which("findscu") is None, reason="dcmtk not installed")
def test_dcmtk_findscu_reads_the_worklist(dicom_stack: DicomStack, clinic: str,
                                          listener: DimseServer) -> None:
    patient = dicom_stack.register(clinic, external_id="DK-7", given="Ada", family="Lovelace")
    _open_session(dicom_stack, clinic, patient)
    found = subprocess.run(
        ["findscu", "-v", "-W", "-aet", "PANO1", "-aec", "ORTHOVAULT",
         "-k", "PatientName=LOVE*", "-k", "PatientID", "-k", "AccessionNumber",
         "-k", "ScheduledProcedureStepSequence[0].Modality=PX",
         "127.0.0.1", str(listener.port)],
        timeout=60, capture_output=True, text=True, check=False)
    assert found.returncode == 0, found.stderr
    output = found.stdout + found.stderr
    assert "DK-7" in output and "Lovelace^Ada" in output
