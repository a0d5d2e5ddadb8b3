"""Staged copies in tmpfs are RAM: counted against their node's memory, evicted first.

One node with 8 GiB of memory, a tmpfs volume (/dev/shm) and, unless a test says
otherwise, an NVMe volume; datasets live on a network share.
"""

from __future__ import annotations

from typing import Any

from slicebox.placement import DataCache, Placer, PoolState
from slicebox.placement.staging import CacheEntry
from slicebox.pool.composition import CACHE_DIR, Composition, Plan, Staging
from slicebox.pool.files import parse_pool
from slicebox.pool.model import Pool
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobView
from slicebox.spec.demand import DatasetRef
from tests.placement.helpers import by_job, job

SHM = {"name": "shm", "path": "/dev/shm", "tier": "tmpfs", "capacity_gib": 8,
       "read_mbps": 10000, "write_mbps": 10000}
NVME = {"name": "nvme", "path": "/nvme", "tier": "nvme", "capacity_gib": 100,
        "read_mbps": 3000, "write_mbps": 2000}


def _pool(*volumes: dict[str, Any]) -> Pool:
    return parse_pool({
        "nodes": [{"name": "box", "memory_gib": 8, "cores": 4, "volumes": list(volumes)}],
        "shared_volumes": [{"name": "share", "path": "/mnt/share", "tier": "network",
                            "capacity_gib": 10000, "read_mbps": 100, "write_mbps": 100}]})


def _data(gib: float, key: str = "d") -> DatasetRef:
    return DatasetRef(key, f"/mnt/share/{key}", gib)


def _shm_copy(key: str, gib: float, last_used: float = 0.0) -> CacheEntry:
    return CacheEntry(key, "box", "shm", f"/dev/shm/{CACHE_DIR}/{key}", gib, last_used)


def _round(pool: Pool, state: PoolState, data: DataCache, jobs: list[JobView],
           commit: bool = False) -> Plan:
    """One round placing ``jobs``; the jobs already holding something keep it."""
    snapshot = ClusterSnapshot(0.0, tuple(jobs), state.capacity())
    decision = Decision(tuple(Assignment(j.id, 0) for j in jobs))
    return Placer(pool).place(state, snapshot, decision, data, commit=commit,
                              as_is=frozenset(state.held_ids()))


def _reader(state: PoolState, key: str, gib: float, memory: float = 1.0) -> None:
    """A running job that reads the tmpfs copy ``key`` (so it must not be evicted)."""
    staging = Staging(key, f"/mnt/share/{key}", "shm", f"/dev/shm/{CACHE_DIR}/{key}", gib,
                      cached=True)
    state.allocate(Composition.on_node("reader", "box", (), (3,), memory,
                                       staging=staging))


def test_a_copy_that_does_not_fit_the_ram_left_goes_to_disk() -> None:
    pool = _pool(SHM, NVME)
    plan = _round(pool, PoolState(pool), DataCache(), [job("a", memory_gib=4,
                                                          dataset=_data(6))])
    staging = by_job(plan)["a"].staging
    # 6 GiB fit the tmpfs volume's room (7.2 GiB) but not the 4 GiB of RAM the job leaves.
    assert staging is not None and staging.volume == "nvme" and not staging.evict


def test_without_another_volume_the_job_reads_its_data_where_it_is() -> None:
    pool = _pool(SHM)
    plan = _round(pool, PoolState(pool), DataCache(), [job("a", memory_gib=4,
                                                          dataset=_data(6))])
    comp = by_job(plan)["a"]
    assert comp.staging is None and comp.data_path == "/mnt/share/d"


def test_a_copy_that_fits_goes_to_tmpfs_and_its_node_loses_job_plus_copy() -> None:
    pool = _pool(SHM, NVME)
    state, data = PoolState(pool), DataCache()
    before = state.fingerprint()
    plan = _round(pool, state, data, [job("a", memory_gib=4, dataset=_data(2))])
    staging = by_job(plan)["a"].staging
    assert staging is not None and staging.volume == "shm" and not staging.cached
    # The controller's round (commit=False) leaves the state and the cache as they were.
    assert state.fingerprint() == before and not data.entries()
    # The simulator's round (commit=True) leaves them as the plan makes them.
    _round(pool, state, data, [job("a", memory_gib=4, dataset=_data(2))], commit=True)
    assert state.free_memory(0) == 8 - 4 - 2 and state.staged_memory(0) == 2
    assert state.capacity().free_memory_gib == 2 and state.node_view(0).free_memory_gib == 2
    # The job ends; its copy stays cached, and in RAM: still counted.
    state.release("a")
    assert state.free_memory(0) == 6
    # A later job reuses it: no second copy, no more memory than its own.
    plan = _round(pool, state, data, [job("b", memory_gib=6, dataset=_data(2))],
                  commit=True)
    reused = by_job(plan)["b"].staging
    assert reused is not None and reused.cached and reused.volume == "shm"
    assert state.free_memory(0) == 0


def test_a_copy_counts_before_the_round_places_its_jobs() -> None:
    pool = _pool(SHM, NVME)
    data = DataCache([_shm_copy("old", 5)])
    state = PoolState(pool)
    _reader(state, "old", 5)  # holds 1 GiB and reads the 5 GiB copy: 2 GiB are left
    plan = _round(pool, state, data, [job("a", memory_gib=4)])
    assert not plan.start and plan.waiting["a"].field == "memory_gib"
    assert state.staged_memory(0) == 0  # counted for the round only (commit=False)


