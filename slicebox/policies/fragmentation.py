"""FGD's GPU fragmentation measure and the placement that descends it (ATC'23).

A node's GPU fragmentation *for a task* is the free GPU share on it that the task
cannot use: all of it when the task cannot run there at all (too few cores, memory or
fitting GPUs), otherwise the free share on GPUs too small for it (partly used GPUs, for
a task that needs whole ones; GPUs with less free than its fraction, for a fractional
task). For a *workload* (task classes with popularity weights) it is the weighted sum.
FGD places each task where this sum grows least.

Arrays throughout: a decision may place thousands of tasks on a pool of thousands of
nodes. Only distinct free values of a node's GPUs are candidates (equal GPUs leave the
node in the same state), and node sums are updated per placement, not recomputed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from slicebox.snapshot import NodeView

_EPS = 1e-9


@dataclass(frozen=True)
class TargetWorkload:
    """Task classes by GPU demand: ``gpu[m]`` < 1 is a fraction of one GPU, >= 1 a count
    of whole GPUs; ``cpus``/``memory`` the class's typical (median) request."""

    gpu: np.ndarray
    cpus: np.ndarray
    memory: np.ndarray
    weight: np.ndarray  # popularity, sums to 1

    def rounded(self, step: float = 0.01) -> TargetWorkload:
        """Weights and typical requests rounded (weights to ``step``): a mix estimated
        from the jobs of each snapshot then stays the same between most decisions, so the
        pool's fragmentation need not be recomputed for every node each time."""
        weight = np.round(self.weight / step) * step
        keep = weight > 0
        if not keep.any():
            return self
        weight = weight[keep]
        return TargetWorkload(self.gpu[keep], np.round(self.cpus[keep], 1),
                              np.round(self.memory[keep], 1), weight / weight.sum())

    def weighted_by_gpu(self) -> TargetWorkload:
        """The same classes weighted by the GPUs they ask for in all, not their count."""
        mass = self.weight * self.gpu
        total = mass.sum()
        return TargetWorkload(self.gpu, self.cpus, self.memory,
                              mass / total if total > 0 else self.weight)

    @property
    def whole(self) -> np.ndarray:
        return self.gpu >= 1.0 - _EPS

    @property
    def threshold(self) -> np.ndarray:
        """A GPU with less free than this is a fragment for the class."""
        return np.where(self.whole, 1.0, self.gpu)

    @classmethod
    def from_tasks(cls, tasks: Iterable[tuple[float, float, float]], by_gpu: bool = False
                   ) -> TargetWorkload:
        """Classes from (gpu share, cpus, memory GiB) of tasks (CPU-only tasks dropped:
        no GPU is ever a fragment for them). Weights are task counts (FGD), or with
        ``by_gpu`` the GPUs the class asks for in all (a fragment that an 8-GPU task
        cannot use loses 8 GPUs of work, one a 0.1-GPU task cannot use loses 0.1)."""
        rows = np.array(list(tasks), dtype=float).reshape(-1, 3)
        rows = rows[rows[:, 0] > 0]
        if len(rows) == 0:
            return cls(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0))
        keys, which = np.unique(np.round(rows[:, 0], 3), return_inverse=True)
        counts = np.bincount(which, minlength=len(keys)).astype(float)
        cpus = np.array([np.median(rows[which == k, 1]) for k in range(len(keys))])
        memory = np.array([np.median(rows[which == k, 2]) for k in range(len(keys))])
        mass = counts * (keys if by_gpu else 1.0)
        return cls(gpu=keys, cpus=cpus, memory=memory, weight=mass / mass.sum())


