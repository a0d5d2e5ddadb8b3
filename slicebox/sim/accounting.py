"""Job accounting: each simulated job's progress, service and history, and what
policies see of it.

A ``JobRun`` is one job's mutable state; ``JobBook`` holds all of them, which wait and
which run, the ``JobView``s a snapshot is made of, and turns the lot into a
``SimResult`` at the end. Progress is kept lazily: a running job's work done is brought
up to date (``settle``) only when its speed or holding changes, and a snapshot computes
what it shows from the last settle without changing the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from slicebox.pool.composition import Composition
from slicebox.pool.slices import SliceType
from slicebox.sim.job import SimJob
from slicebox.sim.result import SimJobOutcome, Timeline
from slicebox.snapshot import Assignment, JobState, JobView
from slicebox.spec.demand import Demand


class JobRun:
    """One job's mutable state in the simulation (never shown to policies as is)."""

    __slots__ = ("job", "id", "work", "handle", "state", "view", "comp", "assignment", "rate",
                 "ready_at", "mark", "done", "attained", "held", "version", "first_start",
                 "finish", "preemptions", "starts", "run_seconds", "setup_seconds", "kinds",
                 "ref_rate", "isolated", "kind", "demand")

    def __init__(self, job: SimJob, handle: int) -> None:
        self.job = job
        self.id = job.id
        self.work = job.work
        self.handle = handle
        self.demand: Demand = job.demand  # narrowed to the kinds it has a speed on
        self.state = JobState.QUEUED
        self.view: JobView | None = None
        self.comp: Composition | None = None  # what it holds while running
        self.assignment: Assignment | None = None
        self.rate = 0.0  # work per second once set up
        self.ready_at = 0.0  # end of staging/restart
        self.mark = 0.0  # when done/attained were last brought up to date
        self.done = 0.0
        self.attained = 0.0  # GPU-seconds held
        self.held = 0.0  # GPU share held now
        self.version = 0  # token of its pending completion event
        self.first_start: float | None = None
        self.finish: float | None = None
        self.preemptions = 0
        self.starts = 0
        self.run_seconds = 0.0
        self.setup_seconds = 0.0
        self.kinds: tuple[str, ...] = ()  # allowed kinds it has a speed on, fastest first
        self.ref_rate = 0.0
        self.isolated = 0.0
        self.kind: str | None = None  # the kind it last ran on

    def settle(self, now: float) -> None:
        """Bring progress and service up to ``now``."""
        eff = self.ready_at if self.ready_at > self.mark else self.mark
        if now > eff:
            self.done = min(self.work, self.done + self.rate * (now - eff))
        self.attained += self.held * (now - self.mark)
        self.run_seconds += now - self.mark
        self.mark = now

    def finish_time(self) -> float:
        """When it completes at its current rate (after its setup)."""
        eff = self.ready_at if self.ready_at > self.mark else self.mark
        left = self.work - self.done
        return eff + (left / self.rate if left > 0 else 0.0)


