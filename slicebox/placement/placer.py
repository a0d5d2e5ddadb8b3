"""One scheduling round's placement: a policy's ``Decision`` in, exact compositions out.

``Placer.place(state, snapshot, decision)``:

* running jobs whose assignment is unchanged keep their composition (``plan.keep``);
* running jobs the decision leaves out, or whose shape it changes, are stopped
  (``plan.stop``) and what they held is free for this round's starts; a reshaped job is
  placed again in its new shape (and keeps its old composition if the new one does not
  fit, rather than being preempted for nothing);
* the other jobs of ``decision.run`` are placed in order; one that does not fit is
  skipped so smaller jobs behind it may start (backfill), unless ``decision.strict``;
  every job left waiting gets a reason that says what is short.

Where an assignment leaves the kind open and the job may run on several kinds, profiles
decide: each such job's gain on a kind is its speed there relative to its slowest
allowed kind, and kinds go to jobs greedily, biggest gain first, whatever their order in
the decision (a job that gains 3x from an H100 gets it before one that gains nothing).

The state is not changed: the round works on it and undoes its own steps before
returning, which costs what the round changed rather than a copy of the pool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from slicebox.placement import search
from slicebox.placement.feasibility import Feasibility
from slicebox.placement.staging import DataCache
from slicebox.placement.state import PoolState
from slicebox.pool.composition import Composition, Plan
from slicebox.pool.model import Pool
from slicebox.pool.slices import SliceShape
from slicebox.profiles.base import ThroughputModel
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobView
from slicebox.spec.demand import Demand


class _Journal:
    """Allocations and releases made on a state during a round, undone at its end."""

    def __init__(self, state: PoolState):
        self.state = state
        self.steps: list[tuple[bool, Composition]] = []

    def allocate(self, comp: Composition) -> None:
        self.state.allocate(comp)
        self.steps.append((True, comp))

    def release(self, job_id: str) -> Composition:
        comp = self.state.release(job_id)
        self.steps.append((False, comp))
        return comp

    def undo(self) -> None:
        for allocated, comp in reversed(self.steps):
            if allocated:
                self.state.release(comp.job_id)
            else:
                self.state.allocate(comp)
        self.steps.clear()


def unchanged(comp: Composition, want: Assignment, demand: Demand | None) -> bool:
    """Whether a running job's composition already is the shape ``want`` asks for."""
    if want.kind is not None and comp.slices and want.kind != comp.kind:
        return False
    if want.cpus is not None and want.cpus != len(comp.cores):
        return False
    if want.memory_gib is not None and abs(want.memory_gib - comp.memory_gib) > 1e-6:
        return False
    shared = any(s.shape is not SliceShape.WHOLE for s in comp.slices)
    if want.fraction is not None:
        return (len(comp.slices) == 1 and comp.slices[0].shape is SliceShape.FRACTION
                and abs(comp.slices[0].compute - want.fraction) < 1e-6)
    if demand is not None and demand.shared:
        return shared
    if demand is None and shared:  # a job we know only by what it holds
        return want.gpus == 1
    return not shared and want.gpus == len(comp.slices)


class Placer:
    def __init__(self, pool: Pool, profiles: ThroughputModel | None = None):
        self.pool = pool
        self.profiles = profiles
        self._feasible = Feasibility(pool)

    def feasible(self, demand: Demand) -> str | None:
        """None if ``demand`` could fit on the empty pool, else why not (naming the field)."""
        return self._feasible(demand)

    def place(self, state: PoolState, snapshot: ClusterSnapshot, decision: Decision,
              data: DataCache | None = None) -> Plan:
        journal = _Journal(state)
        try:
            return _Round(self, journal, snapshot, decision, data).run()
        finally:
            journal.undo()

    # -- kinds -------------------------------------------------------------------------
    def allowed_kinds(self, state: PoolState, want: Assignment, demand: Demand) -> list[str]:
        if want.kind is not None:
            return [want.kind]
        present = state.topo.kinds
        return [k for k in demand.kinds if k in present] if demand.kinds else list(present)

    def rate(self, snapshot: ClusterSnapshot, job: JobView, kind: str, gpus: float) -> float:
        model = self.profiles or snapshot.profiles
        return model.rate(job.workload, kind, gpus, job.precision).samples_per_s


def held_assignment(comp: Composition) -> Assignment:
    """The assignment that keeps a composition as it is."""
    shared = any(s.shape is not SliceShape.WHOLE for s in comp.slices)
    return Assignment(comp.job_id, 1 if shared else len(comp.slices),
                      comp.kind if comp.slices else None, len(comp.cores), comp.memory_gib)


