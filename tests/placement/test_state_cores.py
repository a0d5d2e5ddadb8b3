"""Cores are taken and given back a NUMA node at a time: what that must keep exact."""

from __future__ import annotations

from slicebox.placement import PoolState
from slicebox.placement.search import pick_cores
from slicebox.pool.composition import Composition
from tests.placement.helpers import example


def test_cores_across_numa_nodes_are_taken_and_given_back_exactly() -> None:
    pool = example("dgx-h100")
    state = PoolState(pool)
    node = pool.nodes[0]
    (numa_a, cores_a), (numa_b, cores_b) = node.cores_by_numa[:2]
    empty = state.fingerprint()
    picked = (cores_a[0], cores_a[-1], cores_b[1])
    state.allocate(Composition.on_node("a", node.name, (), picked, 1))
    free = dict(state.free_cores(0))
    assert not free[numa_a] >> cores_a[0] & 1 and not free[numa_a] >> cores_a[-1] & 1
    assert not free[numa_b] >> cores_b[1] & 1 and free[numa_b] >> cores_b[0] & 1
    assert state.free_core_count(0) == len(node.cores) - 3
    state.release("a")
    assert state.fingerprint() == empty


def test_cores_come_from_the_preferred_numa_node_lowest_first() -> None:
    pool = example("dgx-h100")
    state = PoolState(pool)
    node = pool.nodes[0]
    (_, cores_a), (numa_b, cores_b) = node.cores_by_numa[:2]
    state.allocate(Composition.on_node("a", node.name, (), (cores_b[0],), 1))
    assert pick_cores(state, 0, 2, [numa_b]) == ((cores_b[1], cores_b[2]), (numa_b,))
    # More than the preferred node has free: the rest spill over, and both are named.
    got = pick_cores(state, 0, len(cores_b), [numa_b])
    assert got is not None
    assert set(got[0]) == set(cores_b[1:]) | {cores_a[0]} and got[1][0] == numa_b
