"""Elastic jobs on cores: grow into idle cores, give them back when a waiting job needs them.

A job that declares ``resources.cpus: {min, max}`` has ``Demand.cpus`` (its minimum) and
``Demand.max_cpus`` (its maximum). Any policy's decision may be passed through
:func:`resize_cores`, which changes only such jobs' ``Assignment.cpus``:

- **Shrink first.** A waiting job the decision wants to run, which the idle cores cannot
  hold, takes cores back from running elastic jobs above their minimum, of no higher
  priority than its own (lowest priority first, then most borrowed first), and only
  when that is enough for it to fit: a job is never restarted for a waiter that would
  not start anyway. Extra cores are a loan of idle capacity; the minimum is the job's.
- **Then grow.** Cores nobody in the decision asks for go to elastic jobs in decision
  order. A starting job takes them when its profile promises a speed-up (it starts
  anyway: no restart to pay). A running job grows only when the measured gain pays for
  the restart: the time it saves over its expected remaining time must reach
  ``payback`` times ``restart_seconds`` (a checkpoint, a process start and a restore).
  The remaining time is ``remaining_work`` at today's speed where the snapshot knows it;
  else, conservatively, as long again as the current attempt has run (a job's expected
  remaining life grows with its age under the heavy-tailed run times of DL clusters);
  else the job is not grown.
- **Never back and forth.** A running job is not grown within ``min_interval`` seconds
  of its start; a just-restarted job has run for no time, so the payback rule keeps it
  where it is until it has run long enough for a second restart to pay; and a shrink
  happens only for a waiter that then fits.

Speeds come from ``snapshot.profiles`` (kind ``cpu``, size = cores). A size without a
measurement is an estimate (the table scales linearly, which is optimistic for cores):
only ``UNMEASURED_GAIN_SHARE`` of its promised speed-up is believed.

Only CPU-only jobs are resized here: profiles key GPU jobs by their GPUs, not their
cores, so no measured gain exists for a GPU job's cores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from slicebox.policies.fifo import Fifo
from slicebox.policies.registry import POLICIES
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobView

CPU_KIND = "cpu"
RESTART_SECONDS = 5.0  # checkpoint + process start + restore of a reference workload here
MIN_GAIN = 0.03  # a larger size must be at least this much faster to be worth taking
PAYBACK = 1.0  # the time saved must reach this many restarts
MIN_INTERVAL = 10.0  # seconds after a start before a running job may be grown
UNMEASURED_GAIN_SHARE = 0.25  # of an estimated (not measured) speed-up, this is believed


@dataclass(frozen=True)
class ElasticRules:
    """When a resize is worth it (see the module docstring)."""

    restart_seconds: float = RESTART_SECONDS
    min_gain: float = MIN_GAIN
    payback: float = PAYBACK
    min_interval: float = MIN_INTERVAL
    unmeasured_gain_share: float = UNMEASURED_GAIN_SHARE


def elastic_cores(job: JobView) -> bool:
    """A CPU-only job that may run on more cores than its minimum."""
    d = job.demand
    return d.max_cpus > d.cpus and d.gpus == 0 and not d.shared


def resize_cores(snapshot: ClusterSnapshot, decision: Decision,
                 rules: ElasticRules | None = None) -> Decision:
    """``decision`` with elastic CPU jobs' cores grown into idle cores or shrunk for
    waiting jobs (see the module docstring). The same object when nothing changes, so a
    pool without elastic jobs pays one scan of the decision."""
    jobs = _views(snapshot)
    if not any((v := jobs.get(a.job_id)) is not None and elastic_cores(v)
               for a in decision.run):
        return decision
    return _Resizer(snapshot, decision, jobs, rules or ElasticRules()).run()


def honour_resizes(snapshot: ClusterSnapshot, decision: Decision,
                   targets: Mapping[str, int]) -> Decision:
    """Start jobs that were just checkpoint-stopped to be grown at the size they were
    grown to (``targets``: job id -> cores), where the idle cores allow it after the
    decision's other starts. The resize was decided when it was worth a restart; a
    profile refined by a few progress reports in between must not undo it now."""
    jobs = _views(snapshot)
    if not any(a.job_id in targets for a in decision.run):
        return decision
    return _Resizer(snapshot, decision, jobs, ElasticRules(), targets).run()


def _views(snapshot: ClusterSnapshot) -> Mapping[str, JobView]:
    if snapshot.job_index is not None:
        return snapshot.job_index
    return {j.id: j for j in snapshot.jobs}


def _cores(want: Assignment, job: JobView) -> int:
    return want.cpus if want.cpus is not None else job.demand.cpus


class _Resizer:
    def __init__(self, snapshot: ClusterSnapshot, decision: Decision,
                 jobs: Mapping[str, JobView], rules: ElasticRules,
                 targets: Mapping[str, int] | None = None) -> None:
        self.snapshot, self.decision, self.jobs, self.rules = snapshot, decision, jobs, rules
        self.targets = targets  # honour_resizes: only these starts, at these sizes
        self.out: dict[str, Assignment] = {}  # job id -> its new assignment
        self.why: dict[str, str] = {}
        # Cores of one node a job may take at most (live: one node; a CPU job never
        # spans nodes). Without node views, the pool's total stands in.
        nodes = snapshot.nodes
        self.largest_node = (max(int(n.free_cpus) for n in nodes) if nodes
                             else snapshot.capacity.free_cpus)

    def run(self) -> Decision:
        idle = self._idle_after_decision()
        if self.targets is None:
            idle = self._shrink_for_waiters(idle)
            self._grow(idle)
        else:
            self._restart_at_targets(self._seat_waiters(idle), self.targets)
        if not self.out:
            return self.decision
        run = tuple(self.out.get(a.job_id, a) for a in self.decision.run)
        reasons = dict(self.decision.reasons)
        reasons.update(self.why)
        return dataclasses.replace(self.decision, run=run, reasons=MappingProxyType(reasons))

    # -- the core budget ------------------------------------------------------------------
    def _idle_after_decision(self) -> int:
        """Free cores once the decision's own changes are made, before waiters start:
        running jobs it leaves out give theirs back, reshaped ones take the difference."""
        idle = self.snapshot.capacity.free_cpus
        listed = set()
        for want in self.decision.run:
            job = self.jobs.get(want.job_id)
            if job is None or want.job_id in listed:
                continue
            listed.add(want.job_id)
            if job.current is not None:
                held = _cores(job.current, job)
                idle += held - _cores(want, job)
        for job in self.snapshot.running:
            if job.id not in listed and job.current is not None:
                idle += _cores(job.current, job)
        return idle

    def _waiters(self) -> list[tuple[Assignment, JobView]]:
        seen: set[str] = set()
        out = []
        for want in self.decision.run:
            job = self.jobs.get(want.job_id)
            if job is None or job.current is not None or want.job_id in seen:
                continue
            seen.add(want.job_id)
            out.append((want, job))
        return out

    def _gpus_fit(self, want: Assignment, job: JobView) -> bool:
        """A waiter that needs GPUs not free now will not start: no cores for it."""
        if job.demand.gpus == 0 and not job.demand.shared:
            return True
        free = self.snapshot.capacity.free_gpus
        kinds = job.demand.kinds or tuple(free)
        return sum(free.get(k, 0) for k in kinds) >= max(want.gpus, 1)

    # -- shrink ---------------------------------------------------------------------------
    def _shrink_for_waiters(self, idle: int) -> int:
        for want, job in self._waiters():
            need = _cores(want, job)
            if not self._gpus_fit(want, job):
                continue
            if need <= idle:
                idle -= need
                continue
            lenders = self._lenders(job.priority)
            borrowed = sum(extra for _, extra in lenders)
            if idle + borrowed < need:
                continue  # even shrinking every lender would not seat it: nobody moves
            for lender, extra in lenders:
                if idle >= need:
                    break
                give = min(extra, need - idle)
                self._resize(lender, _cores(self._current(lender), lender) - give,
                             f"to make room for {job.id}")
                idle += give
            idle -= need
        return idle

    def _lenders(self, priority: int) -> list[tuple[JobView, int]]:
        """Running elastic jobs above their minimum, of priority <= ``priority``, with
        the cores each could give back: lowest priority, then most borrowed, first."""
        found = []
        for want in self.decision.run:
            job = self.jobs.get(want.job_id)
            if (job is None or job.current is None or not elastic_cores(job)
                    or job.priority > priority):
                continue
            have = _cores(self._current(job), job)
            if have > job.demand.cpus and _cores(want, job) == _cores(job.current, job):
                found.append((job, have - job.demand.cpus))
        found.sort(key=lambda p: (p[0].priority, -p[1], p[0].id))
        return found

    def _current(self, job: JobView) -> Assignment:
        """What the decision gives the job so far (this pass's changes included)."""
        if job.id in self.out:
            return self.out[job.id]
        assert job.current is not None
        return job.current

    def _seat_waiters(self, idle: int) -> int:
        """Idle cores once every waiter of the decision that fits has its own."""
        for want, job in self._waiters():
            need = _cores(want, job)
            if need <= idle and self._gpus_fit(want, job):
                idle -= need
        return idle

    def _restart_at_targets(self, idle: int, targets: Mapping[str, int]) -> None:
        for want, job in self._waiters():
            target = targets.get(job.id)
            have = _cores(want, job)
            if target is None or target <= have or not elastic_cores(job):
                continue
            size = min(target, have + max(idle, 0), self.largest_node, job.demand.max_cpus)
            if size > have:
                self._resize(job, size, "restarts at the size it was resized to", want)
                idle -= size - have

    # -- grow -----------------------------------------------------------------------------
    def _grow(self, idle: int) -> None:
        done: set[str] = set()
        for want in self.decision.run:
            if idle <= 0:
                return
            job = self.jobs.get(want.job_id)
            if job is None or want.job_id in done or not elastic_cores(job) \
                    or job.id in self.out:
                continue
            done.add(job.id)
            have = _cores(want, job)
            room = idle if job.current is None else min(
                idle, self._node_room(job))
            target = min(job.demand.max_cpus, have + room)
            if job.current is None:
                target = min(target, self.largest_node)
            best = self._best_size(job, have, target)
            if best is None:
                continue
            size, why = best
            self._resize(job, size, why, want)
            idle -= size - have

    def _node_room(self, job: JobView) -> int:
        """Idle cores on the running job's own node (its restart goes there or nowhere
        better); all idle cores where nodes are unknown."""
        node = job.current.node if job.current is not None else None
        for view in self.snapshot.nodes:
            if view.name == node:
                return int(view.free_cpus)
        return self.snapshot.capacity.free_cpus

    def _best_size(self, job: JobView, have: int, most: int) -> tuple[int, str] | None:
        """The size above ``have`` (up to ``most``) worth taking, and why: each core
        added must buy ``min_gain`` more speed, and (running jobs) the whole step must pay
        for the restart."""
        if most <= have:
            return None
        rate_now, _ = self._rate(job, have)
        if rate_now <= 0:
            return None
        rules = self.rules
        size, speedup, all_measured = have, 1.0, True
        for more in range(have + 1, most + 1):
            rate, measured = self._rate(job, more)
            up = rate / rate_now
            if not measured:
                up = 1 + max(up - 1, 0.0) * rules.unmeasured_gain_share
            if up >= speedup * (1 + rules.min_gain):
                size, speedup, all_measured = more, up, all_measured and measured
        if size == have:
            return None
        how = "measured" if all_measured else "estimated"
        if job.current is None:
            return size, f"starts on {size} cores ({speedup:.2f}x {how} over {have})"
        saved = self._saved_seconds(job, rate_now, speedup)
        if saved is None or saved < rules.payback * rules.restart_seconds:
            return None
        return size, (f"{speedup:.2f}x {how} saves ~{saved:.0f}s for a "
                      f"~{rules.restart_seconds:.0f}s restart")

    def _saved_seconds(self, job: JobView, rate_now: float, speedup: float) -> float | None:
        """Seconds a running job would save by running ``speedup`` times faster from now,
        None when it may not be resized yet (too soon, or nothing known of its future)."""
        started = job.started_at
        if started is not None and self.snapshot.now - started < self.rules.min_interval:
            return None
        if job.remaining_work is not None:
            remaining = job.remaining_work / rate_now
        elif started is not None:
            remaining = max(self.snapshot.now - started, 0.0)
        else:
            return None
        return remaining * (1 - 1 / speedup)

    def _rate(self, job: JobView, cores: int) -> tuple[float, bool]:
        est = self.snapshot.profiles.rate(job.workload, CPU_KIND, float(cores), job.precision)
        return est.samples_per_s, est.measured

    def _resize(self, job: JobView, cores: int, why: str,
                want: Assignment | None = None) -> None:
        base = want or self._current(job)
        self.out[job.id] = dataclasses.replace(base, cpus=cores)
        if job.current is not None:
            before = _cores(job.current, job)
            self.why[job.id] = f"resize {before}\u2192{cores} cores: {why}"


@POLICIES.register("fifo-elastic")
class ElasticFifo(Fifo):
    """``fifo`` (priority, then arrival, with backfill), and elastic CPU jobs resized by
    :func:`resize_cores`: they grow into idle cores and give them back to waiting jobs of
    no lower priority. Plain ``fifo`` never resizes a job."""

    name = "fifo-elastic"
    reads_progress = True  # started_at and remaining_work decide whether a resize pays

    def __init__(self, rules: ElasticRules | None = None) -> None:
        self.rules = rules or ElasticRules()

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        return resize_cores(snapshot, super().decide(snapshot), self.rules)
