"""The simulated backend: a discrete-event loop on a simulated clock.

Events are arrivals, completions, the end of a job's staging/restart, and (in round
mode) round ticks. At each scheduling event the engine builds a ``ClusterSnapshot``,
asks the policy for a ``Decision`` (the same call the live controller makes), and
applies it: running jobs the decision leaves out are preempted, running jobs it keeps
unchanged stay where they are, and the rest are placed in order with backfill.

A round costs what changed, not the size of the cluster: job views are kept between
events and only running jobs' progress is refreshed; free capacity is indexed by kind
and node (``allocator``); arrivals come from a sorted array, not the heap; a decision
is skipped when nothing waits (no policy starts or preempts anything then).
"""

from __future__ import annotations

import heapq
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from slicebox.policies import common
from slicebox.policies.base import Policy
from slicebox.pool.model import Pool
from slicebox.sim.allocator import Allocation, Allocator, Share
from slicebox.sim.job import SimJob
from slicebox.sim.profiles import SimProfiles
from slicebox.sim.result import JobRecord, SimResult, Timeline
from slicebox.sim.speed import SpeedBook
from slicebox.snapshot import (
    Assignment,
    Capacity,
    ClusterSnapshot,
    Decision,
    JobState,
    JobView,
    NodeView,
)
from slicebox.spec.demand import Demand

DEFAULT_ROUND_SECONDS = 360.0  # Gavel's simulator
_COMPLETE, _READY = 0, 1
_EPS = 1e-6

Progress = Callable[[int, int, float], None]  # (finished jobs, total jobs, simulated seconds)


class SimulationError(ValueError):
    """The simulation cannot go on: a job no kind of the pool can ever hold, or a policy
    that broke the contract (named an unknown or finished job, or one twice). A
    ValueError, so that callers reporting bad input report these too."""


@dataclass(frozen=True)
class EngineOptions:
    round_seconds: float | None = None  # None: schedule at every arrival and completion
    staging: bool = True  # charge data staging from the volume bandwidth
    interference: bool = True  # co-located jobs run at Gavel's measured pair speed
    timeline: bool = True
    stuck_rounds: int = 3  # idle rounds with waiting jobs and nothing else to happen
    until: float | None = None  # stop the clock here (jobs not finished stay unfinished)
    log_decisions: bool = False  # keep per-decision timings in ``Engine.decision_log``


@dataclass(frozen=True)
class DecisionTiming:
    """How long one decision took, in wall seconds, and how big it was."""

    now: float
    waiting: int
    running: int
    snapshot_seconds: float  # building the ClusterSnapshot
    decide_seconds: float  # policy.decide
    apply_seconds: float  # placement and starting/stopping jobs


class _Run:
    """One job's mutable state in the engine (the engine's own, never shown to policies)."""

    __slots__ = ("job", "id", "work", "handle", "state", "view", "alloc", "assignment", "rate",
                 "ready_at", "mark", "done", "attained", "held", "version", "first_start", "finish",
                 "preemptions", "starts", "run_seconds", "setup_seconds", "kinds", "ref_rate",
                 "isolated", "kind")

    def __init__(self, job: SimJob, handle: int) -> None:
        self.job = job
        self.id = job.id
        self.work = job.work
        self.handle = handle
        self.state = JobState.QUEUED
        self.view: JobView | None = None
        self.alloc: Allocation | None = None
        self.assignment: Assignment | None = None
        self.rate = 0.0
        self.ready_at = 0.0
        self.mark = 0.0
        self.done = 0.0
        self.attained = 0.0
        self.held = 0.0
        self.version = 0
        self.first_start: float | None = None
        self.finish: float | None = None
        self.preemptions = 0
        self.starts = 0
        self.run_seconds = 0.0
        self.setup_seconds = 0.0
        self.kinds: tuple[str, ...] = ()
        self.ref_rate = 0.0
        self.isolated = 0.0
        self.kind: str | None = None


