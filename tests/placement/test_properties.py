"""Properties of placement over random pools and jobs (hypothesis).

Pools: a few nodes with cores on one or two NUMA nodes, A100s (some MIG-enabled, some
with MIG instances already made) and L4s, links NVLink or PCIe. Jobs: CPU-only, whole
GPUs (gangs included, under every spread), fractions and MIG instances. Rounds run
through the real ``Placer`` with ``commit=True`` (as the simulator does), interleaved
with jobs finishing. After every step:

* no device, MIG memory slice or core is held twice, nothing exceeds what exists;
* the state's counters and indexes equal a state rebuilt from its compositions;
* a gang is placed whole (every GPU it asked for, one kind) or not at all;
* allocate then release restores the state exactly (fingerprint), for any composition.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from slicebox.placement import AllocationError, Placer, PoolState
from slicebox.placement.placer import held_assignment
from slicebox.pool.composition import Composition, Part
from slicebox.pool.kinds import get_kind
from slicebox.pool.model import Device, Link, MigInstance, Node, Pool
from slicebox.pool.slices import SliceType
from slicebox.snapshot import (
    Assignment,
    ClusterSnapshot,
    Decision,
    JobState,
    JobView,
    NodeView,
)
from slicebox.spec.demand import Demand, Spread

pytestmark = pytest.mark.fuzz

A100 = "A100-80GB"


@st.composite
def nodes(draw: st.DrawFn, name: str) -> Node:
    numas = draw(st.integers(1, 2))
    per_numa = draw(st.integers(2, 6))
    cores = tuple((k, tuple(range(k * per_numa, (k + 1) * per_numa))) for k in range(numas))
    kind = draw(st.sampled_from([A100, "L4"]))
    devices = []
    for i in range(draw(st.integers(0, 4))):
        mig = kind == A100 and draw(st.booleans())
        made: tuple[MigInstance, ...] = ()
        if mig and draw(st.booleans()):  # a 3g.40gb instance discovery found at start 4
            made = (MigInstance("3g.40gb", 4, f"MIG-{name}-{i}"),)
        devices.append(Device(i, kind, f"GPU-{name}-{i}", draw(st.integers(0, numas - 1)),
                              mig, None, made))
    link = draw(st.sampled_from([Link.NVLINK, Link.SYS]))
    links = tuple(tuple(Link.SELF if a == b else link for b in range(len(devices)))
                  for a in range(len(devices)))
    return Node(name, cores, float(draw(st.integers(8, 128))), tuple(devices), (), links)


@st.composite
def pools(draw: st.DrawFn) -> Pool:
    count = draw(st.integers(2, 5))
    return Pool(tuple(draw(nodes(f"n{i}")) for i in range(count)), "random")


@st.composite
def demands(draw: st.DrawFn) -> Demand:
    cpus = draw(st.integers(1, 6))
    memory = float(draw(st.integers(1, 48)))
    spread = draw(st.sampled_from(list(Spread)))
    shape = draw(st.sampled_from(["cpu", "whole", "whole", "fraction", "mig"]))
    kinds = draw(st.sampled_from([(), (A100,), ("L4",)]))
    if shape == "cpu":
        return Demand(cpus=cpus, memory_gib=memory)
    if shape == "fraction":
        return Demand(gpus=1, max_gpus=1, kinds=kinds, fraction=draw(st.sampled_from(
            [0.25, 0.5, 0.75])), cpus=cpus, memory_gib=memory)
    if shape == "mig":
        return Demand(gpus=1, max_gpus=1, kinds=(A100,), mig=draw(st.sampled_from(
            ["1g.10gb", "2g.20gb", "3g.40gb"])), cpus=cpus, memory_gib=memory)
    gpus = draw(st.integers(1, 7))
    return Demand(gpus=gpus, max_gpus=gpus, kinds=kinds, cpus=cpus, memory_gib=memory,
                  spread=spread)


def check_invariants(pool: Pool, state: PoolState) -> None:
    """Nothing held twice or beyond what exists, and the state equals one rebuilt from its
    compositions (so its counters and indexes are what the holdings say)."""
    whole: dict[tuple[str, int], str] = {}
    frac: dict[tuple[str, int], float] = {}
    mig_masks: dict[tuple[str, int], int] = {}
    cores: dict[tuple[str, int], str] = {}
    memory: dict[str, float] = {}
    instances: set[str] = set()  # existing MIG instances in use, by uuid
    for job_id, comp in state.compositions().items():
        for part in comp.parts:
            node = pool.node(part.node)
            memory[part.node] = memory.get(part.node, 0.0) + part.memory_gib
            for core in part.cores:
                assert (part.node, core) not in cores, f"core {core} held twice"
                assert core in node.cores
                cores[(part.node, core)] = job_id
            for s in part.slices:
                key = (s.node, s.device)
                assert s.node == part.node
                dev = node.device(s.device)
                assert key not in whole, f"{key} held whole and used again by {job_id}"
                if s.shape is SliceType.WHOLE:
                    assert key not in frac and key not in mig_masks and not dev.mig_enabled
                    whole[key] = job_id
                elif s.shape is SliceType.FRACTION:
                    assert not dev.mig_enabled
                    frac[key] = frac.get(key, 0.0) + s.compute
                    assert frac[key] <= 1 + 1e-6
                else:
                    assert dev.mig_enabled and s.mig_profile is not None
                    made = [m for m in dev.mig_instances if m.uuid == s.uuid]
                    if made:  # an existing instance: held by one job at most
                        assert s.uuid not in instances, f"MIG instance {s.uuid} held twice"
                        instances.add(s.uuid)
                        continue
                    size = get_kind(dev.kind_name).mig_profile(s.mig_profile).size
                    mask = ((1 << size) - 1) << (s.mig_start or 0)
                    existing = 0
                    for m in dev.mig_instances:
                        p = get_kind(dev.kind_name).mig_profile(m.profile)
                        existing |= ((1 << p.size) - 1) << m.start
                    held = mig_masks.get(key, existing)
                    assert not held & mask, f"MIG slices {mask:b} of {key} held twice"
                    mig_masks[key] = held | mask
    for name, used in memory.items():
        assert used <= pool.node(name).memory_gib + 1e-6
    # Free memory is a float sum whose last bits depend on the order of jobs (a gang's
    # parts hold fractions of its memory): it is compared to 6 places, as in fingerprint().
    rebuilt = PoolState(pool)
    for comp in state.compositions().values():
        rebuilt.allocate(comp)
    assert rebuilt.fingerprint() == state.fingerprint()
    assert dataclasses.replace(rebuilt.capacity(), free_memory_gib=0.0) == \
        dataclasses.replace(state.capacity(), free_memory_gib=0.0)
    assert rebuilt.capacity().free_memory_gib == pytest.approx(state.capacity().free_memory_gib)
    for kind in state.topo.kinds:
        assert rebuilt.free_whole_gpus(kind) == state.free_whole_gpus(kind)
        assert rebuilt.largest_free_set(kind) == state.largest_free_set(kind)
    assert [_rounded(v) for v in rebuilt.node_views()] == [_rounded(v) for v in
                                                           state.node_views()]


def _rounded(view: NodeView) -> NodeView:
    return dataclasses.replace(view, free_memory_gib=round(view.free_memory_gib, 6),
                               free_gpu=tuple(round(f, 6) for f in view.free_gpu))


def check_gang(comp: Composition, demand: Demand) -> None:
    """Placed means placed whole: every GPU asked for, of one kind, the nodes distinct."""
    if demand.shared:
        assert len(comp.slices) == 1 and not comp.multi_node
        return
    assert len(comp.slices) == demand.gpus
    assert len({s.kind for s in comp.slices}) <= 1
    assert len(set(comp.nodes)) == len(comp.parts)
    if demand.spread is Spread.ONE_NODE or demand.gpus <= 1:
        assert not comp.multi_node
    assert comp.memory_gib == pytest.approx(demand.memory_gib)
    assert comp.core_count >= min(demand.cpus, 1)


def _round(placer: Placer, state: PoolState, running: dict[str, JobView],
           new: list[JobView]) -> None:
    jobs = tuple(running.values()) + tuple(new)
    held = [held_assignment(c) for c in state.compositions().values()]
    decision = Decision(tuple(held) + tuple(Assignment(j.id, j.demand.gpus) for j in new))
    before = state.fingerprint()
    dry = placer.place(state, ClusterSnapshot(0.0, jobs, state.capacity()), decision)
    assert state.fingerprint() == before  # a dry round changes nothing
    plan = placer.place(state, ClusterSnapshot(0.0, jobs, state.capacity()), decision,
                        commit=True)
    assert plan == dry  # committing does not change what is decided
    assert set(plan.keep) == set(running) and not plan.stop
    for job in new:
        comp = state.composition(job.id)
        if job.id in plan.waiting:  # not at all: nothing of it is held
            assert comp is None
        else:
            assert comp is not None and comp in plan.start
            check_gang(comp, job.demand)
            event(f"placed a {len(comp.parts)}-node composition")
            running[job.id] = JobView(job.id, job.demand, 0.0, state=JobState.RUNNING)


@given(pools(), st.data())
def test_rounds_and_finishes_never_hold_anything_twice(pool: Pool, data: st.DataObject) -> None:
    state, placer = PoolState(pool), Placer(pool)
    empty = state.fingerprint()
    running: dict[str, JobView] = {}
    made = 0
    for _ in range(data.draw(st.integers(1, 5), label="steps")):
        batch = data.draw(st.lists(demands(), min_size=1, max_size=6), label="jobs")
        new = [JobView(f"j{made + i}", d, 0.0) for i, d in enumerate(batch)]
        made += len(new)
        _round(placer, state, running, new)
        check_invariants(pool, state)
        if running:
            done = data.draw(st.lists(st.sampled_from(sorted(running)), unique=True),
                             label="finished")
            for job_id in done:
                state.release(job_id)
                del running[job_id]
            check_invariants(pool, state)
    for job_id in list(running):
        state.release(job_id)
    assert state.fingerprint() == empty


@given(pools(), st.lists(demands(), min_size=1, max_size=8), st.data())
def test_allocate_then_release_restores_the_state(pool: Pool, batch: list[Demand],
                                                  data: st.DataObject) -> None:
    state, placer = PoolState(pool), Placer(pool)
    running: dict[str, JobView] = {}
    _round(placer, state, running, [JobView(f"j{i}", d, 0.0) for i, d in enumerate(batch)])
    if not running:
        return
    job_id = data.draw(st.sampled_from(sorted(running)))
    comp = state.release(job_id)
    without = state.fingerprint()
    state.allocate(comp)
    state.release(job_id)
    assert state.fingerprint() == without
    state.allocate(comp)
    check_invariants(pool, state)


@given(pools(), st.lists(demands(), min_size=1, max_size=8), st.data())
def test_a_gang_with_one_bad_part_is_refused_whole(pool: Pool, batch: list[Demand],
                                                   data: st.DataObject) -> None:
    """A composition whose last part conflicts changes nothing, even its good parts."""
    state, placer = PoolState(pool), Placer(pool)
    running: dict[str, JobView] = {}
    _round(placer, state, running, [JobView(f"j{i}", d, 0.0) for i, d in enumerate(batch)])
    held = [p for c in state.compositions().values() for p in c.parts if p.cores]
    if not held:
        return
    taken = data.draw(st.sampled_from(held))  # a part some job holds: its cores are taken
    free_nodes = [n for n in pool.nodes if n.name != taken.node]
    good = Part(free_nodes[0].name, (), (), 0.0)
    before = state.fingerprint()
    with pytest.raises(AllocationError):
        state.allocate(Composition("intruder", (good, Part(taken.node, (), taken.cores[:1],
                                                             0.0))))
    assert state.fingerprint() == before and "intruder" not in state


@given(pools(), demands())
def test_feasible_means_it_fits_the_empty_pool(pool: Pool, demand: Demand) -> None:
    """Admission and placement agree: a job admitted as feasible starts on the empty pool,
    and one refused waits with a NoFit marked ``never``."""
    state, placer = PoolState(pool), Placer(pool)
    view = JobView("j", demand, 0.0)
    plan = placer.place(state, ClusterSnapshot(0.0, (view,), state.capacity()),
                        Decision((Assignment("j", demand.gpus),)))
    reason = placer.feasible(demand)
    if reason is None:
        assert [c.job_id for c in plan.start] == ["j"], plan.waiting.get("j")
        check_gang(plan.start[0], demand)
    else:
        assert plan.waiting["j"].never and str(reason) in str(plan.waiting["j"])
