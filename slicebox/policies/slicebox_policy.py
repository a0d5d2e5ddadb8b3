"""Slicebox's own policy: everything the snapshot knows, used to cut job completion time.

- **Elastic jobs** (some job with ``demand.max_gpus > demand.gpus``, none on a share of
  a GPU): kind x GPU count per job from goodput, one ILP per arrival or completion,
  resizes only when they pay for their restart (``goodput_plan.plan_ilp``). The batch
  size follows the count (the job picks its best). The rest below is for rigid jobs.

- **Order**: shortest remaining time first, where the time is the job's remaining work
  at its speed on the fastest kind it may use (profiles), not a reference GPU.
- **Fairness guard**: a job whose finish-time-fairness estimate (time since submission
  plus remaining time, over its time alone on the pool) passes ``guard_rho`` is served
  before everything else, oldest first, so that no job starves behind short ones.
- **Limited preemption**: a running job keeps its GPUs unless a waiting job would finish
  ``preempt_ratio`` times sooner; restarts cost checkpoint time, so SRTF's every-arrival
  preemption is a loss on real jobs.
- **Heterogeneity**: each job takes the fastest allowed kind with room; a running job on
  a slow kind moves to a faster one left idle when that saves a large share of its
  remaining time (``upgrade_gain``), paying one restart.
- **Right-sizing and packing**: a job that asks for a fraction of a GPU is placed by
  FGD's fragmentation measure (node/device hints); whole-GPU jobs go best-fit.
- **CPU and memory**: where the profiles know a job's sensitivity, it gets the fewest
  cores that reach its best speed on a node with room (Synergy-style), or at least the
  cores that keep its requested speed.
- **Data locality**: a job whose large data set is already on a node (another running
  job reads it there) is hinted to that node when it has room.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from slicebox.policies import common, goodput_plan, resources
from slicebox.policies.base import Policy
from slicebox.policies.elastic import resize_cores
from slicebox.policies.fgd import place_one, target_from
from slicebox.policies.fragmentation import TableCache, TargetWorkload
from slicebox.policies.registry import POLICIES
from slicebox.policies.synergy import NodeRoom, RoomCache
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobView

_GUARD = -1e18  # sort key offset of guarded jobs: before every other job


@POLICIES.register("slicebox", "slicebox-own")
class SliceboxPolicy(Policy):
    name = "slicebox"
    preemptive = True
    progress_when_contended = True
    migrates_between_kinds = True
    preempt_ratio: ClassVar[float] = 4.0
    guard_rho: ClassVar[float] = 8.0
    upgrade_gain: ClassVar[float] = 0.3  # move if it saves this share of the remaining time
    upgrade_min_seconds: ClassVar[float] = 1800.0
    locality_gib: ClassVar[float] = 10.0  # data sets at least this big are worth following
    resizes_jobs = True
    elastic_knobs: ClassVar[goodput_plan.PlanKnobs] = goodput_plan.PlanKnobs()

    reserve_scale: ClassVar[float] = 1.5  # reserve = min(1, scale x pool pressure)
    pack_by_gpu: ClassVar[bool] = True  # weigh task classes by GPUs, not count
    pack_balance: ClassVar[bool] = True  # break fragmentation ties by core balance

    def __init__(self, target: TargetWorkload | None = None) -> None:
        """``target``: the task mix the pool serves, for fragmentation-aware packing
        (default: the jobs of each snapshot)."""
        self.target = target
        self._rooms = RoomCache()  # memos of node arrays between decisions
        self._tables = TableCache()
        self._cores = resources.CoreMemo()

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        jobs = snapshot.jobs
        if not jobs:
            return Decision(())
        if _elastic_pool(jobs):
            # Elastic jobs: kind x count (and batch size, which follows the count) from
            # goodput. The plan reads every running job's progress at every decision,
            # so this instance stops telling a simulator it may skip refreshing it.
            self.__dict__["progress_when_contended"] = False
            knobs = self.elastic_knobs
            if knobs.method == "ilp":
                return resize_cores(snapshot,
                                    Decision(tuple(goodput_plan.plan_ilp(snapshot, jobs, knobs))))
            run, _ = goodput_plan.plan(snapshot, jobs, knobs)
            return resize_cores(snapshot, Decision(tuple(run)))
        kinds = sorted(snapshot.capacity.total_gpus)
        table = common.RateTable(snapshot, kinds)
        running, waiting = common.split(jobs)
        if common.free_fits(waiting, snapshot):
            # Everything waiting fits in the free GPUs: nobody is preempted, so only the
            # waiting jobs need ranking (a decision then costs the queue, not the pool).
            considered: tuple[JobView, ...] = tuple(waiting)
            budget = common.GpuBudget(snapshot.capacity.free_gpus)
            chosen: list[tuple[JobView, str | None]] = []
            if len(kinds) > 1:
                chosen = [(j, j.current.kind if j.current else None) for j in running]
        else:
            considered = jobs
            budget = common.GpuBudget(snapshot.capacity.total_gpus)
            chosen = []
        rates = table.matrix(considered)  # work/s at the job's size on each kind
        keys = self._keys(snapshot, considered, rates, kinds)
        for i in np.argsort(keys, kind="stable"):
            job = considered[int(i)]
            if job.current is not None:
                if budget.take_job(job, ()) is not None:
                    chosen.append((job, job.current.kind))
                continue
            if job.demand.fraction is not None:
                # A share of a GPU: whole-GPU counts say nothing about partly used
                # cards; the fragmentation-aware placement below finds one or not.
                chosen.append((job, None))
                continue
            kind = self._fastest_with_room(job, rates[int(i)], kinds, budget)
            if kind is not None or common.share(job) == 0:
                if kind is not None:
                    budget.take(kind, common.share(job))
                chosen.append((job, kind))
        moves = (self._upgrades(table, kinds, budget, chosen) if len(kinds) > 1 else {})
        out = self._assignments(snapshot, chosen, moves)
        if considered is not jobs and len(kinds) <= 1:
            # Fast path on a one-kind pool: running jobs were not ranked, they all stay.
            out = [j.current for j in running if j.current is not None] + out
        # CPU-elastic jobs (demand.max_cpus > cpus) grow into idle cores or give them
        # back (H2b's rule); the decision comes back unchanged when there are none.
        return resize_cores(snapshot, Decision(tuple(out)))

    # -- ordering --------------------------------------------------------------------

    def _keys(self, snapshot: ClusterSnapshot, jobs: tuple[JobView, ...], rates: np.ndarray,
              kinds: list[str]) -> np.ndarray:
        best = rates.max(axis=1, initial=0.0)
        remaining = np.fromiter((j.remaining_work if j.remaining_work is not None else np.inf
                                 for j in jobs), float, len(jobs))
        with np.errstate(divide="ignore", invalid="ignore"):
            est = remaining / best
        unrated = np.flatnonzero(~(best > 0))
        if len(unrated):  # no profile speed: the reference-rate estimate (a loop per job)
            est[unrated] = common.remaining_seconds([jobs[int(i)] for i in unrated])
        age = snapshot.now - common.submitted(jobs)
        total = np.fromiter((self._total_work(j) for j in jobs), float, len(jobs))
        with np.errstate(divide="ignore", invalid="ignore"):
            alone = np.where(best > 0, total / best, np.inf)
            rho = (age + est) / alone
        keys = est.copy()
        # Hysteresis: a waiting job must be preempt_ratio times shorter than a running
        # one to win. Running jobs' keys at once (there are thousands), each
        # remaining / (its rate on its current kind, else its best rate) / ratio.
        held = [(i, job.current.kind) for i, job in enumerate(jobs) if job.current is not None]
        if held:
            column: dict[str | None, int] = {}
            for k, kind in enumerate(kinds):
                column.setdefault(kind, k)
            at = np.fromiter((i for i, _ in held), np.intp, len(held))
            on = np.fromiter((column.get(kind, -1) for _, kind in held), np.intp, len(held))
            now_rate = (np.where(on >= 0, rates[at, on], best[at]) if kinds
                        else best[at])
            with np.errstate(divide="ignore", invalid="ignore"):
                keys[at] = np.where(now_rate > 0, remaining[at] / now_rate, est[at]) \
                    / self.preempt_ratio
        guarded = np.isfinite(rho) & (rho > self.guard_rho)
        return np.where(guarded, _GUARD - age, keys)

    @staticmethod
    def _total_work(job: JobView) -> float:
        # Remaining work plus the work done so far (attained GPU-seconds at the
        # reference rate); only its order of magnitude matters for the guard.
        done = job.attained_gpu_seconds * (job.reference_rate or 0.0)
        return (job.remaining_work or 0.0) + done

    @staticmethod
    def _fastest_with_room(job: JobView, rates: np.ndarray, kinds: list[str],
                           budget: common.GpuBudget) -> str | None:
        gpus = common.share(job)
        best_kind, best_rate = None, 0.0
        for k, kind in enumerate(kinds):
            if rates[k] > best_rate and budget.fits(kind, gpus):
                best_kind, best_rate = kind, rates[k]
        return best_kind

    # -- heterogeneity: move running jobs up to idle faster kinds ----------------------

    def _upgrades(self, table: common.RateTable, kinds: list[str], budget: common.GpuBudget,
                  chosen: list[tuple[JobView, str | None]]) -> dict[str, str]:
        moves: dict[str, str] = {}
        candidates = []
        for job, kind in chosen:
            if job.current is None or kind is None or kind not in kinds:
                continue
            rates = table.rates(job)
            remaining = job.remaining_work or 0.0
            now_rate = rates[kinds.index(kind)]
            if now_rate <= 0:
                continue
            for k, other in enumerate(kinds):
                faster = rates[k]
                if faster <= now_rate:
                    continue
                saved = remaining / now_rate - remaining / faster
                if saved >= max(self.upgrade_gain * remaining / now_rate,
                                self.upgrade_min_seconds):
                    candidates.append((saved, job.id, kind, other, common.share(job)))
        for _saved, job_id, old, new, gpus in sorted(candidates, reverse=True):
            if job_id in moves or not budget.fits(new, gpus):
                continue
            budget.take(new, gpus)
            budget.take(old, -gpus)
            moves[job_id] = new
        return moves

    # -- shapes and hints ------------------------------------------------------------------

    def _assignments(self, snapshot: ClusterSnapshot, chosen: list[tuple[JobView, str | None]],
                     moves: dict[str, str]) -> list[Assignment]:
        nodes = snapshot.nodes
        out: list[Assignment] = []
        todo: list[tuple[JobView, str | None]] = []
        for job, kind in chosen:
            current = job.current
            if current is None:
                todo.append((job, kind))
            elif moves and job.id in moves:
                out.append(Assignment(job.id, job.demand.gpus, moves[job.id]))
            else:
                out.append(current)
        if not todo:
            return out
        cpu_aware = bool(nodes) and hasattr(snapshot.profiles, "resource_speedup")
        room = self._rooms.room(snapshot) if nodes else None
        node_size = int(room.size.max(initial=0)) if room is not None else 0
        target = self._packing_target(snapshot, todo) if nodes else None
        frag = self._tables.table(nodes, target) if target is not None else None
        data_nodes: dict[str, list[str]] | None = None
        reserve = self._reserve(snapshot, sum(common.share(j) for j, _ in todo)) \
            if cpu_aware else 1.0
        # The most free GPUs on any node: a job asking for more fits no node, so its
        # sizing (a best-fit scan and a core search) can be skipped. Nodes only lose room
        # in this loop, so it is recomputed only after a job took some.
        most_free = float(room.gpus.max(initial=0.0)) if room is not None else 0.0
        for job, kind in todo:
            demand = job.demand
            if frag is not None and demand.gpus <= node_size:
                # GPUs are shared here: every task goes where the pool's fragmentation
                # for the task mix grows least, weighted by GPUs (see _packing_target).
                hinted = place_one(frag, job, self.pack_balance)
                if hinted is not None:
                    self._tables.touched.add(frag.index[hinted.node or ""])
                    out.append(hinted)
                continue
            if room is None or demand.gpus == 0 or demand.gpus > node_size:
                out.append(Assignment(job.id, demand.gpus, kind))
                continue
            if data_nodes is None and job.dataset is not None and \
                    job.dataset.size_gib >= self.locality_gib:
                data_nodes = self._data_nodes(snapshot)
            sized = self._sized(job, kind, snapshot, room, cpu_aware, data_nodes or {},
                                reserve, most_free)
            if sized.node is not None:
                most_free = float(room.gpus.max(initial=0.0))
            out.append(sized)
        return out

    def _packing_target(self, snapshot: ClusterSnapshot,
                        todo: list[tuple[JobView, str | None]]) -> TargetWorkload | None:
        """The task mix to pack for when GPUs are shared (some task asks for a fraction),
        else None. FGD weighs task classes by count; here by the GPUs they ask for, since
        what a fragment costs is the GPU work that cannot use it."""
        target = self.target
        if target is None:
            if not any(j.demand.fraction is not None for j, _ in todo):
                return None
            target = target_from(snapshot)
        elif not bool((target.gpu < 1.0).any()):
            return None
        return target.weighted_by_gpu() if self.pack_by_gpu else target

    def _sized(self, job: JobView, kind: str | None, snapshot: ClusterSnapshot, room: NodeRoom,
               cpu_aware: bool, data_nodes: dict[str, list[str]], reserve: float,
               most_free: float = np.inf) -> Assignment:
        """Cores (when sensitivity is known) and a node hint for one waiting job.
        ``most_free``: the most free GPUs on any node of ``room`` (or more)."""
        demand = job.demand
        gpus, memory = demand.gpus, demand.memory_gib
        cpus = demand.cpus
        node: int | None = None
        if job.dataset is not None and job.dataset.size_gib >= self.locality_gib:
            for name in data_nodes.get(job.dataset.key, ()):
                i = room.names.index(name) if name in room.names else -1
                if i >= 0 and room.gpus[i] >= gpus and room.cpus[i] >= cpus and \
                        (kind is None or room.kinds[i] == kind):
                    node = i
                    break
        if node is None and gpus > most_free:
            return Assignment(job.id, gpus, kind)  # no node has the GPUs: nothing to size
        if cpu_aware:
            best, fewest, _ = self._cores.options(job, snapshot.profiles, room.max_cpus)
            if node is None:
                node = self._best_fit(room, job, kind, gpus, fewest, memory)
            if node is not None:
                cpus = resources.cores_to_give(best, fewest, room.cpus[node],
                                               room.gpus[node] - gpus, demand.cpus / gpus,
                                               reserve)
        if node is None:
            return Assignment(job.id, gpus, kind)
        room.take(node, gpus, cpus, memory)
        return Assignment(job.id, gpus, room.kinds[node] or kind, int(cpus), memory,
                          room.names[node])

    def _reserve(self, snapshot: ClusterSnapshot, waiting_gpus: float) -> float:
        """Share of the proportional cores kept for a node's free GPUs: all of them when
        the pool is busy, little when it is mostly idle (cores that no GPU job will ask
        for soon are better spent speeding up the jobs that run)."""
        return min(1.0, self.reserve_scale * resources.pressure(snapshot, waiting_gpus))

    @staticmethod
    def _best_fit(room: NodeRoom, job: JobView, kind: str | None, gpus: int, cpus: int,
                  memory: float) -> int | None:
        ok = (room.gpus >= gpus) & (room.cpus >= cpus) & (room.memory >= memory - 1e-9)
        if kind is not None:
            ok &= room.kind_array == kind
        elif job.demand.kinds:
            ok &= np.isin(room.kind_array, job.demand.kinds)
        if not ok.any():
            return None
        # Fewest free GPUs that still hold the job (packing), then most free cores.
        score = np.where(ok, room.gpus * 1024.0 - room.cpus, np.inf)
        return int(np.argmin(score))

    @staticmethod
    def _data_nodes(snapshot: ClusterSnapshot) -> dict[str, list[str]]:
        where: dict[str, list[str]] = {}
        for job in snapshot.jobs:
            if job.current is not None and job.current.node and job.dataset is not None:
                where.setdefault(job.dataset.key, []).append(job.current.node)
        return where


def _elastic_pool(jobs: tuple[JobView, ...]) -> bool:
    """Some job is elastic in GPUs and none asks for a share of a GPU (the goodput plan
    sizes whole GPUs; shares go through the fragmentation-aware path)."""
    elastic = False
    for job in jobs:
        demand = job.demand
        if demand.shared:
            return False
        if demand.max_gpus > demand.gpus > 0:
            elastic = True
    return elastic
