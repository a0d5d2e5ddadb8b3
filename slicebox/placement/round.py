"""One placement round: a state, a snapshot, a decision and the draining jobs in, a plan out.

The controller and the simulator both call this (through ``Placer.place``):

* running jobs whose assignment is unchanged keep their composition (``plan.keep``);
* running jobs the decision leaves out, or whose shape it changes, are stopped
  (``plan.stop``) and what they held is free for this round's starts; a reshaped job is
  placed again in its new shape (and keeps its old composition if the new one does not
  fit, rather than being preempted for nothing);
* draining jobs (stopped earlier, still releasing) keep what they hold this round and
  are neither kept nor stopped again;
* ``as_is`` jobs (the simulator: running jobs whose policy handed back the very
  assignment they hold) are kept without being looked at, and need not be listed in the
  decision; like draining jobs they are in neither ``plan.keep`` nor ``plan.stop``;
* the other jobs of ``decision.run`` are placed in order; one that does not fit is
  skipped so smaller jobs behind it may start (backfill), unless ``decision.strict``;
  every job left waiting gets a ``NoFit`` that says what is short;
* staged copies on tmpfs volumes hold their node's RAM: with a ``DataCache`` the round
  counts them in the state's free memory (``PoolState.staged_memory``), and a job short
  of memory only because of copies no running job reads gets that RAM back through its
  own copy's evict list (see ``staging.py``).

Where an assignment leaves the kind open and the job may run on several kinds, profiles
decide: each such job's gain on a kind is its speed there relative to its slowest
allowed kind, and kinds go to jobs greedily, biggest gain first.

Cost: a round looks at each assignment of the decision once (a dict lookup and a shape
comparison for a running job) and otherwise works only on what it changes: it releases
the stopped jobs, searches the indexed state for the starts, and (``commit=False``)
undoes its own steps at the end. No per-running-job scan of the state, no copy of it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import TYPE_CHECKING

from slicebox.placement import gang, search
from slicebox.placement.staging import EPS, DataCache
from slicebox.placement.state import PoolState
from slicebox.pool.composition import Composition, NoFit, Plan
from slicebox.pool.slices import SliceType
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobView
from slicebox.spec.demand import Demand, Spread

if TYPE_CHECKING:
    from slicebox.placement.placer import Placer


class _Journal:
    """Allocations, releases and staged-memory counts made on a state during a round,
    undone at its end (last first). ``record=False`` (a committed round, whose steps
    stay): nothing is recorded, which spares an undo step per start and stop."""

    def __init__(self, state: PoolState, record: bool = True):
        self.state = state
        self.record = record
        self.steps: list[Callable[[], object]] = []  # each undoes one step

    def allocate(self, comp: Composition) -> None:
        self.state.allocate(comp)
        if self.record:
            self.steps.append(functools.partial(self.state.release, comp.job_id))

    def release(self, job_id: str) -> Composition:
        comp = self.state.release(job_id)
        if self.record:
            self.steps.append(functools.partial(self.state.allocate, comp))
        return comp

    def staged_memory(self, n: int, gib: float) -> None:
        old = self.state.set_staged_memory(n, gib)
        if self.record:
            self.steps.append(functools.partial(self.state.set_staged_memory, n, old))

    def undo(self) -> None:
        for step in reversed(self.steps):
            step()
        self.steps.clear()


def unchanged(comp: Composition, want: Assignment, demand: Callable[[], Demand | None]
              ) -> bool:
    """Whether a running job's composition already is the shape ``want`` asks for.

    ``demand`` is asked only for a shared composition (the one case it decides)."""
    slices = comp.slices
    if want.kind is not None and slices and want.kind != slices[0].kind:
        return False
    if want.cpus is not None and want.cpus != comp.core_count:
        return False
    if want.memory_gib is not None and abs(want.memory_gib - comp.memory_gib) > 1e-6:
        return False
    shared = any(s.shape is not SliceType.WHOLE for s in slices)
    if want.fraction is not None:
        return (len(slices) == 1 and slices[0].shape is SliceType.FRACTION
                and abs(slices[0].compute - want.fraction) < 1e-6)
    if not shared:
        return want.gpus == len(slices)
    known = demand()
    if known is not None and known.shared:
        return True
    return known is None and want.gpus == 1  # a job known only by what it holds


def _never(reason: NoFit) -> NoFit:
    return dataclasses.replace(reason, message=f"never fits this pool: {reason.message}",
                               never=True)


def _note(field: str, message: str) -> NoFit:
    return NoFit(field, "", 0.0, 0.0, message)


class PlacementRound:
    """One round of placement on ``state`` (see the module docstring).

    ``commit=False`` (the controller, ``plan``): the state is left as it was. ``commit=True``
    (the simulator): the state is left as the plan makes it (stops released, starts
    allocated), and ``data``, if given, records the round's stagings itself.

    Every id in ``as_is`` must hold something in ``state`` (it is counted, not checked:
    that is what keeps a round from looking at every running job).
    """

    def __init__(self, placer: Placer, state: PoolState, snapshot: ClusterSnapshot,
                 decision: Decision, data: DataCache | None = None,
                 draining: Collection[str] = (), commit: bool = False,
                 as_is: Collection[str] = ()):
        self.placer = placer
        self.journal = _Journal(state, record=not commit)
        self.state = state
        self.snapshot = snapshot
        self.decision = decision
        self.draining = draining
        self.as_is = as_is
        self.commit = commit
        self._views: dict[str, JobView] | None = None
        self._need: set[str] = set()  # job ids whose views the round may read
        self.data = data if commit or data is None else data.copy()
        self.starts: list[Composition] = []
        self.keep: list[str] = []
        self.stop: list[str] = []
        self.waiting: dict[str, NoFit] = {}
        # A shape that failed stays failed for the rest of the round: after the opening
        # releases a round only allocates, so nothing frees up.
        self.failed: dict[tuple[object, ...], NoFit] = {}
        self._feasible: dict[tuple[object, ...], NoFit | None] = {}  # see _place

    def view(self, job_id: str) -> JobView | None:
        index = self.snapshot.job_index
        if index is not None:
            return index.get(job_id)
        if self._views is None:
            # Index only the jobs this round places (and the reshaped): a kept job's view
            # is not needed, so the snapshot's running jobs cost a set lookup each.
            need = self._need
            self._views = {j.id: j for j in self.snapshot.jobs if j.id in need}
        return self._views.get(job_id)

    def run(self) -> Plan:
        try:
            return self._run()
        finally:
            if self.commit:
                self.journal.steps.clear()
            else:
                self.journal.undo()

    def _run(self) -> Plan:
        state, draining, as_is = self.state, self.draining, self.as_is
        reshaped: dict[str, Composition] = {}
        todo: list[Assignment] = []
        seen: set[str] = set()
        held = 0
        shape_of = state.held_shapes().get
        seen_add, keep = seen.add, self.keep.append
        for want in self.decision.run:
            job_id = want.job_id
            if job_id in seen:
                continue  # listed twice: the first mention counts
            seen_add(job_id)
            shape = shape_of(job_id)
            if shape is None:
                todo.append(want)
                continue
            if draining and job_id in draining or as_is and job_id in as_is:
                continue  # draining (holds what it holds until gone), or kept as is
            held += 1
            # The common case in O(1): same count of whole GPUs, same (or any) kind.
            if (want.gpus == shape[0] and not shape[2] and want.fraction is None
                    and (want.kind is None or want.kind == shape[1])
                    and (want.cpus is None or want.cpus == shape[3])
                    and (want.memory_gib is None or abs(want.memory_gib - shape[4]) <= 1e-6)):
                keep(job_id)
                continue
            comp = state.composition(job_id)
            assert comp is not None
            self._need.add(job_id)
            if unchanged(comp, want, functools.partial(self._demand, job_id)):
                keep(job_id)
                continue
            self.journal.release(job_id)
            self.stop.append(job_id)
            reshaped[job_id] = comp
            todo.append(want)
        draining_held = 0
        if draining:  # a set meets the held jobs in C; another collection is walked
            draining_held = (len(state.held_ids() & draining) if isinstance(draining, AbstractSet)
                             else sum(1 for j in draining if j in state))
        if held + draining_held + len(as_is) < len(state) + len(reshaped):
            # Some running job is not in the decision: it is stopped. Only now is the
            # state scanned, so a round with no such job never looks at the running jobs.
            for job_id in list(state.compositions()):
                if job_id not in seen and job_id not in draining and job_id not in as_is:
                    self.journal.release(job_id)
                    self.stop.append(job_id)
        self._need.update(want.job_id for want in todo)
        if self._views is not None:  # an unchanged() check indexed too few: index again
            self._views = None
        in_use = state.staged_in_use()
        self._count_staged_memory()
        order = self._kind_order(todo)
        blocker: str | None = None
        for want in todo:
            job_id = want.job_id
            if blocker is not None:
                self._not_placed(job_id, _note("order", f"waits behind {blocker} (strict "
                                                        "order)"), reshaped)
                continue
            view = self.view(job_id)
            if view is None and job_id not in reshaped:
                self.waiting[job_id] = _note("job", "not among the snapshot's jobs")
                continue
            found = self._place(job_id, want, view, order.get(job_id))
            short = None
            if isinstance(found, NoFit) and found.field == "memory_gib" and not found.never:
                short = found  # perhaps only tmpfs copies no job reads stand in the way
                found = self._reclaiming(job_id, want, view, order.get(job_id), in_use, found)
            result = found if isinstance(found, NoFit) else self._stage(found, view, in_use,
                                                                        short)
            if isinstance(result, NoFit):
                self._not_placed(job_id, result, reshaped)
                if self.decision.strict and job_id not in self.keep:
                    blocker = job_id
                continue
            self.journal.allocate(result)
            self.starts.append(result)
        return Plan(tuple(self.starts), tuple(self.keep), tuple(self.stop),
                    MappingProxyType(self.waiting))

    def _demand(self, job_id: str) -> Demand | None:
        view = self.view(job_id)
        return view.demand if view is not None else None

    def _not_placed(self, job_id: str, reason: NoFit,
                    reshaped: Mapping[str, Composition]) -> None:
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
               kinds: Sequence[str] | None) -> Composition | NoFit:
        demand = view.demand if view is not None else Demand(gpus=want.gpus)
        if want.fraction is not None and demand.mig is None:
            demand = dataclasses.replace(demand, gpus=1, max_gpus=1, fraction=want.fraction)
        cpus = want.cpus if want.cpus is not None else demand.cpus
        memory = want.memory_gib if want.memory_gib is not None else demand.memory_gib
        if kinds is None:
            kinds = self.placer.allowed_kinds(self.state, want, demand)
        gpus = want.gpus if not demand.shared else demand.gpus
        # Many jobs of a round ask alike: the answer is remembered by what decides it,
        # which spares building the asked-for Demand for each of them.
        asked_key = (demand, gpus, cpus, memory, tuple(kinds) if want.kind else None)
        try:
            impossible = self._feasible[asked_key]
        except KeyError:
            asked = demand
            if (gpus, cpus, memory) != (demand.gpus, demand.cpus, demand.memory_gib) \
                    or want.kind:
                asked = dataclasses.replace(demand, gpus=gpus, cpus=cpus, memory_gib=memory,
                                            kinds=tuple(kinds) if want.kind else demand.kinds)
            impossible = self._feasible[asked_key] = self.placer.feasible(asked)
        if impossible is not None:
            return _never(impossible)
        state = self.state
        if want.node is not None and demand.mig is None:
            count = 0 if demand.fraction is None and want.gpus <= 0 else want.gpus
            hinted = search.find_hinted(state, job_id, want.node, want.devices, kinds,
                                        count, demand.fraction, cpus, memory,
                                        demand.gpu_memory_gib)
            if hinted is not None:
                return hinted
        if demand.nodes > 1:
            return self._memo(("cpu-gang", demand.nodes, cpus, memory), functools.partial(
                gang.find_cpu_gang, state, job_id, demand.nodes, cpus, memory))
        if demand.mig is None and demand.fraction is None and want.gpus <= 0:
            return self._memo(("cpu", cpus, memory),
                              functools.partial(search.find_cpu, state, job_id, cpus, memory))
        if not kinds:
            allowed = ", ".join(demand.kinds) or "any"
            return NoFit("kind", "GPUs of an allowed kind", want.gpus, 0,
                         f"no GPU of an allowed kind ({allowed}) in the pool")
        reasons: list[NoFit] = []
        for kind in kinds:
            if demand.mig is not None:
                mig = demand.mig
                key: tuple[object, ...] = ("mig", kind, mig, cpus, memory)
                result = self._memo(key, functools.partial(
                    search.find_mig, state, job_id, kind, mig, cpus, memory,
                    self.placer.mig_free_room))
            elif demand.fraction is not None:
                f, g = demand.fraction, demand.gpu_memory_gib
                key = ("fraction", kind, f, g, cpus, memory)
                result = self._memo(key, functools.partial(
                    search.find_fraction, state, job_id, kind, f, cpus, memory, g))
            else:
                g, spread = demand.gpu_memory_gib, demand.spread
                key = ("whole", kind, want.gpus, g, cpus, memory, spread)
                result = self._memo(key, functools.partial(
                    _find_whole, state, job_id, kind, want.gpus, cpus, memory, g, spread))
            if not isinstance(result, NoFit):
                return result
            reasons.append(result)
        if len(reasons) == 1:
            return reasons[0]
        return dataclasses.replace(reasons[0], message="; ".join(r.message for r in reasons))

    def _memo(self, key: tuple[object, ...], find: Callable[[], Composition | NoFit]
              ) -> Composition | NoFit:
        if key in self.failed:
            return self.failed[key]
        result = find()
        if isinstance(result, NoFit):
            self.failed[key] = result
        return result

    # -- staged copies in RAM (see staging.py) ---------------------------------------------
    def _count_staged_memory(self) -> None:
        """Count the cache's tmpfs copies against their nodes' memory for this round."""
        data, state = self.data, self.state
        if data is None:
            return
        for n, node in self.placer.tmpfs_nodes:
            gib = data.tmpfs_gib(node)
            if gib != state.staged_memory(n):
                self.journal.staged_memory(n, gib)

    def _reclaiming(self, job_id: str, want: Assignment, view: JobView | None,
                    kinds: Sequence[str] | None, in_use: set[tuple[str, str]], short: NoFit
                    ) -> Composition | NoFit:
        """``short``: the job's memory does not fit. Search again as if the tmpfs copies no
        running job reads were gone; only the job's own new copy can evict them (its
        evict list), so this is tried only for a job with data to copy, and ``_stage``
        then checks that copy frees enough on its first node. The counts are put back."""
        data, state = self.data, self.state
        if (data is None or not self.placer.tmpfs_nodes or view is None
                or view.dataset is None or view.dataset.path is None):
            return short
        unused = {n: (node, sum(e.size_gib for e in data.unused_tmpfs(node, in_use)))
                  for n, node in self.placer.tmpfs_nodes}
        unused = {n: v for n, v in unused.items() if v[1] > 0}
        if not unused:
            return short
        failed, self.failed = self.failed, {}  # other counts: earlier failures may fit
        try:
            for n, (_, gib) in unused.items():
                self.journal.staged_memory(n, max(0.0, state.staged_memory(n) - gib))
            found = self._place(job_id, want, view, kinds)
        finally:
            self.failed = failed
            for n, (node, _) in unused.items():
                self.journal.staged_memory(n, data.tmpfs_gib(node))
        if isinstance(found, NoFit):
            return short
        topo = state.topo
        for part in found.parts[1:]:  # evictions happen on the first part's node only
            if part.memory_gib > state.free_memory(topo.node_index[part.node]) + EPS:
                return short
        return found

    def _stage(self, comp: Composition, view: JobView | None,
               in_use: set[tuple[str, str]], short: NoFit | None = None
               ) -> Composition | NoFit:
        """Where the job's data comes from. A NoFit (``short``) when the job fits only if
        unused tmpfs copies are evicted and its staging cannot carry that out."""
        if view is None or view.dataset is None:
            return comp if short is None else short
        dataset = view.dataset
        if self.data is None:
            return dataclasses.replace(comp, data_path=dataset.path)
        first = comp.parts[0].node  # a gang's data is staged where its first part runs
        n = self.state.topo.node_index[first]
        node = self.state.pool.nodes[n]
        in_ram = short is not None or n in self.placer.tmpfs_node_numbers
        # The node's RAM left once the job has its memory (negative: to be reclaimed).
        memory_free = (self.state.free_memory(n) - comp.parts[0].memory_gib
                       if in_ram else None)
        staging = self.data.choose(node, dataset, now=self.snapshot.now,
                                   shared=self.state.pool.shared_volumes, in_use=in_use,
                                   memory_free=memory_free)
        if memory_free is not None and memory_free < -EPS and (staging is None
                                                                or staging.cached):
            return short or NoFit("memory_gib", "GiB of memory", comp.parts[0].memory_gib,
                                  comp.parts[0].memory_gib + memory_free,
                                  f"node {first}: memory held by staged copies in RAM")
        if staging is None:
            return dataclasses.replace(comp, data_path=dataset.path)
        # Later jobs of this round see the copy as made (and never evict it).
        self.data.commit(first, staging, self.snapshot.now)
        in_use.add((staging.dataset, first))
        if in_ram:
            self.journal.staged_memory(n, self.data.tmpfs_gib(node))
        if staging.evict:
            self.failed.clear()  # evicted tmpfs copies gave RAM back: a failure may fit now
        return dataclasses.replace(comp, staging=staging, data_path=staging.target)

    # -- profile-steered kinds -------------------------------------------------------------
    def _kind_order(self, todo: Sequence[Assignment]) -> dict[str, list[str]]:
        """For jobs that may run on several kinds: the kinds to try, best first."""
        placer, state = self.placer, self.state
        flexible: list[tuple[int, JobView, Assignment, list[str]]] = []
        fixed: list[tuple[str, int]] = []
        for i, want in enumerate(todo):
            view = self.view(want.job_id)
            if view is None or want.gpus <= 0 and not view.demand.shared:
                continue
            kinds = placer.allowed_kinds(state, want, view.demand)
            if len(kinds) == 1 and not view.demand.shared:
                fixed.append((kinds[0], want.gpus))
            elif len(kinds) > 1:
                flexible.append((i, view, want, kinds))
        order: dict[str, list[str]] = {}
        if not flexible:
            return order
        budget = {k: state.free_whole_gpus(k) for k in state.topo.kinds}
        for kind, gpus in fixed:  # a fixed kind is reserved for its job
            budget[kind] = budget.get(kind, 0) - gpus
        pairs = []
        for i, view, want, kinds in flexible:
            share = view.demand.gpu_share if view.demand.shared else float(want.gpus)
            rates = {k: placer.rate(self.snapshot, view, k, share) for k in kinds}
            slowest = min(rates.values())
            for k in kinds:
                gain = rates[k] / slowest if slowest > 0 else (1.0 if rates[k] <= 0 else 1e9)
                pairs.append((-gain, i, -rates[k], k, view, want))
            order[want.job_id] = sorted(kinds, key=functools.partial(_negated, rates))
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


def _negated(rates: Mapping[str, float], kind: str) -> float:
    return -rates[kind]


def _find_whole(state: PoolState, job_id: str, kind: str, count: int, cpus: int,
                memory: float, gpu_memory: float | None, spread: Spread
                ) -> Composition | NoFit:
    """Whole GPUs as the job's ``spread`` allows: one node, or a gang over several."""
    if spread is Spread.SPREAD and count > 1:
        return gang.find_gang(state, job_id, kind, count, cpus, memory, gpu_memory, spread)
    found = search.find_whole(state, job_id, kind, count, cpus, memory, gpu_memory)
    if (isinstance(found, NoFit) and spread is Spread.PACK and count > 1
            and found.field in ("gpus", "cpus", "memory_gib")):
        return gang.find_gang(state, job_id, kind, count, cpus, memory, gpu_memory, spread)
    return found
