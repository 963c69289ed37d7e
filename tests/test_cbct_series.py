"""A generated CBCT series, sent slice by slice, becomes one volume in the gallery.

The phantom is an off-centre ball in air with known geometry, sent in shuffled order over
two arrival paths (STOW-RS through ``dicomweb-client``, and C-STORE through pynetdicom), so
the assembled volume is only right if slices were ordered by position and spacing was read
from the headers. A series with a hole is recorded as a failed volume, not a wrong one.
"""

from __future__ import annotations

import io
import json
import random
import socket
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from dicom_support import DicomStack, dicom_bytes, parse
from dicomweb_client.api import DICOMwebClient
from PIL import Image as PILImage
from pydicom.dataset import Dataset
from pydicom.uid import EnhancedCTImageStorage, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from adapters.dimse_scp import DimseServer
from api.cli_dicom import build_server
from conftest import wait_until
from domain.cbct import VOLUME_MEDIA_TYPE, VOLUME_VIEWS, volume_id_for
from projections.gallery import GalleryImage

pytest_plugins = ("dicom_fixtures",)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SLICES, ROWS, COLUMNS = 24, 48, 40
SPACING, THICKNESS = 0.4, 0.6  # mm: anisotropic on purpose
BALL = (8, 16, 28)  # (slice, row, column) of the ball's centre
RADIUS = 5  # voxels


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _clinic() -> str:
    return f"clinic-{uuid.uuid4().hex[:8]}"


def phantom() -> np.ndarray:
    """Stored values: 0 (air, -1000 HU) and 2000 (bone, +1000 HU) inside the ball."""
    k, r, c = np.mgrid[0:SLICES, 0:ROWS, 0:COLUMNS]
    inside = (k - BALL[0]) ** 2 + (r - BALL[1]) ** 2 + (c - BALL[2]) ** 2 <= RADIUS ** 2
    return np.where(inside, 2000, 0).astype(np.uint16)


def ct_series(patient_id: str, *, declare: bool, skip: tuple[int, ...] = ()
              ) -> tuple[str, str, list[bytes]]:
    study, series = generate_uid(), generate_uid()
    voxels = phantom()
    extra = {"ImagesInAcquisition": SLICES} if declare else {}
    files = [
        dicom_bytes(
            voxels[k], modality="CT", patient_id=patient_id, patient_name="Lovelace^Ada",
            study_uid=study, series_uid=series, sop_class=CTImageStorage,
            ImagePositionPatient=[-20.0, -30.0, 100.0 + k * THICKNESS],
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[SPACING, SPACING],
            SliceThickness=THICKNESS, InstanceNumber=SLICES - k,  # numbered head to feet
            RescaleIntercept=-1000, RescaleSlope=1, WindowCenter=500, WindowWidth=3000,
            SeriesDescription="CBCT 8x5", **extra,
        )
        for k in range(SLICES) if k not in skip
    ]
    random.Random(7).shuffle(files)
    return study, series, files


@pytest.fixture
def clinic() -> str:
    return _clinic()


