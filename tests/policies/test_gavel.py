"""Gavel's max-min fairness LP: heterogeneity-aware, equalising normalised throughput."""

from __future__ import annotations

import numpy as np

from slicebox.policies.gavel import Gavel, max_min_allocation
from tests.policies.helpers import TableProfiles, by_id, job, snapshot


def _normalised(throughput: np.ndarray, alloc: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    equal = throughput @ (capacity / capacity.sum())
    return (alloc * throughput).sum(axis=1) / equal


def test_the_job_that_speeds_up_most_gets_the_fast_kind() -> None:
    # kinds (fast, slow); A runs 10x faster on fast, B the same on both.
    throughput = np.array([[10.0, 1.0], [1.0, 1.0]])
    alloc = max_min_allocation(throughput, np.ones(2), np.ones(2), np.ones(2),
                               np.array([1.0, 1.0]))
    assert alloc[0, 0] > 0.99 and alloc[1, 1] > 0.99
    assert alloc[0, 0] > alloc[1, 0]


def test_normalised_throughputs_are_equalised() -> None:
    throughput = np.array([[10.0, 1.0], [2.0, 1.0]])
    capacity = np.array([1.0, 2.0])
    alloc = max_min_allocation(throughput, np.ones(2), np.ones(2), np.ones(2), capacity)
    norm = _normalised(throughput, alloc, capacity)
    assert abs(norm[0] - norm[1]) < 1e-3
    assert norm.min() > 1.15  # hand-solved: both 1.1875, above a static split's 0.75
    assert np.all(alloc.sum(axis=1) <= 1 + 1e-6)
    assert np.all((alloc * np.ones((2, 1))).sum(axis=0) <= capacity + 1e-6)


def test_identical_jobs_share_time_equally() -> None:
    alloc = max_min_allocation(np.array([[4.0]]), np.array([3.0]), np.ones(1), np.ones(1),
                               np.array([1.0]))
    assert abs(alloc[0, 0] - 1 / 3) < 1e-6


def test_round_decision_serves_the_job_furthest_behind_its_share() -> None:
    profiles = TableProfiles({("w", "V100"): 1.0})
    ahead = job("ahead", attained=900.0, submitted=0.0, running_on="V100")
    behind = job("behind", attained=100.0, submitted=0.0)
    snap = snapshot([ahead, behind], {"V100": 1}, now=1000.0, profiles=profiles,
                    round_seconds=360.0)
    decision = Gavel().decide(snap)
    assert list(by_id(decision)) == ["behind"]
    assert by_id(decision)["behind"].kind == "V100"


def test_gavel_is_periodic() -> None:
    assert Gavel.periodic is True
