"""The seam between the world and the scheduling core: a frozen snapshot in, a decision out.

One scheduling round is the same live and simulated::

    snapshot = ...                                   # from the store, or the simulator's state
    decision = policy.decide(snapshot)               # which jobs run, on what kind, how many
    plan     = placer.place(state, snapshot, decision)  # exact slices, cores, volume (on one
                                                     # node or a gang over several); or a
                                                     # NoFit saying what is short
    backend.apply(plan)

A policy never sees a clock of its own, the store, or a backend: only this snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from slicebox.profiles.base import PeakRateEstimator, ThroughputModel
from slicebox.spec.demand import DatasetRef, Demand


class JobState(StrEnum):
    QUEUED = "queued"
    STAGING = "staging"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @property
    def active(self) -> bool:
        """Holding resources: staging data or running."""
        return self in (JobState.STAGING, JobState.RUNNING)


@dataclass(frozen=True)
class Assignment:
    """A policy's choice for one job: run it on ``gpus`` devices of ``kind``.

    ``kind`` None lets placement choose among the job's allowed kinds (it uses profiles to
    give each kind to the job that gains most from it). ``cpus``/``memory_gib`` None keep the
    job's own request; a multi-resource policy may set them.

    ``node`` / ``devices`` are placement hints from a policy that scores placements
    itself (fragmentation-aware or data-local policies): placement uses them when they
    fit and otherwise places as if they were absent. ``fraction`` right-sizes a job onto
    a share of one GPU (``gpus`` is then 1).
    """

    job_id: str
    gpus: int
    kind: str | None = None
    cpus: int | None = None
    memory_gib: float | None = None
    node: str | None = None
    devices: tuple[int, ...] | None = None
    fraction: float | None = None


@dataclass(frozen=True)
class JobView:
    """What a policy may know of one job."""

    id: str
    demand: Demand
    submitted_at: float
    workload: str = "default"
    precision: str = "fp32"
    priority: int = 0
    state: JobState = JobState.QUEUED
    current: Assignment | None = None  # what it holds now, when running
    attained_gpu_seconds: float = 0.0  # service received so far (Tiresias)
    remaining_work: float | None = None  # in samples (or steps); None: unknown
    reference_rate: float | None = None  # work per second on one reference GPU; None: unknown
    dataset: DatasetRef | None = None
    preemptions: int = 0
    weight: float = 1.0  # relative share for weighted-fairness policies (trace priority_weight)
    # When the current attempt started; None while it has not yet reported progress (still
    # starting up), when not running, or not known. Elastic resizing leaves such a job alone.
    started_at: float | None = None
    # Whose job it is (the store's ``jobs.team``): team quotas count it against this
    # team's share. Jobs without a team, and every simulated job, are "default"'s.
    team: str = "default"

    @property
    def waiting(self) -> bool:
        return self.state in (JobState.QUEUED, JobState.PREEMPTED)


@dataclass(frozen=True)
class Capacity:
    """Whole-device totals by kind, and what is free now (free means unallocated)."""

    total_gpus: Mapping[str, int]
    free_gpus: Mapping[str, int]
    total_cpus: int
    free_cpus: int
    total_memory_gib: float = 0.0
    free_memory_gib: float = 0.0


@dataclass(frozen=True)
class NodeView:
    """Free resources of one node, for policies that score placements themselves.

    ``free_gpu[i]`` is the unallocated compute share of device ``i`` (1.0: whole card
    free). Filled only by callers that can provide it cheaply (the simulator does).
    """

    name: str
    kind: str | None
    free_gpu: tuple[float, ...]
    free_cpus: float
    free_memory_gib: float


@dataclass(frozen=True)
class ClusterSnapshot:
    now: float
    jobs: tuple[JobView, ...]
    capacity: Capacity
    profiles: ThroughputModel = field(default_factory=PeakRateEstimator)
    round_seconds: float | None = None  # set in round-based scheduling (Gavel-style)
    nodes: tuple[NodeView, ...] = ()  # per-node free resources; empty when not provided
    # Optional: ``jobs`` by id, for a caller that keeps one up to date anyway (the
    # simulator). Placement then finds the jobs it places without scanning ``jobs``.
    job_index: Mapping[str, JobView] | None = None

    @property
    def waiting(self) -> tuple[JobView, ...]:
        return tuple(j for j in self.jobs if j.waiting)

    @property
    def running(self) -> tuple[JobView, ...]:
        return tuple(j for j in self.jobs if j.state.active)


@dataclass(frozen=True)
class Decision:
    """Jobs to run, most important first. Running jobs left out are preempted.

    Placement places ``run`` in order and skips an assignment that does not fit (so a
    smaller job behind it may backfill), unless ``strict`` asks it to stop at the first
    that does not fit.
    """

    run: tuple[Assignment, ...]
    reasons: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    strict: bool = False
