"""Gavel's own LPs and round mechanism (the fidelity configuration's policy)."""

from __future__ import annotations

import numpy as np

from slicebox.policies.gavel import Gavel, equal_share_allocation, max_min_allocation
from slicebox.snapshot import ClusterSnapshot, JobView
from tests.policies.helpers import TableProfiles, by_id, job, snapshot

PROFILES = TableProfiles({("w", "V100"): 1.0, ("w", "K80"): 0.25})


def test_aware_lp_equalises_gpu_time_not_time_share() -> None:
    # Gavel's MaxMinFairnessPolicyWithPerf multiplies by the scale factor: on 2 GPUs, a
    # 1-GPU job gets all the time of one GPU and a 2-GPU job half the time of both
    # (each 1 GPU on average), not 2/3 of the time each.
    alloc = max_min_allocation(np.array([[1.0], [2.0]]), np.ones(2), np.array([1.0, 2.0]),
                               np.ones(2), np.array([2.0]))
    assert abs(alloc[0, 0] - 1.0) < 1e-6
    assert abs(alloc[1, 0] - 0.5) < 1e-6


def test_agnostic_allocation_equalises_gpu_share_and_splits_by_type_count() -> None:
    gpus = np.array([1.0] * 30 + [4.0] * 6)  # 54 GPUs asked of 24
    alloc = equal_share_allocation(gpus, np.ones(36), np.array([8.0, 8.0, 8.0]))
    gpu_share = gpus * alloc.sum(axis=1)
    assert np.allclose(gpu_share, 24 / 36)  # every job the same GPUs on average
    assert np.allclose(alloc[:, 0], alloc[:, 1]) and np.allclose(alloc[:, 1], alloc[:, 2])
    assert abs((alloc * gpus[:, None]).sum() - 24.0) < 1e-6  # nothing left idle


def test_agnostic_allocation_gives_whole_jobs_when_the_pool_is_big_enough() -> None:
    alloc = equal_share_allocation(np.array([1.0, 2.0]), np.ones(2), np.array([4.0, 4.0]))
    assert np.allclose(alloc.sum(axis=1), 1.0)


def _snap(jobs: list[JobView], now: float, total: dict[str, int]) -> ClusterSnapshot:
    return snapshot(jobs, total, now=now, profiles=PROFILES, round_seconds=360.0)


def test_rounds_alternate_two_jobs_on_one_gpu_by_time_received() -> None:
    policy = Gavel(heterogeneity_aware=False, mechanism="gavel")
    served = []
    running: str | None = None
    for r in range(4):
        jobs = [job(j, submitted=0.0, running_on="V100" if running == j else None)
                for j in ("a", "b")]
        chosen = list(by_id(policy.decide(_snap(jobs, 360.0 * r, {"V100": 1}))))
        assert len(chosen) == 1
        running = chosen[0]
        served.append(running)
    assert served == ["a", "b", "a", "b"]  # a first on a tie: Gavel's earlier job id


def test_an_arrival_waits_for_the_next_allocation_reset() -> None:
    # The first reset happens at t=100; Gavel recomputes the allocation at most every
    # 1,920 s after that, and a job without an allocation is not run even on a free GPU.
    policy = Gavel(heterogeneity_aware=False, mechanism="gavel")
    total = {"V100": 2}
    assert list(by_id(policy.decide(_snap([job("a", submitted=100.0)], 100.0, total)))) == ["a"]
    now, started = 100.0, None
    while started is None and now < 5000.0:
        now += 360.0
        jobs = [job("a", submitted=100.0, running_on="V100"), job("b", submitted=now - 10)]
        if "b" in by_id(policy.decide(_snap(jobs, now, total))):
            started = now
    assert started is not None and started - 100.0 >= 1920.0
    assert started - 100.0 < 1920.0 + 360.0


def test_no_gpu_type_is_given_to_a_job_that_cannot_run_there() -> None:
    profiles = TableProfiles({("w", "V100"): 1.0})  # w has no speed on K80
    policy = Gavel(heterogeneity_aware=False, mechanism="gavel")
    jobs = [job("a"), job("b")]
    snap = snapshot(jobs, {"V100": 1, "K80": 1}, profiles=profiles, round_seconds=360.0)
    assert {a.kind for a in by_id(policy.decide(snap)).values()} == {"V100"}


def test_a_new_run_with_the_same_instance_starts_a_fresh_ledger() -> None:
    policy = Gavel(heterogeneity_aware=False, mechanism="gavel")
    first = [list(by_id(policy.decide(_snap([job("a"), job("b")], t, {"V100": 1}))))
             for t in (0.0, 360.0)]
    again = list(by_id(policy.decide(_snap([job("a"), job("b")], 0.0, {"V100": 1}))))
    assert again == first[0]