def test_an_unused_tmpfs_copy_is_evicted_to_make_room_for_a_new_one() -> None:
    pool = _pool(SHM, NVME)
    data = DataCache([_shm_copy("old", 3, last_used=1), _shm_copy("older", 1)])
    state = PoolState(pool)
    # 8 - 3 - 1 = 4 GiB free: the job fits, its 2 GiB copy fits only once a copy goes.
    plan = _round(pool, state, data, [job("a", memory_gib=3, dataset=_data(2))])
    staging = by_job(plan)["a"].staging
    assert staging is not None and staging.volume == "shm"
    assert staging.evict == (f"/dev/shm/{CACHE_DIR}/older",)  # least recently used
    # The same with the copy in use by a running job: the new copy goes to disk.
    state = PoolState(pool)
    data = DataCache([_shm_copy("old", 3)])
    _reader(state, "old", 3)  # 8 - 3 - 1 = 4 free; 4 for the job leaves none
    plan = _round(pool, state, data, [job("a", memory_gib=4, dataset=_data(2))])
    staging = by_job(plan)["a"].staging
    assert staging is not None and staging.volume == "nvme" and not staging.evict


def test_an_unused_tmpfs_copy_is_evicted_before_a_job_is_refused() -> None:
    pool = _pool(SHM, NVME)
    state = PoolState(pool)
    data = DataCache([_shm_copy("old", 5)])
    # 8 - 5 = 3 GiB free: the 4 GiB job fits only if the copy no job reads goes.
    plan = _round(pool, state, data, [job("a", memory_gib=4, dataset=_data(2))],
                  commit=True)
    staging = by_job(plan)["a"].staging
    assert staging is not None and staging.evict == (f"/dev/shm/{CACHE_DIR}/old",)
    assert staging.volume == "shm"  # once it is gone, 4 GiB are left: the copy fits
    assert data.get("old", "box") is None and data.tmpfs_gib(pool.nodes[0]) == 2
    assert state.free_memory(0) == 8 - 4 - 2
    # Read by a running job, the copy stays and the job waits, told memory is short.
    state = PoolState(pool)
    data = DataCache([_shm_copy("old", 5)])
    _reader(state, "old", 5)  # 8 - 5 - 1 = 2 GiB free
    plan = _round(pool, state, data, [job("a", memory_gib=3, dataset=_data(1))])
    assert not plan.start and plan.waiting["a"].field == "memory_gib"


def test_reclaiming_ram_needs_a_copy_to_carry_the_eviction() -> None:
    pool = _pool(SHM, NVME)
    data = DataCache([_shm_copy("old", 5)])
    # Only a job's new copy deletes cached copies (its evict list); a job without data,
    # or whose data is read where it is, has none: it waits and the copy stays counted.
    no_data = _round(pool, PoolState(pool), data, [job("a", memory_gib=4)])
    assert no_data.waiting["a"].field == "memory_gib"
    in_place = _round(pool, PoolState(pool), data,
                      [job("a", memory_gib=4, dataset=DatasetRef("n", "/dev/shm/n", 1))])
    assert in_place.waiting["a"].field == "memory_gib"
    assert data.get("old", "box") is not None


def test_cache_keeps_its_per_volume_totals_through_commit_evict_and_forget() -> None:
    node = _pool(SHM, NVME).nodes[0]
    data = DataCache([_shm_copy("a", 1.5), _shm_copy("b", 2),
                      CacheEntry("c", "box", "nvme", f"/nvme/{CACHE_DIR}/c", 9, 0)])
    assert data.tmpfs_gib(node) == 3.5 and data.used_gib("box", "nvme") == 9
    staging = data.choose(node, _data(1, "e"), memory_free=0.5)  # evicts "a" for RAM
    assert staging is not None and staging.volume == "shm"
    assert staging.evict == (f"/dev/shm/{CACHE_DIR}/a",)
    data.commit("box", staging, now=1)
    assert data.tmpfs_gib(node) == 3
    data.forget("b", "box")
    data.forget("e", "box")
    assert data.tmpfs_gib(node) == 0 and data.used_gib("box", "shm") == 0
    assert DataCache.from_records(data.to_records()).used_gib("box", "nvme") == 9


def test_ram_given_back_by_an_eviction_serves_later_jobs_of_the_round() -> None:
    pool = _pool(SHM, NVME)
    state, data = PoolState(pool), DataCache([_shm_copy("old", 5)])
    # 3 GiB free: "b" does not fit; "a"'s 2.5 GiB copy evicts the 5 GiB one (4.5 left),
    # so "c", the same shape as "b", fits although "b" failed earlier in the round.
    jobs = [job("b", memory_gib=3.5), job("a", memory_gib=1, dataset=_data(2.5)),
            job("c", memory_gib=3.5)]
    plan = _round(pool, state, data, jobs)
    assert set(by_job(plan)) == {"a", "c"} and plan.waiting["b"].field == "memory_gib"


def test_a_caller_may_count_the_copies_before_showing_a_policy_the_capacity() -> None:
    pool = _pool(SHM, NVME)
    state, data = PoolState(pool), DataCache([_shm_copy("old", 5)])
    Placer(pool).count_staged_memory(state, data)
    assert state.capacity().free_memory_gib == 3
    before = state.fingerprint()
    _round(pool, state, data, [job("a", memory_gib=2)])
    assert state.fingerprint() == before and state.staged_memory(0) == 5
