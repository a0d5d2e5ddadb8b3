"""The simulated backend: a discrete-event loop on a simulated clock.

At each scheduling event the engine builds a ``ClusterSnapshot``, asks the policy for a
``Decision`` (the same call the live controller makes), and hands it to the live
placement (``Placer.place`` on one long-lived ``PoolState``, see ``placement.py``); it
then carries out the plan: stopped jobs are preempted, started jobs run on exactly the
compositions placement chose, at the speed ``SpeedBook`` gives that composition.

The engine is three parts: ``clock.py`` (the simulated time and its events),
``accounting.py`` (each job's progress, service and view) and ``placement.py`` (the
state the live placer works on). What is here joins them: the loop, decisions, speeds
and interference between jobs sharing a card.

A round costs what changed, not the size of the cluster: job views are kept between
events and only running jobs' progress is refreshed; placement is indexed and
committed, not rebuilt; a decision is skipped when nothing waits (no policy starts or
preempts anything then).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import compress
from operator import attrgetter, not_
from typing import Protocol

from slicebox.errors import InputError
from slicebox.policies import common
from slicebox.policies.base import Policy
from slicebox.pool.composition import Composition
from slicebox.pool.model import Pool
from slicebox.sim.accounting import JobBook, JobRun, timeline
from slicebox.sim.clock import COMPLETE, EPS, READY, EventClock
from slicebox.sim.job import SimJob
from slicebox.sim.placement import SimPlacement, staging_bandwidth, staging_seconds
from slicebox.sim.profiles import SimProfiles
from slicebox.sim.result import SimResult
from slicebox.sim.speed import SpeedBook
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision

DEFAULT_ROUND_SECONDS = 360.0  # Gavel's simulator

# (finished jobs, total jobs, simulated seconds)
ProgressCallback = Callable[[int, int, float], None]


class SimulationError(InputError):
    """The simulation cannot go on: a job no kind of the pool can ever hold, or a policy
    that broke the contract (named an unknown or finished job, or one twice)."""


@dataclass(frozen=True)
class EngineOptions:
    round_seconds: float | None = None  # None: schedule at every arrival and completion
    staging: bool = True  # charge data staging from the volume bandwidth
    interference: bool = True  # co-located jobs run at Gavel's measured pair speed
    timeline: bool = True
    stuck_rounds: int = 3  # idle rounds with waiting jobs and nothing else to happen
    until: float | None = None  # stop the clock here (jobs not finished stay unfinished)
    log_decisions: bool = False  # keep per-decision timings in ``Engine.decision_log``


class PoolChanges(Protocol):
    """What takes a changing share of the pool away from the jobs (``sim/services.py``:
    services' replicas). The engine wakes at ``next_at()`` while jobs remain and calls
    ``apply``, which may hold or free slices in ``engine.placement`` and preempt jobs
    (``Engine.preempt``); when it returns True the policy is asked again."""

    def next_at(self) -> float: ...  # the next change (inf: none)

    def apply(self, engine: Engine) -> bool: ...

    def held(self) -> AbstractSet[str]: ...  # ids it holds slices under in the pool state


@dataclass(frozen=True)
class DecisionTiming:
    """How long one decision took, in wall seconds, and how big it was."""

    now: float
    waiting: int
    running: int
    snapshot_seconds: float  # building the ClusterSnapshot
    decide_seconds: float  # policy.decide
    apply_seconds: float  # placement and starting/stopping jobs
    cpu_seconds: float = 0.0  # CPU time of all three (this process; robust on a busy machine)


class Engine:
    def __init__(self, jobs: Sequence[SimJob], pool: Pool, policy: Policy, speeds: SpeedBook,
                 options: EngineOptions | None = None,
                 progress: ProgressCallback | None = None,
                 trace_name: str = "", changes: PoolChanges | None = None) -> None:
        options = options or EngineOptions()
        ids = [j.id for j in jobs]
        if len(set(ids)) != len(ids):
            raise SimulationError("job ids are not unique")
        self.pool = pool
        self.policy = policy
        self.speeds = speeds
        self.options = options
        self.progress = progress
        self.trace_name = trace_name
        self.changes = changes
        self.book = JobBook(jobs)
        self.runs = self.book.runs
        self.profiles = SimProfiles(speeds, {r.id: r.job for r in self.runs})
        self.profiles.epoch_of = self._epoch_of
        self.placement = SimPlacement(pool, self.profiles, options.staging)
        self.clock = EventClock([r.job.arrival for r in self.runs], options.round_seconds)
        self.decisions = 0
        self.decision_seconds = 0.0
        self.max_decision_seconds = 0.0
        self.events = 0
        self.notes: list[str] = []
        self.not_placed: Counter[str] = Counter()  # NoFit.field of each job left waiting
        self.start_log: list[tuple[float, Composition]] = []  # every start, in order
        # id() of each running job's JobView.current -> its job (the object is kept alive
        # by the run, so its id is its own)
        self._held: dict[int, str] = {}
        self.last_snapshot: ClusterSnapshot | None = None
        self.decision_log: list[DecisionTiming] = []
        self._timeline: list[tuple[float, float, float, int, float, int]] = []
        self._staging_mbps = staging_bandwidth(pool) if options.staging else 0.0
        # Asked even when nobody waits, if it moves jobs between kinds and there are some.
        self._migrates = (getattr(policy, "migrates_between_kinds", False)
                          and len(self.placement.kinds) > 1)
        for run in self.runs:
            self._prepare(run)

    @property
    def now(self) -> float:
        return self.clock.now

    # -- setup ---------------------------------------------------------------------

    def _prepare(self, run: JobRun) -> None:
        """The kinds a job has a speed on, its reference rate and its time alone."""
        job = run.job
        demand = job.demand
        present = self.placement.kinds
        allowed = [k for k in (demand.kinds or present) if k in present]
        share = demand.gpu_share if demand.gpus or demand.fraction else 0.0
        rated = [(self.speeds.job_rate(job, k, share) if share else 1.0, k) for k in allowed]
        rated.sort(key=lambda rk: -rk[0])
        run.kinds = tuple(k for rate, k in rated if rate > 0.0)
        if share and len(run.kinds) < len(present):
            # Placement may put a job only where it has a speed.
            run.demand = dataclasses.replace(demand, kinds=run.kinds)
        never = self.placement.feasible(run.demand) if run.kinds else None
        if not run.kinds or never is not None:
            why = f" ({never})" if never is not None else ""
            raise SimulationError(
                f"job {job.id!r} asks for {demand.gpus} GPU(s) of {allowed or 'any kind'} "
                f"which this pool ({self.pool.name}: {self.placement.total_gpus}) can never "
                f"hold{why}")
        best = rated[0][0]
        ref = self.speeds.reference_kind
        ref_rate = (self.speeds.job_rate(job, ref, share) if share and ref in run.kinds
                    else best)
        run.ref_rate = (ref_rate or best) / max(share, 1e-9) if share else 1.0
        alone = (job.dataset.size_gib * 1024.0 / self._staging_mbps
                 if job.dataset is not None and self._staging_mbps > 0 else 0.0)
        run.isolated = job.startup_seconds + alone + job.work / best if best > 0 else math.inf

    # -- the loop ------------------------------------------------------------------

    def run(self) -> SimResult:
        with _fewer_young_collections():
            return self._run()

    def _run(self) -> SimResult:
        started = time.perf_counter()
        book, clock, runs = self.book, self.clock, self.runs
        total = len(runs)
        rounds = self.options.round_seconds
        until = self.options.until
        idle_ticks = 0
        report_every = max(1, total // 200)
        while True:
            t = clock.advance(idle=not book.running and not book.waiting)
            if self.changes is not None and (book.waiting or book.running
                                             or clock.arrivals_left):
                t = min(t, self.changes.next_at())
            if t == math.inf or (until is not None and t > until):
                break
            clock.now = t
            changed = False
            for code, handle, token in clock.due():
                run = runs[handle]
                # A completion is stale once the job's speed changed (version); the end of
                # its setup once it was stopped or started again (starts).
                if run.comp is None or token != (run.version if code == COMPLETE
                                                 else run.starts):
                    continue
                self.events += 1
                if code == COMPLETE:
                    if run.job.elastic and self._next_epoch(run):
                        continue  # an epoch ended: new efficiency, perhaps a new batch size
                    self._complete(run)
                    changed = True
                    if self.progress and book.finished % report_every == 0:
                        self.progress(book.finished, total, t)
                else:
                    book.ready(run)
            for handle in clock.arrived():
                book.admit(runs[handle])
                self.events += 1
                changed = True
            # A change of the pool's share (services) re-plans even with nobody waiting:
            # freed slices are for running elastic jobs to grow into.
            reshaped = (self.changes is not None and self.changes.next_at() <= t + EPS
                        and self.changes.apply(self))
            if rounds:
                if clock.tick_due():
                    before = len(book.running)
                    if book.waiting or book.running:
                        self._decide()
                    stuck = (book.waiting and not book.running and not clock.pending_events
                             and not clock.arrivals_left and len(book.running) == before
                             and not self._changes_pending())
                    idle_ticks = idle_ticks + 1 if stuck else 0
                    if idle_ticks >= self.options.stuck_rounds:
                        self._note_stuck()
                        break
            elif ((changed and (book.waiting or (self._migrates and book.running)))
                  or (reshaped and (book.waiting or book.running))):
                self._decide()
                if (book.waiting and not book.running and not clock.pending_events
                        and not clock.arrivals_left and not self._changes_pending()):
                    self._note_stuck()
                    break
            if self.options.timeline:
                self._record()
        if self.progress:
            self.progress(book.finished, total, clock.now)
        return self._result(time.perf_counter() - started)

    def _changes_pending(self) -> bool:
        return self.changes is not None and self.changes.next_at() < math.inf

    # -- scheduling ----------------------------------------------------------------

    def _snapshot(self) -> ClusterSnapshot:
        book, now = self.book, self.clock.now
        # A policy that declares it never reads running jobs' progress spares the
        # refresh, which is the one per-decision cost that grows with running jobs.
        refresh = getattr(self.policy, "reads_progress", True)
        if refresh and getattr(self.policy, "progress_when_contended", False):
            waiting = [r.view for r in book.waiting.values() if r.view is not None]
            refresh = not common.free_fits(waiting, self.placement.free_gpus())
        if refresh and book.running:
            book.refresh_running(now)
        # The views by id go along, so placement finds the jobs it places in O(1).
        return ClusterSnapshot(now, tuple(book.views.values()), self.placement.capacity(),
                               self.profiles, self.options.round_seconds,
                               self.placement.node_views(), job_index=book.views)

    def _decide(self) -> None:
        cpu0 = time.process_time() if self.options.log_decisions else 0.0
        t0 = time.perf_counter()
        snapshot = self._snapshot()
        self.last_snapshot = snapshot
        started = time.perf_counter()
        decision = self.policy.decide(snapshot)
        spent = time.perf_counter() - started
        self.decisions += 1
        self.decision_seconds += spent
        self.max_decision_seconds = max(self.max_decision_seconds, spent)
        waiting, running = len(self.book.waiting), len(self.book.running)
        self._apply(snapshot, decision)
        if self.options.log_decisions:
            self.decision_log.append(DecisionTiming(
                self.clock.now, waiting, running, started - t0, spent,
                time.perf_counter() - started - spent, time.process_time() - cpu0))

    def _apply(self, snapshot: ClusterSnapshot, decision: Decision) -> None:
        # A running job whose assignment is the very one it holds (policies hand
        # ``JobView.current`` back) stays as it is; placement is told so (``as_is``)
        # instead of comparing every running job's shape at every decision. This loop is
        # per running job per decision: keep it lean.
        by_id, chosen = self.book.by_id, decision.run
        # By object identity, in C (map/set), not by a Python loop over running jobs.
        held = self._held.keys() & set(map(id, chosen))
        as_is = set(map(self._held.__getitem__, held))
        if held:
            rest = list(compress(chosen, map(not_, map(held.__contains__, map(id, chosen)))))
            self._check(decision, rest)
            decision = Decision(tuple(rest), decision.reasons, decision.strict)
        else:
            self._check(decision, chosen)
        if self.changes is not None:  # what they hold is not the policy's to keep or stop
            as_is |= self.changes.held()
        plan = self.placement.place(snapshot, decision, as_is)
        for job_id in plan.stop:
            self._stop(by_id[job_id])
        for comp in plan.start:
            run = by_id[comp.job_id]
            if not self._begin(run, comp, self._gpus(comp, decision)):
                self.placement.state.release(comp.job_id)
        for reason in plan.waiting.values():
            self.not_placed[reason.field] += 1

    def _check(self, decision: Decision, others: Sequence[Assignment]) -> None:
        """The policy's contract: each job once, and only jobs that wait or run."""
        name = self.policy.name
        if len(set(map(attrgetter("job_id"), decision.run))) != len(decision.run):
            twice = Counter(a.job_id for a in decision.run).most_common(1)[0][0]
            raise SimulationError(f"policy {name!r} chose job {twice!r} twice in one "
                                  "decision")
        by_id = self.book.by_id
        for a in others:
            run = by_id.get(a.job_id)
            if run is None:
                raise SimulationError(f"policy {name!r} chose unknown job {a.job_id!r}")
            if run.view is None:
                raise SimulationError(f"policy {name!r} chose job {a.job_id!r}, which is "
                                      "finished or has not arrived")

    @staticmethod
    def _gpus(comp: Composition, decision: Decision) -> int:
        """The GPU count a started job was assigned (a share counts as 1)."""
        if len(comp.slices) == 1 or comp.gpu_share == len(comp.slices):
            return len(comp.slices)
        return next((a.gpus for a in decision.run if a.job_id == comp.job_id), 1)

    # -- job transitions -----------------------------------------------------------

    def _begin(self, run: JobRun, comp: Composition, gpus: int) -> bool:
        """Run a job on what it was given; False (nothing changed) if it has no speed
        there."""
        share = comp.gpu_share  # a property that sums: computed once per start
        rate = self._base_rate(run, comp, share)
        if rate <= 0.0:
            return False
        job = run.job
        setup = ((job.restart_seconds if run.starts else job.startup_seconds)
                 + staging_seconds(comp, self._staging_mbps))
        self.book.start(run, comp, share, rate, setup, gpus, self.clock.now)
        self.start_log.append((self.clock.now, comp))
        self._held[id(run.assignment)] = run.id
        shared = share < len(comp.slices)
        self.placement.held(run.handle, comp, share, shared)
        if shared and self.options.interference:
            self._rerate_all(self.placement.sharers(comp))
        else:
            self._schedule(run)
        if setup > 0:
            self.clock.push(run.ready_at, READY, run.handle, run.starts)
        return True

    def _stop(self, run: JobRun) -> None:
        self._end(run, completed=False)

    def preempt(self, job_id: str) -> None:
        """Stop a running job outside a decision (for ``PoolChanges``): its slices are
        freed now and it waits again, paying its restart cost at its next start."""
        run = self.book.by_id[job_id]
        if run.comp is None:
            raise SimulationError(f"job {job_id!r} is not running")
        self.placement.state.release(job_id)
        self._stop(run)

    def _complete(self, run: JobRun) -> None:
        self._end(run, completed=True)

    def _end(self, run: JobRun, completed: bool) -> None:
        """A run leaves its slices: preempted by a round (which already freed them in the
        pool state) or finished (its slices are freed here)."""
        comp = run.comp
        assert comp is not None
        del self._held[id(run.assignment)]
        share = run.held
        shared = share < len(comp.slices)
        if completed:
            self.book.complete(run, self.clock.now)
            self.placement.release(run.handle, comp, share, shared)
        else:
            self.book.stop(run, self.clock.now)
            self.placement.released(run.handle, comp, share, shared)
        if shared and self.options.interference:
            self._rerate_all(self.placement.sharers(comp))

    def _schedule(self, run: JobRun) -> None:
        run.version += 1
        when = run.finish_time()
        job = run.job
        if job.elastic and run.rate > 0.0:
            # Efficiency changes by epoch, so an elastic job's speed is piecewise: the
            # event comes at the end of its epoch when that is before its end.
            boundary = (_epoch(run) + 1) * job.epoch_samples
            if boundary < run.work:
                start = run.ready_at if run.ready_at > run.mark else run.mark
                when = min(when, start + (boundary - run.done) / run.rate)
        self.clock.push(when, COMPLETE, run.handle, run.version)

    def _next_epoch(self, run: JobRun) -> bool:
        """At an elastic job's epoch boundary: its new speed, unless it is done."""
        run.settle(self.clock.now)
        if run.work - run.done <= 1e-9 * run.work:
            return False
        self._rerate(run)
        return True

    def _epoch_of(self, job_id: str) -> int:
        run = self.book.by_id.get(job_id)
        if run is None or not run.job.elastic:
            return 0
        if run.comp is None:
            return _epoch(run)
        # Progress of a running job as of now (its run is settled only on changes).
        start = run.ready_at if run.ready_at > run.mark else run.mark
        done = run.done + run.rate * (self.clock.now - start) if self.clock.now > start \
            else run.done
        return int((done + 1e-6 * run.job.epoch_samples) // run.job.epoch_samples)

    # -- speed ---------------------------------------------------------------------

    def _base_rate(self, run: JobRun, comp: Composition, share: float) -> float:
        job = run.job
        if not (job.demand.gpus or job.demand.fraction):
            return 1.0  # a CPU-only job's work is its duration: one second per second
        parts = comp.parts
        per_node = tuple(len(p.slices) for p in parts) if len(parts) > 1 else None
        gpu_rate = self.speeds.job_rate(job, comp.kind, share, per_node,
                                        _epoch(run) if job.elastic else 0)
        return gpu_rate * self.speeds.cpu_factor(job, comp.core_count, comp.memory_gib)

    def _rerate_all(self, handles: list[int]) -> None:
        for handle in handles:
            self._rerate(self.runs[handle])

    def _rerate(self, run: JobRun) -> None:
        """New speed for a job whose co-runners on a shared card changed: Gavel's
        measured pair speed when exactly one other job shares it."""
        comp = run.comp
        if comp is None:
            return
        run.settle(self.clock.now)
        rate = self._base_rate(run, comp, run.held)
        if len(comp.slices) == 1:
            others = [h for h in self.placement.sharers(comp) if h != run.handle]
            if len(others) == 1:
                pair = self.speeds.colocated(run.job, self.runs[others[0]].job, comp.kind)
                if pair is not None and pair[0] > 0.0:
                    rate = pair[0] * self.speeds.cpu_factor(run.job, comp.core_count,
                                                            comp.memory_gib)
        run.rate = rate
        self._schedule(run)

    # -- bookkeeping ---------------------------------------------------------------

    def _record(self) -> None:
        book = self.book
        allocated = self.placement.allocated_share
        self._timeline.append((self.clock.now, allocated, allocated - book.setup_gpus,
                               len(book.waiting), book.queued_gpus, len(book.running)))

    def _note_stuck(self) -> None:
        waiting = self.book.waiting
        names = ", ".join(r.id for r in list(waiting.values())[:5])
        self.notes.append(f"{len(waiting)} job(s) never started (policy "
                          f"{self.policy.name} left them waiting with nothing else to "
                          f"happen): {names}")

    def _result(self, wall: float) -> SimResult:
        return SimResult(
            policy=self.policy.name, pool=self.pool.name,
            total_gpus=float(sum(self.placement.total_gpus.values())), trace=self.trace_name,
            jobs=self.book.outcomes(self.clock.now), timeline=timeline(self._timeline),
            round_seconds=self.options.round_seconds, decisions=self.decisions,
            decision_seconds=self.decision_seconds,
            max_decision_seconds=self.max_decision_seconds, engine_seconds=wall,
            events=self.events, notes=tuple(self.notes),
            not_placed=dict(self.not_placed))


def _epoch(run: JobRun) -> int:
    """The epoch an elastic job's settled progress is in (a hair past a boundary counts
    as the next one, so the event at a boundary moves it on)."""
    per = run.job.epoch_samples
    return int((run.done + 1e-6 * per) // per) if per > 0 else 0


# A run allocates millions of short-lived objects that form no reference cycles (views,
# tuples, compositions), and Python's default (a young collection every 700 allocations)
# then spends a fifth to a third of a big decision re-scanning them for cycles there are
# none of. A larger young generation during the run keeps cycle collection working, just
# less often; the process's own setting is restored afterwards.
YOUNG_GENERATION = 100_000


@contextlib.contextmanager
def _fewer_young_collections() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], YOUNG_GENERATION), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
