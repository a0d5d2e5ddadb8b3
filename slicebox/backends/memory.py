"""An in-memory backend: jobs that "run" without processes.

For controller tests that should be fast and not depend on a machine's processes, and
for driving the live controller on a simulated clock beside the simulator. A launched
job runs until it is told to finish (``finish``) or, when ``duration`` gives it one, until
the clock passes its start plus that many seconds; a stopped job exits at the next
``poll``. Staging takes ``stage_seconds`` of the clock. Nothing is ever executed: a job's
command is never looked at.

It keeps what it was told in plain lists (``launches``, ``stops``) so a test can compare
what the controller did with what it expected. A backend object outlives controllers
(pass the same one to the next controller), so adoption after a restart works as for real
processes: a job still running here is adopted, one that ended is reported ended.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from slicebox.backends.base import (
    BackendEvent,
    Exited,
    ExitRecord,
    Staged,
    StagingFailed,
    Started,
)
from slicebox.pool.composition import Composition, Plan
from slicebox.store.records import JobRecord

Duration = Callable[[JobRecord], float | None]  # seconds a job runs; None: until told

STOP_EXIT_CODE = -15  # what a stopped job exits with (SIGTERM), as a real process would


@dataclass
class _Running:
    job_id: str
    attempt: int
    pid: int
    started: float
    ends: float  # inf: until told
    comp: Composition
    exit_code: int | None = None  # set once it is told to end
    stopped: bool = False


@dataclass(frozen=True)
class Launch:
    """One launch, as the controller asked for it."""

    time: float
    job_id: str
    attempt: int
    comp: Composition


class MemoryBackend:
    name = "memory"

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 duration: Duration | None = None, stage_seconds: float = 0.0) -> None:
        self._clock = clock
        self._duration = duration
        self._stage_seconds = stage_seconds
        self._pids = itertools.count(10_000)
        self._running: dict[str, _Running] = {}
        self._staging: dict[str, tuple[float, Composition]] = {}  # job -> (done at, comp)
        self._aborted: list[tuple[str, Composition]] = []
        self._ended: dict[str, ExitRecord] = {}  # exits nobody polled (for exit_record)
        self.launches: list[Launch] = []
        self.stops: list[tuple[float, str]] = []

    # ---- acting -----------------------------------------------------------------------

    def apply(self, plan: Plan, jobs: Mapping[str, JobRecord]) -> list[BackendEvent]:
        events: list[BackendEvent] = []
        for job_id in plan.stop:
            self.stop(jobs[job_id])
        for comp in plan.start:
            job = jobs[comp.job_id]
            if comp.staging is not None and not comp.staging.cached:
                self.stage(job, comp)
            else:
                events.append(self.launch(job, comp))
        return events

    def stage(self, job: JobRecord, comp: Composition) -> None:
        self._staging[job.id] = (self._clock() + self._stage_seconds, comp)

    def launch(self, job: JobRecord, comp: Composition) -> Started:
        now = self._clock()
        seconds = self._duration(job) if self._duration is not None else None
        ends = now + seconds if seconds is not None else math.inf
        run = _Running(job.id, job.attempt, next(self._pids), now, ends, comp)
        self._running[job.id] = run
        self._ended.pop(job.id, None)
        self.launches.append(Launch(now, job.id, job.attempt, comp))
        return Started(job.id, job.attempt, run.pid, now, f"memory://{job.id}")

    def stop(self, job: JobRecord) -> None:
        self.stops.append((self._clock(), job.id))
        if job.id in self._staging:
            _, comp = self._staging.pop(job.id)
            self._aborted.append((job.id, comp))
            return
        run = self._running.get(job.id)
        if run is not None and run.exit_code is None:
            run.exit_code, run.stopped = STOP_EXIT_CODE, True

    # ---- telling jobs to end (tests) --------------------------------------------------

    def finish(self, job_id: str, exit_code: int = 0) -> None:
        """The job ends now with ``exit_code`` (reported at the next ``poll``)."""
        run = self._running.get(job_id)
        if run is None:
            raise KeyError(f"job {job_id} is not running in this backend")
        if run.exit_code is None:
            run.exit_code = exit_code

    def running(self) -> dict[str, Composition]:
        """Jobs running here now, with what they hold."""
        return {j: r.comp for j, r in self._running.items()}

    def stopping(self) -> bool:
        """Whether an exit (a stop, ``finish``) or an aborted copy waits for ``poll``."""
        return bool(self._aborted) or any(r.exit_code is not None
                                          for r in self._running.values())

    def next_end(self) -> float:
        """When the next running job ends by its duration (inf: none will by itself)."""
        return min((r.ends for r in self._running.values() if r.exit_code is None),
                   default=math.inf)

    # ---- watching ---------------------------------------------------------------------

    def poll(self) -> list[BackendEvent]:
        now = self._clock()
        events: list[BackendEvent] = []
        for job_id, comp in self._aborted:
            assert comp.staging is not None
            events.append(StagingFailed(job_id, comp.staging, None))
        self._aborted.clear()
        for job_id, (done, comp) in list(self._staging.items()):
            if done <= now:
                del self._staging[job_id]
                assert comp.staging is not None
                size = int(comp.staging.size_gib * (1 << 30))
                events.append(Staged(job_id, comp.staging, size, self._stage_seconds))
        for job_id, run in list(self._running.items()):
            if run.exit_code is None and run.ends <= now:
                run.exit_code = 0
            if run.exit_code is not None:
                del self._running[job_id]
                events.append(Exited(job_id, run.attempt, run.exit_code,
                                     stopped=run.stopped))
        return events

    def adopt(self, job: JobRecord) -> Started | None:
        run = self._running.get(job.id)
        if run is None or run.attempt != job.attempt:
            return None
        now = self._clock()
        if run.exit_code is None and run.ends <= now:
            run.exit_code = 0
        if run.exit_code is not None:  # it ended while nobody watched
            del self._running[job.id]
            self._ended[job.id] = ExitRecord(run.attempt, run.exit_code, None,
                                             min(run.ends, now))
            return None
        return Started(job.id, run.attempt, run.pid, run.started, f"memory://{job.id}")

    def exit_record(self, job: JobRecord) -> ExitRecord | None:
        return self._ended.get(job.id)

    def close(self) -> None:
        """Jobs keep "running": the next controller given this backend adopts them."""
