"""Wires leases around the background jobs, so any number of processes may run them.

* Each projection is one unit of the ``projections`` group: one process applies it at a
  time; with several ``orthovault projections`` processes the projections are spread over
  them and a survivor takes over the units of one that dies.
* Each pixel worker (``derivatives_v1``, ``dicom_derivatives_v1``, ``tiles_v1``) is split into
  ``ORTHOVAULT_WORKER_SHARDS`` shards by image id, each a unit of the worker's group with
  its own tracking row: N ``orthovault worker`` processes share the shards, so adding a
  process adds throughput, and an image is handled by exactly one shard.

Embedded mode runs the same code: the one process is the only member and holds every unit.
See ``workers/leases.py`` for the lease mechanics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eventsourcing.postgres import PostgresTrackingRecorder

from workers import (
    booking_consumer,
    crm_patients_consumer,
    derivatives,
    dicom_derivatives,
    kafka_relay,
    milestone_consumer,
    tiles,
)
from workers.leases import LeaseBoard, LeasedRunner, ShardFilter, ShardTracking, shard_unit
from workers.runner import WorkerRunner
from workers.supervisor import Runner

if TYPE_CHECKING:
    from api.services import Services

PROJECTIONS_GROUP = "projections"
# Worker module -> its worker class (constructor (app, blobs, tracking), called per event).
SHARDED_WORKERS: dict[str, tuple[Any, type[Any]]] = {
    derivatives.NAME: (derivatives, derivatives.DerivativesWorker),
    dicom_derivatives.NAME: (dicom_derivatives, dicom_derivatives.DicomDerivativesWorker),
    tiles.NAME: (tiles, tiles.TilesWorker),
}


# Jobs that coordinate their processes themselves: the relay has its leader lock, Kafka
# consumers their consumer group. Every other job follows the event log and is leased.
SELF_COORDINATED = frozenset({kafka_relay.NAME, booking_consumer.NAME,
                              crm_patients_consumer.NAME, milestone_consumer.NAME})
# What `orthovault consumers` runs: the suite's topics, each in its Kafka consumer group.
CONSUMERS = (booking_consumer.NAME, crm_patients_consumer.NAME, milestone_consumer.NAME)


def lease_jobs(services: Services) -> LeaseBoard:
    """Replaces the supervisor's log-following jobs by their leased forms: projections share
    one group, pixel workers are sharded, any other log follower runs in one process."""
    from api.services import PROJECTIONS

    board = LeaseBoard(services.gallery.datastore.pool.kwargs)
    projections = {projection.name for projection, _view in PROJECTIONS}
    for name, job in services.supervisor.jobs.items():
        if name in SELF_COORDINATED:
            continue
        if name in SHARDED_WORKERS:
            job.start = _sharded_worker(services, board, name, services.settings.worker_shards)
        else:
            job.start = _leased(board, PROJECTIONS_GROUP if name in projections else name,
                                name, job.start)
    return board


def _leased(board: LeaseBoard, group: str, name: str,
            start: Callable[[], Runner]) -> Callable[[], Runner]:
    return lambda: LeasedRunner(board, group, {name: start})


def _sharded_worker(services: Services, board: LeaseBoard, name: str,
                    shards: int) -> Callable[[], Runner]:
    from api.services import tracking_recorder

    module, worker_class = SHARDED_WORKERS[name]

    def start() -> LeasedRunner:
        # One tracking table (and pool) for all shards of the worker; a row per shard.
        recorder = tracking_recorder(services.env, name, PostgresTrackingRecorder)

        def unit(shard: int) -> Callable[[], Runner]:
            def build() -> WorkerRunner:
                tracking = ShardTracking(recorder, shard, shards)
                worker = worker_class(services.app, services.blobs, tracking)
                return WorkerRunner(services.app, tracking,  # type: ignore[arg-type]
                                    ShardFilter(worker, tracking), module.TOPICS,
                                    owns_tracking=False)
            return build

        units = {shard_unit(name, shard, shards): unit(shard) for shard in range(shards)}
        return LeasedRunner(board, name, units, on_exit=recorder.datastore.close)

    return start
