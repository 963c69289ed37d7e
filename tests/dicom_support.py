"""Helpers for the DICOM integration tests: the wiring, the stack handle, DICOM builders.

Until the lead wires them into ``Services``/``create_app``, this does the same wiring here:
``ReconciliationCommands`` mixed into the imaging application, the DICOM index projection
and the DICOM rendering worker under the supervisor, the DICOMweb and reconciliation routers
on the app. Once the lead has wired them, each step here finds them present and does nothing.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pydicom
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.utils import get_topic
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from api.app import create_app
from api.services import Services
from conftest import token_for, wait_until
from domain.image import Image
from domain.patient import ConsentScope
from domain.values import Actor
from projections.dicom_index import DicomIndexProjection
from projections.gallery import GalleryProjection
from projections.search import SearchProjection
from workers import cbct_assembly, dicom_derivatives

DICOM_JOBS = ("gallery_v1", DicomIndexProjection.name, dicom_derivatives.NAME,
              "capture_sessions_v1",  # the worklist reads the capture sessions
              cbct_assembly.NAME,
              SearchProjection.name)  # read-your-writes waits for the gallery and search


def build_dicom_services(settings: Any) -> Services:
    return Services.build(settings)


def dicom_app(settings: Any, services: Services) -> FastAPI:
    return create_app(settings, services)


@dataclass
class DicomStack:
    settings: Any
    services: Services
    client: TestClient
    base_url: str

    def actor(self, clinic: str, role: str = "clinic_admin") -> Actor:
        return Actor(user_id=f"user-{role}", role=role, clinic_id=clinic)

    def headers(self, clinic: str, role: str = "clinic_admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(self.settings, role, clinic)}"}

    def register(self, clinic: str, *, external_id: str | None = None, given: str = "Ada",
                 family: str = "Lovelace", birth: date = date(2012, 4, 1),
                 consent: bool = True) -> uuid.UUID:
        actor = self.actor(clinic)
        written = self.services.app.register_patient(
            actor, external_id=external_id or f"EXT-{uuid.uuid4().hex[:8]}",
            given_name=given, family_name=family, birth_date=birth, sex="female")
        self.wait_index(written.position)
        if consent:
            self.services.app.grant_consent(actor, written.id, ConsentScope.CLINICAL_PHOTOGRAPHY)
        return written.id

    def wait_index(self, position: int) -> None:
        self.services.dicom_index.wait(  # type: ignore[attr-defined]
            self.services.app.name, position, timeout=30)

    def wait_all(self) -> None:
        """The index and the gallery have applied everything of theirs written so far.

        A projection tracks only the events of its topics, so each waits for its own last one.
        """
        for view, topics in ((self.services.dicom_index, DicomIndexProjection.topics),
                             (self.services.gallery, GalleryProjection.topics)):
            mine = self.services.app.recorder.select_notifications(
                start=None, limit=10_000_000, topics=list(topics))
            if mine:
                view.wait(self.services.app.name, mine[-1].id, timeout=30)

    def wait_for_renders(self) -> None:
        """The DICOM render worker has handled every capture so far. It decodes in a child
        process, so its preview can land well after the filing: a test comparing the log
        head before and after a later call must not count that write."""
        app = self.services.app
        tracking = PostgresTrackingRecorder(
            datastore=app.recorder.datastore,
            tracking_table_name=f"{dicom_derivatives.NAME}_tracking")
        captured = app.recorder.select_notifications(
            start=None, limit=10_000_000, topics=[get_topic(Image.Captured)])
        if captured:
            wait_until(lambda: (tracking.max_tracking_id(app.name) or 0) >= captured[-1].id)


# ---- building DICOM objects --------------------------------------------------------------


def dicom_bytes(
    pixels: np.ndarray | None = None, *, modality: str = "PX", patient_id: str = "P1",
    patient_name: str = "Lovelace^Ada", birth_date: str = "20120401",
    study_uid: str | None = None, series_uid: str | None = None, sop_uid: str | None = None,
    sop_class: str = "1.2.840.10008.5.1.4.1.1.1.1", **attrs: Any,
) -> bytes:
    """A small, valid, uncompressed DICOM object (a panoramic by default)."""
    if pixels is None:
        y, x = np.mgrid[0:64, 0:96]
        pixels = ((x * 40 + y * 16) % 4096).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = birth_date
    ds.StudyDate = "20240105"
    ds.StudyDescription = "Ortho records"
    photometric = "RGB" if pixels.ndim == 3 else "MONOCHROME2"
    bits = 8 if pixels.dtype == np.uint8 else 12
    ds.set_pixel_data(pixels, photometric, bits, generate_instance_uid=False)
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def parse(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))
