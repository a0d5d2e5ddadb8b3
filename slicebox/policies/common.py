"""What several policies need: per-job arrays, speed lookups and a GPU budget by kind.

Policies rank thousands of jobs per decision in the simulator, so the per-job numbers
are built once per decision into numpy arrays, and profile lookups are cached per
(workload, kind, GPUs) within the decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from slicebox.snapshot import Assignment, ClusterSnapshot, JobView


def share(job: JobView) -> float:
    """GPUs a job occupies (a fraction counts as its share; CPU-only jobs 0)."""
    return job.demand.gpu_share


def keep_or_request(job: JobView) -> Assignment:
    """A running job keeps what it has; a waiting one asks for its minimum."""
    if job.current is not None:
        return job.current
    return Assignment(job.id, job.demand.gpus)


def fifo_key(job: JobView) -> tuple[int, float, str]:
    """Priority first (higher first), then arrival: the order FIFO-family policies share."""
    return (-job.priority, job.submitted_at, job.id)


def remaining_seconds(jobs: Sequence[JobView]) -> np.ndarray:
    """Remaining time of each job on its requested GPUs of the reference kind, from
    ``remaining_work`` and ``reference_rate``; inf where either is unknown."""
    out = np.full(len(jobs), np.inf)
    for i, job in enumerate(jobs):
        rate = job.reference_rate
        if job.remaining_work is not None and rate:
            out[i] = job.remaining_work / (rate * max(share(job), 1e-9))
    return out


def submitted(jobs: Sequence[JobView]) -> np.ndarray:
    return np.fromiter((j.submitted_at for j in jobs), float, len(jobs))


def split(jobs: Sequence[JobView]) -> tuple[list[JobView], list[JobView]]:
    """(running, waiting): jobs holding a slice now, and the rest."""
    running = [j for j in jobs if j.current is not None]
    waiting = [j for j in jobs if j.current is None]
    return running, waiting


def free_fits(waiting: Sequence[JobView], snapshot: ClusterSnapshot | Mapping[str, int]
              ) -> bool:
    """Whether the free GPUs (of a snapshot, or a mapping kind -> free GPUs) hold every
    waiting job (by count; a job restricted to some kinds by those kinds' free GPUs).
    Then no running job has to make room, and a preemptive policy's answer is: everyone
    runs. Checking this first keeps a decision on a lightly loaded pool from costing the
    number of running jobs."""
    free = snapshot.capacity.free_gpus if isinstance(snapshot, ClusterSnapshot) else snapshot
    total = sum(free.values())
    need = 0.0
    for job in waiting:
        gpus = share(job)
        need += gpus
        if job.demand.kinds and gpus > sum(free.get(k, 0) for k in job.demand.kinds):
            return False
    return need <= total + 1e-9


class RateTable:
    """``profiles.rate`` for the jobs of one decision, cached by workload and size."""

    def __init__(self, snapshot: ClusterSnapshot, kinds: Sequence[str]) -> None:
        self.snapshot = snapshot
        self.kinds = tuple(kinds)
        self._cache: dict[tuple[str, float, tuple[str, ...]], np.ndarray] = {}

    def rates(self, job: JobView) -> np.ndarray:
        """Work/s of the job at its requested size on each kind (0: not allowed)."""
        key = (job.workload, share(job), job.demand.kinds)
        row = self._cache.get(key)
        if row is None:
            allowed = job.demand.kinds
            gpus = share(job)
            row = np.array([
                self.snapshot.profiles.rate(job.workload, k, gpus, job.precision).samples_per_s
                if gpus > 0 and (not allowed or k in allowed) else 0.0
                for k in self.kinds])
            self._cache[key] = row
        return row

    def matrix(self, jobs: Sequence[JobView]) -> np.ndarray:
        if not jobs:
            return np.zeros((0, len(self.kinds)))
        return np.vstack([self.rates(j) for j in jobs])


class GpuBudget:
    """GPUs by kind that a policy may still hand out in this decision (counts only:
    node-level fit is placement's job, which backfills what does not fit)."""

    def __init__(self, totals: Mapping[str, int]) -> None:
        self.left = {k: float(v) for k, v in totals.items()}

    def fits(self, kind: str, gpus: float) -> bool:
        return self.left.get(kind, 0.0) >= gpus - 1e-9

    def take(self, kind: str, gpus: float) -> None:
        self.left[kind] = self.left.get(kind, 0.0) - gpus

    def first_fit(self, job: JobView, kinds: Sequence[str]) -> str | None:
        """The first of ``kinds`` allowed for the job with room for it."""
        allowed = job.demand.kinds
        gpus = share(job)
        for kind in kinds:
            if (not allowed or kind in allowed) and self.fits(kind, gpus):
                return kind
        return None

    def take_job(self, job: JobView, kinds: Sequence[str]) -> str | None:
        """Charge a job to its current kind (running), else to an allowed kind with room:
        the one with most room when ``kinds`` is empty (placement picks the kind then)."""
        gpus = share(job)
        if job.current is not None and job.current.kind is not None:
            kind: str | None = job.current.kind
            if not self.fits(job.current.kind, gpus):
                return None
        elif kinds:
            kind = self.first_fit(job, kinds)
        else:
            allowed = job.demand.kinds or tuple(self.left)
            kind = max(allowed, key=lambda k: self.left.get(k, 0.0), default=None)
            if kind is None or not self.fits(kind, gpus):
                return None
        if kind is not None:
            self.take(kind, gpus)
        return kind


def everyone(running: Sequence[JobView], waiting: Sequence[JobView], order: np.ndarray
             ) -> list[Assignment]:
    """Running jobs keep their slices, waiting ones follow in ``order`` (indexes into
    ``waiting``): the whole decision when ``free_fits``."""
    run = [j.current for j in running if j.current is not None]
    run.extend(keep_or_request(waiting[int(i)]) for i in order)
    return run


def greedy_fill(jobs: Sequence[JobView], order: np.ndarray, snapshot: ClusterSnapshot
                ) -> list[Assignment]:
    """Jobs in ``order`` while the pool's GPUs last (by count, any allowed kind); those
    past the end are left out, so running ones among them are preempted."""
    budget = GpuBudget(snapshot.capacity.total_gpus)
    run = []
    for i in order:
        job = jobs[int(i)]
        if budget.take_job(job, ()) is not None:
            run.append(keep_or_request(job))
    return run
