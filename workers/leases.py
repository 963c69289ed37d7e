"""Scale-out by lease: several processes run the same jobs, each unit of work active in one.

A *unit* is a projection, or one shard of a worker (``derivatives_v1`` split by image id).
Every process that can run units of a *group* (``projections``, ``derivatives_v1``) joins
it, and a unit runs only in the process holding its lease. The leases are PostgreSQL session
advisory locks on one dedicated connection per process (:class:`LeaseBoard`):

* ``pg_advisory_lock_shared(group, 0)`` marks the process as a member of the group, so
  ``pg_locks`` tells how many live members there are;
* ``pg_try_advisory_lock(group, unit)`` is the lease of one unit.

Postgres drops a session's locks the moment its connection ends, and the kernel closes the
socket of a process that dies, even by SIGKILL: a crashed member's units are free at once
and a survivor takes them on its next tick. Nothing has to expire.

Balance: a member takes units while it holds fewer than its fair share (units of the group
divided by live members, rounded up) and gives back those beyond it, so a new member gets
work and a lost member's work is spread over the rest.

Exactly once still comes from the units themselves, not from the lease: a projection writes
its row and its tracking record in one transaction, a worker shard tracks its position in
its own row, and per-image work is idempotent by the image's state. The lease only keeps two
processes from doing the same work at the same time; during a hand-over (the old holder's
connection dropped while its thread was mid-event) a duplicate tracking write fails and the
loser restarts, which is the same outcome as any other conflict.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from uuid import UUID

import psycopg
import structlog
from eventsourcing.persistence import Tracking, TrackingRecorder

from workers.supervisor import Runner

log = structlog.get_logger("orthovault.leases")

MEMBER = 0  # the unit number that marks membership of a group (held shared)
MEMBERS_TTL = 0.4  # seconds a member count is reused (below the runners' poll interval)


def key32(text: str) -> int:
    """A stable, positive 32-bit advisory-lock key (``pg_locks`` shows it as an oid)."""
    value = int.from_bytes(hashlib.sha256(f"orthovault:{text}".encode()).digest()[:4], "big")
    return (value & 0x7FFFFFFF) or 1


class LeaseBoard:
    """One process's leases, on one connection of its own (thread-safe).

    Opened by the first runner that attaches and closed when the last detaches, so a
    process that runs no background jobs holds no extra connection.
    """

    def __init__(self, connect_kwargs: Mapping[str, Any], *, label: str = "orthovault"):
        self._kwargs = {k: v for k, v in connect_kwargs.items() if k != "row_factory"}
        self._label = f"{label}:{socket.gethostname()}:{os.getpid()}"[:63]
        self._mutex = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        self._users = 0
        self._joined: set[int] = set()
        self._held: dict[int, set[int]] = {}  # group key -> unit keys held
        self._units: dict[int, set[int]] = {}  # group key -> unit keys known in this process
        self._member_counts: dict[int, tuple[float, int]] = {}  # group key -> (when, count)

    # ---- life cycle --------------------------------------------------------------------

    def attach(self) -> None:
        with self._mutex:
            self._users += 1

    def detach(self) -> None:
        with self._mutex:
            self._users -= 1
            if self._users <= 0:
                self._users = 0
                self._disconnect()

    def register(self, group: str, units: Iterable[str]) -> None:
        with self._mutex:
            self._units.setdefault(key32(group), set()).update(key32(u) for u in units)

    # ---- leases ------------------------------------------------------------------------

    def try_take(self, group: str, unit: str) -> bool:
        g, u = key32(group), key32(unit)
        with self._mutex:
            try:
                conn = self._connection()
                if g not in self._joined:
                    conn.execute("SELECT pg_advisory_lock_shared(%s, %s)", (g, MEMBER))
                    self._joined.add(g)
                held = self._held.setdefault(g, set())
                if u in held:
                    return True
                if len(held) >= self._fair_share(conn, g):
                    return False
                row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (g, u)).fetchone()
            except psycopg.Error as error:
                self._lost(error)
                return False
            if row and row[0]:
                held.add(u)
                return True
            return False

    def holds(self, group: str, unit: str) -> bool:
        """Still ours, and within our fair share (the units beyond it are given back)?"""
        g, u = key32(group), key32(unit)
        with self._mutex:
            held = self._held.get(g, set())
            if u not in held or self._conn is None:
                return False
            try:
                share = self._fair_share(self._conn, g)
            except psycopg.Error as error:
                self._lost(error)
                return False
            return sorted(held).index(u) < share

    def release(self, group: str, unit: str) -> None:
        g, u = key32(group), key32(unit)
        with self._mutex:
            held = self._held.get(g, set())
            if u not in held:
                return
            held.discard(u)
            if self._conn is not None:
                try:
                    self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", (g, u))
                except psycopg.Error as error:
                    self._lost(error)

    def members(self, group: str) -> int:
        with self._mutex:
            return self._members(self._connection(), key32(group))

    # ---- internals ---------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._joined.clear()
            self._held.clear()
            self._conn = psycopg.connect(**self._kwargs, autocommit=True,
                                         application_name=self._label)
        return self._conn

    def _members(self, conn: psycopg.Connection[Any], g: int) -> int:
        row = conn.execute(
            "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND granted AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database()) AND classid::bigint = %s "
            "AND objid::bigint = %s AND objsubid = 2", (g, MEMBER),
        ).fetchone()
        return max(1, int(row[0]) if row else 1)

    def _fair_share(self, conn: psycopg.Connection[Any], g: int) -> int:
        # Every unit asks on every tick: count the members at most once per interval.
        now = time.monotonic()
        seen = self._member_counts.get(g)
        if seen is None or now - seen[0] > MEMBERS_TTL:
            seen = (now, self._members(conn, g))
            self._member_counts[g] = seen
        units = len(self._units.get(g, ())) or 1
        return math.ceil(units / seen[1])

    def _lost(self, error: BaseException) -> None:
        log.warning("lease_connection_lost", error=type(error).__name__)
        self._disconnect()

    def _disconnect(self) -> None:
        """Closing the session drops every lock it held: nothing can be left behind."""
        self._joined.clear()
        self._held.clear()
        self._member_counts.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


# Units start one at a time in a process: starting creates tables, and concurrent DDL on the
# same objects fails ("tuple concurrently updated").
_START_LOCK = threading.Lock()


class LeasedRunner:
    """A Supervisor job running each of its units only while this process holds its lease.

    ``units`` maps a unit name to a factory of its runner (``workers.runner.WorkerRunner``
    shape). A factory is called only after the lease is taken, so the runner reads its
    tracking position after any previous holder has stopped writing it.
    """

    def __init__(self, board: LeaseBoard, group: str,
                 units: Mapping[str, Callable[[], Runner]], *, poll: float = 0.5,
                 on_exit: Callable[[], None] | None = None):
        self.board = board
        self.group = group
        self.units = dict(units)
        self.poll = poll
        self._on_exit = on_exit
        self._running: dict[str, Runner] = {}
        self._stopping_units: dict[str, Runner] = {}  # dropped, thread not ended yet
        self._stopping = threading.Event()

    @property
    def active(self) -> list[str]:
        return sorted(self._running)

    @property
    def tracking(self) -> Any:
        """The position of an active unit (for the lag metric); None while on standby."""
        for runner in list(self._running.values()):
            return getattr(runner, "tracking", None)
        return None

    def __enter__(self) -> LeasedRunner:
        self.board.attach()
        self.board.register(self.group, self.units)
        return self

    def run_forever(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopping.is_set():
            self._tick()
            wait = self.poll if deadline is None else min(self.poll,
                                                          deadline - time.monotonic())
            if self._stopping.wait(max(0.0, wait)) or (
                    deadline is not None and time.monotonic() >= deadline):
                return

    def _tick(self) -> None:
        for name, start in self.units.items():
            runner = self._running.get(name)
            if runner is not None:
                if not self.board.holds(self.group, name):
                    log.info("lease_given_back", group=self.group, unit=name)
                    self._drop(name)
                    continue
                runner.run_forever(timeout=0)  # re-raises the unit's failure
            elif self._draining(name):
                continue  # its previous runner is still finishing an event: never two at once
            elif self.board.try_take(self.group, name):
                try:
                    with _START_LOCK:
                        runner = start()
                        runner.__enter__()
                except BaseException:
                    self.board.release(self.group, name)
                    raise
                self._running[name] = runner
                log.info("lease_taken", group=self.group, unit=name)

    def _drop(self, name: str) -> None:
        runner = self._running.pop(name)
        try:
            runner.stop()
            runner.__exit__(None, None, None)
        finally:
            self.board.release(self.group, name)
            if not getattr(runner, "finished", True):
                # A handler blocked on a lost database outlives stop() (and __exit__'s join):
                # a new runner now would apply its event a second time, concurrently.
                self._stopping_units[name] = runner

    def _draining(self, name: str) -> bool:
        previous = self._stopping_units.get(name)
        if previous is not None and not getattr(previous, "finished", True):
            return True
        self._stopping_units.pop(name, None)
        return False

    def stop(self) -> None:
        self._stopping.set()
        for runner in list(self._running.values()):
            with contextlib.suppress(Exception):
                runner.stop()

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        for name in list(self._running):
            with contextlib.suppress(Exception):
                self._drop(name)
        self.board.detach()
        if self._on_exit is not None:
            self._on_exit()


def shard_of(aggregate_id: Any, shards: int) -> int:
    """The shard of an aggregate: its UUID modulo the shard count (uuid4 bits are random)."""
    return UUID(str(aggregate_id)).int % shards


def shard_unit(name: str, shard: int, shards: int) -> str:
    return name if shards == 1 else f"{name}#{shard}/{shards}"


class ShardTracking:
    """A worker shard's own position, as a row of the worker's tracking table.

    The application name ``Imaging`` becomes ``Imaging#2/4``; with one shard it is left as
    it is, so a single worker keeps the position it always had.
    """

    def __init__(self, recorder: TrackingRecorder, shard: int, shards: int):
        self.recorder = recorder
        self.shard = shard
        self.shards = shards

    def name(self, application_name: str) -> str:
        return shard_unit(application_name, self.shard, self.shards)

    @property
    def datastore(self) -> Any:
        return getattr(self.recorder, "datastore", None)

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.recorder.max_tracking_id(self.name(application_name))

    def insert_tracking(self, tracking: Tracking) -> None:
        self.recorder.insert_tracking(
            Tracking(self.name(tracking.application_name), tracking.notification_id))

    def wait(self, application_name: str, notification_id: int | None,
             timeout: float = 1.0, **kwargs: Any) -> None:
        self.recorder.wait(self.name(application_name), notification_id, timeout=timeout,
                           **kwargs)


class ShardFilter:
    """Hands a worker only its shard's events; the others just advance the shard's position."""

    def __init__(self, handler: Callable[[Any, Tracking], None], tracking: ShardTracking):
        self.handler = handler
        self.tracking = tracking

    def __call__(self, event: Any, tracking: Tracking) -> None:
        if shard_of(event.originator_id, self.tracking.shards) == self.tracking.shard:
            self.handler(event, tracking)
        else:
            self.tracking.insert_tracking(tracking)
