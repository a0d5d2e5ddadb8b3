"""Usage accounting: conflicts are refused whole, releases restore exactly, invariants hold."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from slicebox.placement import AllocationError, Placer, PoolState
from slicebox.placement.search import find_cpu, find_fraction, find_mig, find_whole
from slicebox.pool.composition import Composition
from slicebox.pool.slices import Slice, SliceType
from slicebox.pool.synthetic import uniform_pool
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision
from tests.placement.helpers import example, job, running


def _whole(node: str, device: int, kind: str = "H100", uuid: str = "x") -> Slice:
    return Slice(node, device, kind, SliceType.WHOLE, 1.0, 80, uuid)


def test_conflicts_are_refused_and_change_nothing() -> None:
    pool = example("dgx-h100")
    state = PoolState(pool)
    node = pool.nodes[0].name
    state.allocate(Composition.on_node("a", node, (_whole(node, 0),), (0, 1), 10))
    before = state.fingerprint()
    bad = [
        (Composition.on_node("a", node, (), (5,), 1), "already holds"),
        (Composition.on_node("b", node, (_whole(node, 1),), (1, 2), 1), "core 1 .* held by job a"),
        (Composition.on_node("b", node, (_whole(node, 0),), (3,), 1),
         "gpu0 is in use \\(held by a\\)"),
        (Composition.on_node("b", node, (_whole(node, 1), _whole(node, 1)), (3,), 1), "twice"),
        (Composition.on_node("b", node, (_whole(node, 9),), (3,), 1), "does not exist"),
        (Composition.on_node("b", node, (), (3, 3), 1), "listed twice"),
        (Composition.on_node("b", node, (), (500,), 1), "core 500 is not on node"),
        (Composition.on_node("b", node, (), (3,), 5000), "GiB memory free"),
        (Composition.on_node("b", "elsewhere", (), (3,), 1), "no node 'elsewhere'"),
        (Composition.on_node("b", node, (_whole(node, 1, "L4"),), (3,), 1), "is a H100, not a L4"),
        (Composition.on_node("b", node, (replace(_whole(node, 1), shape=SliceType.MIG,
                                          mig_profile="3g.40gb", mig_start=0),), (3,), 1),
         "does not have MIG enabled"),
    ]
    for comp, message in bad:
        with pytest.raises(AllocationError, match=message):
            state.allocate(comp)
        assert state.fingerprint() == before


def test_shares_add_up_to_one_card() -> None:
    pool = example("dgx-h100")
    state = PoolState(pool)
    node = pool.nodes[0].name
    share = Slice(node, 0, "H100", SliceType.FRACTION, 0.6, 30, "x")
    state.allocate(Composition.on_node("a", node, (share,), (0,), 1))
    with pytest.raises(AllocationError, match="0.40 compute left, 0.60 asked"):
        state.allocate(Composition.on_node("b", node, (share,), (1,), 1))
    with pytest.raises(AllocationError, match="50 GiB left, 60 GiB asked"):
        state.allocate(Composition.on_node("b", node, (replace(share, compute=0.4, memory_gib=60),),
                                   (1,), 1))
    with pytest.raises(AllocationError, match="in use"):
        state.allocate(Composition.on_node("b", node, (_whole(node, 0),), (1,), 1))
    state.allocate(Composition.on_node("b", node, (replace(share, compute=0.4, memory_gib=50),),
                                       (1,), 1))
    assert state.shared_room(0) == pytest.approx((0.0, 0.0))


def test_mig_geometry_is_enforced() -> None:
    pool = example("mixed-rack")
    state = PoolState(pool)

    def mig(profile: str, start: int, device: int = 0) -> Composition:
        s = Slice("a100", device, "A100-80GB", SliceType.MIG, 0.1, 10, f"p-{profile}-{start}",
                  profile, start)
        return Composition.on_node(f"{profile}@{start}", "a100", (s,), (), 1)

    state.allocate(mig("3g.40gb", 0))
    with pytest.raises(AllocationError, match="may start at \\[0, 4\\], not 2"):
        state.allocate(mig("3g.40gb", 2))
    with pytest.raises(AllocationError, match="slices 2-3 are taken"):
        state.allocate(mig("2g.20gb", 2))
    with pytest.raises(AllocationError, match="MIG enabled: it can only be used as MIG"):
        state.allocate(Composition.on_node("w", "a100", (_whole("a100", 0, "A100-80GB"),), (), 1))
    with pytest.raises(AllocationError, match="does not exist on A100-80GB"):
        state.allocate(mig("3g.20gb", 4))
    state.allocate(mig("3g.40gb", 4))
    with pytest.raises(AllocationError, match="slices 6-6 are taken"):
        state.allocate(mig("1g.10gb", 6))
    state.release("3g.40gb@4")
    state.allocate(mig("2g.20gb", 4))
    state.allocate(mig("1g.10gb", 6))


def test_release_restores_exactly_and_copy_is_independent() -> None:
    pool = example("mixed-rack")
    state = PoolState(pool)
    empty = state.fingerprint()
    spare = state.copy()
    comps = [find_whole(state, "w", "L4", 2, 4, 16)]
    for comp in comps:
        assert not isinstance(comp, str)
        state.allocate(comp)
    more = [find_mig(state, "m", "A100-80GB", "2g.20gb", 2, 8),
            find_fraction(state, "f", "A100-80GB", 0.3, 2, 8), find_cpu(state, "c", 10, 30)]
    for comp in more:
        assert not isinstance(comp, str)
        state.allocate(comp)
    assert spare.fingerprint() == empty  # the copy saw none of it
    for job_id in ("w", "m", "f", "c"):
        state.release(job_id)
    assert state.fingerprint() == empty
    with pytest.raises(KeyError, match="holds nothing"):
        state.release("w")


def _check_invariants(state: PoolState) -> None:
    comps = state.compositions()
    held: dict[tuple[str, int], str] = {}
    for comp in comps.values():
        for core in comp.cores:
            assert (comp.node, core) not in held, f"core {core} of {comp.node} given twice"
            held[(comp.node, core)] = comp.job_id
    per_card: dict[tuple[str, int], list[Slice]] = {}
    for comp in comps.values():
        for s in comp.slices:
            per_card.setdefault((s.node, s.device), []).append(s)
    for (node, device), slices in per_card.items():
        shapes = {s.shape for s in slices}
        assert len(shapes) == 1, f"{node}/gpu{device} mixes {shapes}"
        if SliceType.WHOLE in shapes:
            assert len(slices) == 1
        if SliceType.FRACTION in shapes:
            assert sum(s.compute for s in slices) <= 1 + 1e-9
            memory = state.pool.node(node).device(device).memory
            assert sum(s.memory_gib for s in slices) <= memory + 1e-9
        if SliceType.MIG in shapes:
            mask = 0
            for s in slices:
                d = state.topo.dev_at[(state.topo.node_index[node], device)]
                size = state.topo.mig_profile(d, s.mig_profile or "").size
                part = ((1 << size) - 1) << (s.mig_start or 0)
                assert not mask & part, f"MIG instances overlap on {node}/gpu{device}"
                mask |= part
    capacity = state.capacity()
    assert capacity.free_cpus == state.pool.total_cores - sum(len(c.cores) for c in comps.values())
    busy: dict[str, set[tuple[str, int]]] = {}
    for comp in comps.values():
        for s in comp.slices:
            busy.setdefault(s.kind, set()).add((s.node, s.device))
    for kind, total in state.pool.gpu_counts().items():
        assert capacity.free_gpus[kind] == total - len(busy.get(kind, ()))


def test_random_rounds_never_hand_out_a_core_twice() -> None:
    """Property-style: random jobs of every shape, placed and released over many rounds."""
    pool = example("mixed-rack")
    placer = Placer(pool)
    state = PoolState(pool)
    rng = random.Random(7)
    shapes = [dict(gpus=1), dict(gpus=2), dict(gpus=4, kinds=("L4",)), dict(gpus=0),
              dict(gpus=1, fraction=0.3), dict(gpus=1, fraction=0.5, gpu_memory_gib=10),
              dict(gpus=1, mig="1g.10gb"), dict(gpus=1, mig="3g.40gb"),
              dict(gpus=1, mig="2g.20gb")]
    views: dict[str, object] = {}
    serial = 0
    for _ in range(60):
        for job_id in list(state.compositions()):
            if rng.random() < 0.3:
                state.release(job_id)
                del views[job_id]
        new = []
        for _ in range(rng.randint(1, 8)):
            serial += 1
            shape = dict(rng.choice(shapes))
            gpus = int(shape.pop("gpus"))  # type: ignore[arg-type]
            new.append(job(f"j{serial}", gpus, cpus=rng.randint(1, 24),
                           memory_gib=rng.choice((1, 8, 64)), **shape))
        current = [running(v, state.composition(v.id))  # type: ignore[arg-type]
                   for v in views.values()]
        snapshot = ClusterSnapshot(0.0, tuple(current + new), state.capacity())
        decision = Decision(tuple([j.current for j in current if j.current] +
                                  [Assignment(j.id, j.demand.gpus) for j in new]))
        plan = placer.place(state, snapshot, decision)
        assert not plan.stop and set(plan.keep) == set(views)
        state.apply(plan)
        for comp in plan.start:
            views[comp.job_id] = next(j for j in new if j.id == comp.job_id)
        _check_invariants(state)
    assert serial > 100 and len(views) > 3


def test_scale_two_thousand_gpus_ten_thousand_placements() -> None:
    """Exercises the indexes at simulator size; asserts correctness, not time."""
    pool = uniform_pool({"V100": 1200, "K80": 800})
    state = PoolState(pool)
    rng = random.Random(3)
    placed = failed = 0
    live: list[str] = []
    for i in range(10_000):
        if live and (rng.random() < 0.45 or len(live) > 400):
            state.release(live.pop(rng.randrange(len(live))))
        kind = rng.choice(("V100", "K80"))
        comp = find_whole(state, f"j{i}", kind, rng.choice((1, 1, 2, 4, 8)), rng.choice((1, 4)),
                          8)
        if isinstance(comp, str):
            failed += 1
            assert "largest free set" in comp or "cores" in comp
            continue
        state.allocate(comp)
        live.append(comp.job_id)
        placed += 1
    assert placed > 9_000
    _check_invariants(state)
    for job_id in live:
        state.release(job_id)
    assert state.fingerprint() == PoolState(pool).fingerprint()


def test_node_views_report_free_shares() -> None:
    pool = example("mixed-rack")
    state = PoolState(pool)
    for find in (lambda: find_fraction(state, "f", "L4", 0.25, 1, 1),
                 lambda: find_whole(state, "w", "L4", 1, 1, 1),
                 lambda: find_mig(state, "m", "A100-80GB", "3g.40gb", 1, 1)):
        comp = find()
        assert not isinstance(comp, str)
        state.allocate(comp)
    views = {v.name: v for v in state.node_views()}
    assert sorted(views["l4"].free_gpu) == [0.0, 0.75, 1.0, 1.0]
    assert sorted(views["a100"].free_gpu) == pytest.approx([4 / 7, 1.0, 1.0, 1.0])
    assert views["cpu-0"].free_gpu == () and views["cpu-0"].kind is None
    assert views["l4"].free_cpus == 46
