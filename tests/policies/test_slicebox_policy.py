"""Slicebox's own policy: best-kind SRTF, limited preemption, guard, upgrades, packing."""

from __future__ import annotations

from slicebox.policies.slicebox_policy import SliceboxPolicy
from slicebox.snapshot import NodeView
from tests.policies.helpers import CpuProfiles, TableProfiles, by_id, ids, job, snapshot

HETERO = TableProfiles({("w", "fast"): 10.0, ("w", "slow"): 1.0,
                        ("flat", "fast"): 1.0, ("flat", "slow"): 1.0})


def test_a_job_takes_the_fastest_kind_with_room() -> None:
    decision = SliceboxPolicy().decide(snapshot([job("a")], {"fast": 1, "slow": 1},
                                                profiles=HETERO))
    assert by_id(decision)["a"].kind == "fast"


def test_order_uses_remaining_time_on_the_best_kind() -> None:
    # x: 100 units at 10/s = 10 s; y: 50 units at 1/s = 50 s (the reference rate of 1
    # would have put y first).
    jobs = [job("x", remaining=100, workload="w"), job("y", remaining=50, workload="flat")]
    decision = SliceboxPolicy().decide(snapshot(jobs, {"fast": 1}, profiles=HETERO))
    assert ids(decision) == ["x"]


def test_preempts_only_for_a_much_shorter_job() -> None:
    profiles = TableProfiles({("w", "V100"): 1.0})
    running = job("r", remaining=100, running_on="V100")
    slightly = job("slightly", remaining=50, submitted=1.0)
    assert ids(SliceboxPolicy().decide(snapshot([running, slightly], {"V100": 1}, now=1.0,
                                                profiles=profiles))) == ["r"]
    much = job("much", remaining=10, submitted=1.0)
    assert ids(SliceboxPolicy().decide(snapshot([running, much], {"V100": 1}, now=1.0,
                                                profiles=profiles))) == ["much"]


def test_fairness_guard_serves_a_starving_job_first() -> None:
    profiles = TableProfiles({("w", "V100"): 1.0})
    short = job("short", remaining=10, running_on="V100", submitted=9_000.0)
    starving = job("starving", remaining=1_000, submitted=0.0)  # rho (9000+1000)/1000 = 10
    decision = SliceboxPolicy().decide(snapshot([short, starving], {"V100": 1}, now=9_000.0,
                                                profiles=profiles))
    assert ids(decision) == ["starving"]


def test_a_running_job_moves_up_to_an_idle_faster_kind() -> None:
    running = job("r", remaining=10_000, running_on="slow")
    decision = SliceboxPolicy().decide(snapshot([running], {"fast": 1, "slow": 1},
                                                profiles=HETERO))
    assert by_id(decision)["r"].kind == "fast"


def test_a_short_remainder_is_not_worth_a_restart() -> None:
    running = job("r", remaining=500, running_on="slow")  # saves 450 s < 1,800 s
    decision = SliceboxPolicy().decide(snapshot([running], {"fast": 1, "slow": 1},
                                                profiles=HETERO))
    assert by_id(decision)["r"] is running.current


def test_a_fractional_job_is_packed_with_node_hints() -> None:
    nodes = [NodeView("n1", "V100", (0.5, 1.0), 8.0, 64.0),
             NodeView("n2", "V100", (1.0, 1.0), 8.0, 64.0)]
    profiles = TableProfiles({("w", "V100"): 1.0})
    jobs = [job("t", fraction=0.5), job("other", fraction=0.5, running_on="V100"),
            job("whole", running_on="V100")]
    decision = SliceboxPolicy().decide(snapshot(jobs, {"V100": 4}, profiles=profiles,
                                                nodes=nodes))
    hinted = by_id(decision)["t"]
    assert (hinted.node, hinted.devices) == ("n1", (0,))


def test_cores_follow_sensitivity_when_known() -> None:
    profiles = CpuProfiles({("w", "V100"): 1.0},
                           {"s": {1: 0.4, 3: 1.0, 6: 1.6, 9: 2.0, 24: 2.0}})
    nodes = [NodeView("n1", "V100", (1.0,) * 8, 24.0, 500.0)]
    decision = SliceboxPolicy().decide(snapshot([job("s", cpus=3)], {"V100": 8},
                                                profiles=profiles, nodes=nodes))
    # An idle pool keeps little for the node's other free GPUs: the job gets its best.
    assert by_id(decision)["s"].cpus == 9
