"""The simulator's own record of who holds which GPUs, cores and memory, by kind and node.

Why the engine keeps this instead of calling ``placement.Placer`` for every start: a
Philly run makes ~160,000 placement calls, and each must cost what it touches, not the
size of the pool. Free whole GPUs are bucketed by count per kind, so a best-fit node is
found in O(GPUs per node); a job's hint (``Assignment.node`` / ``devices``) is tried
first. The choice of kind for ``kind=None`` follows the live placer's rule (the
allowed kind where the job runs fastest, among those that fit). Exact cores, NUMA,
MIG geometry and volumes are the live placer's business and do not change a simulated
job's speed, so only their counts are kept here (see docs/simulator.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from slicebox.pool.model import Pool
from slicebox.snapshot import Assignment, NodeView
from slicebox.spec.demand import Demand

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Share:
    """What a job holds on one node."""

    node: int  # index of the node group
    devices: tuple[int, ...]
    cpus: int
    memory_gib: float


@dataclass(frozen=True, slots=True)
class Allocation:
    kind: str
    gpu_share: float  # compute share per device: 1.0 for whole GPUs
    parts: tuple[Share, ...]

    @property
    def gpus(self) -> float:
        return sum(len(p.devices) for p in self.parts) * self.gpu_share

    @property
    def per_node(self) -> tuple[int, ...]:
        return tuple(len(p.devices) for p in self.parts)

    @property
    def cpus(self) -> int:
        return sum(p.cpus for p in self.parts)

    @property
    def memory_gib(self) -> float:
        return sum(p.memory_gib for p in self.parts)

    @property
    def shared(self) -> bool:
        return self.gpu_share < 1.0


class _Group:
    """The devices of one kind on one node, with its cores and memory."""

    __slots__ = ("index", "name", "kind", "free", "whole", "cpus", "memory", "size", "view",
                 "holders")

    def __init__(self, index: int, name: str, kind: str, size: int, cpus: int,
                 memory: float) -> None:
        self.index = index
        self.name = name
        self.kind = kind
        self.size = size
        self.free = [1.0] * size  # free compute share per device
        self.whole = size  # devices entirely free
        self.cpus = cpus
        self.memory = memory
        self.view: NodeView | None = None
        self.holders: list[list[int]] = [[] for _ in range(size)]  # job handles per device


class Allocator:
    """Free capacity indexed by kind and node; allocate/release in O(GPUs per node)."""

    def __init__(self, pool: Pool) -> None:
        self.groups: list[_Group] = []
        self.by_name: dict[str, list[int]] = {}
        for node in pool.nodes:
            kinds: dict[str, int] = {}
            for dev in node.devices:
                kinds[dev.kind.name] = kinds.get(dev.kind.name, 0) + 1
            if not kinds:
                continue
            total = sum(kinds.values())
            for kind, count in kinds.items():
                # Cores and memory of a mixed node are split by its GPUs, so each part can
                # be scheduled on its own; the pools of the public traces have one kind.
                cpus = len(node.cores) * count // total
                memory = node.memory_gib * count / total
                group = _Group(len(self.groups), node.name, kind, count, cpus, memory)
                self.groups.append(group)
                self.by_name.setdefault(node.name, []).append(group.index)
        self.kinds = tuple(sorted({g.kind for g in self.groups}))
        self.total_gpus = {k: sum(g.size for g in self.groups if g.kind == k) for k in self.kinds}
        self.free_gpus = dict(self.total_gpus)  # whole free devices per kind
        self.max_node = {k: max(g.size for g in self.groups if g.kind == k) for k in self.kinds}
        self.total_cpus = sum(g.cpus for g in self.groups)
        self.total_memory = sum(g.memory for g in self.groups)
        self.free_cpus = self.total_cpus
        self.free_memory = self.total_memory
        # buckets[kind][n]: groups of that kind with exactly n whole free devices
        self._buckets: dict[str, list[dict[int, None]]] = {
            k: [{} for _ in range(self.max_node[k] + 1)] for k in self.kinds}
        for g in self.groups:
            self._buckets[g.kind][g.whole][g.index] = None
        self.allocated_share = 0.0
        self._views: tuple[NodeView, ...] | None = None

    # -- queries ------------------------------------------------------------------

    def node_views(self) -> tuple[NodeView, ...]:
        if self._views is None:
            views = []
            for g in self.groups:
                if g.view is None:
                    g.view = NodeView(g.name, g.kind, tuple(g.free), float(g.cpus), g.memory)
                views.append(g.view)
            self._views = tuple(views)
        return self._views

    def fits_anywhere(self, demand: Demand, kinds: Sequence[str]) -> bool:
        """Whether an empty pool could hold the demand on one of ``kinds``."""
        for kind in kinds:
            if kind not in self.total_gpus:
                continue
            if demand.gpus <= self.total_gpus[kind]:
                return True
        return False

    # -- allocate / release ---------------------------------------------------------

    def allocate(self, handle: int, demand: Demand, a: Assignment, kinds: Sequence[str]
                 ) -> Allocation | None:
        """Place one assignment on the first of ``kinds`` (already in preference order)
        where it fits; None when it fits nowhere now."""
        cpus = a.cpus if a.cpus is not None else demand.cpus
        memory = a.memory_gib if a.memory_gib is not None else demand.memory_gib
        fraction = a.fraction if a.fraction is not None else demand.fraction
        for kind in kinds:
            if kind not in self.total_gpus:
                continue
            if fraction is not None and fraction < 1.0:
                alloc = self._fraction(kind, fraction, cpus, memory, a)
            else:
                alloc = self._whole(kind, a.gpus, cpus, memory, a)
            if alloc is not None:
                self._take(handle, alloc)
                return alloc
        return None

    def release(self, handle: int, alloc: Allocation) -> None:
        for part in alloc.parts:
            g = self.groups[part.node]
            self._set_whole_bucket(g, remove=True)
            for d in part.devices:
                g.free[d] = min(1.0, g.free[d] + alloc.gpu_share)
                if g.free[d] > 1.0 - _EPS:
                    g.free[d] = 1.0
                g.holders[d].remove(handle)
            g.whole = sum(1 for f in g.free if f >= 1.0)
            self._set_whole_bucket(g, remove=False)
            g.cpus += part.cpus
            g.memory += part.memory_gib
            g.view = None
        self._views = None
        self.free_cpus += alloc.cpus
        self.free_memory += alloc.memory_gib
        self.allocated_share -= alloc.gpus
        self._recount(alloc)

    def holders(self, part: Share) -> list[int]:
        """Jobs on the devices of one part (for interference between co-runners)."""
        g = self.groups[part.node]
        seen: dict[int, None] = {}
        for d in part.devices:
            for h in g.holders[d]:
                seen[h] = None
        return list(seen)

    # -- internals ------------------------------------------------------------------

    def _take(self, handle: int, alloc: Allocation) -> None:
        for part in alloc.parts:
            g = self.groups[part.node]
            self._set_whole_bucket(g, remove=True)
            for d in part.devices:
                g.free[d] -= alloc.gpu_share
                if g.free[d] < _EPS:
                    g.free[d] = 0.0
                g.holders[d].append(handle)
            g.whole = sum(1 for f in g.free if f >= 1.0)
            self._set_whole_bucket(g, remove=False)
            g.cpus -= part.cpus
            g.memory -= part.memory_gib
            g.view = None
        self._views = None
        self.free_cpus -= alloc.cpus
        self.free_memory -= alloc.memory_gib
        self.allocated_share += alloc.gpus
        self._recount(alloc)

    def _recount(self, alloc: Allocation) -> None:
        kind = alloc.kind
        buckets = self._buckets[kind]
        self.free_gpus[kind] = sum(n * len(b) for n, b in enumerate(buckets))

    def _set_whole_bucket(self, g: _Group, remove: bool) -> None:
        bucket = self._buckets[g.kind][g.whole]
        if remove:
            bucket.pop(g.index, None)
        else:
            bucket[g.index] = None

    def _fits(self, g: _Group, cpus: int, memory: float) -> bool:
        return g.cpus >= cpus and g.memory >= memory - _EPS

    def _hinted(self, kind: str, a: Assignment) -> _Group | None:
        if a.node is None:
            return None
        for index in self.by_name.get(a.node, ()):
            if self.groups[index].kind == kind:
                return self.groups[index]
        return None

    def _whole(self, kind: str, gpus: int, cpus: int, memory: float, a: Assignment
               ) -> Allocation | None:
        if gpus == 0:
            return self._cpu_only(kind, cpus, memory, a)
        if gpus > self.free_gpus[kind]:
            return None
        hinted = self._hinted(kind, a)
        if hinted is not None and hinted.whole >= gpus and self._fits(hinted, cpus, memory):
            return Allocation(kind, 1.0, (self._share(hinted, gpus, cpus, memory, a.devices),))
        buckets = self._buckets[kind]
        size = self.max_node[kind]
        if gpus <= size:
            # Best fit: the node with the fewest whole free GPUs that still holds the job,
            # which keeps whole nodes free for large jobs.
            for n in range(gpus, size + 1):
                for index in buckets[n]:
                    g = self.groups[index]
                    if self._fits(g, cpus, memory):
                        return Allocation(kind, 1.0, (self._share(g, gpus, cpus, memory),))
            if gpus < size:
                return None
        return self._gang(kind, gpus, cpus, memory)

    def _gang(self, kind: str, gpus: int, cpus: int, memory: float) -> Allocation | None:
        """A job larger than a node: whole free nodes first, the remainder best-fit on one
        more node, and only then the largest partly free nodes (as Sia packs rigid jobs).
        Each part gets cores and memory in proportion to its GPUs."""
        buckets = self._buckets[kind]
        size = self.max_node[kind]
        chosen: list[tuple[_Group, int]] = []
        used: set[int] = set()
        left = gpus

        def room(g: _Group, take: int) -> bool:
            return g.index not in used and self._fits(g, max(1, round(cpus * take / gpus)),
                                                      memory * take / gpus)

        for index in buckets[size]:
            if left < size:
                break
            if room(self.groups[index], size):
                chosen.append((self.groups[index], size))
                used.add(index)
                left -= size
        if left > 0:
            for n in range(left, size + 1):
                found = next((i for i in buckets[n] if room(self.groups[i], left)), None)
                if found is not None:
                    chosen.append((self.groups[found], left))
                    used.add(found)
                    left = 0
                    break
        for n in range(size, 0, -1):
            if left <= 0:
                break
            for index in buckets[n]:
                take = min(n, left)
                if room(self.groups[index], take):
                    chosen.append((self.groups[index], take))
                    used.add(index)
                    left -= take
                    if left <= 0:
                        break
        if left > 0:
            return None
        parts = [self._share(g, take, max(1, round(cpus * take / gpus)), memory * take / gpus)
                 for g, take in chosen]
        return Allocation(kind, 1.0, tuple(parts))

    def _share(self, g: _Group, gpus: int, cpus: int, memory: float,
               devices: tuple[int, ...] | None = None) -> Share:
        if devices is not None and len(devices) == gpus and all(
                0 <= d < g.size and g.free[d] >= 1.0 for d in devices):
            chosen = tuple(devices)
        else:
            chosen = tuple(i for i, f in enumerate(g.free) if f >= 1.0)[:gpus]
        return Share(g.index, chosen, cpus, memory)

    def _fraction(self, kind: str, fraction: float, cpus: int, memory: float, a: Assignment
                  ) -> Allocation | None:
        hinted = self._hinted(kind, a)
        if hinted is not None and self._fits(hinted, cpus, memory):
            wanted = a.devices[0] if a.devices else None
            if wanted is not None and 0 <= wanted < hinted.size and \
                    hinted.free[wanted] >= fraction - _EPS:
                return Allocation(kind, fraction, (Share(hinted.index, (wanted,), cpus, memory),))
            best = self._tightest(hinted, fraction)
            if best is not None:
                return Allocation(kind, fraction, (Share(hinted.index, (best,), cpus, memory),))
        # Best fit over devices already shared, then a whole free one: sharing a card that
        # is already split keeps whole cards for whole-GPU jobs.
        choice: tuple[float, int, int] | None = None
        for g in self.groups:
            if g.kind != kind or not self._fits(g, cpus, memory):
                continue
            d = self._tightest(g, fraction)
            if d is not None and (choice is None or g.free[d] < choice[0]):
                choice = (g.free[d], g.index, d)
                if g.free[d] < 1.0:
                    break
        if choice is None:
            return None
        return Allocation(kind, fraction, (Share(choice[1], (choice[2],), cpus, memory),))

    @staticmethod
    def _tightest(g: _Group, fraction: float) -> int | None:
        best: int | None = None
        for d, free in enumerate(g.free):
            if free >= fraction - 1e-9 and (best is None or free < g.free[best]):
                best = d
        return best

    def _cpu_only(self, kind: str, cpus: int, memory: float, a: Assignment
                  ) -> Allocation | None:
        hinted = self._hinted(kind, a)
        candidates = [hinted] if hinted is not None else []
        candidates += [g for g in self.groups if g.kind == kind]
        for g in candidates:
            if self._fits(g, cpus, memory):
                return Allocation(kind, 1.0, (Share(g.index, (), cpus, memory),))
        return None

