"""Placement on the example pools: topology, NUMA, shares, MIG geometry, kinds, rounds."""

from __future__ import annotations

import pytest

from slicebox.placement import Placer, PoolState, dry_run
from slicebox.placement.search import PLANNED_MIG_PREFIX
from slicebox.pool.files import parse_pool
from slicebox.pool.kinds import get_kind
from slicebox.pool.model import Link
from slicebox.pool.slices import SliceType
from slicebox.profiles.base import Estimate
from slicebox.snapshot import Assignment
from slicebox.spec.demand import Demand, Spread
from tests.placement.helpers import by_job, example, job, place, running


@pytest.fixture
def dgx():
    pool = example("dgx-h100")
    return pool, PoolState(pool)


@pytest.fixture
def rack():
    pool = example("mixed-rack")
    return pool, PoolState(pool)


def test_four_gpu_job_gets_nvlinked_gpus_and_local_cores(dgx) -> None:
    pool, state = dgx
    plan = place(pool, state, [job("a", 4, cpus=16, memory_gib=64),
                               job("b", 4, cpus=16, memory_gib=64)])
    node = pool.nodes[0]
    seen_numa = set()
    for comp in plan.start:
        devices = [s.device for s in comp.slices]
        assert len(devices) == 4
        assert all(node.link(x, y) is Link.NVLINK for x in devices for y in devices if x != y)
        gpu_numa = {node.device(d).numa_node for d in devices}
        assert len(gpu_numa) == 1
        assert {node.numa_of_core(c) for c in comp.cores} == gpu_numa
        assert comp.numa_nodes == tuple(gpu_numa)
        assert len(comp.cores) == 16 and comp.memory_gib == 64
        seen_numa |= gpu_numa
    assert seen_numa == {0, 1}  # the second job takes the other socket's four


def test_cores_spill_to_other_numa_only_when_short(dgx) -> None:
    pool, state = dgx
    comp = by_job(place(pool, state, [job("big", 1, cpus=70)]))["big"]
    gpu_numa = pool.nodes[0].device(comp.slices[0].device).numa_node
    assert comp.numa_nodes[0] == gpu_numa and len(comp.numa_nodes) == 2
    assert sum(pool.nodes[0].numa_of_core(c) == gpu_numa for c in comp.cores) == 56


def test_half_gpu_shares_with_memory_cap(dgx) -> None:
    pool, state = dgx
    jobs = [job("a", 1, fraction=0.5, gpu_memory_gib=20), job("b", 1, fraction=0.5,
                                                               gpu_memory_gib=20)]
    plan = place(pool, state, jobs)
    a, b = by_job(plan)["a"], by_job(plan)["b"]
    for comp in (a, b):
        (s,) = comp.slices
        assert s.shape is SliceType.FRACTION and s.compute == 0.5 and s.memory_gib == 20
    assert a.slices[0].device == b.slices[0].device  # two halves share one card
    state.apply(plan)
    assert state.capacity().free_gpus["H100"] == 7
    views = [running(j, state.composition(j.id)) for j in jobs]
    plan = place(pool, state, [*views, job("c", 1, fraction=0.5, gpu_memory_gib=20)])
    assert set(plan.keep) == {"a", "b"}
    assert by_job(plan)["c"].slices[0].device != a.slices[0].device


def test_share_without_memory_request_caps_by_fraction(dgx) -> None:
    pool, state = dgx
    comp = by_job(place(pool, state, [job("a", 1, fraction=0.25)]))["a"]
    assert comp.slices[0].memory_gib == pytest.approx(0.25 * 80)


def test_mig_3g_two_per_card_at_starts_0_and_4(rack) -> None:
    pool, state = rack
    jobs = [job(f"m{i}", 1, mig="3g.40gb") for i in range(5)]
    plan = place(pool, state, jobs)
    placed = by_job(plan)
    assert len(placed) == 4 and "m4" in plan.waiting
    per_card: dict[int, list[int]] = {}
    for comp in placed.values():
        (s,) = comp.slices
        assert comp.node == "a100" and s.shape is SliceType.MIG and s.mig_profile == "3g.40gb"
        assert s.uuid.startswith(PLANNED_MIG_PREFIX)
        assert s.memory_gib == 40 and s.compute == pytest.approx(3 / 7)
        per_card.setdefault(s.device, []).append(s.mig_start or 0)
    assert {d: sorted(v) for d, v in per_card.items()} == {0: [0, 4], 1: [0, 4]}
    assert "3g.40gb" in str(plan.waiting["m4"])
    assert plan.waiting["m4"].field == "mig"