class NodeTable:
    """Free GPU share per device (absent devices count as used), cores and memory per
    node, with per-node sums kept current for a target workload."""

    def __init__(self, names: Sequence[str], kinds: Sequence[str | None], free: np.ndarray,
                 cpus: np.ndarray, memory: np.ndarray, workload: TargetWorkload) -> None:
        self.names = list(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.kinds = np.array([k or "" for k in kinds])
        self.free = np.array(free, dtype=float)
        self.cpus = np.array(cpus, dtype=float)
        self.memory = np.array(memory, dtype=float)
        self.workload = workload
        self.frag = node_fragmentation(self.free, self.cpus, self.memory, workload)

    @classmethod
    def from_views(cls, views: Sequence[NodeView], workload: TargetWorkload) -> NodeTable:
        width = max((len(v.free_gpu) for v in views), default=0)
        free = np.zeros((len(views), width))
        for i, v in enumerate(views):
            free[i, :len(v.free_gpu)] = v.free_gpu
        return cls([v.name for v in views], [v.kind for v in views], free,
                   np.array([v.free_cpus for v in views]),
                   np.array([v.free_memory_gib for v in views]), workload)

    def refreshed(self, views: Sequence[NodeView], workload: TargetWorkload,
                  previous: Sequence[NodeView], touched: Iterable[int]) -> NodeTable:
        """This table brought up to ``views``: only rows whose view object changed since
        ``previous`` (or that a decision charged, ``touched``) are rebuilt. Node views are
        immutable, so an unchanged object means an unchanged node."""
        if len(views) != len(previous) or [v.name for v in views[:1]] != [
                v.name for v in previous[:1]]:
            return NodeTable.from_views(views, workload)
        rows = {i for i, (a, b) in enumerate(zip(views, previous, strict=True)) if a is not b}
        rows.update(touched)
        width = self.free.shape[1]
        for i in rows:
            v = views[i]
            if len(v.free_gpu) > width:
                return NodeTable.from_views(views, workload)
            self.free[i, :] = 0.0
            self.free[i, :len(v.free_gpu)] = v.free_gpu
            self.cpus[i] = v.free_cpus
            self.memory[i] = v.free_memory_gib
        if not same_workload(workload, self.workload):
            self.workload = workload
            self.frag = node_fragmentation(self.free, self.cpus, self.memory, workload)
        elif rows:
            index = np.fromiter(rows, int, len(rows))
            self.frag[index] = node_fragmentation(self.free[index], self.cpus[index],
                                                  self.memory[index], workload)
        return self

    def take(self, node: int, devices: Sequence[int], gpu: float, cpus: float,
             memory: float) -> None:
        for d in devices:
            self.free[node, d] = max(0.0, self.free[node, d] - gpu)
        self.cpus[node] -= cpus
        self.memory[node] -= memory
        self.frag[node] = node_fragmentation(self.free[node:node + 1], self.cpus[node:node + 1],
                                             self.memory[node:node + 1], self.workload)[0]

    @property
    def gpu_total(self) -> float:
        return float(np.sum(self.free))


class TableCache:
    """``NodeTable`` for successive snapshots, rebuilding only the nodes whose (immutable)
    view changed or that the last decision charged. A memo: the table is the same as one
    built afresh, so a policy that keeps one stays pure."""

    def __init__(self) -> None:
        self._table: NodeTable | None = None
        self._views: tuple[NodeView, ...] = ()
        self.touched: set[int] = set()

    def table(self, views: tuple[NodeView, ...], workload: TargetWorkload) -> NodeTable:
        if self._table is None:
            table = NodeTable.from_views(views, workload)
        else:
            table = self._table.refreshed(views, workload, self._views, self.touched)
        self._table, self._views, self.touched = table, views, set()
        return table


def same_workload(a: TargetWorkload, b: TargetWorkload) -> bool:
    return a is b or (len(a.gpu) == len(b.gpu) and bool(
        np.array_equal(a.gpu, b.gpu) and np.array_equal(a.weight, b.weight)
        and np.array_equal(a.cpus, b.cpus) and np.array_equal(a.memory, b.memory)))


def node_fragmentation(free: np.ndarray, cpus: np.ndarray, memory: np.ndarray,
                       wl: TargetWorkload) -> np.ndarray:
    """F_n(M) for each row of ``free`` (rows x GPUs)."""
    if len(wl.gpu) == 0:
        return np.zeros(len(free))
    total = free.sum(axis=1)
    thr = wl.threshold  # (M,)
    below = np.einsum("ng,ngm->nm", free, (free[:, :, None] < thr[None, None, :] - _EPS))
    whole = (free >= 1.0 - _EPS).sum(axis=1)
    top = free.max(axis=1, initial=0.0)
    fits = (cpus[:, None] >= wl.cpus[None, :]) & (memory[:, None] >= wl.memory[None, :] - _EPS)
    gpu_ok = np.where(wl.whole[None, :], whole[:, None] >= wl.gpu[None, :] - _EPS,
                      top[:, None] >= wl.gpu[None, :] - _EPS)
    frag = np.where(fits & gpu_ok, below, total[:, None])
    return frag @ wl.weight


def _after(total: np.ndarray, below: np.ndarray, whole: np.ndarray, top: np.ndarray,
           cpus: np.ndarray, memory: np.ndarray, wl: TargetWorkload) -> np.ndarray:
    fits = (cpus[:, None] >= wl.cpus[None, :]) & (memory[:, None] >= wl.memory[None, :] - _EPS)
    gpu_ok = np.where(wl.whole[None, :], whole[:, None] >= wl.gpu[None, :] - _EPS,
                      top[:, None] >= wl.gpu[None, :] - _EPS)
    return np.where(fits & gpu_ok, below, total[:, None]) @ wl.weight


def candidates(table: NodeTable, gpu: float, cpus: float, memory: float,
               kinds: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(node, device) pairs where a task fits; for a fractional task one device per
    distinct free value on a node, for whole GPUs one entry per node (device -1)."""
    ok = (table.cpus >= cpus - _EPS) & (table.memory >= memory - _EPS)
    if kinds:
        ok &= np.isin(table.kinds, list(kinds))
    free = table.free
    if gpu >= 1.0 - _EPS:
        ok &= (free >= 1.0 - _EPS).sum(axis=1) >= gpu - _EPS
        nodes = np.nonzero(ok)[0]
        return nodes, np.full(len(nodes), -1)
    if gpu <= 0:
        nodes = np.nonzero(ok)[0]
        return nodes, np.full(len(nodes), -1)
    fit = (free >= gpu - _EPS) & ok[:, None]
    # One device per distinct free value: a device whose free equals an earlier one on
    # the same node is a duplicate candidate.
    rounded = np.round(free, 6)
    dup = np.zeros_like(fit)
    for d in range(1, free.shape[1]):
        dup[:, d] = (rounded[:, :d] == rounded[:, d:d + 1]).any(axis=1)
    nodes, devices = np.nonzero(fit & ~dup)
    return nodes, devices


def fgd_deltas(table: NodeTable, nodes: np.ndarray, devices: np.ndarray, gpu: float,
               cpus: float, memory: float) -> np.ndarray:
    """Growth of each candidate node's fragmentation if the task went there."""
    wl = table.workload
    if len(nodes) == 0:
        return np.zeros(0)
    free = table.free[nodes]  # (C, G)
    thr = wl.threshold
    total = free.sum(axis=1)
    below = np.einsum("cg,cgm->cm", free, (free[:, :, None] < thr[None, None, :] - _EPS))
    whole = (free >= 1.0 - _EPS).sum(axis=1)
    new_cpus = table.cpus[nodes] - cpus
    new_memory = table.memory[nodes] - memory
    if gpu >= 1.0 - _EPS or gpu <= 0:
        k = gpu if gpu >= 1.0 - _EPS else 0.0
        left_whole = whole - k
        partial = np.where(free < 1.0 - _EPS, free, 0.0).max(axis=1, initial=0.0)
        top = np.where(left_whole >= 1, 1.0, partial)
        after = _after(total - k, below, left_whole, top, new_cpus, new_memory, wl)
    else:
        f = free[np.arange(len(nodes)), devices]
        g = f - gpu
        below = below - np.where(f[:, None] < thr[None, :] - _EPS, f[:, None], 0.0) \
            + np.where(g[:, None] < thr[None, :] - _EPS, g[:, None], 0.0)
        left_whole = whole - (f >= 1.0 - _EPS)
        others = free.copy()
        others[np.arange(len(nodes)), devices] = g
        top = others.max(axis=1)
        after = _after(total - gpu, below, left_whole, top, new_cpus, new_memory, wl)
    return after - table.frag[nodes]


def fgd_choice(table: NodeTable, gpu: float, cpus: float, memory: float,
               kinds: Sequence[str] = (), balance: bool = False
               ) -> tuple[int, tuple[int, ...]] | None:
    """FGD's placement: the (node, devices) whose fragmentation grows least; ties go to
    the tightest fit, then the lowest index. None when the task fits nowhere.

    ``balance`` breaks ties (equal growth) by how well the node's cores keep up with
    its GPUs afterwards instead: the node left with the most cores per free GPU,
    relative to what the workload's tasks ask per GPU, so that no GPU is stranded on a
    node whose cores ran out first."""
    nodes, devices = candidates(table, gpu, cpus, memory, kinds)
    if len(nodes) == 0:
        return None
    delta = fgd_deltas(table, nodes, devices, gpu, cpus, memory)
    left = table.free[nodes].sum(axis=1)
    if balance:
        wl = table.workload
        per_gpu = float((wl.weight * wl.cpus / np.maximum(wl.gpu, 1e-9)).sum()) or 1.0
        gpus_after = np.maximum(left - max(gpu, 0.0), 0.0)
        cores_after = table.cpus[nodes] - cpus
        # Cores short of what the remaining free GPUs will need (0: enough for all).
        short = np.maximum(gpus_after * per_gpu - cores_after, 0.0) / per_gpu
        best = int(np.lexsort((nodes, left, np.round(short, 6), np.round(delta, 9)))[0])
    else:
        best = int(np.lexsort((nodes, left, np.round(delta, 9)))[0])
    return int(nodes[best]), pick_devices(table, int(nodes[best]), int(devices[best]), gpu)


def pick_devices(table: NodeTable, node: int, device: int, gpu: float) -> tuple[int, ...]:
    if gpu <= 0:
        return ()
    if gpu < 1.0 - _EPS:
        return (device,)
    whole = np.nonzero(table.free[node] >= 1.0 - _EPS)[0]
    return tuple(int(d) for d in whole[:int(round(gpu))])
