"""The throughput table policies see in simulation, answered from the speed book.

A policy asks ``snapshot.profiles.rate(workload, kind, gpus)`` live and simulated
alike; here the answer is the trace's measured speed, so a heterogeneity-aware policy
ranks kinds by the same numbers the engine runs jobs at. Multi-resource policies may
also ask ``resource_speedup`` (see ``slicebox.policies.resources``).
"""

from __future__ import annotations

from collections.abc import Mapping

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

    def rate(self, workload: str, kind: str, gpus: float, precision: str = "fp32") -> Estimate:
        key = (workload, kind, gpus)
        estimate = self._cache.get(key)
        if estimate is None:
            job = self._by_workload.get(workload)
            if job is None:
                return _UNKNOWN
            speed = self._speeds.model_rate(job.family, job.model, job.batch_size, kind, gpus,
                                            None)
            estimate = Estimate(speed, True, "measured (simulation profile)")
            self._cache[key] = estimate
        return estimate

    def resource_speedup(self, job_id: str, cpus: float, memory_gib: float) -> float:
        """Speed of a job with ``cpus`` cores and ``memory_gib`` relative to its request."""
        job = self._jobs.get(job_id)
        if job is None:
            return 1.0
        return self._speeds.cpu_factor(job, cpus, memory_gib)