@pytest.fixture
def listener(dicom_stack: DicomStack, clinic: str) -> Iterator[DimseServer]:
    server = build_server(dicom_stack.services, ae_title="ORTHOVAULT", clinic_id=clinic,
                          host="127.0.0.1", port=_free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _stow(stack: DicomStack, clinic: str, files: list[bytes]) -> None:
    session = requests.Session()
    session.headers.update(stack.headers(clinic))
    client = DICOMwebClient(url=f"{stack.base_url}/dicomweb", session=session)
    client.store_instances([parse(f) for f in files])


def _c_store(server: DimseServer, files: list[bytes]) -> None:
    ae = AE(ae_title="CBCT1")
    ae.add_requested_context(CTImageStorage)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    assoc = ae.associate("127.0.0.1", server.port, ae_title="ORTHOVAULT")
    assert assoc.is_established
    try:
        for data in files:
            assert assoc.send_c_store(parse(data)).Status == 0x0000
    finally:
        assoc.release()


def _gallery(stack: DicomStack, clinic: str, patient: uuid.UUID) -> list[GalleryImage]:
    return stack.services.gallery.images_of_patient(clinic, patient).images


def _one_volume(stack: DicomStack, clinic: str, patient: uuid.UUID) -> GalleryImage:
    def settled() -> GalleryImage | None:
        images = _gallery(stack, clinic, patient)
        if len(images) == 1 and images[0].media_type == VOLUME_MEDIA_TYPE and (
                images[0].has_derivatives or images[0].processing_failure):
            return images[0]
        return None

    return wait_until(settled, timeout=90)


def _centroid(png: bytes) -> tuple[float, float]:
    pixels = np.asarray(PILImage.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    rows, cols = np.nonzero(pixels > 128)
    return float(rows.mean()), float(cols.mean())


def test_a_series_arriving_by_stow_and_c_store_becomes_one_volume(
    dicom_stack: DicomStack, clinic: str, listener: DimseServer,
) -> None:
    stack = dicom_stack
    patient = stack.register(clinic, external_id="CB-1", given="Ada", family="Lovelace")
    _study, series, files = ct_series("CB-1", declare=True)
    _stow(stack, clinic, files[:10])
    _c_store(listener, files[10:])

    item = _one_volume(stack, clinic, patient)
    assert item.id == volume_id_for(clinic, series)
    assert item.category == "scan" and item.processing_failure is None
    assert (item.width, item.height) == (COLUMNS, ROWS)

    volume = stack.services.app.get_image(item.id, stack.actor(clinic))
    info = volume.metadata["volume"]
    assert info["dimensions"] == [COLUMNS, ROWS, SLICES]
    assert info["spacing_mm"] == pytest.approx([SPACING, SPACING, THICKNESS])
    assert info["series_instance_uid"] == series and info["slice_count"] == SLICES
    assert set(volume.derivatives) == {"preview", "thumbnail", *VOLUME_VIEWS}

    # The manifest names exactly the slices received, each by the hash of its original.
    manifest = json.loads(stack.services.blobs.read(volume.id, volume.original))
    slice_ids = {uuid.UUID(s["image_id"]) for s in manifest["slices"]}
    assert len(slice_ids) == SLICES
    for entry in manifest["slices"]:
        slice_image = stack.services.app.get_image(uuid.UUID(entry["image_id"]),
                                                   stack.actor(clinic))
        assert slice_image.original.sha256 == entry["sha256"]
        assert slice_image.patient_id == patient

    def read(kind: str) -> bytes:
        return stack.services.blobs.read(volume.id, volume.derivatives[kind])

    # Geometry: coronal and sagittal reformats are head up and resampled to square mm, so
    # the ball sits where the positions (not the shuffled order or InstanceNumber) put it.
    height = round(SLICES * THICKNESS / SPACING)
    ball_down = (SLICES - 1 - BALL[0]) * THICKNESS / SPACING  # head up: last slice on top
    coronal = PILImage.open(io.BytesIO(read("mip_coronal")))
    assert coronal.size == (COLUMNS, height)
    row, col = _centroid(read("mip_coronal"))
    assert row == pytest.approx(ball_down, abs=1.5) and col == pytest.approx(BALL[2], abs=1)
    row, col = _centroid(read("mip_sagittal"))
    assert row == pytest.approx(ball_down, abs=1.5) and col == pytest.approx(BALL[1], abs=1)
    axial = PILImage.open(io.BytesIO(read("axial")))
    assert axial.size == (COLUMNS, ROWS)
    row, col = _centroid(read("axial"))  # the middle slice cuts the ball off-centre
    assert (row, col) == (pytest.approx(BALL[1], abs=1), pytest.approx(BALL[2], abs=1))
    assert read("thumbnail")[:3] == b"\xff\xd8\xff"

    # Over REST, with imaging:3d_view: the stored planes, and any plane at any index.
    client = stack.client
    url = f"/api/v1/images/{item.id}/volume"
    stored = client.get(f"{url}/mip_coronal", headers=stack.headers(clinic, "doctor"))
    assert stored.status_code == 200 and stored.content == read("mip_coronal")
    sagittal = client.get(f"{url}/sagittal", params={"index": BALL[2]},
                          headers=stack.headers(clinic, "clinical_staff"))
    assert sagittal.status_code == 200 and sagittal.headers["content-type"] == "image/png"
    row, col = _centroid(sagittal.content)  # through the ball's centre: a full disc
    assert row == pytest.approx(ball_down, abs=1.5) and col == pytest.approx(BALL[1], abs=1)
    beyond = client.get(f"{url}/axial", params={"index": SLICES},
                        headers=stack.headers(clinic, "doctor"))
    assert (beyond.status_code, beyond.json()["code"]) == (400, "cbct_index_out_of_range")
    denied = client.get(f"{url}/axial", headers=stack.headers(clinic, "read_only"))
    assert (denied.status_code, denied.json()["code"]) == (403, "permission_denied")
    hidden = client.get(f"{url}/axial", headers=stack.headers(_clinic(), "doctor"))
    assert (hidden.status_code, hidden.json()["code"]) == (404, "image_not_found")
    thumbnail = client.get(f"/api/v1/images/{item.id}/thumbnail",
                           headers=stack.headers(clinic, "doctor"))
    assert thumbnail.status_code == 200 and thumbnail.content == read("thumbnail")

    # GraphQL gives the geometry (imaging:3d_view).
    query = """query($id: ID!) { cbctVolume(imageId: $id) {
        sliceCount dimensions spacingMm seriesInstanceUid views failure } }"""
    answer = client.post("/graphql", json={"query": query, "variables": {"id": str(item.id)}},
                         headers=stack.headers(clinic, "doctor")).json()
    assert answer["data"]["cbctVolume"] == {
        "sliceCount": SLICES, "dimensions": [COLUMNS, ROWS, SLICES],
        "spacingMm": pytest.approx([SPACING, SPACING, THICKNESS]),
        "seriesInstanceUid": series, "views": list(VOLUME_VIEWS), "failure": None}
    refused = client.post("/graphql", json={"query": query, "variables": {"id": str(item.id)}},
                          headers=stack.headers(clinic, "read_only")).json()
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["permission_denied"]

    # Every slice stays an addressable DICOM instance (QIDO/WADO), just not a gallery item.
    instances = stack.services.dicom_index.instances(clinic, _study, series)
    assert {i.image_id for i in instances} == slice_ids
    # Another clinic sees nothing of it.
    with pytest.raises(Exception) as foreign:
        stack.services.app.get_image(item.id, stack.actor(_clinic()))
    assert getattr(foreign.value, "code", "") == "image_not_found"


def test_a_series_with_a_missing_slice_is_a_recorded_failure(
    dicom_stack: DicomStack, clinic: str, listener: DimseServer,
) -> None:
    stack = dicom_stack
    patient = stack.register(clinic, external_id="CB-2", given="Ada", family="Lovelace")
    _study, _series, files = ct_series("CB-2", declare=False, skip=(11,))
    _c_store(listener, files)

    item = _one_volume(stack, clinic, patient)
    assert item.processing_failure == "cbct_assembly:cbct_missing_slices"
    assert not item.has_derivatives
    broken = stack.client.get(f"/api/v1/images/{item.id}/volume/axial",
                              headers=stack.headers(clinic, "doctor"))
    assert (broken.status_code, broken.json()["code"]) == (404, "no_volume")
    volume = stack.services.app.get_image(item.id, stack.actor(clinic))
    assert volume.derivatives == {} and volume.metadata["volume"]["slice_count"] == SLICES - 1
    # The server keeps serving: the next complete series is assembled normally.
    other = stack.register(clinic, external_id="CB-3", given="Ada", family="Lovelace")
    _s, _series, complete = ct_series("CB-3", declare=True)
    _c_store(listener, complete)
    assert _one_volume(stack, clinic, other).processing_failure is None


def enhanced_ct(patient_id: str) -> tuple[str, bytes]:
    """One Enhanced CT object: the phantom as frames, positions in per-frame groups, stored
    head to feet (so the frame order is the reverse of the patient order)."""
    shared, orientation, measures, transform = Dataset(), Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing, measures.SliceThickness = [SPACING, SPACING], THICKNESS
    transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = -1000, 1, "HU"
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    shared.PixelValueTransformationSequence = [transform]
    order = list(range(SLICES))[::-1]
    frames = []
    for k in order:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [-20.0, -30.0, 100.0 + k * THICKNESS]
        item.PlanePositionSequence = [position]
        frames.append(item)
    series = generate_uid()
    ds = parse(dicom_bytes(
        phantom()[0], modality="CT", patient_id=patient_id, patient_name="Lovelace^Ada",
        series_uid=series, sop_class=EnhancedCTImageStorage,
        SharedFunctionalGroupsSequence=[shared], PerFrameFunctionalGroupsSequence=frames))
    ds.set_pixel_data(np.ascontiguousarray(phantom()[order]), "MONOCHROME2", 12,
                      generate_instance_uid=False)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return series, out.getvalue()


def test_an_enhanced_ct_object_becomes_a_volume_at_once(
    dicom_stack: DicomStack, clinic: str,
) -> None:
    stack = dicom_stack
    patient = stack.register(clinic, external_id="CB-4", given="Ada", family="Lovelace")
    series, data = enhanced_ct("CB-4")
    _stow(stack, clinic, [data])

    item = _one_volume(stack, clinic, patient)  # the object itself is shown as the volume
    assert item.id == volume_id_for(clinic, series) and item.processing_failure is None
    volume = stack.services.app.get_image(item.id, stack.actor(clinic))
    info = volume.metadata["volume"]
    assert info["dimensions"] == [COLUMNS, ROWS, SLICES] and info["slice_count"] == SLICES
    assert info["enhanced"] is True and info["object_count"] == 1
    mip = stack.services.blobs.read(volume.id, volume.derivatives["mip_coronal"])
    height = round(SLICES * THICKNESS / SPACING)
    assert PILImage.open(io.BytesIO(mip)).size == (COLUMNS, height)
    row, col = _centroid(mip)  # frames reordered by position: the ball where it belongs
    assert row == pytest.approx((SLICES - 1 - BALL[0]) * THICKNESS / SPACING, abs=1.5)
    assert col == pytest.approx(BALL[2], abs=1)


def test_a_series_stowed_from_in_memory_datasets_becomes_a_volume(
    dicom_stack: DicomStack, clinic: str,
) -> None:
    """dicomweb-client writes a dataset built in memory as pydicom does: without the
    128-byte preamble. Ingest reads such objects leniently, so must the assembly."""
    stack = dicom_stack
    patient = stack.register(clinic, external_id="CB-9", given="Ada", family="Lovelace")
    _study, series, files = ct_series("CB-9", declare=True)
    datasets = []
    for data in files:
        ds = parse(data)
        ds.preamble = None  # as a Dataset() filled in memory has none
        datasets.append(ds)
    out = io.BytesIO()
    datasets[0].save_as(out)
    assert out.getvalue()[128:132] != b"DICM"  # what goes over the wire: no preamble
    session = requests.Session()
    session.headers.update(stack.headers(clinic))
    DICOMwebClient(url=f"{stack.base_url}/dicomweb", session=session).store_instances(datasets)

    item = _one_volume(stack, clinic, patient)
    assert item.id == volume_id_for(clinic, series)
    assert item.processing_failure is None
    volume = stack.services.app.get_image(item.id, stack.actor(clinic))
    assert volume.metadata["volume"]["dimensions"] == [COLUMNS, ROWS, SLICES]
    assert set(volume.derivatives) == {"preview", "thumbnail", *VOLUME_VIEWS}
    # WADO-RS serves each slice as a PS3.10 file, which dicomweb-client reads strictly.
    first = datasets[0]
    again = DICOMwebClient(url=f"{stack.base_url}/dicomweb", session=session).retrieve_instance(
        first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID)
    assert again.SOPInstanceUID == first.SOPInstanceUID
    assert np.array_equal(again.pixel_array, first.pixel_array)
