"""Hand-made snapshots for policy tests: jobs, capacities and a table of speeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slicebox.profiles.base import Estimate
from slicebox.snapshot import (
    Assignment,
    Capacity,
    ClusterSnapshot,
    JobState,
    JobView,
    NodeView,
)
from slicebox.spec.demand import Demand


class TableProfiles:
    """Speeds from a table: ``rates[(workload, kind)]`` per GPU, linear in GPUs."""

    def __init__(self, rates: Mapping[tuple[str, str], float],
                 cpu_curves: Mapping[str, Mapping[int, float]] | None = None) -> None:
        self.rates = dict(rates)
        self.cpu_curves = dict(cpu_curves or {})

    def rate(self, workload: str, kind: str, gpus: float, precision: str = "fp32") -> Estimate:
        return Estimate(self.rates.get((workload, kind), 0.0) * gpus, True, "test table")


class CpuProfiles(TableProfiles):
    """Also knows how each job speeds up with cores (``cpu_curves[job_id][cores]``)."""

    def resource_speedup(self, job_id: str, cpus: float, memory_gib: float) -> float:
        curve = self.cpu_curves.get(job_id)
        if not curve:
            return 1.0
        below = [c for c in curve if c <= cpus]
        return curve[max(below)] if below else curve[min(curve)]


def job(job_id: str, gpus: int = 1, *, remaining: float | None = None, rate: float = 1.0,
        submitted: float = 0.0, attained: float = 0.0, running_on: str | None = None,
        workload: str = "w", kinds: tuple[str, ...] = (), fraction: float | None = None,
        cpus: int = 1, memory: float = 1.0, priority: int = 0) -> JobView:
    demand = Demand(gpus=gpus, max_gpus=gpus, kinds=kinds, fraction=fraction, cpus=cpus,
                    memory_gib=memory)
    current = (Assignment(job_id, gpus, running_on, cpus, memory)
               if running_on is not None else None)
    return JobView(job_id, demand, submitted, workload=workload, priority=priority,
                   state=JobState.RUNNING if current else JobState.QUEUED, current=current,
                   attained_gpu_seconds=attained, remaining_work=remaining,
                   reference_rate=rate)


def snapshot(jobs: Sequence[JobView], total: Mapping[str, int], *, now: float = 0.0,
             profiles: object | None = None, nodes: Sequence[NodeView] = (),
             cpus: int = 1000, round_seconds: float | None = None) -> ClusterSnapshot:
    used: dict[str, float] = {}
    for j in jobs:
        if j.current is not None and j.current.kind is not None:
            used[j.current.kind] = used.get(j.current.kind, 0) + j.demand.gpu_share
    free = {k: int(v - used.get(k, 0)) for k, v in total.items()}
    capacity = Capacity(dict(total), free, cpus, cpus)
    kwargs = {"profiles": profiles} if profiles is not None else {}
    return ClusterSnapshot(now, tuple(jobs), capacity, round_seconds=round_seconds,
                           nodes=tuple(nodes), **kwargs)  # type: ignore[arg-type]


def ids(decision: object) -> list[str]:
    return [a.job_id for a in decision.run]  # type: ignore[attr-defined]


def by_id(decision: object) -> dict[str, Assignment]:
    return {a.job_id: a for a in decision.run}  # type: ignore[attr-defined]
