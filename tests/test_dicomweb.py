"""DICOMweb through the real dicomweb-client library against a real uvicorn server."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pydicom
import pytest
import requests
from dicom_support import DicomStack, dicom_bytes, parse
from dicomweb_client.api import DICOMwebClient
from eventsourcing.utils import get_topic
from PIL import Image as PILImage
from pydicom.uid import generate_uid

from domain.access import AccessRecord

pytest_plugins = ("dicom_fixtures",)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"


def _clinic() -> str:
    return f"clinic-{uuid.uuid4().hex[:8]}"


def _session(stack: DicomStack, clinic: str, role: str = "clinic_admin") -> requests.Session:
    session = requests.Session()
    session.headers.update(stack.headers(clinic, role))
    return session


def _client(stack: DicomStack, clinic: str, role: str = "clinic_admin") -> DICOMwebClient:
    return DICOMwebClient(url=f"{stack.base_url}/dicomweb", session=_session(stack, clinic, role))


def _ct_slice(index: int, study: str, series: str, patient_id: str) -> bytes:
    pixels = (np.arange(32 * 32).reshape(32, 32) * (index + 1) % 3000).astype(np.uint16)
    return dicom_bytes(
        pixels, modality="CT", patient_id=patient_id, study_uid=study, series_uid=series,
        sop_class=CT_CLASS, ImagePositionPatient=[0, 0, index * 0.5],
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[0.3, 0.3],
        InstanceNumber=index + 1, RescaleIntercept=-1000, RescaleSlope=1,
        WindowCenter=400, WindowWidth=2000,
    )


def _access_kinds(stack: DicomStack, image_ids: set[uuid.UUID]) -> list[str]:
    app = stack.services.app
    notifications = app.recorder.select_notifications(
        None, 10_000_000, topics=[get_topic(AccessRecord.Recorded)])
    events = (app.mapper.to_domain_event(n) for n in notifications)
    return sorted(e.kind for e in events if e.image_id in image_ids)


@pytest.fixture
def study(dicom_stack: DicomStack) -> dict[str, object]:
    """A CBCT series of three slices and a panoramic in one study, stored through STOW-RS."""
    clinic = _clinic()
    external = f"OV-{uuid.uuid4().hex[:6]}"
    dicom_stack.register(clinic, external_id=external, given="Ada", family="Lovelace")
    study_uid, ct_series, px_series = generate_uid(), generate_uid(), generate_uid()
    files = [_ct_slice(i, study_uid, ct_series, external) for i in range(3)]
    files.append(dicom_bytes(patient_id=external, study_uid=study_uid, series_uid=px_series))
    client = _client(dicom_stack, clinic)
    response = client.store_instances([parse(f) for f in files])
    return {"clinic": clinic, "external": external, "study": study_uid, "ct": ct_series,
            "px": px_series, "files": files, "client": client, "response": response}


def test_stow_qido_wado_round_trip(dicom_stack: DicomStack, study: dict) -> None:
    client: DICOMwebClient = study["client"]
    files: list[bytes] = study["files"]
    stored = study["response"]
    assert len(stored.ReferencedSOPSequence) == 4
    assert "FailedSOPSequence" not in stored
    sent = {parse(f).SOPInstanceUID: f for f in files}
    assert {item.ReferencedSOPInstanceUID for item in stored.ReferencedSOPSequence} == set(sent)

    # QIDO: studies by PatientID, by PatientName with a wildcard, by date range and modality.
    [found] = client.search_for_studies(search_filters={"PatientID": study["external"]})
    assert found["0020000D"]["Value"] == [study["study"]]
    assert sorted(found["00080061"]["Value"]) == ["CT", "PX"]
    assert found["00201208"]["Value"] == [4]
    assert found["00100010"]["Value"][0]["Alphabetic"] == "Lovelace^Ada"
    assert client.search_for_studies(search_filters={"PatientName": "LOVE*"})
    assert client.search_for_studies(search_filters={"PatientName": "Lovelace^A?a"})
    assert not client.search_for_studies(search_filters={"PatientName": "Byron*"})
    assert client.search_for_studies(search_filters={"StudyDate": "20240101-20240131"})
    assert not client.search_for_studies(search_filters={"StudyDate": "20230101-20231231"})
    assert client.search_for_studies(search_filters={"ModalitiesInStudy": "CT"})
    assert not client.search_for_studies(search_filters={"ModalitiesInStudy": "XC"})
    assert client.search_for_studies(limit=1, fields=["StudyDescription"])
    assert client.search_for_studies(offset=1) == []

    series = client.search_for_series(study["study"])
    assert {s["0020000E"]["Value"][0] for s in series} == {study["ct"], study["px"]}
    instances = client.search_for_instances(study["study"], study["ct"])
    assert len(instances) == 3 and all(i["00080016"]["Value"] == [CT_CLASS] for i in instances)

    # WADO: the bytes come back as they were sent.
    sop = parse(files[0]).SOPInstanceUID
    instance = client.retrieve_instance(study["study"], study["ct"], sop)
    original = parse(files[0])
    assert instance.SOPInstanceUID == sop
    assert np.array_equal(instance.pixel_array, original.pixel_array)
    assert len(client.retrieve_series(study["study"], study["ct"])) == 3
    assert {d.SOPInstanceUID for d in client.retrieve_study(study["study"])} == set(sent)

    metadata = client.retrieve_instance_metadata(study["study"], study["ct"], sop)
    assert metadata["00080018"]["Value"] == [sop]
    assert metadata["00100020"]["Value"] == [study["external"]]
    assert "Value" not in metadata["7FE00010"] and "BulkDataURI" in metadata["7FE00010"]
    assert len(client.retrieve_series_metadata(study["study"], study["ct"])) == 3

    [frame] = client.retrieve_instance_frames(study["study"], study["ct"], sop, [1])
    assert frame == original.PixelData

    rendered = client.retrieve_instance_rendered(study["study"], study["ct"], sop,
                                                 media_types=("image/jpeg",))
    assert PILImage.open(io.BytesIO(rendered)).size == (32, 32)
    thumbnail = client._session.get(
        f"{dicom_stack.base_url}/dicomweb/studies/{study['study']}/series/{study['ct']}"
        f"/instances/{sop}/thumbnail")
    assert thumbnail.status_code == 200 and thumbnail.content[:3] == b"\xff\xd8\xff"

    # Every served instance left an access record of its kind.
    index = dicom_stack.services.dicom_index
    image_id = index.instance_by_sop(study["clinic"], sop).image_id
    kinds = _access_kinds(dicom_stack, {image_id})
    assert {"original", "metadata", "preview", "thumbnail"} <= set(kinds)


def test_another_clinic_sees_nothing(dicom_stack: DicomStack, study: dict) -> None:
    other = _client(dicom_stack, _clinic())
    assert other.search_for_studies(search_filters={"PatientID": study["external"]}) == []
    assert other.search_for_series(study["study"]) == []
    sop = parse(study["files"][0]).SOPInstanceUID
    for call in (
        lambda: other.retrieve_instance(study["study"], study["ct"], sop),
        lambda: other.retrieve_study_metadata(study["study"]),
        lambda: other.retrieve_instance_frames(study["study"], study["ct"], sop, [1]),
    ):
        with pytest.raises(requests.HTTPError) as caught:
            call()
        assert caught.value.response.status_code == 404


def test_roles_limit_what_dicomweb_serves(dicom_stack: DicomStack, study: dict) -> None:
    base = f"{dicom_stack.base_url}/dicomweb/studies/{study['study']}"
    sop = parse(study["files"][0]).SOPInstanceUID
    instance = f"{base}/series/{study['ct']}/instances/{sop}"
    billing = _session(dicom_stack, study["clinic"], "billing")
    assert billing.get(f"{dicom_stack.base_url}/dicomweb/studies").json()  # metadata: yes
    assert billing.get(instance).status_code == 403  # pixels: no
    assert billing.get(f"{instance}/thumbnail").status_code == 403
    front_desk = _session(dicom_stack, study["clinic"], "front_desk")
    # No X-rays at all for the front desk: the study holds only CBCT and a panoramic.
    assert front_desk.get(f"{dicom_stack.base_url}/dicomweb/studies").json() == []
    assert front_desk.get(f"{instance}/thumbnail").status_code == 404
    assert _session(dicom_stack, study["clinic"], "read_only").get(instance).status_code == 200
    anonymous = requests.get(instance, timeout=10)
    assert anonymous.status_code == 401
    stow = billing.post(f"{dicom_stack.base_url}/dicomweb/studies", data=b"x",
                        headers={"Content-Type": 'multipart/related; type="application/dicom";'
                                                 " boundary=b"})
    assert stow.status_code == 403


def _stow(session: requests.Session, url: str, parts: list[bytes],
          part_type: str = "application/dicom") -> requests.Response:
    boundary = "b0undary"
    body = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: " + part_type.encode() + b"\r\n\r\n"
        + part + b"\r\n" for part in parts
    ) + b"--" + boundary.encode() + b"--\r\n"
    return session.post(f"{url}/dicomweb/studies", data=body, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})


def test_stow_reports_each_instance_and_stores_nothing_bad(dicom_stack: DicomStack) -> None:
    clinic = _clinic()
    dicom_stack.register(clinic, external_id="S-1")
    session = _session(dicom_stack, clinic)
    good = dicom_bytes(patient_id="S-1")
    bad = dicom_bytes(patient_id="S-1", pixels=np.ones((128, 128), np.uint16))
    truncated = bad[: len(bad) // 2]
    head = dicom_stack.services.app.recorder.max_notification_id()

    response = _stow(session, dicom_stack.base_url, [good, truncated])
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/dicom+json"
    body = pydicom.Dataset.from_json(response.json())
    assert [i.ReferencedSOPInstanceUID for i in body.ReferencedSOPSequence] == \
        [parse(good).SOPInstanceUID]
    [failed] = body.FailedSOPSequence
    assert failed.FailureReason == 0xC000
    assert failed[0x00091010].value == "dicom_truncated"

    # All refused: 409, and nothing of them in the log.
    dicom_stack.wait_for_renders()  # the good one's preview is written by the worker
    before = dicom_stack.services.app.recorder.max_notification_id()
    assert before > head
    response = _stow(session, dicom_stack.base_url, [truncated, b"not dicom at all"])
    assert response.status_code == 409
    reasons = [i["00091010"]["Value"][0] for i in response.json()["00081198"]["Value"]]
    assert reasons == ["dicom_truncated", "dicom_not_dicom"]
    assert dicom_stack.services.app.recorder.max_notification_id() == before

    # A part of another type, a body that is not multipart/related.
    response = _stow(session, dicom_stack.base_url, [good], part_type="application/json")
    assert response.status_code == 409
    response = session.post(f"{dicom_stack.base_url}/dicomweb/studies", data=good,
                            headers={"Content-Type": "application/dicom"})
    assert response.status_code == 415
    assert response.json()["code"] == "dicomweb_unsupported_media_type"

    # An unknown PatientID is stored but held for reconciliation: Success, as over C-STORE,
    # with the hold noted in our private element.
    stranger = dicom_bytes(patient_id="NOBODY")
    response = _stow(session, dicom_stack.base_url, [stranger])
    assert response.status_code == 200
    [held] = pydicom.Dataset.from_json(response.json()).ReferencedSOPSequence
    assert "WarningReason" not in held and "RetrieveURL" not in held
    assert held[0x00091010].value == "held_for_reconciliation"
    assert dicom_stack.services.dicom_index.open_reconciliations(clinic)


def test_qido_refuses_bad_matching_values(dicom_stack: DicomStack) -> None:
    session = _session(dicom_stack, _clinic())
    url = f"{dicom_stack.base_url}/dicomweb/studies"
    for params, code in (({"StudyDate": "2024-01-01"}, "dicomweb_invalid_date"),
                         ({"StudyDate": "20241301"}, "dicomweb_invalid_date"),
                         ({"limit": "-1"}, "dicomweb_invalid_limit"),
                         ({"includefield": "NoSuchKeyword"}, "dicomweb_invalid_includefield")):
        response = session.get(url, params=params)
        assert response.status_code == 400, params
        assert response.json()["code"] == code
    ok = session.get(url, params={"00100020": "X", "AccessionNumber": "1"})
    assert ok.status_code == 200 and ok.json() == []
    # A key we cannot match on is refused, not ignored (which would widen the answer).
    refused = session.get(url, params={"00100020": "X", "PatientSex": "F"})
    assert refused.status_code == 400
    assert refused.json()["code"] == "dicomweb_unsupported_filter"
    assert "PatientSex" in refused.json()["detail"]


def test_compressed_frames_as_stored_or_decoded(dicom_stack: DicomStack) -> None:
    """A real JPEG Baseline file from pydicom: frames as the JPEG itself, as a labelled
    octet-stream (transfer-syntax=*), or decoded to native pixels."""
    from pathlib import Path

    from pydicom.data import get_testdata_file
    from pydicom.encaps import generate_frames

    clinic = _clinic()
    dicom_stack.register(clinic, external_id="J-1", given="Ada", family="Lovelace")
    ds = pydicom.dcmread(Path(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")))
    ds.PatientID, ds.PatientName, ds.PatientBirthDate = "J-1", "Lovelace^Ada", ""
    client = _client(dicom_stack, clinic)
    client.store_instances([ds])
    jpeg = next(generate_frames(ds.PixelData, number_of_frames=1))
    ids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)

    [as_jpeg] = client.retrieve_instance_frames(*ids, [1], media_types=("image/jpeg",))
    assert as_jpeg == jpeg
    response = client._session.get(
        f"{dicom_stack.base_url}/dicomweb/studies/{ids[0]}/series/{ids[1]}/instances/{ids[2]}"
        "/frames/1",
        headers={"Accept": 'multipart/related; type="application/octet-stream";'
                           " transfer-syntax=*"})
    assert response.status_code == 200
    assert b"transfer-syntax=1.2.840.10008.1.2.4.50" in response.content[:300]
    [native] = client.retrieve_instance_frames(*ids, [1],
                                               media_types=("application/octet-stream",))
    assert len(native) == 100 * 100 * 3
    with pytest.raises(requests.HTTPError) as outside:
        client.retrieve_instance_frames(*ids, [2])
    assert outside.value.response.status_code == 404
