"""Small builders for placement tests: example pools, jobs, one round."""

from __future__ import annotations

from pathlib import Path

from slicebox.placement import Placer, Plan, PoolState
from slicebox.pool.composition import Composition
from slicebox.pool.files import load_pool
from slicebox.pool.model import Pool
from slicebox.profiles.base import ThroughputModel
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobState, JobView
from slicebox.spec.demand import DatasetRef, Demand

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pools"


def example(name: str) -> Pool:
    return load_pool(EXAMPLES / f"{name}.yaml")


def job(job_id: str, gpus: int = 0, *, at: float = 0.0, workload: str = "default",
        dataset: DatasetRef | None = None, **demand: object) -> JobView:
    return JobView(job_id, Demand(gpus=gpus, max_gpus=gpus, **demand),  # type: ignore[arg-type]
                   at, workload=workload, dataset=dataset)


def running(view: JobView, comp: Composition) -> JobView:
    shared = view.demand.shared
    current = Assignment(view.id, 1 if shared else len(comp.slices), comp.kind if comp.slices
                         else None)
    return JobView(view.id, view.demand, view.submitted_at, view.workload,
                   state=JobState.RUNNING, current=current, dataset=view.dataset)


def place(pool: Pool, state: PoolState, jobs: list[JobView], *, run: list[Assignment] | None
          = None, strict: bool = False, profiles: ThroughputModel | None = None,
          data: object = None) -> Plan:
    """One round where the decision runs ``jobs`` (each at its minimum) in the given order."""
    if run is None:
        run = [j.current or Assignment(j.id, j.demand.gpus) for j in jobs]
    snapshot = ClusterSnapshot(0.0, tuple(jobs), state.capacity())
    return Placer(pool, profiles).place(state, snapshot, Decision(tuple(run), strict=strict),
                                        data)  # type: ignore[arg-type]


def by_job(plan: Plan) -> dict[str, Composition]:
    return {c.job_id: c for c in plan.start}
