"""The backend seam: the only code that touches processes, Ray or a simulated clock.

A backend makes a plan so (starts, stops, stages data) and reports what happened through
``poll``. It never writes the store: the controller records every event durably, before
acting and after hearing back, so a backend may be restarted at any moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from slicebox.pool.composition import Composition, Plan, Staging
from slicebox.pool.model import Node
from slicebox.store.records import JobRecord


class LaunchError(RuntimeError):
    """A job's process could not be started; the message says why."""


@dataclass(frozen=True)
class Started:
    job_id: str
    attempt: int
    pid: int
    start_time: float
    log_path: str
    log_offset: int = 0  # progress is read from here


@dataclass(frozen=True)
class Exited:
    job_id: str
    attempt: int
    exit_code: int | None  # negative: killed by that signal; None: unknown
    error: str | None = None  # e.g. the program could not be executed
    stopped: bool = False  # we signalled it (preemption, cancel, time limit)
    killed: bool = False  # it outlived its grace period and was SIGKILLed
    # Its node left the pool (a Ray node died, or its agent stopped answering past the
    # heartbeat timeout, and every process of the attempt is known to be fenced off): the
    # job did nothing wrong, so it is requeued and resumes from its last checkpoint.
    node_lost: bool = False


@dataclass(frozen=True)
class Staged:
    job_id: str
    staging: Staging
    bytes: int
    seconds: float


@dataclass(frozen=True)
class StagingFailed:
    job_id: str
    staging: Staging
    error: str | None  # None: aborted on request (cancel, preemption)


@dataclass(frozen=True)
class Progress:
    job_id: str
    time: float
    samples: int | None
    quality: float | None
    log_offset: int


@dataclass(frozen=True)
class Breached:
    """A job went past a limit of its composition; what the backend did about it.

    ``limit``: "cores" or "memory"; ``observed``/``allowed``: what it had and what it may
    have, in words ("cores 0-1", "0.73 GiB"); ``action``: "reverted" (put back, the job
    runs on) or "killed" (an ``Exited`` naming the limit follows)."""

    job_id: str
    attempt: int
    limit: str
    observed: str
    allowed: str
    action: str

    def describe(self) -> str:
        return (f"{self.limit} limit breached: {self.observed} used, {self.allowed} "
                f"allowed; {self.action}")


BackendEvent = Started | Exited | Staged | StagingFailed | Progress | Breached


@dataclass(frozen=True)
class ExitRecord:
    """What a launcher left behind for a job whose parent we are not."""

    attempt: int
    exit_code: int | None
    error: str | None
    finished_at: float | None
    # Its launcher fenced it (its node's agent lost touch with the cluster, or died): a
    # node loss, requeued to resume from its checkpoint, not a failure.
    node_lost: bool = False


def apply_plan(backend: Backend, plan: Plan, jobs: Mapping[str, JobRecord]
               ) -> list[BackendEvent]:
    """``Backend.apply`` as every backend does it: the stops first (what they hold is
    free only once they are gone, so nothing here waits for them), then each start is
    staged (its data not copied yet: the launch follows ``Staged``) or launched; a
    launch that fails is that job's exit, never the round's."""
    events: list[BackendEvent] = []
    for job_id in plan.stop:
        backend.stop(jobs[job_id])
    for comp in plan.start:
        job = jobs[comp.job_id]
        if comp.staging is not None and not comp.staging.cached:
            backend.stage(job, comp)
            continue
        try:
            events.append(backend.launch(job, comp))
        except LaunchError as exc:
            events.append(Exited(job.id, job.attempt, None, error=str(exc)))
    return events


class Backend(Protocol):
    def apply(self, plan: Plan, jobs: Mapping[str, JobRecord]) -> list[BackendEvent]:
        """Start ``plan.start`` (staging first where needed) and stop ``plan.stop``; the
        store must already say so. Returns what happened at once (e.g. ``Started``)."""
        ...

    def stage(self, job: JobRecord, comp: Composition) -> None:
        """Begin copying the job's dataset; a ``Staged`` or ``StagingFailed`` follows."""
        ...

    def launch(self, job: JobRecord, comp: Composition) -> Started:
        """Start the job's process with its composition enforced; raises LaunchError."""
        ...

    def stop(self, job: JobRecord) -> None:
        """Graceful stop: the job's checkpoint signal now, SIGKILL after its grace period
        (``poll`` escalates, so nothing blocks)."""
        ...

    def poll(self) -> list[BackendEvent]:
        """Progress, finished copies, exits, escalations since the last call."""
        ...

    def adopt(self, job: JobRecord) -> Started | None:
        """After a controller restart: take over the job's live process (None: it is gone,
        and nothing of it is left running)."""
        ...

    def exit_record(self, job: JobRecord) -> ExitRecord | None:
        """How the job's current attempt ended, when it ended without us watching."""
        ...

    def close(self) -> None:
        """Stop watching; running jobs keep running (the next controller adopts them)."""
        ...


@runtime_checkable
class NodeSource(Protocol):
    """A backend whose pool changes while it runs (Ray: nodes join and leave). The
    controller asks each round and re-plans on the nodes it is given; jobs on a node that
    left come back from ``poll`` as ``Exited(node_lost=True)``."""

    def nodes(self) -> tuple[Node, ...]:
        """The nodes that can run jobs now (each named as compositions name it)."""
        ...
