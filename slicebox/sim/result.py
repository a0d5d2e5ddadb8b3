"""What a simulation produces: one record per job, a timeline, and how long it took."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from slicebox.sim import metrics


@dataclass(frozen=True, slots=True)
class SimJobOutcome:
    """What happened to one simulated job (not the store's ``JobRecord``: this one is
    never persisted, it is the simulator's per-job result)."""

    id: str
    workload: str
    arrival: float
    gpus: float  # GPUs asked for (a fraction counts as its share)
    work: float
    isolated_seconds: float  # JCT alone on an empty pool, at its best allowed kind
    first_start: float | None
    finish: float | None
    kind: str | None  # the kind it last ran on
    preemptions: int
    run_seconds: float  # time holding resources (staging and restarts included)
    setup_seconds: float  # staging and restart time within run_seconds
    group: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish is not None

    @property
    def jct(self) -> float:
        if self.finish is None:
            raise ValueError(f"job {self.id} did not finish")
        return self.finish - self.arrival

    @property
    def queue_seconds(self) -> float:
        """Time the job was waiting (not holding resources) before it finished."""
        return self.jct - self.run_seconds


@dataclass(frozen=True)
class Timeline:
    """Cluster state after each scheduling event (step function; arrays of equal length)."""

    time: np.ndarray
    allocated_gpus: np.ndarray  # GPU share held by jobs
    busy_gpus: np.ndarray  # held and past staging/restart
    queued_jobs: np.ndarray
    queued_gpus: np.ndarray  # GPUs asked for by waiting jobs
    running_jobs: np.ndarray

    @classmethod
    def empty(cls) -> Timeline:
        zero = np.zeros(0)
        return cls(zero, zero, zero, zero, zero, zero)


@dataclass(frozen=True)
class SimResult:
    """Everything one run produced; ``metrics`` summarises it."""

    policy: str
    pool: str
    total_gpus: float
    trace: str
    jobs: tuple[SimJobOutcome, ...]
    timeline: Timeline
    round_seconds: float | None = None
    decisions: int = 0
    decision_seconds: float = 0.0  # inside policy.decide
    max_decision_seconds: float = 0.0
    engine_seconds: float = 0.0  # wall time of the whole run
    events: int = 0
    skipped_lines: int = 0
    notes: tuple[str, ...] = field(default=())
    # Times a job the policy chose was left waiting, by the field placement's NoFit named
    # ("gpus", "cpus", "memory_gib", "order", ...).
    not_placed: Mapping[str, int] = field(default_factory=dict)

    @functools.cached_property
    def metrics(self) -> metrics.Metrics:
        return metrics.summarize(self)

    @property
    def unfinished(self) -> tuple[SimJobOutcome, ...]:
        return tuple(j for j in self.jobs if not j.finished)
