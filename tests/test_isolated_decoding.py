"""DICOM decoding in a child process: a crash, a memory bomb or a hang costs one call, never
the server (adapters/isolated_decoding.py).

The crashes are real (the child aborts or is SIGKILLed), the memory ceiling is a real
RLIMIT_AS met by a real decode, and the files are pydicom's bundled DICOM objects.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import isolated_children
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid

from adapters import dicom_codec, isolated_decoding
from adapters.isolated_decoding import DecoderLimits, IsolatedRunner
from conftest import GALLERY, graphql, upload, wait_until
from domain.errors import ErrorKind, TooLarge, Unprocessable

# --- helpers ---------------------------------------------------------------------------------


def _testdata(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _blank_rle(rows: int, columns: int) -> bytes:
    """A valid 8-bit RLE Lossless object, all black: half a megabyte on the wire, but a
    frame that needs over a gigabyte to render (float64 display pipeline)."""
    row = bytearray()
    left = columns
    while left:  # PackBits: byte 257 - n repeats the next byte n times (n <= 128)
        run = min(left, 128)
        row += bytes(((257 - run) % 256, 0))
        left -= run
    segment = bytes(row) * rows
    segment += b"\0" * (len(segment) % 2)
    header = (1).to_bytes(4, "little") + (64).to_bytes(4, "little") + bytes(56)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "OT", "ISO-BIG", "Bomb^Memory"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([header + segment])
    ds["PixelData"].VR = "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


BIG_SIDE = 6000  # 36 Mpx: under the pixel cap, so only the memory ceiling can refuse it


@pytest.fixture
def runner() -> Iterator[IsolatedRunner]:
    isolated = IsolatedRunner(DecoderLimits(processes=2, memory_limit_mb=4096,
                                            timeout_seconds=60))
    yield isolated
    isolated.shutdown()


# --- (a) a crashing decoder --------------------------------------------------------------------


@pytest.mark.parametrize("crash", [isolated_children.abort, isolated_children.sigkill],
                         ids=["abort", "sigkill"])
def test_a_dying_child_is_a_422_and_the_next_decode_works(runner: IsolatedRunner,
                                                          crash: object) -> None:
    with pytest.raises(Unprocessable) as caught:
        runner.run(crash)  # type: ignore[arg-type]
    assert caught.value.code == isolated_decoding.DECODER_CRASHED
    assert caught.value.kind is ErrorKind.UNPROCESSABLE
    data = _testdata("JPEG2000.dcm")  # decoded by openjpeg, C code
    assert np.array_equal(runner.run(dicom_codec.render_dicom, data),
                          dicom_codec.render_dicom(data))


def test_the_process_wide_runner_survives_a_crash_too() -> None:
    with pytest.raises(Unprocessable) as caught:
        isolated_decoding.run_isolated(isolated_children.abort)
    assert caught.value.code == "dicom_decoder_crashed"
    data = _testdata("SC_rgb_jpeg_dcmtk.dcm")  # libjpeg
    assert np.array_equal(isolated_decoding.render_dicom_isolated(data),
                          dicom_codec.render_dicom(data))
    assert isolated_decoding.check_renders_isolated(data) == (100, 100, 3)  # the upload check


def test_a_crash_does_not_fail_a_decode_running_beside_it(runner: IsolatedRunner,
                                                          tmp_path: Path) -> None:
    # A dying child breaks its whole pool; the bystander's call is retried on the new one,
    # and not beside the crasher's own retry (which dies after 0.3 s, mid-bystander, again).
    marker = tmp_path / "bystander.pid"
    results: list[object] = []
    bystander = threading.Thread(target=lambda: results.append(
        runner.run(isolated_children.pid_then_sleep, str(marker), 2.0)))
    bystander.start()
    wait_until(marker.exists)
    with pytest.raises(Unprocessable, match="crashed"):
        runner.run(isolated_children.sleep_then_kill, 0.3)
    bystander.join(timeout=60)
    assert results == ["slept"]


def test_codec_errors_cross_back_with_their_code_and_status(runner: IsolatedRunner) -> None:
    with pytest.raises(Unprocessable) as caught:
        runner.run(dicom_codec.render_dicom, _testdata("MR_truncated.dcm"))
    assert caught.value.code == dicom_codec.TRUNCATED
    with pytest.raises(TooLarge) as refused:
        isolated_decoding.render_dicom_isolated(_testdata("CT_small.dcm"), max_pixels=1000)
    assert refused.value.code == dicom_codec.TOO_LARGE


def test_pixel_arrays_decode_in_a_child_too() -> None:
    # WADO-RS frames as native pixels and CBCT assembly decode whole pixel arrays this way.
    ds = dcmread(get_testdata_file("JPEG2000.dcm"))
    assert np.array_equal(isolated_decoding.pixel_array_isolated(ds), ds.pixel_array)


# --- (b) the memory ceiling --------------------------------------------------------------------


def test_a_frame_beyond_the_memory_ceiling_is_a_413_from_the_child() -> None:
    assert BIG_SIDE * BIG_SIDE < dicom_codec.DEFAULT_MAX_PIXELS
    data = _blank_rle(BIG_SIDE, BIG_SIDE)
    tight = IsolatedRunner(DecoderLimits(processes=1, memory_limit_mb=512, timeout_seconds=120))
    try:
        with pytest.raises(TooLarge) as caught:
            tight.run(dicom_codec.render_dicom, data)
        assert caught.value.code == dicom_codec.TOO_LARGE
        assert caught.value.kind is ErrorKind.TOO_LARGE
        # The child refused one frame and stays in service; ordinary objects still render.
        small = _testdata("CT_small.dcm")
        assert np.array_equal(tight.run(dicom_codec.render_dicom, small),
                              dicom_codec.render_dicom(small))
    finally:
        tight.shutdown()
    # The same object renders under the default ceiling: the limit refused it, not the file.
    roomy = IsolatedRunner(DecoderLimits(processes=1))
    try:
        assert roomy.run(dicom_codec.render_dicom, data).shape == (BIG_SIDE, BIG_SIDE)
    finally:
        roomy.shutdown()


# --- (c) the timeout ---------------------------------------------------------------------------


def test_a_decode_past_the_timeout_is_killed_and_the_next_one_works(tmp_path: Path) -> None:
    hurried = IsolatedRunner(DecoderLimits(processes=1, timeout_seconds=5.0))
    try:
        sleeper = hurried.run(isolated_children.pid)  # its one child, already started
        with pytest.raises(Unprocessable) as caught:
            hurried.run(isolated_children.pid_then_sleep, str(tmp_path / "sleeper.pid"), 600.0)
        assert caught.value.code == isolated_decoding.DECODE_TIMEOUT
        wait_until(lambda: _gone(sleeper))
        data = _testdata("CT_small.dcm")
        assert np.array_equal(hurried.run(dicom_codec.render_dicom, data),
                              dicom_codec.render_dicom(data))
    finally:
        hurried.shutdown()


# --- life cycle --------------------------------------------------------------------------------


def test_shutdown_leaves_no_child_and_a_later_call_starts_again(runner: IsolatedRunner) -> None:
    children = {runner.run(isolated_children.pid) for _ in range(4)}
    assert os.getpid() not in children
    runner.shutdown()
    wait_until(lambda: all(_gone(pid) for pid in children))
    assert runner.run(isolated_children.pid) not in children


def test_children_exit_when_the_server_is_killed_outright() -> None:
    # A worker idle on its queue would otherwise live on, and keep the forkserver alive.
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from adapters.isolated_decoding import DecoderLimits, IsolatedRunner\n"
         "import isolated_children\n"
         "runner = IsolatedRunner(DecoderLimits(processes=1))\n"
         "print(runner.run(isolated_children.pid), flush=True)\n"
         "time.sleep(600)\n"],
        # (its resource tracker reports the killed server's semaphores on stderr)
        cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    try:
        assert server.stdout is not None
        child = int(server.stdout.readline())
        assert not _gone(child)
    finally:
        server.kill()
        server.wait()
    wait_until(lambda: _gone(child))


# --- (d) through the API -----------------------------------------------------------------------

REGISTER = """mutation($i: RegisterPatientInput!){ registerPatient(input: $i){ id } }"""


def _patient_dicom(data: bytes, external_id: str) -> bytes:
    ds = dcmread(io.BytesIO(data))
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = external_id, "Lovelace^Ada", "20120401"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_uploads_decode_in_the_configured_children(client, auth) -> None:
    headers = auth("doctor")
    external_id = f"ISO-{os.getpid()}-{time.monotonic_ns()}"
    patient_id = graphql(client, headers, REGISTER, {"i": {
        "externalId": external_id, "givenName": "Ada", "familyName": "Lovelace",
        "birthDate": "2012-04-01", "sex": "female"}})["data"]["registerPatient"]["id"]
    big = _patient_dicom(_blank_rle(BIG_SIDE, BIG_SIDE), external_id)
    previous = isolated_decoding.configure(DecoderLimits(memory_limit_mb=512))
    try:
        refused = upload(client, headers, patient_id, big, filename="big.dcm",
                         content_type="application/dicom")
    finally:
        isolated_decoding.configure(previous)
    assert refused.status_code == 413, refused.text
    assert refused.json()["code"] == dicom_codec.TOO_LARGE
    # The server is unharmed: a real object is filed and the worker renders its thumbnail,
    # both decodes again in children.
    filed = upload(client, headers, patient_id,
                   _patient_dicom(_testdata("JPEG2000.dcm"), external_id),
                   filename="ct.dcm", content_type="application/dicom")
    assert filed.status_code == 201, filed.text
    wait_until(lambda: [edge for edge in graphql(
        client, headers, GALLERY, {"id": patient_id, "first": 5})["data"]["patient"]["images"][
        "edges"] if edge["node"]["thumbnailUrl"]])
