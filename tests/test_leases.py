"""Leases on real PostgreSQL advisory locks: spread over members, freed when one goes away.

(Processes killed with SIGKILL: tests/integration/test_scale_out.py.)"""

from __future__ import annotations

import time
import uuid

from psycopg.conninfo import conninfo_to_dict

from workers.leases import MEMBERS_TTL, LeaseBoard, ShardTracking, shard_of, shard_unit


def _held(board: LeaseBoard, group: str, units: list[str]) -> set[str]:
    return {u for u in units if board.holds(group, u)}


def test_units_spread_over_members_and_a_leavers_units_go_to_the_rest(shared_settings):
    kwargs = conninfo_to_dict(shared_settings.database_url)
    group = f"test-{uuid.uuid4().hex}"
    units = [f"unit-{n}" for n in range(4)]
    first, second = LeaseBoard(kwargs), LeaseBoard(kwargs)
    for board in (first, second):
        board.attach()
        board.register(group, units)
    try:
        assert [u for u in units if first.try_take(group, u)] == units  # alone: all of them
        assert not any(second.try_take(group, u) for u in units)  # all taken; now a member
        assert first.members(group) == second.members(group) == 2
        time.sleep(MEMBERS_TTL + 0.1)
        kept = _held(first, group, units)
        assert len(kept) == 2  # beyond its fair share: two are to be given back
        for unit in set(units) - kept:
            first.release(group, unit)
        taken = {u for u in units if second.try_take(group, u)}
        assert taken == set(units) - kept
        assert not any(first.try_take(group, u) for u in taken)

        first.detach()  # its connection closes: Postgres drops every lock it held
        time.sleep(MEMBERS_TTL + 0.1)
        assert second.members(group) == 1
        assert {u for u in units if second.try_take(group, u)} == set(units)
    finally:
        second.detach()
        first.detach()


def test_shards_partition_ids_and_keep_positions_apart():
    ids = [uuid.uuid4() for _ in range(400)]
    assert {shard_of(i, 4) for i in ids} == {0, 1, 2, 3}
    assert all(shard_of(i, 1) == 0 for i in ids)
    assert shard_unit("derivatives_v1", 0, 1) == "derivatives_v1"  # one shard: unchanged
    names = {ShardTracking(None, s, 4).name("imaging") for s in range(4)}  # type: ignore[arg-type]
    assert len(names) == 4 and "imaging" not in names
