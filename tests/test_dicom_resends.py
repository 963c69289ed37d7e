"""Resends are Success, over C-STORE (dcmtk's storescu) and STOW-RS alike.

A modality resends what it is not sure arrived, often in another transfer syntax; a
gateway forwards what a modality already sent by STOW. The same SOP Instance UID with the
same pixel data and patient is acknowledged as stored (the first copy is kept); only
another image or another patient under that UID is refused, with a status storescu names.
"""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from dicom_support import DicomStack, dicom_bytes

from adapters.dimse_scp import DimseServer
from api.cli_dicom import build_server

pytest_plugins = ("dicom_fixtures",)
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.skipif(shutil.which("storescu") is None,
                                 reason="dcmtk not installed")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def clinic() -> str:
    return f"clinic-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def listener(dicom_stack: DicomStack, clinic: str) -> Iterator[DimseServer]:
    server = build_server(dicom_stack.services, ae_title="ORTHOVAULT", clinic_id=clinic,
                          host="127.0.0.1", port=_free_port(), worklist=lambda: [])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _storescu(server: DimseServer, path: Path, *options: str) -> tuple[int, str]:
    done = subprocess.run(
        ["storescu", "-v", *options, "-aet", "PANO1", "-aec", "ORTHOVAULT", "127.0.0.1",
         str(server.port), str(path)], timeout=60, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr


def _stow(stack: DicomStack, clinic: str, data: bytes) -> tuple[int, pydicom.Dataset]:
    boundary = "r3send"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
            + f"\r\n--{boundary}--\r\n".encode())
    response = requests.post(f"{stack.base_url}/dicomweb/studies", data=body, timeout=60,
                             headers={**stack.headers(clinic), "Content-Type":
                                      f'multipart/related; type="application/dicom"; '
                                      f"boundary={boundary}"})
    return response.status_code, pydicom.Dataset.from_json(response.json())


def _instances(stack: DicomStack, clinic: str, sop_uid: str) -> int:
    stack.wait_all()
    return int(stack.services.dicom_index.instance_by_sop(clinic, sop_uid) is not None)


def test_a_resend_in_another_transfer_syntax_is_success_over_c_store_and_stow(
        dicom_stack: DicomStack, clinic: str, listener: DimseServer, tmp_path: Path) -> None:
    dicom_stack.register(clinic, external_id="RS-1", given="Ada", family="Lovelace")
    original = dicom_bytes(patient_id="RS-1", patient_name="Lovelace^Ada")
    sop = pydicom.dcmread(io.BytesIO(original)).SOPInstanceUID
    path = tmp_path / "pano.dcm"
    path.write_bytes(original)

    code, said = _storescu(listener, path)  # explicit VR little endian, as written
    assert code == 0 and "Received Store Response (Success)" in said, said
    code, said = _storescu(listener, path, "-xi")  # again, implicit VR: other bytes
    assert code == 0 and "Received Store Response (Success)" in said, said
    status, answer = _stow(dicom_stack, clinic, original)  # and once more by STOW
    assert status == 200, answer
    [stored] = answer.ReferencedSOPSequence
    assert stored.ReferencedSOPInstanceUID == sop and "WarningReason" not in stored
    assert _instances(dicom_stack, clinic, sop) == 1  # the first copy, kept once

    # Other pixels under the same UID: refused, the same status over both protocols.
    other = dicom_bytes(np.zeros((8, 8), np.uint16), patient_id="RS-1",
                        patient_name="Lovelace^Ada", sop_uid=sop)
    path.write_bytes(other)
    code, said = _storescu(listener, path)
    assert "Received Store Response (Error: CannotUnderstand)" in said, said  # 0xC111
    status, answer = _stow(dicom_stack, clinic, other)
    assert status == 409
    assert answer.FailedSOPSequence[0].FailureReason == 0xC111
    # Another patient under the same UID: refused too.
    path.write_bytes(dicom_bytes(patient_id="RS-2", sop_uid=sop))
    code, said = _storescu(listener, path)
    assert "Received Store Response (Error: CannotUnderstand)" in said, said  # 0xC112
    status, answer = _stow(dicom_stack, clinic, path.read_bytes())
    assert status == 409 and answer.FailedSOPSequence[0].FailureReason == 0xC112


def test_a_held_object_is_success_over_c_store_and_stow(
        dicom_stack: DicomStack, clinic: str, listener: DimseServer, tmp_path: Path) -> None:
    held = dicom_bytes(patient_id="NOBODY-1")  # no such patient: held for reconciliation
    path = tmp_path / "held.dcm"
    path.write_bytes(held)
    code, said = _storescu(listener, path)
    assert code == 0 and "Received Store Response (Success)" in said, said
    another = dicom_bytes(patient_id="NOBODY-2")
    status, answer = _stow(dicom_stack, clinic, another)
    assert status == 200
    [stored] = answer.ReferencedSOPSequence
    assert "WarningReason" not in stored and "RetrieveURL" not in stored
    # Resending either is Success again, by the other protocol.
    status, _answer = _stow(dicom_stack, clinic, held)
    assert status == 200
    path.write_bytes(another)
    code, said = _storescu(listener, path, "-xi")
    assert code == 0 and "Received Store Response (Success)" in said, said
    dicom_stack.wait_all()
    assert len(dicom_stack.services.dicom_index.open_reconciliations(clinic)) == 2
