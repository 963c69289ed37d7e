"""Simulation worker: the heavy kinds (outcome previews, set-up analyses) off the request.

Follows ``Simulation.Requested`` and ``Simulation.Revised``. Idempotent: the aggregate says
whether the current revision is still pending, so a replayed event after a crash records
nothing twice (blob names are fixed per simulation, a redone pass overwrites them). Input
the worker cannot use is recorded as ``Simulation.Failed`` with a stable code; the runner
never stops on one bad simulation.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import structlog
from eventsourcing.persistence import IntegrityError, Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.utils import get_topic

from adapters import schema_lock
from adapters.blob_store import BlobCorrupted, EncryptedBlobStore
from adapters.simulation_render import (
    SetupFiles,
    analyse_setup_files,
    outcome_preview,
    soft_tissue_control_points,
)
from domain.errors import Conflict, Gone, OrthovaultError
from domain.image import Image
from domain.imaging import Imaging
from domain.photo_warp import Similarity
from domain.simulation import Simulation, SimulationKind, SimulationStatus
from domain.values import Actor, BlobRef
from workers.runner import WorkerRunner

log = structlog.get_logger("orthovault.workers")

NAME = "simulation_worker_v1"
TOPICS = (get_topic(Simulation.Requested), get_topic(Simulation.Revised),
          get_topic(Image.Destroyed))
WITHDRAWN_REASON = "source_image_destroyed"
WORKER_ID = "system:simulations"
ATTEMPTS = 3


def failure_code(error: Exception) -> str:
    if isinstance(error, OrthovaultError):
        return error.code
    if isinstance(error, BlobCorrupted | OSError):
        return "blob_unreadable"
    return "simulation_error"


class SimulationWorker:
    def __init__(self, app: Imaging, blobs: EncryptedBlobStore, tracking: TrackingRecorder):
        self.app = app
        self.blobs = blobs
        self.tracking = tracking

    def __call__(self, event: Any, tracking: Tracking) -> None:
        if isinstance(event, Simulation.Requested | Simulation.Revised):
            self._process(event.originator_id)
        elif isinstance(event, Image.Destroyed):
            self._withdraw_previews_of(event.originator_id, event.clinic_id,
                                       tracking.notification_id)
        self.tracking.insert_tracking(tracking)

    def _withdraw_previews_of(self, photo_id: UUID, clinic_id: str, position: int) -> None:
        """A destroyed photo takes the pictures made from it along: their blobs are
        deleted and the withdrawal recorded (the numbers of the result stay)."""
        actor = Actor(user_id=WORKER_ID, role="system", clinic_id=clinic_id)
        for simulation_id in self.app.previews_of_photo(photo_id, position):
            self.blobs.delete_subject(simulation_id)  # idempotent: a replay deletes nothing
            for _attempt in range(ATTEMPTS):
                try:
                    self.app.withdraw_simulation_outputs(actor, simulation_id,
                                                         WITHDRAWN_REASON)
                except IntegrityError:
                    continue
                except Gone:
                    pass
                break

    def _process(self, simulation_id: UUID) -> None:
        for _attempt in range(ATTEMPTS):
            try:
                simulation: Simulation = self.app.repository.get(simulation_id)
            except Gone:
                return  # the patient was destroyed meanwhile
            kind = SimulationKind(simulation.kind)
            if simulation.status != SimulationStatus.PENDING.value or not kind.runs_in_worker:
                return
            actor = Actor(user_id=WORKER_ID, role="system", clinic_id=simulation.clinic_id)
            revision = simulation.revision
            try:
                result, outputs = self._compute(simulation, kind)
            except Exception as error:
                # A destroyed photo (Gone) is a failure of this run, like unreadable input.
                code = "source_destroyed" if isinstance(error, Gone) else failure_code(error)
                message = error.message if isinstance(error, OrthovaultError) else code
                log.warning("simulation_failed", simulation_id=str(simulation.id), code=code,
                            error=type(error).__name__)
                try:
                    self.app.record_simulation_failure(actor, simulation.id, revision, code,
                                                       message)
                except IntegrityError:
                    continue
                except (Gone, Conflict):
                    return  # destroyed or superseded meanwhile: nothing left to record
                return
            try:
                self.app.record_simulation_result(actor, simulation.id, revision, result,
                                                  outputs)
            except IntegrityError:
                continue  # revised or settled meanwhile: look again
            except (Gone, Conflict):
                return
            return

    def _compute(self, simulation: Simulation, kind: SimulationKind
                 ) -> tuple[dict[str, Any], dict[str, BlobRef]]:
        if kind is SimulationKind.OUTCOME_PREVIEW:
            return self._outcome_preview(simulation)
        return self._setup(simulation)

    def _store(self, simulation: Simulation, name: str, data: bytes, media_type: str
               ) -> BlobRef:
        return self.blobs.put_bytes(simulation.id, f"r{simulation.revision}/{name}", data,
                                    media_type, owner_id=simulation.patient_id)

    def _outcome_preview(self, simulation: Simulation
                         ) -> tuple[dict[str, Any], dict[str, BlobRef]]:
        p = simulation.parameters
        photo: Image = self.app.repository.get(UUID(p["photo_image_id"]))
        # The displacement recorded for the source revision named at request time: a later
        # revision of the plan does not change a preview already asked for.
        runs = {r["revision"]: r
                for r in self.app.recorded_runs(UUID(p["source_simulation_id"]))}
        source = runs.get(int(p["source_revision"]))
        if source is None or source.get("status") != "completed":
            raise Conflict("simulation_not_ready", "the source simulation has no result")
        registration = Similarity(
            scale=p["registration"]["scale"], rotation_deg=p["registration"]["rotation_deg"],
            translation=tuple(p["registration"]["translation"]),
            rms_residual=p["registration"]["rms_residual"],
        )
        points = soft_tissue_control_points(source["parameters"]["landmarks"],
                                            source["result"]["shifts"], registration)
        warped, comparison, summary = outcome_preview(
            self.blobs.read(photo.id, photo.original), photo.width, points)
        outputs = {
            "preview.jpg": self._store(simulation, "preview.jpg", warped, "image/jpeg"),
            "comparison.jpg": self._store(simulation, "comparison.jpg", comparison,
                                          "image/jpeg"),
        }
        summary["registration_rms_px"] = registration.rms_residual
        return summary, outputs

    def _setup(self, simulation: Simulation) -> tuple[dict[str, Any], dict[str, BlobRef]]:
        p = simulation.parameters
        stages: dict[int, dict[str, tuple[bytes, str]]] = {}
        scans: dict[str, tuple[bytes, str]] = {}
        for entry in p["files"]:
            if "image_id" in entry:  # a scan from the gallery (Gone if destroyed since)
                image: Image = self.app.repository.get(UUID(entry["image_id"]))
                data = self.blobs.read(image.id, image.original)
            else:  # imported with the set-up, sealed under the simulation
                data = self.blobs.read(simulation.id, simulation.inputs[entry["input"]])
            if entry["stage"] is None:
                scans[entry["arch"]] = (data, entry["filename"])
            else:
                stages.setdefault(int(entry["stage"]), {})[entry["arch"]] = (
                    data, entry["filename"])
        result, rendered = analyse_setup_files(SetupFiles(stages, scans),
                                               float(p["step_limit_mm"]))
        outputs = {name: self._store(simulation, name, data, media)
                   for name, (data, media) in rendered.items()}
        return result, outputs


def runner(app: Imaging, blobs: EncryptedBlobStore) -> WorkerRunner:
    """The supervised job: this worker on the process's shared application and its pool."""
    tracking = PostgresTrackingRecorder(datastore=app.recorder.datastore,
                                        tracking_table_name=f"{NAME}_tracking")
    schema_lock.create_tables(tracking)
    return WorkerRunner(app, tracking, SimulationWorker(app, blobs, tracking), TOPICS)