def dry_run(pool: Pool, jobs: Sequence[JobView], state: PoolState | None = None,
            data: DataCache | None = None, profiles: ThroughputModel | None = None,
            now: float = 0.0) -> Plan:
    """What ``jobs`` would get, placed in this order, on ``state`` (default: the empty
    pool) with everything already there kept. For ``slicebox plan``; changes nothing."""
    state = state if state is not None else PoolState(pool)
    held = [held_assignment(c) for c in state.compositions().values()]
    run = [Assignment(j.id, j.demand.gpus) for j in jobs if j.id not in state]
    snapshot = ClusterSnapshot(now, tuple(jobs), state.capacity())
    return Placer(pool, profiles).place(state, snapshot, Decision(tuple(held + run)), data)


class _Round:
    def __init__(self, placer: Placer, journal: _Journal, snapshot: ClusterSnapshot,
                 decision: Decision, data: DataCache | None):
        self.placer = placer
        self.journal = journal
        self.state = journal.state
        self.snapshot = snapshot
        self.decision = decision
        self.views = {j.id: j for j in snapshot.jobs}
        self.data = data.copy() if data is not None else None
        self.starts: list[Composition] = []
        self.keep: list[str] = []
        self.stop: list[str] = []
        self.waiting: dict[str, str] = {}
        # A shape that failed stays failed for the rest of the round: after the opening
        # releases a round only allocates, so nothing frees up.
        self.failed: dict[tuple[object, ...], str] = {}

    def run(self) -> Plan:
        state = self.state
        wanted = {a.job_id: a for a in self.decision.run}
        reshaped: dict[str, Composition] = {}
        for job_id, comp in state.compositions().items():
            want = wanted.get(job_id)
            view = self.views.get(job_id)
            if want is not None and unchanged(comp, want, view.demand if view else None):
                self.keep.append(job_id)
                continue
            self.journal.release(job_id)
            self.stop.append(job_id)
            if want is not None:
                reshaped[job_id] = comp
        in_use = {(c.staging.dataset, c.node) for c in state.compositions().values()
                  if c.staging is not None}
        order = self._kind_order(wanted, reshaped)
        blocker: str | None = None
        done = set(self.keep)
        for want in self.decision.run:
            job_id = want.job_id
            if job_id in done:
                continue  # kept, or listed twice: the first mention counts
            done.add(job_id)
            if blocker is not None:
                self._not_placed(job_id, f"waits behind {blocker} (strict order)", reshaped)
                continue
            view = self.views.get(job_id)
            if view is None and job_id not in reshaped:
                self.waiting[job_id] = "not among the snapshot's jobs"
                continue
            result = self._place(job_id, want, view, order.get(job_id))
            if isinstance(result, str):
                self._not_placed(job_id, result, reshaped)
                if self.decision.strict and job_id not in self.keep:
                    blocker = job_id
                continue
            result = self._stage(result, view, in_use)
            self.journal.allocate(result)
            self.starts.append(result)
        return Plan(tuple(self.starts), tuple(self.keep), tuple(self.stop),
                    MappingProxyType(self.waiting))

    def _not_placed(self, job_id: str, reason: str, reshaped: Mapping[str, Composition]) -> None:
        old = reshaped.get(job_id)
        if old is not None:
            try:
                self.journal.allocate(old)  # better its old shape than preempted for nothing
            except ValueError:
                pass
            else:
                self.stop.remove(job_id)
                self.keep.append(job_id)
                return
        self.waiting[job_id] = reason

    # -- one job -----------------------------------------------------------------------
    def _place(self, job_id: str, want: Assignment, view: JobView | None,
               kinds: Sequence[str] | None) -> Composition | str:
        demand = view.demand if view is not None else Demand(gpus=want.gpus)
        if want.fraction is not None and demand.mig is None:
            demand = dataclasses.replace(demand, gpus=1, max_gpus=1, fraction=want.fraction)
        cpus = want.cpus if want.cpus is not None else demand.cpus
        memory = want.memory_gib if want.memory_gib is not None else demand.memory_gib
        if kinds is None:
            kinds = self.placer.allowed_kinds(self.state, want, demand)
        impossible = self.placer.feasible(dataclasses.replace(
            demand, gpus=want.gpus if not demand.shared else demand.gpus, cpus=cpus,
            memory_gib=memory, kinds=tuple(kinds) if want.kind else demand.kinds))
        if impossible is not None:
            return f"never fits this pool: {impossible}"
        if want.node is not None and demand.mig is None:
            count = 0 if demand.fraction is None and want.gpus <= 0 else want.gpus
            hinted = search.find_hinted(self.state, job_id, want.node, want.devices, kinds,
                                        count, demand.fraction, cpus, memory,
                                        demand.gpu_memory_gib)
            if hinted is not None:
                return hinted
        if demand.mig is None and demand.fraction is None and want.gpus <= 0:
            return self._memo(("cpu", cpus, memory),
                              lambda: search.find_cpu(self.state, job_id, cpus, memory))
        if not kinds:
            allowed = ", ".join(demand.kinds) or "any"
            return f"no GPU of an allowed kind ({allowed}) in the pool"
        reasons = []
        for kind in kinds:
            if demand.mig is not None:
                mig = demand.mig
                key: tuple[object, ...] = ("mig", kind, mig, cpus, memory)
                result = self._memo(key, lambda k=kind, m=mig: search.find_mig(
                    self.state, job_id, k, m, cpus, memory))
            elif demand.fraction is not None:
                f, g = demand.fraction, demand.gpu_memory_gib
                key = ("fraction", kind, f, g, cpus, memory)
                result = self._memo(key, lambda k=kind, f=f, g=g: search.find_fraction(
                    self.state, job_id, k, f, cpus, memory, g))
            else:
                g = demand.gpu_memory_gib
                key = ("whole", kind, want.gpus, g, cpus, memory)
                result = self._memo(key, lambda k=kind, g=g: search.find_whole(
                    self.state, job_id, k, want.gpus, cpus, memory, g))
            if not isinstance(result, str):
                return result
            reasons.append(result)
        return reasons[0] if len(reasons) == 1 else "; ".join(reasons)

    def _memo(self, key: tuple[object, ...], find: Callable[[], Composition | str]
              ) -> Composition | str:
        if key in self.failed:
            return self.failed[key]
        result = find()
        if isinstance(result, str):
            self.failed[key] = result
        return result

    def _stage(self, comp: Composition, view: JobView | None,
               in_use: set[tuple[str, str]]) -> Composition:
        if view is None or view.dataset is None:
            return comp
        dataset = view.dataset
        if self.data is None:
            return dataclasses.replace(comp, data_path=dataset.path)
        node = self.state.pool.node(comp.node)
        staging = self.data.choose(node, dataset, now=self.snapshot.now,
                                   shared=self.state.pool.shared_volumes, in_use=in_use)
        if staging is None:
            return dataclasses.replace(comp, data_path=dataset.path)
        # Later jobs of this round see the copy as made (and never evict it).
        self.data.commit(comp.node, staging, self.snapshot.now)
        in_use.add((staging.dataset, comp.node))
        return dataclasses.replace(comp, staging=staging, data_path=staging.target)

    # -- profile-steered kinds -------------------------------------------------------------
    def _kind_order(self, wanted: Mapping[str, Assignment],
                    reshaped: Mapping[str, Composition]) -> dict[str, list[str]]:
        """For jobs that may run on several kinds: the kinds to try, best first."""
        placer, state, kept = self.placer, self.state, set(self.keep)
        budget = {k: state.free_whole_gpus(k) for k in state.topo.kinds}
        flexible: list[tuple[int, JobView, Assignment, list[str]]] = []
        order: dict[str, list[str]] = {}
        for i, want in enumerate(self.decision.run):
            view = self.views.get(want.job_id)
            if want.job_id in kept or view is None or want.gpus <= 0 and not view.demand.shared:
                continue
            kinds = placer.allowed_kinds(state, want, view.demand)
            if len(kinds) == 1 and not view.demand.shared:
                budget[kinds[0]] = budget.get(kinds[0], 0) - want.gpus  # fixed kind: reserved
            elif len(kinds) > 1:
                flexible.append((i, view, want, kinds))
        pairs = []
        for i, view, want, kinds in flexible:
            gpus = view.demand.gpu_share if view.demand.shared else want.gpus
            rates = {k: placer.rate(self.snapshot, view, k, gpus) for k in kinds}
            slowest = min(rates.values())
            for k in kinds:
                gain = rates[k] / slowest if slowest > 0 else (1.0 if rates[k] <= 0 else 1e9)
                pairs.append((-gain, i, -rates[k], k, view, want))
            order[want.job_id] = sorted(kinds, key=lambda k, r=rates: -r[k])
        pairs.sort(key=lambda p: p[:3])
        given: set[str] = set()
        for _, _, _, kind, view, want in pairs:
            if want.job_id in given or view.demand.shared:
                continue
            if budget.get(kind, 0) >= want.gpus:
                budget[kind] -= want.gpus
                given.add(want.job_id)
                rest = [k for k in order[want.job_id] if k != kind]
                order[want.job_id] = [kind, *rest]
        return order
