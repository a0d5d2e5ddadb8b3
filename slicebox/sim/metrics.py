"""The numbers a simulation is judged by, computed from its job records and timeline.

- JCT (job completion time): finish - arrival; average, median, p99.
- Makespan: last finish - first arrival.
- Queueing delay: time a job spent not holding resources before it finished.
- GPU allocation: GPUs held / GPUs in the pool; utilisation: the same, less the GPUs
  that are staging data or restarting (both time-weighted over the makespan).
- Finish-time fairness (Themis): rho = JCT shared / JCT isolated, where isolated is the
  job alone on the empty pool at its fastest allowed kind (rho > 1: it paid for sharing).
- Fragmentation: share of the pool's GPUs unallocated while requests wait
  (time-weighted over the time anything waits).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from slicebox.sim.result import SimResult, Timeline


@dataclass(frozen=True)
class Metrics:
    jobs: int
    finished: int
    avg_jct: float
    median_jct: float
    p99_jct: float
    makespan: float
    avg_queue: float
    median_queue: float
    p99_queue: float
    gpu_allocation: float
    gpu_utilisation: float
    fragmentation: float
    ftf_avg: float
    ftf_p99: float
    ftf_max: float
    preemptions: int
    preempted_jobs: int
    decisions: int
    avg_decision_ms: float
    max_decision_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


# What each metric is called in tables, its unit, and whether lower is better.
LABELS: dict[str, tuple[str, str, bool]] = {
    "avg_jct": ("avg JCT", "h", True),
    "median_jct": ("median JCT", "h", True),
    "p99_jct": ("p99 JCT", "h", True),
    "makespan": ("makespan", "h", True),
    "avg_queue": ("avg queueing", "h", True),
    "gpu_allocation": ("GPU alloc", "%", False),
    "gpu_utilisation": ("GPU util", "%", False),
    "fragmentation": ("fragmentation", "%", True),
    "ftf_avg": ("FTF rho avg", "", True),
    "ftf_max": ("FTF rho max", "", True),
    "preemptions": ("preemptions", "", True),
}


def percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def summarize(result: SimResult) -> Metrics:
    done = [j for j in result.jobs if j.finished]
    jct = np.array([j.jct for j in done], dtype=float)
    queue = np.array([j.queue_seconds for j in done], dtype=float)
    rho = np.array([j.jct / j.isolated_seconds for j in done if j.isolated_seconds > 0],
                   dtype=float)
    start = min((j.arrival for j in result.jobs), default=0.0)
    end = max((j.finish for j in done if j.finish is not None), default=start)
    makespan = end - start
    allocation, utilisation, fragmentation = occupancy(result.timeline, result.total_gpus,
                                                       start, end)
    return Metrics(
        jobs=len(result.jobs),
        finished=len(done),
        avg_jct=float(jct.mean()) if len(jct) else float("nan"),
        median_jct=percentile(jct, 50),
        p99_jct=percentile(jct, 99),
        makespan=makespan,
        avg_queue=float(queue.mean()) if len(queue) else float("nan"),
        median_queue=percentile(queue, 50),
        p99_queue=percentile(queue, 99),
        gpu_allocation=allocation,
        gpu_utilisation=utilisation,
        fragmentation=fragmentation,
        ftf_avg=float(rho.mean()) if len(rho) else float("nan"),
        ftf_p99=percentile(rho, 99),
        ftf_max=float(rho.max()) if len(rho) else float("nan"),
        preemptions=sum(j.preemptions for j in result.jobs),
        preempted_jobs=sum(1 for j in result.jobs if j.preemptions),
        decisions=result.decisions,
        avg_decision_ms=1000.0 * result.decision_seconds / max(result.decisions, 1),
        max_decision_ms=1000.0 * result.max_decision_seconds,
    )


def occupancy(timeline: Timeline, total_gpus: float, start: float, end: float
              ) -> tuple[float, float, float]:
    """Time-weighted (allocation, utilisation, fragmentation) over [start, end].

    The timeline is a step function: each row holds from its time to the next row's.
    """
    t = timeline.time
    if len(t) == 0 or end <= start or total_gpus <= 0:
        return 0.0, 0.0, 0.0
    edges = np.clip(np.append(t, end), start, end)
    width = np.diff(edges)
    span = end - start
    allocation = float(np.sum(width * timeline.allocated_gpus)) / (span * total_gpus)
    utilisation = float(np.sum(width * timeline.busy_gpus)) / (span * total_gpus)
    waiting = timeline.queued_jobs > 0
    wait_time = float(np.sum(width[waiting]))
    if wait_time <= 0:
        return allocation, utilisation, 0.0
    free = (total_gpus - timeline.allocated_gpus[waiting]) / total_gpus
    return allocation, utilisation, float(np.sum(width[waiting] * free)) / wait_time
