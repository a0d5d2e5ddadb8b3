"""The throughput table policies see in simulation, answered from the speed book.

A policy asks ``snapshot.profiles.rate(workload, kind, gpus)`` live and simulated
alike; here the answer is the trace's measured speed, so a heterogeneity-aware policy
ranks kinds by the same numbers the engine runs jobs at. Multi-resource policies may
also ask ``resource_speedup`` (see ``slicebox.policies.resources``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from slicebox.profiles.base import Estimate
from slicebox.sim.job import SimJob
from slicebox.sim.speed import SpeedBook

_UNKNOWN = Estimate(0.0, False, "no profile for this workload in the simulation")


class SimProfiles:
    def __init__(self, speeds: SpeedBook, jobs: Mapping[str, SimJob]) -> None:
        self._speeds = speeds
        self._jobs = jobs
        self._by_workload: dict[str, SimJob] = {}
        for job in jobs.values():
            self._by_workload.setdefault(job.workload, job)
        self._cache: dict[tuple[str, str, float], Estimate] = {}
        # The epoch each elastic job is in (the engine sets it): goodput depends on it.
        self.epoch_of: Callable[[str], int] = lambda job_id: 0

    def rate(self, workload: str, kind: str, gpus: float, precision: str = "fp32") -> Estimate:
        key = (workload, kind, gpus)
        estimate = self._cache.get(key)
        if estimate is None:
            job = self._by_workload.get(workload)
            if job is None:
                return _UNKNOWN
            speed = (self._speeds.job_rate(job, kind, gpus) if job.elastic else
                     self._speeds.model_rate(job.family, job.model, job.batch_size, kind, gpus,
                                             None))
            estimate = Estimate(speed, True, "measured (simulation profile)")
            self._cache[key] = estimate
        return estimate

    def resource_speedup(self, job_id: str, cpus: float, memory_gib: float) -> float:
        """Speed of a job with ``cpus`` cores and ``memory_gib`` relative to its request."""
        job = self._jobs.get(job_id)
        if job is None:
            return 1.0
        return self._speeds.cpu_factor(job, cpus, memory_gib)

    def goodput(self, job_id: str, kind: str, gpus: int, nodes: tuple[int, ...] | None = None,
                max_batch: int | None = None) -> float:
        """Useful samples/s of an elastic job on ``gpus`` of ``kind`` (``nodes``: GPUs per
        node, None packed) at its best batch size (at most ``max_batch``) in the epoch it
        is in now; 0.0 where it cannot run, or for a job that is not elastic."""
        job = self._jobs.get(job_id)
        if job is None or not job.elastic:
            return 0.0
        return self._speeds.sia_goodput(job.model, kind, gpus, nodes, self.epoch_of(job_id),
                                        max_batch)[0]

    def batch_limit(self, job_id: str) -> int | None:
        """The batch size the trace gave an elastic job (Sia's policy values its
        configurations with batch sizes up to it); None when unknown."""
        job = self._jobs.get(job_id)
        return job.batch_size if job is not None else None

    def restart_seconds(self, job_id: str) -> float:
        """What a resize or restart of this job costs (checkpoint + restore)."""
        job = self._jobs.get(job_id)
        return job.restart_seconds if job is not None else 0.0

    def throughput_ratio(self, job_id: str, kind: str, other: str) -> float | None:
        """How much faster an elastic Sia job runs on ``kind`` than on ``other`` by Sia's
        own one-GPU estimate (what Sia's policy projects goodput with); None unknown."""
        job = self._jobs.get(job_id)
        if job is None or not job.elastic:
            return None
        from slicebox.sim.speed import SIA_TYPES

        mine, theirs = SIA_TYPES.get(kind), SIA_TYPES.get(other)
        if mine is None or theirs is None:
            return None
        try:
            a = self._speeds.sia.single_gpu_throughput(job.model, mine)
            b = self._speeds.sia.single_gpu_throughput(job.model, theirs)
        except (KeyError, ValueError, LookupError):
            return None
        return a / b if a and b else None
