"""The placer: turns a policy's ``Decision`` into exact compositions, one round at a time.

``Placer.place(state, snapshot, decision)`` runs one ``PlacementRound`` (see
``round.py`` for what a round does and what it costs); ``Placer.feasible`` says whether
a demand could ever fit the pool, and if not returns the ``NoFit`` naming the spec field
to change. ``dry_run`` is ``slicebox plan``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from slicebox.placement.feasibility import Feasibility
from slicebox.placement.round import PlacementRound, unchanged
from slicebox.placement.staging import DataCache, tmpfs_volumes
from slicebox.placement.state import PoolState
from slicebox.pool.composition import Composition, NoFit, Plan
from slicebox.pool.model import Node, Pool
from slicebox.pool.slices import SliceType
from slicebox.profiles.base import ThroughputModel
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobView
from slicebox.spec.demand import Demand

__all__ = ["Placer", "dry_run", "held_assignment", "unchanged"]


class Placer:
    def __init__(self, pool: Pool, profiles: ThroughputModel | None = None, *,
                 mig_free_room: bool = True):
        self.pool = pool
        self.profiles = profiles
        # A MIG job may go to free room of a MIG card as a new instance (placeholder uuid):
        # the simulator's and dry runs' card that can be carved. The live controller turns
        # it off (nothing creates the instance at launch; it is made by a MIG re-layout).
        self.mig_free_room = mig_free_room
        self._feasible = Feasibility(pool)
        # Nodes whose staged copies may sit in RAM (number, node): the only ones a round
        # counts staged memory on, so a pool without tmpfs volumes pays nothing for it.
        self.tmpfs_nodes: tuple[tuple[int, Node], ...] = tuple(
            (n, node) for n, node in enumerate(pool.nodes) if tmpfs_volumes(node))
        self.tmpfs_node_numbers = frozenset(n for n, _ in self.tmpfs_nodes)

    def feasible(self, demand: Demand) -> NoFit | None:
        """None if ``demand`` could fit on the empty pool, else why not (naming the field;
        ``str()`` of it is the one-line message)."""
        return self._feasible(demand)

    def place(self, state: PoolState, snapshot: ClusterSnapshot, decision: Decision,
              data: DataCache | None = None, draining: Collection[str] = (),
              commit: bool = False, as_is: Collection[str] = ()) -> Plan:
        """One round. ``commit=False`` leaves ``state`` (and ``data``) unchanged;
        ``commit=True`` leaves them as the plan makes them (the simulator). ``draining``:
        jobs still releasing; ``as_is``: held jobs kept unlooked-at (see ``round.py``)."""
        return PlacementRound(self, state, snapshot, decision, data, draining, commit,
                              as_is).run()

    def count_staged_memory(self, state: PoolState, data: DataCache) -> None:
        """Count ``data``'s tmpfs copies in ``state``'s free memory, to keep (a round does
        this for itself and undoes it with ``commit=False``; a caller that shows a policy
        the state's capacity first calls this so the policy sees that RAM as taken)."""
        for n, node in self.tmpfs_nodes:
            state.set_staged_memory(n, data.tmpfs_gib(node))

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
    shared = any(s.shape is not SliceType.WHOLE for s in comp.slices)
    return Assignment(comp.job_id, 1 if shared else len(comp.slices),
                      comp.kind if comp.slices else None, comp.core_count, comp.memory_gib)


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
