"""What the store hands out: frozen values, never live ORM rows (they would go stale)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slicebox.pool.composition import Composition
from slicebox.snapshot import JobState
from slicebox.spec.job import JobSpec


@dataclass(frozen=True)
class StopRequest:
    """A graceful stop under way: the job ends in ``to_state`` once its process is gone."""

    to_state: JobState
    reason: str
    requested_at: float | None  # None: asked for, not yet signalled
    deadline: float | None  # SIGKILL after this


@dataclass(frozen=True)
class JobRecord:
    id: str
    name: str
    spec: JobSpec
    state: JobState
    reason: str
    priority: int
    submitted_at: float
    workdir: str | None = None
    dataset_size_gib: float | None = None
    started_at: float | None = None
    first_started_at: float | None = None
    finished_at: float | None = None
    run_seconds: float = 0.0
    exit_code: int | None = None
    attempt: int = 0
    preemptions: int = 0
    pid: int | None = None
    pid_start_time: float | None = None
    controller_id: str | None = None
    node: str | None = None
    composition: Composition | None = None
    log_path: str | None = None
    log_offset: int = 0
    cancel_requested: bool = False
    stop: StopRequest | None = None
    samples: int | None = None
    quality: float | None = None
    samples_per_s: float | None = None
    reported_at: float | None = None
    mlflow_run_id: str | None = None
    team: str = "default"

    def ran_for(self, now: float) -> float:
        """Seconds of running, over all attempts (what a time limit counts)."""
        running = self.state is JobState.RUNNING and self.started_at is not None
        current = now - self.started_at if running and self.started_at else 0.0
        return self.run_seconds + max(current, 0.0)

    @property
    def wait_seconds(self) -> float | None:
        if self.first_started_at is None:
            return None
        return self.first_started_at - self.submitted_at


@dataclass(frozen=True)
class EventRecord:
    id: int
    job_id: str
    time: float
    from_state: str | None
    kind: str  # a JobState value for a transition, else e.g. "staged", "reused", "waiting"
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetRecord:
    """A staged copy of a dataset on one volume of one node."""

    key: str
    node: str
    volume: str
    path: str
    size_gib: float
    last_used: float
    created_at: float = 0.0


@dataclass(frozen=True)
class ProgressSample:
    job_id: str
    attempt: int
    time: float
    samples: int | None
    quality: float | None
    samples_per_s: float | None


@dataclass(frozen=True)
class CompositionRecord:
    job_id: str
    attempt: int
    node: str
    composition: Composition
    started_at: float
    ended_at: float | None


@dataclass(frozen=True)
class UtilisationPoint:
    """What was held from ``time`` until the next point."""

    time: float
    gpus: float
    cores: int
    memory_gib: float
    jobs: int


@dataclass(frozen=True)
class Lease:
    controller_id: str
    heartbeat: float


@dataclass(frozen=True)
class CheckpointRecord:
    """How one attempt ended with respect to checkpoints (see ``schema.CheckpointRow``).

    ``samples``/``step``: the checkpoint the next attempt restores (None: none yet, it
    starts over); ``lost_samples``: what this attempt reported past that checkpoint, so
    the next attempt redoes it; ``restore_seconds``: how long this attempt took to load the
    checkpoint it started from (None: it started fresh)."""

    job_id: str
    attempt: int
    recorded_at: float
    outcome: str  # "checkpointed" (exit 85), "killed" (other exit), "gone" (no process)
    reason: str = ""
    path: str | None = None
    step: int | None = None
    samples: int | None = None
    saved_at: float | None = None
    save_seconds: float | None = None
    reported_samples: int | None = None
    lost_samples: int | None = None
    restored_samples: int | None = None
    restore_seconds: float | None = None


@dataclass(frozen=True)
class CheckpointSummary:
    """One job's checkpoints at a glance (what ``ps``, the report and MLflow show)."""

    job_id: str
    requeues: int  # attempts that ended in a requeue (rows in ``checkpoints``)
    checkpointed: int  # of those, how many saved on request (exit 85)
    lost_samples: int  # over all attempts
    last_path: str | None
    last_step: int | None
    last_samples: int | None
    last_saved_at: float | None
    last_save_seconds: float | None
    last_restore_seconds: float | None


@dataclass(frozen=True)
class TokenRecord:
    """An API token as the store keeps it: never the token itself (see ``store.tokens``)."""

    id: str
    team: str
    scope: str  # a ``tokens.Scope`` value
    created_at: float
    revoked_at: float | None = None
    expires_at: float | None = None  # not accepted from then on (None: until revoked)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at
