"""What the policy and placement see of the store's jobs, built incrementally.

A view is rebuilt only when its job changed (state, attempt, composition, service): with
thousands queued, a round then costs what changed, not the queue length.
"""

from __future__ import annotations

from slicebox.placement.staging import CacheEntry
from slicebox.pool.composition import Composition, Staging
from slicebox.pool.slices import SliceType
from slicebox.snapshot import Assignment, JobState, JobView
from slicebox.spec import DatasetRef, Demand
from slicebox.store import DatasetRecord, JobRecord

ACTIVE = (JobState.STAGING, JobState.RUNNING)
WAITING = (JobState.QUEUED, JobState.PREEMPTED)


class ViewCache:
    """Job views by id, each remade only when what it shows changed."""

    def __init__(self) -> None:
        self._views: dict[str, tuple[tuple[object, ...], JobView]] = {}

    def views(self, jobs: list[JobRecord], attained: dict[str, float]) -> dict[str, JobView]:
        fresh: dict[str, tuple[tuple[object, ...], JobView]] = {}
        out: dict[str, JobView] = {}
        for job in jobs:
            service = attained.get(job.id, 0.0)
            key = (job.state, job.attempt, job.preemptions, job.dataset_size_gib, service,
                   id(job.spec), job.reported_at is not None)
            known = self._views.get(job.id)
            view = known[1] if known is not None and known[0] == key else job_view(job, service)
            fresh[job.id] = (key, view)
            out[job.id] = view
        self._views = fresh  # finished jobs drop out
        return out


def job_view(job: JobRecord, attained: float) -> JobView:
    spec = job.spec
    current = None
    comp = job.composition
    if job.state in ACTIVE and comp is not None:
        shared = next((s.compute for s in comp.slices if s.shape is SliceType.FRACTION), None)
        current = Assignment(job.id, len(comp.slices), comp.kind if comp.slices else None,
                             cpus=comp.core_count, memory_gib=comp.memory_gib,
                             node=comp.parts[0].node if not comp.multi_node else None,
                             devices=tuple(s.device for s in comp.slices), fraction=shared)
    dataset = None
    if spec.dataset is not None:
        size = job.dataset_size_gib if job.dataset_size_gib is not None else (
            spec.dataset.size_gib or 0.0)
        dataset = DatasetRef(spec.dataset.key, spec.dataset.path, size)
    return JobView(id=job.id, demand=Demand.from_spec(spec), submitted_at=job.submitted_at,
                   workload=spec.workload_class, precision=spec.precision,
                   priority=spec.priority, state=job.state, current=current,
                   attained_gpu_seconds=attained, dataset=dataset, preemptions=job.preemptions,
                   started_at=_training_since(job) if current is not None else None,
                   team=job.team)


def _training_since(job: JobRecord) -> float | None:
    """When the current attempt started, once it has reported progress: a job still
    starting up (importing, loading, restoring) is not yet running at its new size, and
    must not be resized again before it is."""
    return job.started_at if job.reported_at is not None else None


def staging_node(comp: Composition) -> str:
    """Where a composition's data is staged: its first part's node."""
    return comp.parts[0].node


def copies_in_progress(jobs: list[JobRecord]) -> dict[tuple[str, str], tuple[str, Staging]]:
    """(dataset, node) -> (job, staging) for the copies being made now."""
    found = {}
    for job in jobs:
        comp = job.composition
        if job.state is JobState.STAGING and comp is not None and comp.staging is not None \
                and not comp.staging.cached:
            found[(comp.staging.dataset, staging_node(comp))] = (job.id, comp.staging)
    return found


def cache_entry(rec: DatasetRecord) -> CacheEntry:
    return CacheEntry(rec.key, rec.node, rec.volume, rec.path, rec.size_gib, rec.last_used)


def tracking_params(job: JobRecord, comp: Composition) -> dict[str, object]:
    """The composition as MLflow params: what a run was given, next to how it did."""
    cores = ",".join(str(c) for p in comp.parts for c in p.cores)
    return {"job_id": job.id, "node": "+".join(comp.nodes), "device_kind": comp.kind,
            "slices": "; ".join(s.describe() for s in comp.slices) or "none",
            "gpu_share": comp.gpu_share, "cores": cores,
            "num_cores": comp.core_count, "memory_gib": comp.memory_gib,
            "precision": job.spec.precision, "workload": job.spec.workload_class,
            "data_path": comp.data_path or "", "attempt": job.attempt}
