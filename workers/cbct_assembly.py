"""CBCT assembly: a classic CT series (one object per slice) becomes one volume image.

Two halves in one job:

* **Following the log.** Every DICOM CT slice filed (``Image.MetadataExtracted`` with source
  ``dicom``, modality CT, one frame) is added to its series' row in this worker's own table,
  in the same transaction as the tracking record: exactly once, resumable after a crash.
* **Sweeping.** DICOM has no "series complete" message, so completeness is inferred, as
  PACS do: a series that announces its size (Images in Acquisition) is complete when that
  many slices are here; any other series once no slice has arrived for
  ``stable_seconds`` (Orthanc calls this a stable series). A series that announced more
  slices than arrived is given ``INCOMPLETE_GRACE`` times longer before it is recorded as
  ``cbct_missing_slices``. A sweeper claims a row with a conditional UPDATE, so several
  workers (distributed mode) never assemble one series twice; the volume's id is derived
  from the series, so even a lost claim records the volume once.

Assembly reads the slices' sealed originals, builds the volume (``adapters/cbct_volume``:
ordered by position along the slice normal, gaps refused), renders the axial, coronal and
sagittal middle slices, coronal and sagittal maximum-intensity projections, and a preview and
thumbnail from the middle axial slice, and records all of it with the volume image in one
commit (``domain/cbct.py``). Blobs are written before the commit and removed if it fails.
"""

from __future__ import annotations

import io
import json
import secrets
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import numpy as np
import structlog
from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.utils import get_topic
from PIL import Image as PILImage
from psycopg.sql import SQL, Identifier

from adapters import cbct_volume
from adapters.blob_store import EncryptedBlobStore
from adapters.cbct_volume import Plane, Volume
from adapters.image_codec import derivatives_from
from domain.cbct import VOLUME_MEDIA_TYPE, NewVolume, volume_id_for
from domain.errors import Gone, OrthovaultError
from domain.image import Image, ImageStatus
from domain.imaging import Imaging
from domain.reconciliation import DICOM_SOURCE
from domain.values import Actor, BlobRef
from workers.runner import WorkerRunner

log = structlog.get_logger("orthovault.cbct_assembly")

NAME = "cbct_assembly_v1"
TOPICS = (get_topic(Image.MetadataExtracted),)
WORKER = "system:cbct-assembly"
# Fewer single-frame CT images than this are a scout or a few reference shots, not a volume.
MIN_SLICES = 8
INCOMPLETE_GRACE = 10
CLAIM_EXPIRY_SECONDS = 600  # a sweeper that died mid-assembly: its claim lapses


@dataclass(frozen=True)
class PendingSeries:
    clinic_id: str
    series_uid: str
    study_uid: str | None
    image_ids: list[UUID]
    declared: int | None
    enhanced: bool  # one multi-frame (enhanced) CT object: a volume by itself


class CbctSeriesView(PostgresTrackingRecorder):
    """The series this worker has seen, with their slices, until each becomes a volume."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any):
        super().__init__(datastore, **kwargs)
        prefix = self.tracking_table_name.removesuffix("_tracking")
        self.series = SQL("{}.{}").format(Identifier(self.datastore.schema),
                                          Identifier(f"{prefix}_series"))
        self.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {} (clinic_id text NOT NULL, series_uid text NOT NULL,"
            " study_uid text, image_ids uuid[] NOT NULL DEFAULT '{{}}', declared int,"
            " last_arrival timestamptz NOT NULL, claimed_at timestamptz, volume_id uuid,"
            " outcome text, enhanced boolean NOT NULL DEFAULT false,"
            " PRIMARY KEY (clinic_id, series_uid))").format(self.series))

    def add_slice(self, tracking: Tracking, clinic_id: str, series_uid: str,
                  study_uid: str | None, image_id: UUID, declared: int | None,
                  enhanced: bool) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL(
                "INSERT INTO {0} AS s (clinic_id, series_uid, study_uid, image_ids, declared,"
                " last_arrival, enhanced) VALUES (%(clinic)s, %(series)s, %(study)s,"
                " ARRAY[%(image)s], %(declared)s, now(), %(enhanced)s)"
                " ON CONFLICT (clinic_id, series_uid) DO UPDATE SET"
                " image_ids = s.image_ids || %(image)s, last_arrival = now(),"
                " declared = coalesce(s.declared, %(declared)s),"
                " enhanced = s.enhanced OR %(enhanced)s").format(self.series),
                {"clinic": clinic_id, "series": series_uid, "study": study_uid,
                 "image": image_id, "declared": declared, "enhanced": enhanced})
            self._insert_tracking(curs, tracking)

    def claim_ready(self, stable_seconds: float) -> list[PendingSeries]:
        """Series now complete (or given up on), claimed for this sweeper."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL(
                "UPDATE {} SET claimed_at = now() WHERE volume_id IS NULL AND outcome IS NULL"
                " AND (cardinality(image_ids) >= %(min)s OR enhanced)"
                " AND (claimed_at IS NULL OR claimed_at < now() - %(expiry)s)"
                " AND ((enhanced AND cardinality(image_ids) = 1)"
                "   OR (declared IS NOT NULL AND cardinality(image_ids) >= declared)"
                "   OR (declared IS NULL AND last_arrival < now() - %(stable)s)"
                "   OR last_arrival < now() - %(grace)s)"
                " RETURNING clinic_id, series_uid, study_uid, image_ids, declared, enhanced"
            ).format(self.series), {
                "min": MIN_SLICES, "expiry": timedelta(seconds=CLAIM_EXPIRY_SECONDS),
                "stable": timedelta(seconds=stable_seconds),
                "grace": timedelta(seconds=stable_seconds * INCOMPLETE_GRACE),
            })
            return [PendingSeries(**row) for row in curs.fetchall()]

    def finish(self, series: PendingSeries, volume_id: UUID | None, outcome: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("UPDATE {} SET volume_id = %s, outcome = %s"
                             " WHERE clinic_id = %s AND series_uid = %s").format(self.series),
                         (volume_id, outcome, series.clinic_id, series.series_uid))


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(pixels)).save(out, "PNG", optimize=True)
    return out.getvalue()


