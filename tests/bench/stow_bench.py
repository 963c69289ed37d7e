"""DICOM ingest over STOW-RS: 5 parallel clients, orthovault beside Orthanc on PostgreSQL.

Both servers run as their own processes on this machine, both index into the local
PostgreSQL (127.0.0.1:5432, throw-away databases), both receive the same instances
(256x256 16-bit DX radiographs, one instance per STOW request, as a modality or a gateway
forwarding images would send them) from the same 5 client threads. orthovault's number
includes what Orthanc does not do: matching each object to a patient, sealing it with the
patient's key and recording it as an event (its previews are rendered after the answer, by
the worker running in the same process). Orthanc: the Debian package with its PostgreSQL
index and DICOMweb plugins (``apt-get install orthanc orthanc-postgresql
orthanc-dicomweb``); without it the Orthanc row is skipped.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psycopg
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
INSTANCES = 300
WARMUP = 20
CLIENTS = 5
ORTHANC = "/usr/sbin/Orthanc"
PLUGINS = "/usr/share/orthanc/plugins"
ORTHANC_PUBLISHED = 250.0  # instances/s, Orthanc with PostgreSQL, bigger hardware
BOUNDARY = "orthovaultbench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _instances(count: int, patient_id: str) -> list[bytes]:
    rng = np.random.default_rng(1)
    base = (np.add.outer(np.arange(256), np.arange(256)) * 6 % 4096).astype(np.uint16)
    study = generate_uid()
    out = []
    for index in range(count):
        pixels = base + rng.integers(0, 16, size=base.shape, dtype=np.uint16)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
        ds.Modality, ds.PatientID, ds.PatientName = "DX", patient_id, "Mark^Bench"
        ds.PatientBirthDate, ds.StudyDate, ds.InstanceNumber = "20100101", "20240105", index
        ds.set_pixel_data(pixels, "MONOCHROME2", 12, generate_instance_uid=False)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def _body(data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
            + f"\r\n--{BOUNDARY}--\r\n".encode())


def _wait_http(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({process.returncode})")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer")


def _stow_rate(url: str, headers: dict[str, str], instances: list[bytes]) -> float:
    content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
    sessions = [requests.Session() for _ in range(CLIENTS)]
    for session in sessions:
        session.headers.update({**headers, "Content-Type": content_type,
                                "Accept": "application/dicom+json"})

    def send(index: int) -> None:
        response = sessions[index % CLIENTS].post(url, data=_body(instances[index]),
                                                  timeout=120)
        if response.status_code not in (200, 202):
            raise RuntimeError(f"STOW answered {response.status_code}: {response.text[:200]}")

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(send, range(WARMUP)))  # connections, caches, first-table creation
        started = time.perf_counter()
        list(pool.map(send, range(WARMUP, len(instances))))
        return (len(instances) - WARMUP) / (time.perf_counter() - started)


def _database(name: str) -> str:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return SERVER.rsplit("/", 1)[0] + "/" + name


def _drop(name: str) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _orthovault(tmp: Path) -> float:
    from api.auth import TokenConfig, issue_token

    name = f"ov_bench_{secrets.token_hex(4)}"
    url = _database(name)
    port = _free_port()
    secret = "bench-" + "x" * 40
    env = {**os.environ, "ORTHOVAULT_DATABASE_URL": url, "ORTHOVAULT_DATA_DIR": str(tmp / "ov"),
           "ORTHOVAULT_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
           "ORTHOVAULT_TOKEN_SECRET": secret, "ORTHOVAULT_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/healthz", server)
        token = issue_token(TokenConfig(secret, "orthovault", "orthovault", 3600),
                            user="bench", clinic="bench-clinic", role="clinic_admin")
        headers = {"Authorization": f"Bearer {token}"}
        registered = requests.post(f"{base}/graphql", headers=headers, timeout=60, json={
            "query": "mutation($i: RegisterPatientInput!) { registerPatient(input: $i) { id } }",
            "variables": {"i": {"externalId": "B-1", "givenName": "Bench", "familyName": "Mark",
                                "birthDate": "2010-01-01", "sex": "female"}}})
        assert "errors" not in registered.json(), registered.text
        return _stow_rate(f"{base}/dicomweb/studies", headers,
                          _instances(INSTANCES + WARMUP, "B-1"))
    finally:
        _stop(server)
        _drop(name)


def _orthanc(tmp: Path) -> float | None:
    if not Path(ORTHANC).exists() or not Path(PLUGINS, "libOrthancDicomWeb.so").exists():
        return None
    name = f"orthanc_bench_{secrets.token_hex(4)}"
    _database(name)
    port = _free_port()
    config = tmp / "orthanc.json"
    config.write_text(json.dumps({
        "Name": "bench", "StorageDirectory": str(tmp / "orthanc-storage"),
        "IndexDirectory": str(tmp / "orthanc-index"), "HttpPort": port,
        "DicomPort": _free_port(), "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [PLUGINS],
        "PostgreSQL": {"EnableIndex": True, "EnableStorage": False, "Host": "127.0.0.1",
                       "Port": 5432, "Database": name, "Username": "postgres",
                       "Password": "", "Lock": False},
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }))
    server = subprocess.Popen([ORTHANC, str(config)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        _wait_http(f"http://127.0.0.1:{port}/system", server)
        return _stow_rate(f"http://127.0.0.1:{port}/dicom-web/studies", {},
                          _instances(INSTANCES + WARMUP, "B-1"))
    finally:
        _stop(server)
        shutil.rmtree(tmp / "orthanc-storage", ignore_errors=True)
        _drop(name)


def run(tmp: Path) -> dict:
    ours = _orthovault(tmp)
    theirs = _orthanc(tmp)
    rows = [["orthovault (match, seal, event; embedded workers)", INSTANCES, f"{ours:.1f}",
             f"{ours / theirs:.2f}x" if theirs else "", f"{ours / ORTHANC_PUBLISHED:.2f}x"]]
    if theirs:
        rows.append(["Orthanc 1.10 + PostgreSQL index + DICOMweb plugin", INSTANCES,
                     f"{theirs:.1f}", "1.00x", f"{theirs / ORTHANC_PUBLISHED:.2f}x"])
    return {
        "title": f"DICOM ingest, STOW-RS, {CLIENTS} parallel clients",
        "columns": ["server", "instances", "instances/s", "vs Orthanc here",
                    "vs Orthanc published 250/s"],
        "rows": rows,
        "notes": "Same machine, same PostgreSQL, same 128 KB DX instances, one instance per "
                 "request, measured after a warm-up of 20. Orthanc's published figure was "
                 "measured on bigger hardware; the ratio to Orthanc run here is the fair one. "
                 "Profiled in-process, one ingest costs about 50 ms on one core: most of it "
                 "in ~33 PostgreSQL round trips (the patient aggregate is loaded three times, "
                 "two idempotency look-ups, key-store reads, the event insert under the log's "
                 "table lock), about a fifth in decoding one frame to prove it renders; the "
                 "rendering worker and projections share the same process and GIL.",
        "summary": [{
            "what": f"DICOM ingest, STOW-RS, {CLIENTS} parallel clients",
            "ours": f"{ours:.1f} instances/s",
            "baseline": f"Orthanc + PostgreSQL here {theirs:.1f}/s" if theirs else
                        f"Orthanc not installed here; published {ORTHANC_PUBLISHED:.0f}/s on "
                        "bigger hardware",
            "ratio": f"{ours / theirs:.2f}x" if theirs else
                     f"{ours / ORTHANC_PUBLISHED:.2f}x published",
            "target": f"report beside Orthanc's published {ORTHANC_PUBLISHED:.0f}/s "
                      "(issue 4); none set",
        }],
    }