def test_seven_1g_pack_one_card_the_eighth_goes_elsewhere(rack) -> None:
    pool, state = rack
    plan = place(pool, state, [job(f"s{i}", 1, mig="1g.10gb") for i in range(8)])
    placed = by_job(plan)
    cards = [placed[f"s{i}"].slices[0].device for i in range(8)]
    assert len(set(cards[:7])) == 1 and cards[7] != cards[0]
    starts = sorted(placed[f"s{i}"].slices[0].mig_start or 0 for i in range(7))
    assert starts == list(range(7))
    profile = get_kind("A100-80GB").mig_profile("1g.10gb")
    assert all(s in profile.starts for s in starts)
    state.apply(plan)
    mask, compute = state.mig_usage(state.topo.dev_at[(0, cards[0])])
    assert compute == 7 and mask == 0b0111_1111


def test_mig_respects_geometry_of_mixed_profiles(rack) -> None:
    pool, state = rack
    # A 4g then a 3g fill a card exactly (starts 0 and 4); a 7g then needs an empty card.
    jobs = [job("four", 1, mig="4g.40gb"), job("three", 1, mig="3g.40gb"),
            job("seven", 1, mig="7g.80gb"), job("seven-b", 1, mig="7g.80gb")]
    plan = place(pool, state, jobs)
    placed = by_job(plan)
    assert placed["four"].slices[0].device == placed["three"].slices[0].device
    assert (placed["four"].slices[0].mig_start, placed["three"].slices[0].mig_start) == (0, 4)
    assert placed["seven"].slices[0].device != placed["four"].slices[0].device
    assert "seven-b" in plan.waiting


def test_existing_mig_instances_are_used_first() -> None:
    pool = parse_pool({"nodes": [{
        "name": "box", "memory_gib": 256, "cores": 16,
        "gpus": [{"kind": "A100-80GB", "count": 2, "mig": True}],
        "mig_instances": [{"gpu": 1, "profile": "3g.40gb", "start": 4, "uuid": "MIG-existing"}]}]})
    state = PoolState(pool)
    plan = place(pool, state, [job("a", 1, mig="3g.40gb"), job("b", 1, mig="3g.40gb")])
    a, b = by_job(plan)["a"], by_job(plan)["b"]
    assert a.slices[0].uuid == "MIG-existing" and a.slices[0].mig_start == 4
    # The next goes next to it: the existing instance's card is the fuller one.
    assert (b.slices[0].device, b.slices[0].mig_start) == (1, 0)
    state.apply(plan)
    state.release("a")
    assert list(state.cards_with_unused_instance("A100-80GB", "3g.40gb")) == [1]


def test_nine_gpus_on_eight_gpu_pool_is_infeasible(dgx) -> None:
    pool, state = dgx
    placer = Placer(pool)
    reason = placer.feasible(Demand(gpus=9))
    assert reason is not None and str(reason).startswith("resources.gpus: 9 GPUs requested") \
        and "the pool has 8" in str(reason)
    assert (reason.field, reason.wanted, reason.available, reason.short_by) == ("gpus", 9, 8, 1)
    one_node = placer.feasible(Demand(gpus=9, spread=Spread.ONE_NODE))
    assert one_node is not None and "largest node has 8" in str(one_node)
    plan = place(pool, state, [job("nine", 9)])
    assert "resources.gpus" in str(plan.waiting["nine"]) and plan.waiting["nine"].never
    assert placer.feasible(Demand(gpus=8, cpus=112)) is None


@pytest.mark.parametrize(("demand", "field"), [
    (Demand(gpus=1, mig="3g.40gb"), "resources.mig: 3g.40gb needs a MIG-enabled card"),
    (Demand(cpus=113), "resources.cpus: 113 cores requested but the largest node has 112"),
    (Demand(memory_gib=4096), "resources.memory_gib"),
    (Demand(gpus=1, kinds=("L4",)), "resources.gpu_kinds: none of L4 is in the pool"),
    (Demand(gpus=1, fraction=0.5, gpu_memory_gib=100), "resources.gpu_memory_gib"),
    (Demand(gpus=1, gpu_memory_gib=96), "resources.gpu_memory_gib"),
])
def test_infeasible_reasons_name_the_field(dgx, demand: Demand, field: str) -> None:
    pool, _ = dgx
    reason = Placer(pool).feasible(demand)
    assert reason is not None and str(reason).startswith(field), reason
    assert reason.never and field.startswith(f"resources.{reason.field}".replace(
        "resources.kind", "resources.gpu_kinds"))


