"""The DIMSE listener through pynetdicom's own SCU: C-ECHO, C-STORE, worklist C-FIND."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from dicom_support import DicomStack, dicom_bytes, parse
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    DigitalIntraOralXRayImageStorageForPresentation,
    ModalityWorklistInformationFind,
    Verification,
)

from adapters.dimse_scp import DimseServer, WorklistItem, matches_date, matches_text
from api.cli_dicom import build_server, dicom_listen

pytest_plugins = ("dicom_fixtures",)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

IO_CLASS = DigitalIntraOralXRayImageStorageForPresentation

WORKLIST = [
    WorklistItem(
        patient_id="W-1", patient_name="Lovelace^Ada", birth_date=date(2012, 4, 1), sex="F",
        accession_number="ACC1", study_instance_uid="1.2.3.4.1", requested_procedure_id="RP1",
        requested_procedure_description="Panoramic", modality="PX",
        scheduled_start=datetime(2026, 3, 2, 9, 30), step_id="S1",
        step_description="OPG", station_ae_title="PANO1",
    ),
    WorklistItem(
        patient_id="W-2", patient_name="Hopper^Grace", birth_date=None, sex=None,
        accession_number="ACC2", study_instance_uid="1.2.3.4.2", requested_procedure_id="RP2",
        requested_procedure_description="Cephalogram", modality="DX",
        scheduled_start=datetime(2026, 3, 3, 11, 0), step_id="S2",
        step_description="Lateral ceph", station_ae_title="CEPH1",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def listener(dicom_stack: DicomStack) -> Iterator[tuple[DimseServer, str]]:
    clinic = f"clinic-{uuid.uuid4().hex[:8]}"
    server = build_server(dicom_stack.services, ae_title="ORTHOVAULT", clinic_id=clinic,
                          host="127.0.0.1", port=_free_port(), worklist=lambda: WORKLIST)
    server.start()
    try:
        yield server, clinic
    finally:
        server.stop()


def _scu(*contexts: str) -> AE:
    ae = AE(ae_title="PANO1")
    for context in contexts:
        ae.add_requested_context(context)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    return ae


def test_echo_and_store_file_by_patient_id(dicom_stack: DicomStack,
                                           listener: tuple[DimseServer, str]) -> None:
    server, clinic = listener
    patient = dicom_stack.register(clinic, external_id="IO-1", given="Ada", family="Lovelace")
    ae = _scu(Verification, IO_CLASS)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="ORTHOVAULT")
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
        good = parse(dicom_bytes(patient_id="IO-1", modality="IO", sop_class=IO_CLASS))
        assert assoc.send_c_store(good).Status == 0x0000
        stranger = parse(dicom_bytes(patient_id="IO-404", modality="IO", sop_class=IO_CLASS))
        # Held for reconciliation: custody is taken, so the modality hears success.
        assert assoc.send_c_store(stranger).Status == 0x0000
        no_pixels = parse(dicom_bytes(patient_id="IO-1", modality="IO", sop_class=IO_CLASS))
        del no_pixels.PixelData
        assert assoc.send_c_store(no_pixels).Status == 0xA900
        clash = parse(dicom_bytes(np.zeros((8, 8), np.uint16), patient_id="IO-1",
                                  modality="IO", sop_class=IO_CLASS,
                                  sop_uid=good.SOPInstanceUID))
        refused = assoc.send_c_store(clash)  # same UID, other pixels: a real conflict
        assert refused.Status == 0xC111 and refused.ErrorComment == "dicom_instance_conflict"
        elsewhere = parse(dicom_bytes(patient_id="IO-2", modality="IO", sop_class=IO_CLASS,
                                      sop_uid=good.SOPInstanceUID))
        assert assoc.send_c_store(elsewhere).Status == 0xC112  # same UID, another patient
        assert assoc.send_c_store(good).Status == 0x0000  # a plain resend is Success
    finally:
        assoc.release()

    dicom_stack.wait_all()
    index = dicom_stack.services.dicom_index
    filed = index.instance_by_sop(clinic, good.SOPInstanceUID)
    assert filed is not None and filed.patient_id == patient and filed.modality == "IO"
    image = dicom_stack.services.app.repository.get(filed.image_id)
    assert image.category == "radiograph"
    assert image.original.sha256  # the bytes as sent, sealed
    held = index.open_reconciliations(clinic)
    assert [h.sop_uid for h in held] == [stranger.SOPInstanceUID]
    assert held[0].reasons == ["unknown_patient_id"]


def test_an_association_to_another_ae_title_is_refused(listener: tuple[DimseServer, str]
                                                       ) -> None:
    server, _clinic = listener
    assoc = _scu(Verification).associate("127.0.0.1", server.port, ae_title="SOMEONE")
    assert assoc.is_rejected


def _find(server: DimseServer, step: dict[str, str], **keys: str) -> list[Dataset]:
    query = Dataset()
    query.PatientName = keys.get("PatientName", "")
    query.PatientID = keys.get("PatientID", "")
    query.PatientBirthDate = ""
    query.AccessionNumber = ""
    query.RequestedProcedureDescription = ""
    sps = Dataset()
    sps.Modality = step.get("Modality", "")
    sps.ScheduledStationAETitle = step.get("ScheduledStationAETitle", "")
    sps.ScheduledProcedureStepStartDate = step.get("ScheduledProcedureStepStartDate", "")
    sps.ScheduledProcedureStepStartTime = ""
    query.ScheduledProcedureStepSequence = [sps]
    assoc = _scu(ModalityWorklistInformationFind).associate("127.0.0.1", server.port,
                                                            ae_title="ORTHOVAULT")
    assert assoc.is_established
    try:
        answers = [
            identifier
            for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind)
            if status and status.Status == 0xFF00
        ]
    finally:
        assoc.release()
    return answers


def test_modality_worklist_find(listener: tuple[DimseServer, str]) -> None:
    server, _clinic = listener
    assert len(_find(server, {})) == 2
    [ada] = _find(server, {"Modality": "PX"})
    assert ada.PatientID == "W-1" and ada.AccessionNumber == "ACC1"
    assert ada.ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "PANO1"
    assert str(ada.PatientName) == "Lovelace^Ada" and ada.PatientBirthDate == "20120401"
    [grace] = _find(server, {}, PatientName="hop*")
    assert grace.PatientID == "W-2"
    [grace] = _find(server, {"ScheduledProcedureStepStartDate": "20260303-"})
    assert grace.RequestedProcedureDescription == "Cephalogram"
    assert _find(server, {"ScheduledStationAETitle": "CBCT9"}) == []


def test_matching_rules() -> None:
    assert matches_text("", "anything") and matches_text("*", None)
    assert matches_text("Love*", "Lovelace^Ada") and not matches_text("love*", "Lovelace^Ada")
    assert matches_text("love*", "Lovelace^Ada", ignore_case=True)
    assert matches_text("A?A", "ADA") and not matches_text("A?A", "ADDA")
    assert matches_text("a.b", "a.b") and not matches_text("a.b", "axb")  # no regex leaks
    day = date(2026, 3, 2)
    assert matches_date("20260302", day) and not matches_date("20260303", day)
    assert matches_date("20260301-20260302", day) and matches_date("-20260302", day)
    assert not matches_date("20260303-", day)


def test_the_command_line_documents_its_options() -> None:
    result = CliRunner().invoke(dicom_listen, ["--help"])
    assert result.exit_code == 0
    for option in ("--ae-title", "--port", "--clinic", "--host", "--data-dir"):
        assert option in result.output


@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk not installed")
def test_dcmtk_tools_interoperate(dicom_stack: DicomStack, listener: tuple[DimseServer, str],
                                  tmp_path: Path) -> None:
    """Another implementation than pynetdicom on the sending side: DCMTK's own SCUs."""
    server, clinic = listener
    dicom_stack.register(clinic, external_id="DK-1", given="Ada", family="Lovelace")
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))  # JPEG Baseline, real
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = "DK-1", "Lovelace^Ada", ""
    path = tmp_path / "in.dcm"
    ds.save_as(path)
    port = str(server.port)
    common = ["-aet", "PANO1", "-aec", "ORTHOVAULT", "127.0.0.1", port]
    assert subprocess.run(["echoscu", *common], timeout=60, check=False).returncode == 0
    stored = subprocess.run(["storescu", "-xy", *common, str(path)], timeout=60,
                            capture_output=True, text=True, check=False)
    assert stored.returncode == 0, stored.stderr
    dicom_stack.wait_all()
    filed = dicom_stack.services.dicom_index.instance_by_sop(clinic, ds.SOPInstanceUID)
    assert filed is not None
    assert filed.transfer_syntax_uid == "1.2.840.10008.1.2.4.50"  # kept as sent
    found = subprocess.run(
        ["findscu", "-W", "-k", "PatientName=LOVE*", "-k", "PatientID",
         "-k", "ScheduledProcedureStepSequence[0].Modality=PX", *common],
        timeout=60, capture_output=True, text=True, check=False)
    assert found.returncode == 0, found.stderr
    assert "W-1" in found.stdout + found.stderr
