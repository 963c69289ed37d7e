"""What OHIF and dicomweb-client need of DICOMweb beyond STOW/QIDO/WADO basics (issue #18):
includefield and the PS3.18 default attribute sets, refused (never widened) unsupported
filters, root-level /series and /instances, rendered study/series/instance with viewport
and window, BulkDataURIs in metadata and the /bulkdata route. Real uvicorn, real
dicomweb-client."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
import requests
from dicom_support import DicomStack, dicom_bytes, parse
from dicomweb_client.api import DICOMwebClient
from PIL import Image as PILImage
from pydicom.uid import generate_uid

pytest_plugins = ("dicom_fixtures",)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CT_CLASS = "1.2.840.10008.5.1.4.1.1.2"
ICC_PROFILE = bytes(range(256)) * 8  # 2 KiB of OB: past the inline limit, so by URI


def _stored(index: int) -> np.ndarray:
    return (np.arange(32 * 32).reshape(32, 32) * (index + 1) % 3000).astype(np.uint16)


@pytest.fixture(scope="module")
def viewer_study(dicom_stack: DicomStack) -> dict[str, object]:
    """Three CT slices (numbered, in a numbered series, with an accession number and a
    study time) and a panoramic, stored through STOW-RS by dicomweb-client."""
    clinic = f"clinic-{uuid.uuid4().hex[:8]}"
    external = f"OV-{uuid.uuid4().hex[:6]}"
    dicom_stack.register(clinic, external_id=external)
    study, ct, px = generate_uid(), generate_uid(), generate_uid()
    common = {"patient_id": external, "study_uid": study, "AccessionNumber": "ACC-77",
              "StudyTime": "101500"}
    files = [dicom_bytes(
        _stored(i), modality="CT", series_uid=ct, sop_class=CT_CLASS, SeriesNumber=3,
        InstanceNumber=i + 1, ImagePositionPatient=[0, 0, i * 0.5],
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0], PixelSpacing=[0.3, 0.3],
        RescaleIntercept=-1000, RescaleSlope=1, WindowCenter=400, WindowWidth=2000,
        **common) for i in (2, 0, 1)]
    files.append(dicom_bytes(series_uid=px, SeriesNumber=1, InstanceNumber=1,
                             ICCProfile=ICC_PROFILE, **common))
    session = requests.Session()
    session.headers.update(dicom_stack.headers(clinic))
    client = DICOMwebClient(url=f"{dicom_stack.base_url}/dicomweb", session=session)
    client.store_instances([parse(f) for f in files])
    sops = {parse(f).InstanceNumber: parse(f).SOPInstanceUID for f in files[:3]}
    return {"clinic": clinic, "external": external, "study": study, "ct": ct, "px": px,
            "files": files, "client": client, "session": session, "ct_sops": sops,
            "px_sop": parse(files[3]).SOPInstanceUID}


def _value(item: dict, tag: str) -> object:
    return item[tag].get("Value", [None])[0]


def test_qido_returns_default_attributes_and_includefields(viewer_study: dict) -> None:
    client: DICOMwebClient = viewer_study["client"]
    [study] = client.search_for_studies(search_filters={"PatientID": viewer_study["external"]})
    # PS3.18 Table 10.6.3-3 defaults, without asking.
    assert _value(study, "00080030") == "101500"  # StudyTime
    assert _value(study, "00080050") == "ACC-77"  # AccessionNumber
    assert _value(study, "00080056") == "ONLINE"
    assert {"00080090", "00100040", "00200010"} <= set(study)  # known or empty, but there
    assert "00081030" not in study  # StudyDescription is not a default…
    [study] = client.search_for_studies(search_filters={"PatientID": viewer_study["external"]},
                                        fields=["StudyDescription", "00080060"])
    assert _value(study, "00081030") == "Ortho records"  # …until asked for
    assert study["00080060"] == {"vr": "CS"}  # asked, valid, not a study attribute: empty

    series = client.search_for_series(viewer_study["study"],
                                      search_filters={"Modality": "CT"})
    assert [_value(s, "00200011") for s in series] == [3]  # SeriesNumber
    instances = client.search_for_instances(viewer_study["study"], viewer_study["ct"],
                                            fields=["StudyTime", "AccessionNumber"])
    # InstanceNumber is a default, and instances come in its order.
    assert [_value(i, "00200013") for i in instances] == [1, 2, 3]
    assert {_value(i, "00080030") for i in instances} == {"101500"}
    assert {_value(i, "00080050") for i in instances} == {"ACC-77"}
    everything = client.search_for_instances(viewer_study["study"], viewer_study["ct"],
                                             fields=["all"])
    assert _value(everything[0], "00200011") == 3


def test_unsupported_or_misspelt_filters_are_refused(viewer_study: dict,
                                                     dicom_stack: DicomStack) -> None:
    session: requests.Session = viewer_study["session"]
    base = f"{dicom_stack.base_url}/dicomweb"
    for url, params in ((f"{base}/studies", {"PatientId": viewer_study["external"]}),
                        (f"{base}/studies", {"ReferringPhysicianName": "Who*"}),
                        (f"{base}/series", {"ModalitiesInStudy": "CT"}),
                        (f"{base}/studies/{viewer_study['study']}/series",
                         {"PatientID": viewer_study["external"]})):
        refused = session.get(url, params=params)
        assert refused.status_code == 400, (url, params)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "dicomweb_unsupported_filter"
    # Supported keys narrow as asked: another accession number matches nothing.
    assert session.get(f"{base}/studies", params={"AccessionNumber": "XYZ"}).json() == []
    [match] = session.get(f"{base}/studies", params={"AccessionNumber": "ACC-7?"}).json()
    assert _value(match, "0020000D") == viewer_study["study"]
    assert session.get(f"{base}/studies", params={"StudyDescription": "ortho*"}).json()


def test_root_level_series_and_instances(viewer_study: dict) -> None:
    client: DICOMwebClient = viewer_study["client"]
    series = client.search_for_series(search_filters={"PatientID": viewer_study["external"]})
    assert {_value(s, "0020000E") for s in series} == {viewer_study["ct"], viewer_study["px"]}
    assert {_value(s, "0020000D") for s in series} == {viewer_study["study"]}
    instances = client.search_for_instances(
        search_filters={"SeriesInstanceUID": viewer_study["ct"]})
    assert sorted(_value(i, "00080018") for i in instances) == \
        sorted(viewer_study["ct_sops"].values())
    px = client.search_for_instances(search_filters={
        "PatientID": viewer_study["external"], "Modality": "PX"})
    assert [_value(i, "00080018") for i in px] == [viewer_study["px_sop"]]
    assert client.search_for_instances(search_filters={"SOPInstanceUID": "1.2.3"}) == []


def _png(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data)))


def test_rendered_at_every_level_with_viewport_and_window(viewer_study: dict,
                                                          dicom_stack: DicomStack) -> None:
    client: DICOMwebClient = viewer_study["client"]
    session: requests.Session = viewer_study["session"]
    study, ct = viewer_study["study"], viewer_study["ct"]
    first = viewer_study["ct_sops"][1]
    series_jpeg = client.retrieve_series_rendered(study, ct, media_types=("image/jpeg",))
    assert PILImage.open(io.BytesIO(series_jpeg)).size == (32, 32)
    instance_url = (f"{dicom_stack.base_url}/dicomweb/studies/{study}/series/{ct}"
                    f"/instances/{first}")
    png = {"Accept": "image/png"}
    whole = _png(session.get(f"{instance_url}/rendered", headers=png).content)
    # The series' image is its first instance.
    assert np.array_equal(_png(session.get(
        f"{dicom_stack.base_url}/dicomweb/studies/{study}/series/{ct}/rendered",
        headers=png).content), whole)

    # A study as multipart/related: one rendered image per instance.
    multipart = session.get(f"{dicom_stack.base_url}/dicomweb/studies/{study}/rendered",
                            headers={"Accept": 'multipart/related; type="image/jpeg"'})
    assert multipart.status_code == 200
    assert multipart.headers["content-type"].startswith("multipart/related")
    assert multipart.content.count(b"Content-Type: image/jpeg") == 4

    # viewport: fit, aspect kept; a source region cropped, then scaled.
    small = _png(session.get(f"{instance_url}/rendered", headers=png,
                             params={"viewport": "16,8"}).content)
    assert small.shape == (8, 8)
    crop = _png(session.get(f"{instance_url}/rendered", headers=png,
                            params={"viewport": "8,8,4,2,8,8"}).content)
    assert np.array_equal(crop, whole[2:10, 4:12])
    frame = client.retrieve_instance_frames_rendered(
        study, ct, first, [1], media_types=("image/png",), params={"viewport": "64,64"})
    assert _png(frame).shape == (64, 64)

    # window: center,width,function replaces the object's own (400/2000).
    windowed = _png(session.get(f"{instance_url}/rendered", headers=png,
                                params={"window": "-500,1,linear"}).content)
    stored = _stored(0).astype(np.int32)  # InstanceNumber 1; HU = stored - 1000
    assert np.array_equal(windowed, np.where(stored - 1000 >= -500, 255, 0))
    assert not np.array_equal(windowed, whole)
    for params in ({"window": "40"}, {"window": "40,0"}, {"window": "40,80,cubic"},
                   {"viewport": "0,10"}, {"viewport": "10"}, {"viewport": "8,8,0,0,-4,4"}):
        refused = session.get(f"{instance_url}/rendered", params=params)
        assert refused.status_code == 400, params
        assert refused.json()["code"] in ("dicomweb_invalid_window", "dicomweb_invalid_viewport")


def test_metadata_names_bulk_data_and_bulkdata_serves_it(viewer_study: dict,
                                                         dicom_stack: DicomStack) -> None:
    client: DICOMwebClient = viewer_study["client"]
    study, px, sop = viewer_study["study"], viewer_study["px"], viewer_study["px_sop"]
    # (Read with plain requests: dicomweb-client sends "Host: 127.0.0.1" without the port,
    # and URLs in answers are built from the Host header, as behind a reverse proxy.)
    session: requests.Session = viewer_study["session"]
    [metadata] = session.get(f"{dicom_stack.base_url}/dicomweb/studies/{study}/series/{px}"
                             f"/instances/{sop}/metadata").json()
    pixel_uri = metadata["7FE00010"]["BulkDataURI"]
    icc_uri = metadata["00282000"]["BulkDataURI"]
    assert "InlineBinary" not in metadata["00282000"]
    assert pixel_uri.endswith(f"/instances/{sop}/bulkdata/7FE00010")
    original = parse(viewer_study["files"][3])
    assert client.retrieve_bulkdata(pixel_uri) == [original.PixelData]
    assert client.retrieve_bulkdata(icc_uri) == [ICC_PROFILE]
    plain = viewer_study["session"].get(icc_uri, headers={"Accept": "application/octet-stream"})
    assert plain.status_code == 200 and plain.content == ICC_PROFILE
    series_metadata = client.retrieve_series_metadata(study, viewer_study["ct"])
    assert all("BulkDataURI" in m["7FE00010"] for m in series_metadata)

    for missing in ("00100010", "7FE00011", "00282000/0/00100010", "zz"):
        answer = session.get(pixel_uri.replace("7FE00010", missing))
        assert answer.status_code == 404, missing
        assert answer.json()["code"] == "bulkdata_not_found"
    billing = requests.get(pixel_uri, headers=dicom_stack.headers(viewer_study["clinic"],
                                                                  "billing"), timeout=10)
    assert billing.status_code == 403
    stranger = requests.get(pixel_uri, headers=dicom_stack.headers("clinic-elsewhere"),
                            timeout=10)
    assert stranger.status_code == 404