def test_feasible_on_the_rack(rack) -> None:
    pool, _ = rack
    placer = Placer(pool)
    assert placer.feasible(Demand(gpus=1, mig="3g.40gb")) is None
    assert placer.feasible(Demand(gpus=1, mig="3g.40gb", kinds=("L4",))) is not None
    assert placer.feasible(Demand(gpus=4, kinds=("L4",))) is None
    one = Spread.ONE_NODE
    assert "largest node has 4" in str(placer.feasible(Demand(gpus=5, spread=one)))
    # The A100 box has 2 non-MIG cards: 3 whole A100s never fit one node.
    assert "largest node has 2" in str(placer.feasible(Demand(gpus=3, kinds=("A100-80GB",),
                                                              spread=one)))
    # Packed over nodes, a gang is still one kind: 4 L4 + 2 A100 do not make 5 of a kind.
    assert "the pool has 4" in str(placer.feasible(Demand(gpus=5)))


def test_waiting_reason_names_what_is_short(dgx) -> None:
    pool, state = dgx
    plan = place(pool, state, [job("six", 6), job("four", 4, spread=Spread.ONE_NODE)])
    assert set(by_job(plan)) == {"six"}
    four = plan.waiting["four"]
    assert str(four) == "needs 4 GPUs of kind H100 on one node; largest free set is 2"
    assert (four.field, four.wanted, four.available) == ("gpus", 4, 2)
    plan = place(pool, state, [job("six", 6), job("four", 4)])  # pack: 2 free in all
    assert str(plan.waiting["four"]) == "needs 4 GPUs of kind H100; 2 are free across the pool"
    plan = place(pool, state, [job("cores", 1, cpus=100), job("more", 1, cpus=100)])
    more = plan.waiting["more"]
    assert "needs 1 GPU of kind H100 with 100 cores" in str(more)
    assert (more.field, more.wanted, more.available) == ("cpus", 100, 12)


def test_backfill_and_strict(dgx) -> None:
    pool, state = dgx
    state.apply(place(pool, state, [job("run", 6)]))
    waiting = [job("big", 4), job("small", 1)]
    plan = place(pool, state, [running(job("run", 6), state.composition("run"))] + waiting)
    assert set(by_job(plan)) == {"small"} and "big" in plan.waiting
    plan = place(pool, state, [running(job("run", 6), state.composition("run"))] + waiting,
                 strict=True)
    assert not plan.start and str(plan.waiting["small"]) == "waits behind big (strict order)"


def test_keep_stop_and_reshape(dgx) -> None:
    pool, state = dgx
    jobs = [job("a", 4), job("b", 2), job("c", 2)]
    state.apply(place(pool, state, jobs))
    views = [running(j, state.composition(j.id)) for j in jobs]
    new = job("new", 4)
    # a keeps its GPUs, b is preempted (left out), c grows to 4: new fits in what b freed.
    run = [Assignment("a", 4), Assignment("c", 3), Assignment("new", 4)]
    before = state.fingerprint()
    plan = place(pool, state, [*views, new], run=run)
    assert state.fingerprint() == before  # place never changes the state
    assert plan.keep == ("a",)
    assert set(plan.stop) == {"b", "c"}
    started = by_job(plan)
    assert len(started["c"].slices) == 3
    assert "new" in plan.waiting  # 8 - 4 (a) - 3 (c) leaves one
    # A reshape that cannot fit keeps the old shape instead of preempting the job.
    plan = place(pool, state, views, run=[Assignment("a", 4), Assignment("b", 2),
                                          Assignment("c", 8)])
    assert set(plan.keep) == {"a", "b", "c"} and not plan.stop and not plan.start


def test_stopped_jobs_resources_serve_this_rounds_starts(dgx) -> None:
    pool, state = dgx
    state.apply(place(pool, state, [job("old", 8)]))
    views = [running(job("old", 8), state.composition("old")), job("new", 8)]
    plan = place(pool, state, views, run=[Assignment("new", 8)])
    assert plan.stop == ("old",) and set(by_job(plan)) == {"new"}
    state.apply(plan)
    assert set(state.compositions()) == {"new"}


def test_cpu_jobs_prefer_cpu_nodes(rack) -> None:
    pool, state = rack
    plan = place(pool, state, [job("c1", 0, cpus=60), job("c2", 0, cpus=60),
                               job("c3", 0, cpus=40)])
    placed = by_job(plan)
    assert {placed["c1"].node, placed["c2"].node} == {"cpu-0", "cpu-1"}
    assert placed["c3"].node in ("a100", "l4")
    # 60 cores: NUMA-local impossible (32 each) so two NUMA nodes, fullest used first.
    assert len(placed["c1"].numa_nodes) == 2