def render_views(volume: Volume) -> dict[str, tuple[bytes, str]]:
    """Every preview a volume carries: (bytes, media type) by name."""
    axial = cbct_volume.slice_image(volume, Plane.AXIAL,
                                    cbct_volume.middle_index(volume, Plane.AXIAL))
    views = {name: (data, "image/jpeg")
             for name, data in derivatives_from(PILImage.fromarray(axial)).items()}
    views["axial"] = (_png(axial), "image/png")
    for plane in (Plane.CORONAL, Plane.SAGITTAL):
        middle = cbct_volume.middle_index(volume, plane)
        views[plane.value] = (_png(cbct_volume.slice_image(volume, plane, middle)), "image/png")
        views[f"mip_{plane.value}"] = (_png(cbct_volume.mip_image(volume, plane)), "image/png")
    return views


def _manifest(series: PendingSeries, slices: list[Image]) -> bytes:
    return json.dumps({
        "study_instance_uid": series.study_uid,
        "series_instance_uid": series.series_uid,
        "slices": [{"image_id": str(s.id), "sha256": s.original.sha256,
                    "sop_instance_uid": s.metadata.get(DICOM_SOURCE, {}).get("sop_instance_uid")}
                   for s in slices],
    }, sort_keys=True).encode()


class CbctAssembler:
    def __init__(self, app: Imaging, blobs: EncryptedBlobStore, view: CbctSeriesView,
                 stable_seconds: float, max_voxels: int = cbct_volume.DEFAULT_MAX_VOXELS):
        self.app = app
        self.blobs = blobs
        self.view = view
        self.stable_seconds = stable_seconds
        self.max_voxels = max_voxels

    # ---- following the log ---------------------------------------------------------------

    def __call__(self, event: Any, tracking: Tracking) -> None:
        slice_of = self._series_of(event)
        if slice_of is None:
            self.view.insert_tracking(tracking)
            return
        clinic_id, series_uid, study_uid, declared, enhanced = slice_of
        self.view.add_slice(tracking, clinic_id, series_uid, study_uid, event.originator_id,
                            declared, enhanced)

    def _series_of(self, event: Any) -> tuple[str, str, str | None, int | None, bool] | None:
        if not isinstance(event, Image.MetadataExtracted) or event.source != DICOM_SOURCE:
            return None
        m = event.metadata
        if str(m.get("modality") or "").upper() != "CT":
            return None
        enhanced = int(m.get("number_of_frames") or 1) > 1
        series_uid = m.get("series_instance_uid")
        if not series_uid:
            return None
        try:
            clinic_id = self.app.repository.get(event.originator_id).clinic_id
        except Gone:
            return None
        declared = m.get("images_in_acquisition")
        return (clinic_id, str(series_uid), m.get("study_instance_uid"),
                int(declared) if declared and not enhanced else None, enhanced)

    # ---- sweeping ----------------------------------------------------------------------------

    def sweep(self) -> int:
        """Assemble every series that is ready; the number recorded."""
        done = 0
        for series in self.view.claim_ready(self.stable_seconds):
            try:
                outcome, volume_id = self.assemble(series)
            except Exception as error:  # the claim lapses and a later sweep retries
                log.error("cbct_assembly_error", error=type(error).__name__,
                          series_count=len(series.image_ids))
                continue
            self.view.finish(series, volume_id, outcome)
            done += volume_id is not None
        return done

    def _slices(self, series: PendingSeries) -> list[Image]:
        slices = []
        for image_id in dict.fromkeys(series.image_ids):
            try:
                image = self.app.repository.get(image_id)
            except Gone:
                continue
            if image.status == ImageStatus.ACTIVE.value:
                slices.append(image)
        return slices

    def assemble(self, series: PendingSeries) -> tuple[str, UUID | None]:
        volume_id = volume_id_for(series.clinic_id, series.series_uid)
        if self.app.exists(volume_id):
            return "recorded", volume_id
        slices = self._slices(series)
        patients = {s.patient_id for s in slices}
        if (len(slices) < MIN_SLICES and not series.enhanced) or len(patients) != 1:
            # Deleted meanwhile, or filed to different patients: no one volume to show.
            log.warning("cbct_series_skipped", slices=len(slices), patients=len(patients))
            return "skipped", None
        volume: Volume | None = None
        failure: str | None = None
        try:
            volume = cbct_volume.assemble_volume(
                [self.blobs.read(s.id, s.original) for s in slices], max_voxels=self.max_voxels)
        except OrthovaultError as error:
            failure = error.code
        except Exception as error:  # a decoder's own exception: this series, not transient
            log.warning("cbct_decode_failed", error=type(error).__name__)
            failure = cbct_volume.UNREADABLE
        if volume is not None and series.declared and volume.info.slices < series.declared:
            volume, failure = None, cbct_volume.MISSING_SLICES  # the tail never came
        return self._record(series, volume_id, slices, volume, failure), volume_id

    def _record(self, series: PendingSeries, volume_id: UUID, slices: list[Image],
                volume: Volume | None, failure: str | None) -> str:
        patient_id = slices[0].patient_id
        written: list[BlobRef] = []

        def put(name: str, data: bytes, media_type: str) -> BlobRef:
            ref = self.blobs.put_bytes(volume_id, name, data, media_type, owner_id=patient_id)
            written.append(ref)
            return ref

        try:
            manifest = put(f"original-{secrets.token_hex(4)}", _manifest(series, slices),
                           VOLUME_MEDIA_TYPE)
            derivatives = None
            metadata: dict[str, Any] = {"study_instance_uid": series.study_uid,
                                        "series_instance_uid": series.series_uid,
                                        "slice_count": len(slices), "modality": "CT",
                                        "object_count": len(slices),
                                        "enhanced": series.enhanced}
            width, height = slices[0].width, slices[0].height
            if volume is not None:
                derivatives = {
                    name: put(f"{name}.{'png' if media == 'image/png' else 'jpg'}", data, media)
                    for name, (data, media) in render_views(volume).items()
                }
                metadata.update(volume.info.as_dict())
                metadata["slice_count"] = volume.info.slices  # frames of an enhanced object
                metadata["window"] = list(volume.window) if volume.window else None
                width, height = volume.info.columns, volume.info.rows
            description = slices[0].metadata.get(DICOM_SOURCE, {}).get("series_description")
            new = NewVolume(
                volume_id=volume_id, patient_id=patient_id, manifest=manifest, width=width,
                height=height, captured_at=min(s.captured_at for s in slices),
                filename=(description or f"CBCT, {len(slices)} slices")[:255],
                slice_ids=[s.id for s in slices], metadata=metadata, derivatives=derivatives,
                failure=failure,
            )
            actor = Actor(user_id=WORKER, role="system", clinic_id=series.clinic_id)
            self.app.record_cbct_volume(actor, new)
        except IntegrityError:
            self._discard(written)  # another sweeper recorded this volume first
            return "recorded"
        except BaseException:
            self._discard(written)
            raise
        log.info("cbct_volume_recorded", slices=len(slices), failure=failure)
        return failure or "assembled"

    def _discard(self, refs: list[BlobRef]) -> None:
        for ref in refs:
            self.blobs.backend.delete_key(ref.key)


class CbctAssemblyRunner:
    """The log follower and the sweeper as one supervised job."""

    def __init__(self, app: Imaging, assembler: CbctAssembler, sweep_every: float = 1.0):
        self.assembler = assembler
        self.follower = WorkerRunner(app, assembler.view, assembler, TOPICS)
        self._sweep_every = sweep_every
        self._stopping = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep_loop, daemon=True,
                                         name="cbct-sweeper")

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(self._sweep_every):
            try:
                self.assembler.sweep()
            except Exception as error:  # the database away for a moment: next round
                log.warning("cbct_sweep_failed", error=type(error).__name__)

    def __enter__(self) -> CbctAssemblyRunner:
        self.follower.__enter__()
        self._sweeper.start()
        return self

    def run_forever(self, timeout: float | None = None) -> None:
        self.follower.run_forever(timeout)

    def stop(self) -> None:
        self._stopping.set()
        self.follower.stop()

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._sweeper.join(timeout=60)
        self.follower.__exit__(*exc)
