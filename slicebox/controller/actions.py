"""What the controller does to one job (launch, stop, finish, requeue, fail), and the
guard that keeps one job's trouble to that job.

Everything that can go wrong with a job (a launch raising anything, a value it printed,
a copy that fails) fails that job, with the reason, and the loop goes on. Only trouble
with the store or the lease stops the controller: then no job can be handled at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from slicebox.backends.base import Backend, LaunchError
from slicebox.pool.composition import Composition
from slicebox.snapshot import JobState
from slicebox.store import (
    IllegalTransition,
    JobRecord,
    LeaseHeld,
    LeaseLost,
    Store,
    StoreCorrupt,
    StoreUnavailable,
    UnknownJob,
)

from . import checkpoints
from .views import ACTIVE, tracking_params

if TYPE_CHECKING:
    from slicebox.tracking import JobTracker

log = logging.getLogger("slicebox.controller")

# Trouble that is not one job's: the controller stops (and the next one takes over).
CONTROLLER_FATAL: tuple[type[BaseException], ...] = (
    LeaseLost, LeaseHeld, StoreUnavailable, StoreCorrupt, KeyboardInterrupt, SystemExit)


@dataclass
class RoundReport:
    """What one round did (for ``on_round`` callbacks: live progress, the demo)."""

    time: float
    started: list[str] = field(default_factory=list)
    staging: list[str] = field(default_factory=list)
    stopping: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    waiting: int = 0
    active: int = 0
    pool_changes: list[str] = field(default_factory=list)  # "node n-1 left the pool", ...


class JobActions:
    """The acts on single jobs, each recorded in the store before or after it happens."""

    def __init__(self, store: Store, backend: Backend, clock: Callable[[], float],
                 tracker: JobTracker | None, on_released: Callable[[str], None]) -> None:
        self.store, self.backend, self.tracker = store, backend, tracker
        self._clock = clock
        self._on_released = on_released  # the pool state gives back what the job held

    @contextmanager
    def contained(self, job_id: str | None, what: str, report: RoundReport) -> Iterator[None]:
        """Run one job's step; anything but controller-wide trouble fails that job."""
        try:
            yield
        except CONTROLLER_FATAL:
            raise
        except Exception as exc:  # noqa: BLE001 - the point: no job crashes the loop
            log.exception("job %s: %s failed", job_id, what)
            if job_id is not None:
                self.fail(job_id, f"controller could not {what}: {type(exc).__name__}: "
                                  f"{_one_line(exc)}", report)

    def fail(self, job_id: str, reason: str, report: RoundReport) -> None:
        """End a job as failed: through a stop if a process of it may run, else at once."""
        try:
            job = self.store.job(job_id)
            if job.state.terminal:
                return
            if job.state in ACTIVE and job.stop is None and self._may_run(job):
                self.stop(job, JobState.FAILED, reason, report)  # ends once it is gone
                return
            if job.stop is not None and job.state in ACTIVE:
                return  # already being stopped; it ends once its process is gone
            self.finish(job, JobState.FAILED, reason, None, report)
        except CONTROLLER_FATAL:
            raise
        except UnknownJob:
            return
        except Exception:  # noqa: BLE001 - failing must not become the crash it contains
            log.exception("job %s: could not record its failure (%s)", job_id, reason)

    def _may_run(self, job: JobRecord) -> bool:
        """A process of the job may be running (recorded, or started and not yet recorded):
        it must be stopped, not forgotten."""
        running = getattr(self.backend, "running", None)
        return job.pid is not None or (callable(running) and job.id in running())

    def launch(self, job: JobRecord, comp: Composition, report: RoundReport) -> None:
        try:
            started = self.backend.launch(job, comp)
        except LaunchError as exc:
            self.finish(job, JobState.FAILED, str(exc), None, report)
            return
        self.store.set_process(job.id, started.pid, started.start_time, started.log_path,
                               started.log_offset)
        report.started.append(job.id)
        if self.tracker is not None:
            wait = self._clock() - job.submitted_at
            self.tracker.job_started(job.id, job.name, tracking_params(job, comp), wait,
                                     record=job)

    def stop(self, job: JobRecord, to_state: JobState, reason: str,
             report: RoundReport) -> None:
        job = self.store.request_stop(job.id, to_state, reason,
                                      grace_seconds=job.spec.checkpoint.grace_seconds)
        comp = job.composition
        if job.state is JobState.STAGING and comp is not None and comp.staging is not None \
                and comp.staging.cached:
            # It only waits for another job's copy: nothing of its own runs yet.
            self.finish(job, to_state, reason, None, report)
            return
        self.backend.stop(job)
        report.stopping.append(job.id)

    def checkpoint_stop(self, job: JobRecord, reason: str, report: RoundReport) -> None:
        """Ask ``job`` to checkpoint and stop (its checkpoint signal; SIGKILL after its
        grace period); once its process is gone it is requeued, and where it resumes is
        recorded with the requeue. For preemption and resizing alike: ``reason`` says which
        (it is kept with the checkpoint record)."""
        self.stop(job, JobState.PREEMPTED, reason, report)

    def finish(self, job: JobRecord, to_state: JobState, reason: str,
               exit_code: int | None, report: RoundReport,
               queued_reason: str = "requeued after preemption") -> None:
        """The attempt is over. A job sent back to wait is requeued (or, if a cancel came
        meanwhile, ends cancelled: the store sees to that), with the record of the
        checkpoint it resumes from, in the same transaction."""
        folder = self._checkpoint_folder(job)
        record = None
        if to_state is JobState.PREEMPTED:
            record = checkpoints.attempt_record(job, folder, checkpoints.how_it_ended(exit_code),
                                                job.stop.reason if job.stop else reason)
            ended = self.store.requeue(job.id, reason, queued_reason, checkpoint=record)
        else:
            ended = self.store.transition(job.id, to_state, reason, exit_code=exit_code)
            if checkpoints.resumed(job, folder):  # its restore time counts too
                record = checkpoints.attempt_record(job, folder, to_state.value, reason,
                                                    requeued=False)
                self.store.record_checkpoint(job.id, record)
        self._on_released(job.id)
        report.finished.append(job.id)
        if self.tracker is not None and record is not None:
            self.tracker.job_progress(job.id, checkpoints.tracking_metrics(record),
                                      step=job.samples or 0, timestamp_s=self._clock())
        if self.tracker is not None:
            ran = ended.ran_for(self._clock())
            average = job.samples / ran if job.samples and ran > 0 else None
            self.tracker.job_progress(job.id, {"run_time_s": ran, "avg_samples_per_s": average},
                                      step=job.samples or 0, timestamp_s=self._clock())
            self.tracker.job_finished(job.id, ended.state.value, record=ended,
                                      exit_code=exit_code, reason=reason,
                                      log_path=job.log_path)

    def _checkpoint_folder(self, job: JobRecord) -> Path | None:
        """The job's checkpoint folder, as its backend chose it (None: no such backend)."""
        where = getattr(self.backend, "checkpoint_dir", None)
        return where(job) if callable(where) else None

    def requeue(self, job: JobRecord, reason: str) -> None:
        """A preempted job waits again (the policy may have restarted it meanwhile)."""
        try:
            self.store.transition(job.id, JobState.QUEUED, reason, expect=JobState.PREEMPTED)
        except IllegalTransition:
            return


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:300]