class _Profiles:
    """X runs 3x faster on H100 than on L4; Y runs the same on both."""

    def rate(self, workload: str, kind: str, gpus: float, precision: str = "fp32") -> Estimate:
        speed = {("x", "H100"): 3.0, ("x", "L4"): 1.0, ("y", "H100"): 1.0, ("y", "L4"): 1.0}
        return Estimate(speed[(workload, kind)] * gpus, True, "test")


@pytest.mark.parametrize("order", [("x", "y"), ("y", "x")])
def test_profiles_give_each_kind_to_the_job_that_gains_most(order: tuple[str, str]) -> None:
    pool = parse_pool({"nodes": [
        {"name": "fast", "memory_gib": 64, "cores": 8, "gpus": [{"kind": "H100"}]},
        {"name": "slow", "memory_gib": 64, "cores": 8, "gpus": [{"kind": "L4"}]}]})
    state = PoolState(pool)
    jobs = [job(name, 1, workload=name, kinds=("H100", "L4")) for name in order]
    plan = place(pool, state, jobs, profiles=_Profiles())
    placed = by_job(plan)
    assert placed["x"].kind == "H100" and placed["y"].kind == "L4"


def test_policy_kind_overrides_profiles() -> None:
    pool = parse_pool({"nodes": [
        {"name": "fast", "memory_gib": 64, "cores": 8, "gpus": [{"kind": "H100"}]},
        {"name": "slow", "memory_gib": 64, "cores": 8, "gpus": [{"kind": "L4"}]}]})
    state = PoolState(pool)
    jobs = [job("x", 1, workload="x"), job("y", 1, workload="y")]
    plan = place(pool, state, jobs, run=[Assignment("x", 1, "L4"), Assignment("y", 1, "H100")],
                 profiles=_Profiles())
    assert by_job(plan)["x"].kind == "L4" and by_job(plan)["y"].kind == "H100"


def test_prefers_nvlink_set_over_pcie_node() -> None:
    pool = parse_pool({"nodes": [
        {"name": "pcie", "memory_gib": 64, "cores": 16,
         "gpus": [{"kind": "V100", "count": 2, "numa": 0}], "links": "sys"},
        {"name": "nvl", "memory_gib": 64, "cores": 16, "gpus": [{"kind": "V100", "count": 4}],
         "links": "pcie", "nvlink_groups": [[2, 3]]}]})
    comp = by_job(place(pool, PoolState(pool), [job("pair", 2)]))["pair"]
    # The PCIe node is the tighter fit, but the NVLink pair on the other node is better.
    assert comp.node == "nvl" and sorted(s.device for s in comp.slices) == [2, 3]


def test_dry_run_plans_without_changing_anything(dgx) -> None:
    pool, state = dgx
    state.apply(place(pool, state, [job("share", 1, fraction=0.5), job("six", 6)]))
    before = state.fingerprint()
    plan = dry_run(pool, [job("one", 1, cpus=8), job("more", 1)], state)
    assert state.fingerprint() == before
    assert set(plan.keep) == {"share", "six"} and not plan.stop
    assert set(by_job(plan)) == {"one"}  # 8 - 6 - the shared card leaves one
    assert str(plan.waiting["more"]) == \
        "needs 1 GPU of kind H100 on one node; largest free set is 0"
    empty = dry_run(pool, [job("four", 4, cpus=8)])
    assert len(by_job(empty)["four"].slices) == 4


def test_policy_hints_are_followed_when_they_fit(rack) -> None:
    pool, state = rack
    jobs = [job("hinted", 1), job("bad-hint", 1), job("pair", 2), job("half", 1, fraction=0.5),
            job("sized", 1)]
    run = [Assignment("hinted", 1, "L4", node="l4", devices=(3,)),
           Assignment("bad-hint", 1, "L4", node="l4", devices=(3,)),  # taken by then
           Assignment("pair", 2, None, node="l4", devices=(0, 1)),
           Assignment("half", 1, None, node="a100", devices=(2,)),
           Assignment("sized", 1, None, node="a100", devices=(2,), fraction=0.25)]
    placed = by_job(place(pool, state, jobs, run=run))
    assert (placed["hinted"].node, placed["hinted"].slices[0].device) == ("l4", 3)
    assert placed["bad-hint"].slices[0].device != 3  # placed anyway, elsewhere
    assert [s.device for s in placed["pair"].slices] == [0, 1]
    half, sized = placed["half"].slices[0], placed["sized"].slices[0]
    assert (half.device, half.shape, half.compute) == (2, SliceType.FRACTION, 0.5)
    assert (sized.device, sized.shape, sized.compute) == (2, SliceType.FRACTION, 0.25)
    assert sized.memory_gib == pytest.approx(20)  # a quarter of the A100's 80 GiB
