"""The engine with the live system's placement: ``PoolState`` + ``Placer.place`` per decision.

Every decision goes through ``Placer.place(state, snapshot, decision, data)`` exactly as
the controller calls it, and the engine carries out the returned ``Plan`` (stops, then
starts with their exact slices, cores and staging). Data staging follows the placer's
``DataCache``: a composition whose staging is ``cached`` starts without copying.

Two limits make this the cross-check rather than the default (measured in
``benchmarks/sim_scale.py``, see docs/simulator.md): a ``Composition`` lives on one
node, so a job larger than a node never fits (Philly has 2,029 such jobs, most
Pollux/Sia jobs need more GPUs than an aws node has); and a round costs O(running jobs)
(the placer walks every composition to decide keep/stop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slicebox.placement.placer import Placer
from slicebox.placement.staging import DataCache
from slicebox.placement.state import PoolState
from slicebox.pool.composition import Composition
from slicebox.pool.model import Pool
from slicebox.pool.slices import SliceShape
from slicebox.sim.allocator import Allocation, Share
from slicebox.sim.engine import Engine, EngineOptions, Progress, SimulationError, _Run
from slicebox.sim.job import SimJob
from slicebox.sim.speed import SpeedBook
from slicebox.snapshot import Assignment, Capacity, Decision, NodeView
from slicebox.spec.demand import Demand


class PlacerEngine(Engine):
    def __init__(self, jobs: Sequence[SimJob], pool: Pool, policy: object, speeds: SpeedBook,
                 options: EngineOptions | None = None, progress: Progress | None = None,
                 trace_name: str = "") -> None:
        self.state = PoolState(pool)
        self.placer = Placer(pool)
        self.data = DataCache()
        self._nodes = {node.name: i for i, node in enumerate(pool.nodes)}
        self._holding: dict[tuple[int, int], list[int]] = {}
        self._allocated = 0.0
        self._views: tuple[NodeView, ...] | None = None
        super().__init__(jobs, pool, policy, speeds, options, progress,  # type: ignore[arg-type]
                         trace_name)
        self.placer.profiles = self.profiles

    # -- capacity ------------------------------------------------------------------

    def _fits_pool(self, demand: Demand, kinds: Sequence[str]) -> bool:
        return self.placer.feasible(demand) is None

    def _why_not(self, demand: Demand) -> str:
        reason = self.placer.feasible(demand)
        return (f" with the live placer, which puts a job on one node ({reason}); "
                "placement='fast' places jobs larger than a node") if reason else ""

    def _free_gpus(self) -> Mapping[str, int]:
        return self.state.capacity().free_gpus

    def _capacity(self) -> Capacity:
        return self.state.capacity()

    def _node_views(self) -> tuple[NodeView, ...]:
        if self._views is None:
            self._views = self.state.node_views()
        return self._views

    def _allocated_share(self) -> float:
        return self._allocated

    def _holders(self, part: Share) -> list[int]:
        seen: dict[int, None] = {}
        for d in part.devices:
            for handle in self._holding.get((part.node, d), ()):
                seen[handle] = None
        return list(seen)

    def _node_name(self, part: Share) -> str:
        return self.pool.nodes[part.node].name

    # -- decisions -----------------------------------------------------------------

    def _apply(self, decision: Decision) -> None:
        snapshot = self.last_snapshot
        assert snapshot is not None
        for a in decision.run:
            if a.job_id not in self.by_id:
                raise SimulationError(f"policy {self.policy.name!r} chose unknown job "
                                      f"{a.job_id!r}")
        plan = self.placer.place(self.state, snapshot, decision, self.data)
        wanted = {a.job_id: a for a in decision.run}
        for job_id in plan.stop:
            self._stop(self.by_id[job_id])
        for comp in plan.start:
            run = self.by_id[comp.job_id]
            self.state.allocate(comp)
            staging = 0.0
            if comp.staging is not None:
                if not comp.staging.cached:
                    staging = self._staging_seconds(run.job)
                self.data.commit(comp.node, comp.staging, self.now)
            alloc = self._from_composition(comp)
            self._hold(run, alloc, True)
            if not self._begin(run, wanted[comp.job_id], alloc, staging):
                self._release(run, alloc)

    def _allocate(self, run: _Run, a: Assignment, kinds: Sequence[str]) -> Allocation | None:
        # Never reached: this engine overrides the per-assignment path and hands the whole
        # decision to the live Placer; a call here would mean the base loop changed.
        raise RuntimeError("the placer engine places whole decisions, not single assignments")

    def _release(self, run: _Run, alloc: Allocation) -> None:
        if run.id in self.state:
            self.state.release(run.id)
        self._hold(run, alloc, False)

    def _hold(self, run: _Run, alloc: Allocation, on: bool) -> None:
        for part in alloc.parts:
            for d in part.devices:
                holders = self._holding.setdefault((part.node, d), [])
                if on:
                    holders.append(run.handle)
                elif run.handle in holders:
                    holders.remove(run.handle)
        self._allocated += alloc.gpus if on else -alloc.gpus
        self._views = None

    def _from_composition(self, comp: Composition) -> Allocation:
        share = comp.slices[0].compute if comp.slices else 1.0
        if comp.slices and comp.slices[0].shape is SliceShape.WHOLE:
            share = 1.0
        devices = tuple(s.device for s in comp.slices)
        part = Share(self._nodes[comp.node], devices, len(comp.cores), comp.memory_gib)
        return Allocation(comp.kind if comp.slices else "cpu", share, (part,))