class JobBook:
    """All runs, by handle (arrival order) and id; which wait and which run."""

    def __init__(self, jobs: Sequence[SimJob]) -> None:
        order = sorted(range(len(jobs)), key=lambda i: (jobs[i].arrival, i))
        self.runs = [JobRun(jobs[i], h) for h, i in enumerate(order)]
        self.by_id = {r.id: r for r in self.runs}
        self.views: dict[str, JobView] = {}  # jobs arrived and not finished
        self.running: dict[int, JobRun] = {}
        self.waiting: dict[int, JobRun] = {}
        self.queued_gpus = 0.0  # GPU share asked for by waiting jobs
        self.setup_gpus = 0.0  # GPU share held by jobs in staging/restart
        self.finished = 0

    # -- transitions ---------------------------------------------------------------

    def admit(self, run: JobRun) -> None:
        job = run.job
        run.mark = job.arrival
        run.view = JobView(id=job.id, demand=run.demand, submitted_at=job.arrival,
                           workload=job.workload, priority=job.priority,
                           state=JobState.QUEUED, remaining_work=job.work,
                           reference_rate=run.ref_rate, dataset=job.dataset,
                           weight=job.weight)
        self.views[job.id] = run.view
        self.waiting[run.handle] = run
        self.queued_gpus += run.demand.gpu_share

    def start(self, run: JobRun, comp: Composition, share: float, rate: float, setup: float,
              gpus: int, now: float) -> None:
        """``run`` holds ``comp`` (``share`` GPUs) from now; it works at ``rate`` after
        ``setup`` seconds."""
        self.waiting.pop(run.handle, None)
        self.queued_gpus -= run.demand.gpu_share
        self.running[run.handle] = run
        run.comp = comp
        run.kind = comp.kind
        run.starts += 1
        if run.first_start is None:
            run.first_start = now
        run.mark = now
        run.ready_at = now + setup
        run.held = share
        run.rate = rate
        run.setup_seconds += setup
        run.state = JobState.STAGING if setup > 0 else JobState.RUNNING
        if setup > 0:
            self.setup_gpus += run.held
        run.assignment = current_assignment(run.id, comp, gpus)
        self.set_view(run)

    def stop(self, run: JobRun, now: float) -> None:
        """Preempted: back to waiting, with its progress kept."""
        run.settle(now)
        if run.ready_at > now:
            self.setup_gpus -= run.held
        run.comp = None
        run.assignment = None
        run.rate = 0.0
        run.held = 0.0
        run.version += 1
        run.preemptions += 1
        run.state = JobState.PREEMPTED
        self.running.pop(run.handle, None)
        self.waiting[run.handle] = run
        self.queued_gpus += run.demand.gpu_share
        self.set_view(run)

    def complete(self, run: JobRun, now: float) -> None:
        run.settle(now)
        run.done = run.work
        run.comp = None
        run.version += 1
        run.finish = now
        run.state = JobState.SUCCEEDED
        run.held = 0.0
        self.running.pop(run.handle, None)
        del self.views[run.id]
        run.view = None
        self.finished += 1

    def ready(self, run: JobRun) -> None:
        """Its staging or restart is over."""
        self.setup_gpus -= run.held
        if run.state is JobState.STAGING:
            run.state = JobState.RUNNING
            self.set_view(run)

    # -- what policies see ---------------------------------------------------------

    def set_view(self, run: JobRun) -> None:
        old = run.view
        if old is not None:
            # What a start or a stop changes; the rest of a job's view never changes after
            # it arrives. Filled as in ``refresh_running`` (a fresh instance's __dict__:
            # several times cheaper than the constructor, and a decision may start and
            # stop thousands of jobs); equal to what the constructor below makes.
            view = object.__new__(JobView)
            fields = view.__dict__
            fields.update(old.__dict__)
            fields["state"] = run.state
            fields["current"] = run.assignment
            fields["attained_gpu_seconds"] = run.attained
            fields["remaining_work"] = max(run.work - run.done, 0.0)
            fields["preemptions"] = run.preemptions
            run.view = view
            self.views[run.id] = view
            return
        job = run.job
        run.view = JobView(id=job.id, demand=run.demand, submitted_at=job.arrival,
                           workload=job.workload, priority=job.priority, state=run.state,
                           current=run.assignment, attained_gpu_seconds=run.attained,
                           remaining_work=max(run.work - run.done, 0.0),
                           reference_rate=run.ref_rate, dataset=job.dataset,
                           preemptions=run.preemptions, weight=job.weight)
        self.views[job.id] = run.view

    def refresh_running(self, now: float) -> None:
        """Running jobs' views with their progress and service as of ``now`` (the runs
        themselves are not settled: nothing about them changed)."""
        views = self.views
        make = object.__new__
        for run in self.running.values():
            mark, ready = run.mark, run.ready_at
            eff = ready if ready > mark else mark
            done = run.done + run.rate * (now - eff) if now > eff else run.done
            left = run.work - done
            # JobView is a plain frozen dataclass; filling a fresh instance's __dict__ is
            # several times cheaper than dataclasses.replace, and the object is new, so
            # nothing frozen is mutated.
            view = make(JobView)
            fields = view.__dict__
            fields.update(run.view.__dict__)
            fields["remaining_work"] = left if left > 0.0 else 0.0
            fields["attained_gpu_seconds"] = run.attained + run.held * (now - mark)
            run.view = view
            views[run.id] = view

    # -- the outcome ---------------------------------------------------------------

    def outcomes(self, now: float) -> tuple[SimJobOutcome, ...]:
        records = []
        for run in self.runs:
            if run.comp is not None:
                run.settle(now)
            job = run.job
            records.append(SimJobOutcome(
                id=job.id, workload=job.workload, arrival=job.arrival,
                gpus=job.demand.gpu_share, work=job.work, isolated_seconds=run.isolated,
                first_start=run.first_start, finish=run.finish, kind=run.kind,
                preemptions=max(run.preemptions, 0), run_seconds=run.run_seconds,
                setup_seconds=run.setup_seconds, group=job.group))
        return tuple(records)


def current_assignment(job_id: str, comp: Composition, gpus: int) -> Assignment:
    """What a running job holds, as a policy reads it (``JobView.current``): the node and
    devices of a one-node composition, the first node of a gang."""
    first = comp.parts[0]
    shared = next((s.compute for s in comp.slices if s.shape is SliceType.FRACTION), None)
    devices = tuple(s.device for s in first.slices) if len(comp.parts) == 1 else None
    return Assignment(job_id, gpus, comp.kind if comp.slices else None, comp.core_count,
                      comp.memory_gib, first.node, devices, shared)



def timeline(rows: list[tuple[float, float, float, int, float, int]]) -> Timeline:
    """The timeline's columns from its rows (time, allocated, busy, queued jobs, queued
    GPUs, running jobs)."""
    if not rows:
        return Timeline.empty()
    return Timeline(*np.array(rows, dtype=float).T)
