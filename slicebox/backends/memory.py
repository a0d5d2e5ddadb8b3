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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from slicebox.backends.base import (
    BackendEvent,
    Exited,
    ExitRecord,
    LaunchError,
    Staged,
    StagingFailed,
    Started,
    apply_plan,
)
from slicebox.pool.composition import Composition, Plan
from slicebox.pool.model import Node
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
                 duration: Duration | None = None, stage_seconds: float = 0.0,
                 checkpoint_root: Path | None = None) -> None:
        self._clock = clock
        self._checkpoint_root = checkpoint_root
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
        return apply_plan(self, plan, jobs)

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

    def checkpoint_dir(self, job: JobRecord) -> Path | None:
        """``<checkpoint_root>/<job id>`` (None without a root): where a test writes the
        manifest (``latest.json``) a job would leave, for the controller to read."""
        return self._checkpoint_root / job.id if self._checkpoint_root is not None else None

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


class ChangingPoolBackend(MemoryBackend):
    """A ``MemoryBackend`` whose pool changes (a ``NodeSource``, as the Ray backend is):
    tests take nodes away (``remove_node``) and bring them back (``add_node``).

    A job or copy that touches a removed node, on any of its parts (a gang), comes back
    from the next ``poll`` as one ``Exited(node_lost=True)`` with no exit code, as the Ray
    backend reports it once every process of the attempt is fenced off."""

    def __init__(self, nodes: Iterable[Node], *, clock: Callable[[], float] = time.time,
                 duration: Duration | None = None, stage_seconds: float = 0.0,
                 checkpoint_root: Path | None = None) -> None:
        super().__init__(clock=clock, duration=duration, stage_seconds=stage_seconds,
                         checkpoint_root=checkpoint_root)
        self._nodes: dict[str, Node] = {n.name: n for n in nodes}
        self._lost: list[Exited] = []
        self._staging_attempts: dict[str, int] = {}

    def nodes(self) -> tuple[Node, ...]:
        return tuple(self._nodes.values())

    def add_node(self, node: Node) -> None:
        """``node`` joins (or comes back, possibly changed)."""
        self._nodes[node.name] = node

    def hide_node(self, name: str) -> Node:
        """``name`` is not listed (its agent has not answered yet) while its jobs run on;
        ``add_node`` lists it again."""
        return self._nodes.pop(name)

    def remove_node(self, name: str) -> list[str]:
        """``name`` leaves; the jobs (running or staging) it takes down, reported at the next
        ``poll``."""
        del self._nodes[name]
        lost: list[str] = []
        for job_id, run in list(self._running.items()):
            if name in run.comp.nodes and run.exit_code is None:
                del self._running[job_id]
                self._lost.append(Exited(job_id, run.attempt, None, node_lost=True,
                                         error=f"node {name} left"))
                lost.append(job_id)
        for job_id, (_, comp) in list(self._staging.items()):
            if name in comp.nodes:
                del self._staging[job_id]
                self._lost.append(Exited(job_id, self._staging_attempts.get(job_id, 0), None,
                                         node_lost=True, error=f"node {name} left"))
                lost.append(job_id)
        return lost

    def fence(self, job_id: str) -> None:
        """The job's launcher killed it because its node's agent lost touch (no controller
        watching): it is gone, and its exit record says it was fenced."""
        run = self._running.pop(job_id)
        self._ended[job_id] = ExitRecord(run.attempt, -9, "fenced: its node's agent lost "
                                         "touch", self._clock(), node_lost=True)

    def stage(self, job: JobRecord, comp: Composition) -> None:
        self._check_nodes(comp)
        self._staging_attempts[job.id] = job.attempt
        super().stage(job, comp)

    def launch(self, job: JobRecord, comp: Composition) -> Started:
        self._check_nodes(comp)
        return super().launch(job, comp)

    def poll(self) -> list[BackendEvent]:
        events: list[BackendEvent] = list(self._lost)
        self._lost.clear()
        return events + super().poll()

    def _check_nodes(self, comp: Composition) -> None:
        gone = [n for n in comp.nodes if n not in self._nodes]
        if gone:
            raise LaunchError(f"node {', '.join(gone)} is not in the pool")
