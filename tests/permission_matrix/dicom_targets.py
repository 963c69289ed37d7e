"""Targets for the DICOM area's matrix entries: a chart whose header a DICOM object matches,
a photo study (visible to every view grade), a CBCT volume, an intraoral scan and held
reconciliation items. Built as the clinic admin through the public routes, as a device would.
"""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from dicom_support import dicom_bytes
from pydicom.dataset import Dataset
from pydicom.uid import EnhancedCTImageStorage, generate_uid

from conftest import GRANT, REGISTER, graphql, wait_until
from domain.cbct import volume_id_for
from permission_matrix.spec import OK, Headers, Outcome, World, rest_outcome

TESTDATA = Path(os.environ.get("ORTHOVAULT_TESTDATA",
                               Path(__file__).resolve().parents[3] / "shared/testdata"))
SCAN_FILE = TESTDATA / "meshes/trimesh/20mm-xyz-cube.stl"
# What every object's header says, so that it matches the chart registered below.
FAMILY, GIVEN, BIRTH = "Lovelace", "Ada", "20120401"
BOUNDARY = "matrixb0undary"


@dataclass(frozen=True)
class Chart:
    patient_id: str
    external_id: str


@dataclass(frozen=True)
class Study:
    study: str
    series: str
    sop: str

    @property
    def url(self) -> str:
        return f"/dicomweb/studies/{self.study}"

    @property
    def series_url(self) -> str:
        return f"{self.url}/series/{self.series}"

    @property
    def instance_url(self) -> str:
        return f"{self.series_url}/instances/{self.sop}"


def chart(world: World) -> Chart:
    """A patient with a known PatientID and photography consent (XC objects are photos)."""
    def build(w: World) -> Chart:
        external = f"DCM-{uuid.uuid4().hex[:8]}"
        data = w.setup_gql(REGISTER, {"input": {
            "externalId": external, "givenName": GIVEN, "familyName": FAMILY,
            "birthDate": "2012-04-01", "sex": "female"}})
        patient_id = data["registerPatient"]["id"]
        w.setup_gql(GRANT, {"input": {"patientId": patient_id,
                                      "scope": "CLINICAL_PHOTOGRAPHY"}})
        return Chart(patient_id, external)

    return world.once("dicom-chart", build)


def matching(world: World, **fields: Any) -> bytes:
    """A small valid object (a panoramic unless ``modality`` says otherwise) for the chart."""
    return dicom_bytes(patient_id=chart(world).external_id, patient_name=f"{FAMILY}^{GIVEN}",
                       birth_date=BIRTH, **fields)


def stow(world: World, headers: Headers, *parts: bytes) -> Any:
    body = b"".join(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                    + part + b"\r\n" for part in parts) + b"--" + BOUNDARY.encode() + b"--\r\n"
    return world.client.post("/dicomweb/studies", content=body, headers={
        **headers,
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'})


def stow_outcome(response: Any) -> Outcome:
    """STOW-RS answers a refused instance inside the DICOM JSON body (409, Failed SOP
    Sequence); our stable code is in its private element (0009,1010)."""
    if response.status_code == 409:
        failed = response.json().get("00081198", {}).get("Value", [])
        codes = [item.get("00091010", {}).get("Value", ["no_code"])[0] for item in failed]
        return Outcome(codes[0] if codes else "no_code", 409)
    outcome = rest_outcome(response)
    if outcome.code == OK:
        assert "00081198" not in response.json(), response.text  # nothing refused silently
    return outcome


def _stored(world: World, data: bytes) -> Study:
    response = stow(world, world.admin, data)
    assert response.status_code == 200, response.text
    ds = pydicom.dcmread(io.BytesIO(data))
    return Study(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))


def photo_study(world: World) -> Study:
    """An XC photograph: the one kind of DICOM object the front desk's grade may see."""
    return world.once("dicom-photo", lambda w: _stored(w, matching(w, modality="XC")))


def radiograph_study(world: World) -> Study:
    return world.once("dicom-radiograph", lambda w: _stored(w, matching(w)))


# ---- 3D ---------------------------------------------------------------------------------

SLICES, ROWS, COLUMNS = 8, 16, 16


def enhanced_ct(world: World) -> tuple[str, bytes]:
    """One Enhanced CT object (a volume at once, no waiting for a series to settle)."""
    shared, orientation, measures = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing, measures.SliceThickness = [0.4, 0.4], 0.4
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    frames = []
    for k in range(SLICES):
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [0.0, 0.0, k * 0.4]
        item.PlanePositionSequence = [position]
        frames.append(item)
    voxels = (np.arange(SLICES * ROWS * COLUMNS).reshape(SLICES, ROWS, COLUMNS) % 2000
              ).astype(np.uint16)
    series = generate_uid()
    ds = pydicom.dcmread(io.BytesIO(matching(
        world, pixels=voxels[0], modality="CT", series_uid=series,
        sop_class=EnhancedCTImageStorage, SharedFunctionalGroupsSequence=[shared],
        PerFrameFunctionalGroupsSequence=frames)))
    ds.set_pixel_data(voxels, "MONOCHROME2", 12, generate_instance_uid=False)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return series, out.getvalue()


VOLUME = "query($id: ID!){ cbctVolume(imageId: $id){ views failure } }"


def volume_id(world: World) -> str:
    """A CBCT volume whose planes are built (the assembly worker runs in the app)."""
    def build(w: World) -> str:
        series, data = enhanced_ct(w)
        assert stow(w, w.admin, data).status_code == 200
        image_id = str(volume_id_for(w.clinic, series))

        def built() -> bool:
            answer = graphql(w.client, w.admin, VOLUME, {"id": image_id})
            node = (answer.get("data") or {}).get("cbctVolume")
            assert not (node and node["failure"]), node
            return bool(node and node["views"])

        wait_until(built, timeout=90)
        return image_id

    return world.once("dicom-volume", build)


def upload_scan(world: World, headers: Headers) -> Any:
    return world.client.post(
        f"/api/v1/patients/{chart(world).patient_id}/scans",
        files={"file": ("upper.stl", SCAN_FILE.read_bytes(), "application/octet-stream")},
        headers=headers)


def scan_id(world: World) -> str:
    """An intraoral scan whose binary glTF the worker has made."""
    def build(w: World) -> str:
        response = upload_scan(w, w.admin)
        assert response.status_code in (200, 201), response.text
        image_id = response.json()["id"]
        wait_until(lambda: w.client.get(f"/api/v1/images/{image_id}/model.glb",
                                        headers=w.admin).status_code == 200, timeout=60)
        return image_id

    return world.once("dicom-scan", build)


# ---- reconciliation ---------------------------------------------------------------------


def held_item(world: World) -> str:
    """A fresh radiograph held for review: sent for the chart, but the header's name differs.

    Uploaded to the chart over REST, so the item names the patient it was sent for (a STOW
    object that matches nobody is held without one and could not be resolved)."""
    data = dicom_bytes(patient_id=chart(world).external_id, patient_name="Byron^Ada",
                       birth_date=BIRTH)
    response = world.client.post(
        f"/api/v1/patients/{chart(world).patient_id}/images",
        files={"file": ("held.dcm", data, "application/dicom")}, headers=world.admin)
    assert response.status_code == 202, response.text
    return response.json()["reconciliationId"]


def shared_item(world: World) -> str:
    """An item the read-only operations look at (nobody files it)."""
    return world.once("dicom-held", held_item)
