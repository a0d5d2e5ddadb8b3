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

``Gavel(heterogeneity_aware=False, mechanism="gavel")`` is Gavel's own
``max_min_fairness`` policy as its simulator runs it (the configuration
``slicebox.sim.fidelity`` reproduces Gavel's published numbers with): the allocation
ignores throughputs (every job's share of GPUs is equalised, as
``MaxMinFairnessPolicy`` does by setting every throughput to 1), and rounds follow
Gavel's mechanism (``gavel_rounds``: time received per job and per type, resets at most
every 1,920 s, greedy fill by type).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linprog

from slicebox.policies import common
from slicebox.policies.base import Policy
from slicebox.policies.gavel_rounds import RoundLedger
from slicebox.policies.registry import POLICIES
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobView

_EFFICIENCY_WEIGHT = 1e-3


def job_class(job: JobView) -> tuple[str, float, tuple[str, ...], int]:
    return (job.workload, common.share(job), job.demand.kinds, job.priority)


def max_min_allocation(throughput: np.ndarray, counts: np.ndarray, gpus: np.ndarray,
                       weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Per-job time shares ``Y[c, k]`` of each class on each kind (max-min fair).

    Maximises the smallest ``gpus_c * sum_k Y[c,k] T[c,k] / (w_c T_equal[c])``, Gavel's
    ``MaxMinFairnessPolicyWithPerf`` objective (scale factor included).

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
    # Normalised throughput per unit of time share, times the job's GPUs as Gavel's
    # MaxMinFairnessPolicyWithPerf does: a job on one GPU should get ``gpus`` times the
    # time of an equally fast job on ``gpus`` GPUs (what is equalised is GPU-time).
    norm = throughput / equal[:, None] * gpus[:, None]
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


def equal_share_allocation(gpus: np.ndarray, weights: np.ndarray, capacity: np.ndarray
                           ) -> np.ndarray:
    """Gavel's heterogeneity-agnostic max-min fairness: time shares ``Y[j, k]``.

    ``MaxMinFairnessPolicy`` maximises the smallest ``gpus_j * sum_k Y[j,k] / w_j``
    (every throughput set to 1), so each job's share of GPUs is equalised (water-filled
    up to a whole job's ``sum_k Y <= 1``) and which type it gets does not matter to
    the objective. Gavel's interior-point solver (ECOS) lands in the middle of that
    optimal face. On Gavel's 8:8:8 pool that middle splits each job's time evenly over
    the types, and when the pool is oversubscribed every job's share is forced; this
    returns the water-filled shares split over types in proportion to their counts
    (an approximation of ECOS's split of spare capacity when the pool is not full, or
    when the counts differ).
    """
    n = len(gpus)
    total = float(capacity.sum())
    if n == 0 or total <= 0:
        return np.zeros((n, len(capacity)))
    target = min(total, float(gpus.sum()))
    lo, hi = 0.0, float((gpus / weights).max())
    for _ in range(100):  # bisection on the common level t: sum_j min(g_j, w_j t) = target
        mid = (lo + hi) / 2
        if np.minimum(gpus, weights * mid).sum() < target:
            lo = mid
        else:
            hi = mid
    shares = np.minimum(1.0, weights * hi / gpus)
    return np.outer(shares, capacity / total)


@POLICIES.register("gavel", "max-min-fairness")
class Gavel(Policy):
    name = "gavel"
    periodic = True
    preemptive = True

    def __init__(self, heterogeneity_aware: bool = True, mechanism: str = "slicebox",
                 seed: int = 0) -> None:
        """``heterogeneity_aware``: Gavel's ``max_min_fairness_perf`` LP (True) or its
        ``max_min_fairness`` (False: throughputs ignored). ``mechanism``: "slicebox"
        (stateless rounds: catch-up on ``attained_gpu_seconds``) or "gavel" (Gavel's
        own round mechanism; the policy then keeps a ledger across decisions, so it is
        not pure: use one instance per run). ``seed``: Gavel's ``--seed`` (the
        per-round shuffle of GPU types for the agnostic policy)."""
        if mechanism not in ("slicebox", "gavel"):
            raise ValueError(f"gavel mechanism: 'slicebox' or 'gavel', got {mechanism!r}")
        # Memo of LP solutions by problem: the allocation only changes when the job mix
        # or the pool does, and a pure function may cache its answers.
        self._memo: dict[tuple[object, ...], np.ndarray] = {}
        self.heterogeneity_aware = heterogeneity_aware
        self.mechanism = mechanism
        self.seed = seed
        self._ledger: RoundLedger | None = None

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

    def _rows(self, snapshot: ClusterSnapshot, jobs: Sequence[JobView], kinds: list[str]
              ) -> list[np.ndarray]:
        """Each job's time shares on ``kinds``, by the configured max-min fairness."""
        if self.heterogeneity_aware:
            _, alloc, classes = self.allocation(snapshot, jobs, kinds)
            return [alloc[classes[job_class(j)]] for j in jobs]
        capacity = np.array([snapshot.capacity.total_gpus[k] for k in kinds], dtype=float)
        gpus = np.array([common.share(j) for j in jobs], dtype=float)
        return list(equal_share_allocation(gpus, np.ones(len(jobs)), capacity))

    def per_job_allocation(self, snapshot: ClusterSnapshot, jobs: Sequence[JobView],
                           kinds: list[str]) -> dict[str, dict[str, float]]:
        """Job id -> kind -> share of time, by the configured max-min fairness."""
        if not jobs:
            return {}
        rows = self._rows(snapshot, jobs, kinds)
        return {j.id: {k: float(x) for k, x in zip(kinds, row, strict=True)}
                for j, row in zip(jobs, rows, strict=True)}

    def _decide_gavel_rounds(self, snapshot: ClusterSnapshot, jobs: list[JobView],
                             kinds: list[str]) -> Decision:
        if self._ledger is not None and self._ledger.last_now is not None \
                and snapshot.now < self._ledger.last_now:
            self._ledger = None  # the clock went back: a new run with this instance
        if self._ledger is None:
            self._ledger = RoundLedger(snapshot.round_seconds or 360.0,
                                       shuffle_seed=None if self.heterogeneity_aware
                                       else self.seed)
        ledger = self._ledger
        # Gavel's job ids follow arrival order, and break its priority ties.
        jobs = sorted(jobs, key=lambda j: j.submitted_at)
        ledger.observe(snapshot, jobs, kinds)
        ledger.maybe_reset(snapshot.now, jobs, kinds,
                           lambda js, ks: self.per_job_allocation(snapshot, js, list(ks)))
        table = common.RateTable(snapshot, kinds)
        chosen = ledger.choose(jobs, kinds, snapshot.capacity.total_gpus, table.rates)
        run = []
        for job in jobs:
            kind = chosen.get(job.id)
            if kind is None:
                continue
            if job.current is not None and job.current.kind == kind:
                run.append(job.current)
            else:
                run.append(Assignment(job.id, job.demand.gpus, kind))
        return Decision(tuple(run))

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        jobs = [j for j in snapshot.jobs if common.share(j) > 0]
        kinds = sorted(snapshot.capacity.total_gpus)
        if self.mechanism == "gavel":
            return self._decide_gavel_rounds(snapshot, jobs, kinds)
        if not jobs or not kinds:
            return Decision(())
        rows = self._rows(snapshot, jobs, kinds)
        now = snapshot.now
        round_s = snapshot.round_seconds or 360.0
        # Priority of (job, kind): its allocated share over the share it received.
        pairs: list[tuple[float, int, int]] = []
        for i, job in enumerate(jobs):
            row = rows[i]
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
