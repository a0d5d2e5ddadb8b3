"""Jobs over several nodes: how each spread places them, and the round around them."""

from __future__ import annotations

from pathlib import Path

import pytest

from slicebox.placement import AllocationError, Placer, PoolState
from slicebox.placement.gang import split_cores
from slicebox.placement.placer import held_assignment
from slicebox.pool.files import load_pool
from slicebox.pool.model import Pool
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision
from slicebox.spec.demand import Spread
from tests.placement.helpers import by_job, job, place, running

POOLS = Path(__file__).resolve().parents[2] / "examples" / "pools"


@pytest.fixture
def four() -> tuple[Pool, PoolState]:
    """pcie-0, pcie-1 (PCIe), nvl-0, nvl-1 (NVLink): 8 H100, 64 cores, 1 TiB each."""
    pool = load_pool(POOLS / "four-8gpu.yaml")
    return pool, PoolState(pool)


def gpus_per_node(comp) -> dict[str, int]:
    return {p.node: len(p.slices) for p in comp.parts}


def test_split_cores_in_proportion_to_gpus() -> None:
    assert split_cores(64, [8, 8]) == [32, 32]
    assert split_cores(10, [8, 2]) == [8, 2]
    assert split_cores(3, [1, 1, 1]) == [1, 1, 1]
    assert split_cores(7, [2, 1]) == [5, 2]  # 4.67 and 2.33: the larger remainder wins
    assert split_cores(1, [8, 8]) == [1, 1]  # a part is a process: at least one core
    assert split_cores(0, [4]) == [0]


def test_pack_stays_on_one_node_when_one_has_room(four) -> None:
    pool, state = four
    comp = by_job(place(pool, state, [job("a", 6)]))["a"]
    assert not comp.multi_node


def test_pack_takes_whole_nodes_best_connected_then_the_tightest_remainder(four) -> None:
    pool, state = four
    state.apply(place(pool, state, [job("busy", 5, spread=Spread.ONE_NODE)]))
    busy = state.composition("busy")
    assert busy is not None and busy.nodes == ("nvl-0",)  # leaves nvl-0 with 3 free
    jobs = [running(job("busy", 5), busy), job("big", 10, cpus=20, memory_gib=100)]
    comp = by_job(place(pool, state, jobs))["big"]
    # The one whole NVLink node left (not the lower-numbered PCIe ones), then the 2 left
    # on the tightest node that holds them (nvl-0, 3 free).
    assert gpus_per_node(comp) == {"nvl-1": 8, "nvl-0": 2}
    assert [len(p.cores) for p in comp.parts] == [16, 4]
    assert [p.memory_gib for p in comp.parts] == [80, 20]


def test_pack_falls_back_to_the_largest_partly_free_nodes(four) -> None:
    pool, state = four
    busy = [job(f"b{i}", 5, spread=Spread.ONE_NODE) for i in range(4)]
    state.apply(place(pool, state, busy))  # 3 free on every node
    kept = [running(b, state.composition(b.id)) for b in busy]
    comp = by_job(place(pool, state, [*kept, job("big", 7)]))["big"]
    assert sum(gpus_per_node(comp).values()) == 7 and len(comp.parts) == 3


def test_spread_puts_one_gpu_on_each_node(four) -> None:
    pool, state = four
    comp = by_job(place(pool, state, [job("wide", 4, cpus=4, spread=Spread.SPREAD)]))["wide"]
    assert sorted(gpus_per_node(comp).values()) == [1, 1, 1, 1]
    comp = by_job(place(pool, state, [job("wider", 6, spread=Spread.SPREAD)]))["wider"]
    assert sorted(gpus_per_node(comp).values()) == [1, 1, 2, 2]  # round robin past 4 nodes


def test_one_node_never_spans_and_says_why(four) -> None:
    pool, state = four
    plan = place(pool, state, [job("big", 16, spread=Spread.ONE_NODE)])
    why = plan.waiting["big"]
    assert why.never and why.field == "gpus" and (why.wanted, why.available) == (16, 8)


def test_a_gang_waits_whole_when_the_pool_is_short(four) -> None:
    pool, state = four
    most = job("most", 24)
    state.apply(place(pool, state, [most]))
    plan = place(pool, state, [running(most, state.composition("most")), job("big", 16)])
    why = plan.waiting["big"]
    assert not plan.start and not why.never
    assert (why.field, why.wanted, why.available, why.short_by) == ("gpus", 16, 8, 8)


def test_gang_nodes_lacking_cores_for_their_share_are_skipped(four) -> None:
    pool, state = four
    cpu_job = job("cores", 0, cpus=60)
    state.apply(place(pool, state, [cpu_job]))  # a CPU job on a GPU node: 4 cores left
    held = state.composition("cores")
    assert held is not None
    comp = by_job(place(pool, state, [running(cpu_job, held), job("big", 16, cpus=64)]))["big"]
    assert len(comp.parts) == 2 and held.node not in comp.nodes


def test_a_gang_is_allocated_and_released_whole(four) -> None:
    pool, state = four
    empty = state.fingerprint()
    comp = by_job(place(pool, state, [job("big", 16)]))["big"]
    state.allocate(comp)
    assert state.free_whole_gpus("H100") == 16
    state.release("big")
    assert state.fingerprint() == empty


