"""CPU and memory sizing for multi-resource policies (Synergy-style).

A throughput model that knows how a job speeds up with CPU cores and memory offers
``resource_speedup(job_id, cpus, memory_gib)`` (speed relative to the job's own
request); the simulator's profiles do, from Synergy's measurements. Without it, a job
gets what it asked for.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from slicebox.snapshot import ClusterSnapshot, JobView

# Per-GPU core counts Synergy profiled; tuning picks among them.
CORE_STEPS = (1, 2, 3, 4, 5, 6, 9, 12, 16, 24)
_GOOD_ENOUGH = 0.98  # within 2 % of the best: more cores would be wasted


def pressure(snapshot: ClusterSnapshot, waiting_gpus: float) -> float:
    """How much of the pool is held or asked for (0: idle, 1: full or oversubscribed)."""
    total = sum(snapshot.capacity.total_gpus.values())
    if total <= 0:
        return 1.0
    free = sum(snapshot.capacity.free_gpus.values())
    return min(1.0, max(0.0, (total - free + waiting_gpus) / total))


@runtime_checkable
class ResourceAware(Protocol):
    def resource_speedup(self, job_id: str, cpus: float, memory_gib: float) -> float: ...


def core_options(job: JobView, profiles: object, max_cpus: int) -> tuple[int, int, float]:
    """(best, fewest, speed at best): the fewest cores reaching the best speed-up
    possible up to ``max_cpus``, and the fewest that keep the job at the speed of its
    own request (what an insensitive job can give up)."""
    request = job.demand.cpus
    speedup = getattr(profiles, "resource_speedup", None)  # isinstance on a Protocol is slow
    if speedup is None:
        return request, request, 1.0
    gpus = max(job.demand.gpu_share, 1.0)
    memory = job.demand.memory_gib
    candidates = sorted({max(1, min(max_cpus, round(step * gpus))) for step in CORE_STEPS}
                        | {min(request, max_cpus)})
    speeds = [speedup(job.id, c, memory) for c in candidates]
    best_speed = max(speeds)
    best = next(c for c, s in zip(candidates, speeds, strict=True)
                if s >= _GOOD_ENOUGH * best_speed)
    at_request = speedup(job.id, request, memory)
    fewest = next((c for c, s in zip(candidates, speeds, strict=True)
                   if s >= _GOOD_ENOUGH * at_request), request)
    return best, min(fewest, best), best_speed


class CoreMemo:
    """``core_options`` per job, remembered: they depend only on the job and its model,
    and a decision may size thousands of waiting jobs that were sized before."""

    def __init__(self, limit: int = 200_000) -> None:
        self._memo: dict[tuple[str, int, int], tuple[int, int, float]] = {}
        self._limit = limit

    def options(self, job: JobView, profiles: object, max_cpus: int) -> tuple[int, int, float]:
        key = (job.id, job.demand.cpus, max_cpus)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= self._limit:
                self._memo.clear()
            found = core_options(job, profiles, max_cpus)
            self._memo[key] = found
        return found


def cores_to_give(best: int, fewest: int, node_free_cpus: float, node_free_gpus_after: float,
                  proportional_per_gpu: float, reserve: float = 1.0) -> int:
    """Cores for a job on a node: its best count, but never so many that the node's other
    free GPUs are left with less than ``reserve`` x their GPU-proportional share (with
    ``reserve`` 1, Synergy's rule: no job is made worse off than proportional sharing),
    and never fewer than keep the job at its requested speed."""
    spare = node_free_cpus - max(node_free_gpus_after, 0.0) * proportional_per_gpu * reserve
    cores = max(fewest, min(best, int(spare)))
    return int(min(cores, node_free_cpus)) if node_free_cpus >= fewest else int(fewest)
