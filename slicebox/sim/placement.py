"""The simulator's side of the one placement engine.

Nothing here decides where a job goes: that is ``slicebox.placement``, the same code the
live controller runs. The simulator keeps one long-lived ``PoolState`` and one
``DataCache`` for the whole run and hands every decision to ``Placer.place`` with
``commit=True``, so the state is left as the plan makes it (stopped jobs released,
started jobs allocated, staged copies recorded) instead of being rebuilt or undone. A
job that completes is released here.

What this module adds is what only a simulation needs: which running jobs share a card
(their speed depends on each other), the GPU share held in all, and the snapshot's node
views and capacity, kept up to date by what changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet

from slicebox.placement.placer import Placer
from slicebox.placement.staging import DataCache
from slicebox.placement.state import PoolState
from slicebox.pool.composition import Composition, NoFit, Plan
from slicebox.pool.model import Pool
from slicebox.pool.slices import SliceType
from slicebox.profiles.base import ThroughputModel
from slicebox.snapshot import Capacity, ClusterSnapshot, Decision, NodeView
from slicebox.spec.demand import Demand


class SimPlacement:
    def __init__(self, pool: Pool, profiles: ThroughputModel, staging: bool) -> None:
        self.pool = pool
        self.state = PoolState(pool)
        self.placer = Placer(pool, profiles)
        self.data = DataCache() if staging else None
        self.total_gpus = dict(pool.gpu_counts())
        self.kinds = tuple(sorted(self.total_gpus))
        self.allocated_share = 0.0
        self._node_index = {node.name: n for n, node in enumerate(pool.nodes)}
        self._sharers: dict[tuple[str, int], list[int]] = {}  # shared card -> job handles
        self._views = list(self.state.node_views())
        self._views_tuple: tuple[NodeView, ...] | None = None
        self._dirty: set[int] = set()

    # -- placing -------------------------------------------------------------------

    def feasible(self, demand: Demand) -> NoFit | None:
        """None if ``demand`` fits the empty pool, else the ``NoFit`` saying why not."""
        return self.placer.feasible(demand)

    def place(self, snapshot: ClusterSnapshot, decision: Decision,
              as_is: AbstractSet[str] = frozenset()) -> Plan:
        """One round of the live placement, committed to the state. ``as_is``: running
        jobs that keep exactly what they hold, unlooked-at (each must hold something in
        the state; the round counts them rather than checking them).
        The caller reports the plan's stops (``released``) and starts (``held``) back."""
        return self.placer.place(self.state, snapshot, decision, self.data, commit=True,
                                 as_is=as_is)

    def held(self, handle: int, comp: Composition, share: float, shared: bool) -> None:
        """A job now holds ``comp`` (allocated in the state by the round): ``share`` GPUs
        in all, ``shared``: on a share of a card."""
        self.allocated_share += share
        if shared:
            for key in _shared_cards(comp):
                self._sharers.setdefault(key, []).append(handle)
        self._touch(comp)

    def released(self, handle: int, comp: Composition, share: float, shared: bool) -> None:
        """A job no longer holds ``comp`` (released in the state by the round)."""
        self.allocated_share -= share
        if shared:
            for key in _shared_cards(comp):
                holders = self._sharers[key]
                holders.remove(handle)
                if not holders:
                    del self._sharers[key]
        self._touch(comp)

    def release(self, handle: int, comp: Composition, share: float, shared: bool) -> None:
        """A job finished: free what it holds."""
        self.state.release(comp.job_id)
        self.released(handle, comp, share, shared)

    def sharers(self, comp: Composition) -> list[int]:
        """Handles of the jobs on the cards ``comp`` shares (itself included)."""
        seen: dict[int, None] = {}
        for key in _shared_cards(comp):
            for handle in self._sharers.get(key, ()):
                seen[handle] = None
        return list(seen)

    # -- what a snapshot shows ------------------------------------------------------

    def capacity(self) -> Capacity:
        return self.state.capacity()

    def free_gpus(self) -> Mapping[str, int]:
        return {k: self.state.free_whole_gpus(k) for k in self.kinds}

    def node_views(self) -> tuple[NodeView, ...]:
        if self._dirty:
            one = getattr(self.state, "node_view", None)
            if one is None:  # an older PoolState: all nodes at once
                self._views = list(self.state.node_views())
            else:
                for n in self._dirty:
                    self._views[n] = one(n)
            self._dirty.clear()
            self._views_tuple = None
        if self._views_tuple is None:
            self._views_tuple = tuple(self._views)
        return self._views_tuple

    def _touch(self, comp: Composition) -> None:
        parts = comp.parts
        if len(parts) == 1:
            self._dirty.add(self._node_index[parts[0].node])
        else:
            self._dirty.update(self._node_index[p.node] for p in parts)


def _shared_cards(comp: Composition) -> Iterable[tuple[str, int]]:
    return [(s.node, s.device) for s in comp.slices if s.shape is SliceType.FRACTION]


def staging_seconds(comp: Composition, mbps: float) -> float:
    """Seconds to copy what ``comp`` stages (0 when the copy is already there)."""
    staging = comp.staging
    if staging is None or staging.cached or mbps <= 0:
        return 0.0
    return staging.size_gib * 1024.0 / mbps


def staging_bandwidth(pool: Pool) -> float:
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