def test_round_commit_leaves_the_state_as_the_plan_makes_it(four) -> None:
    pool, state = four
    placer = Placer(pool)
    jobs = [job("a", 16), job("b", 4), job("c", 0, cpus=8)]
    snapshot = ClusterSnapshot(0.0, tuple(jobs), state.capacity())
    decision = Decision(tuple(Assignment(j.id, j.demand.gpus) for j in jobs))
    expected = state.copy()
    plan = placer.place(state, snapshot, decision, commit=True)
    expected.apply(plan)
    assert state.fingerprint() == expected.fingerprint()
    # Next round, leaving "b" out of the decision stops it; the others are kept.
    held = tuple(held_assignment(c) for c in state.compositions().values()
                 if c.job_id != "b")
    plan = placer.place(state, snapshot, Decision(held), commit=True)
    assert plan.stop == ("b",) and set(plan.keep) == {"a", "c"} and "b" not in state


def test_draining_jobs_keep_what_they_hold_for_the_round(four) -> None:
    pool, state = four
    placer = Placer(pool)
    state.apply(place(pool, state, [job("old", 32)]))  # the whole pool
    new = job("new", 8)
    snapshot = ClusterSnapshot(0.0, (new,), state.capacity())
    decision = Decision((Assignment("new", 8),))
    plan = placer.place(state, snapshot, decision, draining=("old",))
    assert not plan.start and not plan.stop and not plan.keep and "new" in plan.waiting
    plan = placer.place(state, snapshot, decision)  # no longer draining: it is stopped
    assert plan.stop == ("old",) and by_job(plan)["new"].slices


def test_allocate_refuses_a_gang_of_two_kinds(four) -> None:
    pool, state = four
    comp = by_job(place(pool, state, [job("big", 16)]))["big"]
    first, second = comp.parts
    other = type(second)(second.node, tuple(s.__class__(**{**s.__dict__, "kind": "L4"})
                                             for s in second.slices), second.cores,
                         second.memory_gib)
    before = state.fingerprint()
    with pytest.raises(AllocationError, match="one kind"):
        state.allocate(type(comp)("mixed", (first, other)))
    assert state.fingerprint() == before


def test_as_is_jobs_are_kept_unlisted_and_others_left_out_are_stopped(four) -> None:
    pool, state = four
    placer = Placer(pool)
    state.apply(place(pool, state, [job("kept", 16), job("gone", 8), job("stays", 8)]))
    new = job("new", 8)
    snapshot = ClusterSnapshot(0.0, (new,), state.capacity())
    stays = state.composition("stays")
    assert stays is not None
    decision = Decision((held_assignment(stays), Assignment("new", 8)))
    plan = placer.place(state, snapshot, decision, as_is={"kept"}, commit=True)
    # "gone" was neither in the decision nor as is: stopped, and "new" takes its node.
    assert plan.stop == ("gone",) and plan.keep == ("stays",)
    assert set(state.compositions()) == {"kept", "stays", "new"}
    plan = placer.place(state, snapshot, Decision(()), as_is={"kept", "stays", "new"})
    assert not plan.stop and not plan.keep and not plan.start  # nothing looked at


def test_a_snapshot_job_index_gives_the_same_plan(four) -> None:
    pool, state = four
    jobs = (job("a", 12), job("b", 3), job("c", 0, cpus=4))
    decision = Decision(tuple(Assignment(j.id, j.demand.gpus) for j in jobs))
    snapshot = ClusterSnapshot(0.0, jobs, state.capacity())
    indexed = ClusterSnapshot(0.0, jobs, state.capacity(), job_index={j.id: j for j in jobs})
    placer = Placer(pool)
    assert placer.place(state, snapshot, decision) == placer.place(state, indexed, decision)


def test_a_gang_takes_fewer_gpus_where_cores_run_short(four) -> None:
    pool, state = four
    # 100 cores never fit one 64-core node, but 2 GPUs with 50 cores each fit two.
    comp = by_job(place(pool, state, [job("wide", 2, cpus=100)]))["wide"]
    assert [(len(p.slices), len(p.cores)) for p in comp.parts] == [(1, 50), (1, 50)]
    assert Placer(pool).feasible(job("x", 2, cpus=100).demand) is None
    why = Placer(pool).feasible(job("x", 32, cpus=257).demand)
    assert why is not None and why.field == "cpus" and (why.wanted, why.available) == (32, 28)
    one = Placer(pool).feasible(job("x", 2, cpus=100, spread=Spread.ONE_NODE).demand)
    assert one is not None and one.field == "cpus" and str(one).startswith("resources.cpus")


def test_a_cpu_gang_takes_one_rank_on_each_of_distinct_nodes(four) -> None:
    pool, state = four
    comp = by_job(place(pool, state, [job("ddp", 0, cpus=4, memory_gib=8, nodes=3)]))["ddp"]
    assert len(set(comp.nodes)) == 3 and not comp.slices
    assert [len(p.cores) for p in comp.parts] == [4, 4, 4]
    assert [p.memory_gib for p in comp.parts] == [8, 8, 8]
    state.apply(place(pool, state, [job("ddp", 0, cpus=4, memory_gib=8, nodes=3)]))
    assert state.composition("ddp") is not None  # the placement is one the state accepts


def test_a_cpu_gang_waits_whole_and_never_fits_a_pool_with_fewer_nodes(four) -> None:
    pool, state = four
    hog = job("hog", 0, cpus=64)
    state.apply(place(pool, state, [hog, job("hog2", 0, cpus=64)]))  # 2 nodes full
    held = [running(job(j, 0, cpus=64), state.composition(j)) for j in ("hog", "hog2")]
    plan = place(pool, state, [*held, job("ddp", 0, cpus=2, nodes=3)])
    why = plan.waiting["ddp"]
    assert not plan.start and not why.never
    assert (why.field, why.wanted, why.available) == ("nodes", 3, 2)
    never = place(pool, PoolState(pool), [job("wide", 0, cpus=2, nodes=5)]).waiting["wide"]
    assert never.never and never.field == "nodes" and never.available == 4