class Engine:
    def __init__(self, jobs: Sequence[SimJob], pool: Pool, policy: Policy, speeds: SpeedBook,
                 options: EngineOptions | None = None, progress: Progress | None = None,
                 trace_name: str = "") -> None:
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
        self.alloc = Allocator(pool)  # free capacity; the placer engine keeps its own too
        order = sorted(range(len(jobs)), key=lambda i: (jobs[i].arrival, i))
        self.runs = [_Run(jobs[i], h) for h, i in enumerate(order)]
        self.index = {r.job.id: r.handle for r in self.runs}
        self.by_id = {r.job.id: r for r in self.runs}
        self.profiles = SimProfiles(speeds, {r.job.id: r.job for r in self.runs})
        self.views: dict[str, JobView] = {}
        self.running: dict[int, _Run] = {}
        self.waiting: dict[int, _Run] = {}
        self.queued_gpus = 0.0
        self.setup_gpus = 0.0
        self.now = 0.0
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.finished = 0
        self.decisions = 0
        self.decision_seconds = 0.0
        self.max_decision_seconds = 0.0
        self.events = 0
        self.notes: list[str] = []
        self.last_snapshot: ClusterSnapshot | None = None
        self.decision_log: list[DecisionTiming] = []
        self._timeline: list[tuple[float, float, float, int, float, int]] = []
        self._cache: dict[int, OrderedDict[str, float]] = {}
        self._capacity_total = MappingProxyType(dict(self.alloc.total_gpus))
        self._staging_mbps = _staging_bandwidth(pool)
        # Asked even when nobody waits, if it moves jobs between kinds and there are some.
        self._migrates = (getattr(policy, "migrates_between_kinds", False)
                          and len(self.alloc.kinds) > 1)
        self._cache_gib = _cache_capacity(pool)
        for run in self.runs:
            self._prepare(run)

    # -- setup ---------------------------------------------------------------------

    def _prepare(self, run: _Run) -> None:
        job = run.job
        demand = job.demand
        allowed = demand.kinds or self.alloc.kinds
        share = demand.gpu_share if demand.gpus or demand.fraction else 0.0
        rated = [(self.speeds.job_rate(job, k, share) if share else 1.0, k)
                 for k in allowed if k in self.alloc.total_gpus]
        rated.sort(key=lambda rk: -rk[0])
        run.kinds = tuple(k for rate, k in rated if rate > 0.0)
        if not run.kinds or not self._fits_pool(demand, run.kinds):
            raise SimulationError(
                f"job {job.id!r} asks for {demand.gpus} GPU(s) of {list(allowed)} which this "
                f"pool ({self.pool.name}: {dict(self.alloc.total_gpus)}) can never hold"
                f"{self._why_not(demand)}")
        best = rated[0][0]
        ref = self.speeds.reference_kind
        ref_rate = (self.speeds.job_rate(job, ref, share) if share and ref in run.kinds
                    else best)
        run.ref_rate = (ref_rate or best) / max(share, 1e-9) if share else 1.0
        setup = job.startup_seconds + self._staging_seconds(job)
        run.isolated = setup + job.work / best if best > 0 else math.inf

    # -- the loop ------------------------------------------------------------------

    def run(self) -> SimResult:
        started = time.perf_counter()
        runs = self.runs
        total = len(runs)
        rounds = self.options.round_seconds
        next_arrival = 0
        next_tick = runs[0].job.arrival if runs and rounds else math.inf
        idle_ticks = 0
        report_every = max(1, total // 200)
        heap = self.heap
        while True:
            t_arrival = runs[next_arrival].job.arrival if next_arrival < total else math.inf
            t_event = heap[0][0] if heap else math.inf
            if rounds and not self.running and not self.waiting:
                # Nothing active: the next round is the first boundary after an arrival.
                if t_arrival == math.inf and t_event == math.inf:
                    break
                if t_arrival < math.inf and next_tick < t_arrival:
                    next_tick += math.ceil((t_arrival - next_tick) / rounds) * rounds
            t = min(t_arrival, t_event, next_tick if rounds else math.inf)
            if t == math.inf or (self.options.until is not None and t > self.options.until):
                break
            self.now = t
            changed = False
            while heap and heap[0][0] <= t + _EPS:
                _, _, code, handle, token = heapq.heappop(heap)
                run = runs[handle]
                # A completion is stale once the job's speed changed (version); the end of
                # its setup once it was stopped or started again (starts).
                if run.alloc is None or token != (run.version if code == _COMPLETE
                                                  else run.starts):
                    continue
                self.events += 1
                if code == _COMPLETE:
                    self._complete(run)
                    changed = True
                    if self.progress and self.finished % report_every == 0:
                        self.progress(self.finished, total, t)
                else:
                    self._ready(run)
            while next_arrival < total and runs[next_arrival].job.arrival <= t + _EPS:
                self._admit(runs[next_arrival])
                next_arrival += 1
                self.events += 1
                changed = True
            if rounds:
                if t + _EPS >= next_tick:
                    next_tick += rounds
                    before = len(self.running)
                    if self.waiting or self.running:
                        self._decide()
                    stuck = (self.waiting and not self.running and not heap
                             and next_arrival >= total and len(self.running) == before)
                    idle_ticks = idle_ticks + 1 if stuck else 0
                    if idle_ticks >= self.options.stuck_rounds:
                        self._note_stuck()
                        break
            elif changed and (self.waiting or (self._migrates and self.running)):
                self._decide()
                if self.waiting and not self.running and not heap and next_arrival >= total:
                    self._note_stuck()
                    break
            if self.options.timeline:
                self._record()
        if self.progress:
            self.progress(self.finished, total, self.now)
        return self._result(time.perf_counter() - started)

    # -- scheduling ----------------------------------------------------------------

    def _snapshot(self) -> ClusterSnapshot:
        now = self.now
        views = self.views
        # A policy that declares it never reads running jobs' progress spares the
        # refresh, which is the one per-decision cost that grows with running jobs.
        refresh = getattr(self.policy, "reads_progress", True)
        if refresh and getattr(self.policy, "progress_when_contended", False):
            waiting = [r.view for r in self.waiting.values() if r.view is not None]
            refresh = not common.free_fits(waiting, self._free_gpus())
        if refresh and self.running:
            make = object.__new__
            for run in self.running.values():
                mark, ready = run.mark, run.ready_at
                eff = ready if ready > mark else mark
                done = run.done + run.rate * (now - eff) if now > eff else run.done
                left = run.work - done
                # JobView is a plain frozen dataclass; filling a fresh instance's __dict__
                # is several times cheaper than dataclasses.replace, and the object is
                # new, so nothing frozen is mutated.
                view = make(JobView)
                fields = view.__dict__
                fields.update(run.view.__dict__)  # type: ignore[union-attr]
                fields["remaining_work"] = left if left > 0.0 else 0.0
                fields["attained_gpu_seconds"] = run.attained + run.held * (now - mark)
                run.view = view
                views[run.id] = view
        return ClusterSnapshot(now, tuple(views.values()), self._capacity(), self.profiles,
                               self.options.round_seconds, self._node_views())

    # -- placement backend: free capacity and who holds what (the placer engine overrides)

    def _fits_pool(self, demand: Demand, kinds: Sequence[str]) -> bool:
        return self.alloc.fits_anywhere(demand, kinds)

    def _why_not(self, demand: Demand) -> str:
        return ""

    def _free_gpus(self) -> Mapping[str, int]:
        return self.alloc.free_gpus

    def _capacity(self) -> Capacity:
        alloc = self.alloc
        return Capacity(self._capacity_total, MappingProxyType(dict(alloc.free_gpus)),
                        alloc.total_cpus, alloc.free_cpus, alloc.total_memory,
                        alloc.free_memory)

    def _node_views(self) -> tuple[NodeView, ...]:
        return self.alloc.node_views()

    def _allocate(self, run: _Run, a: Assignment, kinds: Sequence[str]) -> Allocation | None:
        return self.alloc.allocate(run.handle, run.job.demand, a, kinds)

    def _release(self, run: _Run, alloc: Allocation) -> None:
        self.alloc.release(run.handle, alloc)

    def _holders(self, part: Share) -> list[int]:
        return self.alloc.holders(part)

    def _node_name(self, part: Share) -> str:
        return self.alloc.groups[part.node].name

    def _allocated_share(self) -> float:
        return self.alloc.allocated_share

    def _decide(self) -> None:
        t0 = time.perf_counter()
        snapshot = self._snapshot()
        self.last_snapshot = snapshot
        started = time.perf_counter()
        decision = self.policy.decide(snapshot)
        spent = time.perf_counter() - started
        self.decisions += 1
        self.decision_seconds += spent
        self.max_decision_seconds = max(self.max_decision_seconds, spent)
        waiting, running = len(self.waiting), len(self.running)
        self._apply(decision)
        if self.options.log_decisions:
            self.decision_log.append(DecisionTiming(
                self.now, waiting, running, started - t0, spent,
                time.perf_counter() - started - spent))

    def _apply(self, decision: Decision) -> None:
        by_id = self.by_id
        seen: set[int] = set()
        to_start: list[tuple[_Run, Assignment]] = []
        moved: list[_Run] = []
        for a in decision.run:
            run = by_id.get(a.job_id)
            if run is not None and a is run.assignment and run.handle not in seen:
                seen.add(run.handle)  # the common case: a running job keeps its slice
                continue
            if run is None:
                raise SimulationError(f"policy {self.policy.name!r} chose unknown job "
                                      f"{a.job_id!r}")
            if run.handle in seen:
                raise SimulationError(f"policy {self.policy.name!r} chose job {a.job_id!r} "
                                      "twice in one decision")
            seen.add(run.handle)
            if run.finish is not None or run.view is None:
                raise SimulationError(f"policy {self.policy.name!r} chose job {a.job_id!r}, "
                                      "which is finished or has not arrived")
            if run.alloc is not None:
                if _compatible(a, run):
                    continue  # keeps its slice: a lease extension, no restart
                moved.append(run)
            to_start.append((run, a))
        kept = len(seen) - len(to_start) + len(moved)  # running jobs the decision names
        stopped = ([r for h, r in self.running.items() if h not in seen]
                   if kept < len(self.running) else [])
        for run in stopped + moved:
            self._stop(run)
        orders = self._kind_orders(to_start)
        for run, a in to_start:
            if not self._start(run, a, orders.get(run.handle)) and decision.strict:
                break

    def _kind_orders(self, to_start: list[tuple[_Run, Assignment]]) -> dict[int, list[str]]:
        """Kinds to try for the jobs whose assignment leaves the kind open, by the live
        placer's rule (``Placer._kind_order``): each job's gain on a kind is its speed
        there over its speed on its slowest allowed kind, and free GPUs of a kind go to
        the biggest gains first, whatever the jobs' order in the decision."""
        budget = dict(self._free_gpus())
        flexible = []
        for i, (run, a) in enumerate(to_start):
            if a.kind is not None:
                budget[a.kind] = budget.get(a.kind, 0) - a.gpus
            elif len(run.kinds) > 1 and run.job.demand.gpus > 0 \
                    and run.job.demand.fraction is None:
                flexible.append((i, run, a))
        if not flexible:
            return {}
        pairs = []
        orders: dict[int, list[str]] = {}
        for i, run, a in flexible:
            rates = {k: self.speeds.job_rate(run.job, k, float(a.gpus)) for k in run.kinds}
            slowest = min(rates.values())
            for k in run.kinds:
                gain = rates[k] / slowest if slowest > 0 else 1e9
                pairs.append((-gain, i, -rates[k], k, run, a))
            orders[run.handle] = sorted(run.kinds, key=lambda k, r=rates: -r[k])
        pairs.sort(key=lambda p: p[:3])
        given: set[int] = set()
        for _, _, _, kind, run, a in pairs:
            if run.handle in given or budget.get(kind, 0) < a.gpus:
                continue
            budget[kind] -= a.gpus
            given.add(run.handle)
            orders[run.handle] = [kind] + [k for k in orders[run.handle] if k != kind]
        return orders

    # -- job transitions -----------------------------------------------------------

    def _admit(self, run: _Run) -> None:
        job = run.job
        run.view = JobView(id=job.id, demand=job.demand, submitted_at=job.arrival,
                           workload=job.workload, priority=job.priority,
                           state=JobState.QUEUED, remaining_work=job.work,
                           reference_rate=run.ref_rate, dataset=job.dataset)
        run.mark = job.arrival
        self.views[job.id] = run.view
        self.waiting[run.handle] = run
        self.queued_gpus += job.demand.gpu_share

    def _start(self, run: _Run, a: Assignment, order: Sequence[str] | None = None) -> bool:
        if a.kind is not None:
            kinds: Sequence[str] = (a.kind,) if a.kind in run.kinds else ()
        else:
            kinds = order or run.kinds
        alloc = self._allocate(run, a, kinds)
        if alloc is None:
            return False
        if not self._begin(run, a, alloc, self._stage(run.job, alloc)):
            self._release(run, alloc)
            return False
        return True

    def _begin(self, run: _Run, a: Assignment, alloc: Allocation, staging: float) -> bool:
        """Run a job on what it was given; False (nothing changed) if it has no speed there."""
        job = run.job
        now = self.now
        base = self._base_rate(run, alloc)
        if base <= 0.0:
            return False
        setup = (job.restart_seconds if run.starts else job.startup_seconds) + staging
        self.waiting.pop(run.handle, None)
        self.queued_gpus -= job.demand.gpu_share
        self.running[run.handle] = run
        run.alloc = alloc
        run.kind = alloc.kind
        run.starts += 1
        if run.first_start is None:
            run.first_start = now
        run.mark = now
        run.ready_at = now + setup
        run.held = alloc.gpus
        run.rate = base
        run.setup_seconds += setup
        run.state = JobState.STAGING if setup > 0 else JobState.RUNNING
        if setup > 0:
            self.setup_gpus += run.held
        first = alloc.parts[0]
        run.assignment = Assignment(job.id, a.gpus, alloc.kind, alloc.cpus, alloc.memory_gib,
                                    self._node_name(first),
                                    first.devices if len(alloc.parts) == 1 else None,
                                    alloc.gpu_share if alloc.shared else None)
        self._set_view(run)
        if alloc.shared and self.options.interference:
            self._rerate_neighbours(run)
        else:
            self._schedule(run)
        if setup > 0:
            self._push(run.ready_at, _READY, run, run.starts)
        return True

    def _stop(self, run: _Run) -> None:
        alloc = run.alloc
        assert alloc is not None
        self._settle(run)
        if run.ready_at > self.now:
            self.setup_gpus -= run.held
        self._release(run, alloc)
        run.alloc = None
        run.assignment = None
        run.rate = 0.0
        run.held = 0.0
        run.version += 1
        run.preemptions += 1
        run.state = JobState.PREEMPTED
        self.running.pop(run.handle, None)
        self.waiting[run.handle] = run
        self.queued_gpus += run.job.demand.gpu_share
        self._set_view(run)
        if alloc.shared and self.options.interference:
            self._rerate_parts(alloc)

    def _complete(self, run: _Run) -> None:
        alloc = run.alloc
        assert alloc is not None
        self._settle(run)
        run.done = run.job.work
        self._release(run, alloc)
        run.alloc = None
        run.version += 1
        run.finish = self.now
        run.state = JobState.SUCCEEDED
        run.held = 0.0
        self.running.pop(run.handle, None)
        del self.views[run.job.id]
        run.view = None
        self.finished += 1
        if alloc.shared and self.options.interference:
            self._rerate_parts(alloc)

    def _ready(self, run: _Run) -> None:
        self.setup_gpus -= run.held
        if run.state is JobState.STAGING:
            run.state = JobState.RUNNING
            self._set_view(run)

    def _settle(self, run: _Run) -> None:
        """Bring a running job's progress and service up to now."""
        now = self.now
        eff = run.ready_at if run.ready_at > run.mark else run.mark
        if now > eff:
            run.done = min(run.job.work, run.done + run.rate * (now - eff))
        run.attained += run.held * (now - run.mark)
        run.run_seconds += now - run.mark
        run.mark = now

    def _schedule(self, run: _Run) -> None:
        run.version += 1
        eff = run.ready_at if run.ready_at > run.mark else run.mark
        left = run.job.work - run.done
        finish = eff + (left / run.rate if left > 0 else 0.0)
        self._push(finish, _COMPLETE, run)

    def _push(self, when: float, code: int, run: _Run, token: int | None = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (when, self.seq, code, run.handle,
                                   run.version if token is None else token))

    def _set_view(self, run: _Run) -> None:
        job = run.job
        remaining = max(job.work - run.done, 0.0)
        run.view = JobView(id=job.id, demand=job.demand, submitted_at=job.arrival,
                           workload=job.workload, priority=job.priority, state=run.state,
                           current=run.assignment, attained_gpu_seconds=run.attained,
                           remaining_work=remaining, reference_rate=run.ref_rate,
                           dataset=job.dataset, preemptions=run.preemptions)
        self.views[job.id] = run.view

    # -- speed ---------------------------------------------------------------------

    def _base_rate(self, run: _Run, alloc: Allocation) -> float:
        job = run.job
        if not (job.demand.gpus or job.demand.fraction):
            return 1.0  # a CPU-only job's work is its duration: one second per second
        per_node = alloc.per_node if len(alloc.parts) > 1 else None
        gpu_rate = self.speeds.job_rate(job, alloc.kind, alloc.gpus, per_node)
        return gpu_rate * self.speeds.cpu_factor(job, alloc.cpus, alloc.memory_gib)

    def _rerate_parts(self, alloc: Allocation) -> None:
        for part in alloc.parts:
            for handle in self._holders(part):
                self._rerate(self.runs[handle])

    def _rerate_neighbours(self, run: _Run) -> None:
        assert run.alloc is not None
        seen = {run.handle}
        self._rerate(run)
        for part in run.alloc.parts:
            for handle in self._holders(part):
                if handle not in seen:
                    seen.add(handle)
                    self._rerate(self.runs[handle])

    def _rerate(self, run: _Run) -> None:
        """New speed for a job whose co-runners on a shared GPU changed."""
        alloc = run.alloc
        if alloc is None:
            return
        self._settle(run)
        rate = self._base_rate(run, alloc)
        if alloc.shared and len(alloc.parts) == 1:
            others = [h for h in self._holders(alloc.parts[0]) if h != run.handle]
            if len(others) == 1:
                pair = self.speeds.colocated(run.job, self.runs[others[0]].job, alloc.kind)
                if pair is not None and pair[0] > 0.0:
                    rate = pair[0] * self.speeds.cpu_factor(run.job, alloc.cpus,
                                                            alloc.memory_gib)
        run.rate = rate
        self._schedule(run)

    # -- staging -------------------------------------------------------------------

    def _staging_seconds(self, job: SimJob) -> float:
        if not self.options.staging or job.dataset is None or self._staging_mbps <= 0:
            return 0.0
        return job.dataset.size_gib * 1024.0 / self._staging_mbps

    def _stage(self, job: SimJob, alloc: Allocation) -> float:
        """Seconds to copy the job's data to every node it runs on that lacks a copy
        (nodes stage in parallel; a copy is kept, least recently used out first)."""
        if not self.options.staging or job.dataset is None:
            return 0.0
        key, size = job.dataset.key, job.dataset.size_gib
        seconds = 0.0
        for part in alloc.parts:
            cache = self._cache.setdefault(part.node, OrderedDict())
            if key in cache:
                cache.move_to_end(key)
                continue
            seconds = self._staging_seconds(job)
            cache[key] = size
            while sum(cache.values()) > self._cache_gib and len(cache) > 1:
                cache.popitem(last=False)
        return seconds

    # -- bookkeeping ---------------------------------------------------------------

    def _record(self) -> None:
        allocated = self._allocated_share()
        self._timeline.append((self.now, allocated, allocated - self.setup_gpus,
                               len(self.waiting), self.queued_gpus, len(self.running)))

    def _note_stuck(self) -> None:
        names = ", ".join(r.job.id for r in list(self.waiting.values())[:5])
        self.notes.append(f"{len(self.waiting)} job(s) never started (policy "
                          f"{self.policy.name} left them waiting with nothing else to "
                          f"happen): {names}")

    def _result(self, wall: float) -> SimResult:
        records = []
        for run in self.runs:
            if run.alloc is not None:
                self._settle(run)
            job = run.job
            records.append(JobRecord(
                id=job.id, workload=job.workload, arrival=job.arrival,
                gpus=job.demand.gpu_share, work=job.work, isolated_seconds=run.isolated,
                first_start=run.first_start, finish=run.finish, kind=run.kind,
                preemptions=max(run.preemptions, 0), run_seconds=run.run_seconds,
                setup_seconds=run.setup_seconds, group=job.group))
        if self._timeline:
            cols = np.array(self._timeline, dtype=float).T
            timeline = Timeline(*cols)
        else:
            timeline = Timeline.empty()
        return SimResult(
            policy=self.policy.name, pool=self.pool.name,
            total_gpus=float(sum(self.alloc.total_gpus.values())), trace=self.trace_name,
            jobs=tuple(records), timeline=timeline, round_seconds=self.options.round_seconds,
            decisions=self.decisions, decision_seconds=self.decision_seconds,
            max_decision_seconds=self.max_decision_seconds, engine_seconds=wall,
            events=self.events, notes=tuple(self.notes))


def _compatible(a: Assignment, run: _Run) -> bool:
    """Whether a running job's new assignment is what it already holds (a policy that
    rebuilds its whole decision need not repeat the kind or node it got). CPU cores and
    memory of a running job change only at its next start, so they do not count."""
    cur = run.assignment
    assert cur is not None
    demand = run.job.demand
    wanted = a.fraction if a.fraction is not None else demand.fraction
    held = cur.fraction if cur.fraction is not None else demand.fraction
    return a.gpus == cur.gpus and (a.kind is None or a.kind == cur.kind) and wanted == held


def _staging_bandwidth(pool: Pool) -> float:
    """MB/s a dataset is staged at: the slower of the shared source and a node's fastest
    local volume (0 when the pool describes no volumes: staging is then free)."""
    source = max((v.read_mbps for v in pool.shared_volumes), default=0.0)
    local = 0.0
    for node in pool.nodes:
        for v in node.volumes:
            if not v.shared:
                local = max(local, v.write_mbps)
    if source and local:
        return min(source, local)
    return source or local


def _cache_capacity(pool: Pool) -> float:
    sizes = [v.capacity_gib for node in pool.nodes for v in node.volumes if not v.shared]
    return min(sizes) if sizes else math.inf
