"""Gavel: heterogeneity-aware max-min fairness (OSDI'20), solved as a linear program.

Allocation ``X[j, k]``: the share of time job j should spend on kind k. Gavel's
``MaxMinFairnessPolicyWithPerf`` maximises the smallest weighted, normalised
throughput ``sum_k X[j,k] * T[j,k] / (w_j * T_equal[j])``, where ``T[j,k]`` is the job's
measured throughput on kind k at its size and ``T_equal`` what it would get from an
equal share of every kind (here: the capacity-weighted mix of kinds). Constraints: a
job is on at most one kind at a time (``sum_k X[j,k] <= 1``) and no kind is
oversubscribed (``sum_j X[j,k] * gpus_j <= capacity_k``). A small reward for total
normalised throughput picks, among the max-min optima, one that wastes nothing (what
Gavel's water-filling variant does in several LPs, here in one).

Jobs with the same workload, size, weight and allowed kinds are interchangeable, so
the LP has one variable per (class, kind), not per (job, kind): 5,000 jobs of a few
dozen classes solve in milliseconds with HiGHS.

Each round (``periodic``), jobs are ranked Gavel-style by how far behind their
allocation they are: priority = X[j,k] / (share of time received so far), and take
GPUs of kind k in that order. The time received comes from ``attained_gpu_seconds``
(the snapshot has no per-kind history), so the catch-up is per job, not per kind.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linprog

from slicebox.policies import common
from slicebox.policies.base import Policy
from slicebox.policies.registry import POLICIES
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobView

_EFFICIENCY_WEIGHT = 1e-3


def job_class(job: JobView) -> tuple[str, float, tuple[str, ...], int]:
    return (job.workload, common.share(job), job.demand.kinds, job.priority)


def max_min_allocation(throughput: np.ndarray, counts: np.ndarray, gpus: np.ndarray,
                       weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Per-job time shares ``Y[c, k]`` of each class on each kind (max-min fair).

    ``throughput[c, k]``: work/s of one job of class c on kind k at its size (0: cannot
    run there); ``counts[c]`` jobs per class; ``gpus[c]`` GPUs each; ``weights[c]``
    priority weight; ``capacity[k]`` GPUs of kind k.
    """
    n_class, n_kind = throughput.shape
    if n_class == 0 or n_kind == 0:
        return np.zeros((n_class, n_kind))
    mix = capacity / max(capacity.sum(), 1e-9)
    equal = throughput @ mix
    equal = np.where(equal > 0, equal, 1.0)
    norm = throughput / equal[:, None]  # normalised throughput per unit of time share
    n_var = n_class * n_kind + 1  # Y flattened, then t
    cost = np.zeros(n_var)
    cost[-1] = -1.0
    cost[:-1] = -_EFFICIENCY_WEIGHT * (norm * counts[:, None]).ravel() / max(counts.sum(), 1)
    rows, rhs = [], []
    for c in range(n_class):  # t * w_c - sum_k Y[c,k] norm[c,k] <= 0
        row = np.zeros(n_var)
        row[c * n_kind:(c + 1) * n_kind] = -norm[c]
        row[-1] = weights[c]
        rows.append(row)
        rhs.append(0.0)
    for c in range(n_class):  # sum_k Y[c,k] <= 1
        row = np.zeros(n_var)
        row[c * n_kind:(c + 1) * n_kind] = 1.0
        rows.append(row)
        rhs.append(1.0)
    for k in range(n_kind):  # sum_c counts_c gpus_c Y[c,k] <= capacity_k
        row = np.zeros(n_var)
        row[k:n_class * n_kind:n_kind] = counts * gpus
        rows.append(row)
        rhs.append(capacity[k])
    bounds = [(0.0, 0.0 if throughput[c, k] <= 0 else 1.0)
              for c in range(n_class) for k in range(n_kind)] + [(0.0, None)]
    solved = linprog(cost, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=bounds,
                     method="highs")
    if solved.status != 0:
        return np.zeros((n_class, n_kind))
    return np.clip(solved.x[:-1].reshape(n_class, n_kind), 0.0, 1.0)


@POLICIES.register("gavel", "max-min-fairness")
class Gavel(Policy):
    name = "gavel"
    periodic = True
    preemptive = True

    def __init__(self) -> None:
        # Memo of LP solutions by problem: the allocation only changes when the job mix
        # or the pool does, and a pure function may cache its answers.
        self._memo: dict[tuple[object, ...], np.ndarray] = {}

    def allocation(self, snapshot: ClusterSnapshot, jobs: Sequence[JobView], kinds: list[str]
                   ) -> tuple[list[tuple[str, float, tuple[str, ...], int]], np.ndarray,
                              dict[tuple[str, float, tuple[str, ...], int], int]]:
        classes: dict[tuple[str, float, tuple[str, ...], int], int] = {}
        members: list[int] = []
        for job in jobs:
            key = job_class(job)
            if key not in classes:
                classes[key] = len(classes)
                members.append(0)
            members[classes[key]] += 1
        keys = list(classes)
        table = common.RateTable(snapshot, kinds)
        first: dict[tuple[str, float, tuple[str, ...], int], JobView] = {}
        for job in jobs:
            first.setdefault(job_class(job), job)
        throughput = table.matrix([first[k] for k in keys])
        counts = np.array(members, dtype=float)
        gpus = np.array([k[1] for k in keys], dtype=float)
        weights = np.ones(len(keys))
        capacity = np.array([snapshot.capacity.total_gpus[k] for k in kinds], dtype=float)
        memo_key = (tuple(keys), tuple(members), tuple(capacity))
        alloc = self._memo.get(memo_key)
        if alloc is None:
            alloc = max_min_allocation(throughput, counts, gpus, weights, capacity)
            if len(self._memo) > 256:
                self._memo.clear()
            self._memo[memo_key] = alloc
        return keys, alloc, classes

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        jobs = [j for j in snapshot.jobs if common.share(j) > 0]
        kinds = sorted(snapshot.capacity.total_gpus)
        if not jobs or not kinds:
            return Decision(())
        keys, alloc, classes = self.allocation(snapshot, jobs, kinds)
        now = snapshot.now
        round_s = snapshot.round_seconds or 360.0
        # Priority of (job, kind): its allocated share over the share it received.
        pairs: list[tuple[float, int, int]] = []
        for i, job in enumerate(jobs):
            row = alloc[classes[job_class(job)]]
            age = max(now - job.submitted_at, round_s)
            received = job.attained_gpu_seconds / (max(common.share(job), 1e-9) * age)
            for k, x in enumerate(row):
                if x > 1e-6:
                    # A running job's own kind gets a tie-break so leases extend.
                    bonus = 1e-6 if job.current is not None and job.current.kind == kinds[k] \
                        else 0.0
                    pairs.append((x / max(received, 1e-3) + bonus, i, k))
        pairs.sort(key=lambda p: -p[0])
        budget = common.GpuBudget(snapshot.capacity.total_gpus)
        chosen: dict[int, str] = {}
        for _, i, k in pairs:
            if i in chosen:
                continue
            job = jobs[i]
            kind = kinds[k]
            if budget.fits(kind, common.share(job)):
                budget.take(kind, common.share(job))
                chosen[i] = kind
        run = []
        for i, kind in chosen.items():
            job = jobs[i]
            if job.current is not None and job.current.kind == kind:
                run.append(job.current)
            else:
                run.append(Assignment(job.id, job.demand.gpus, kind))
        return Decision(tuple(run))
