"""Synergy sizes cores by sensitivity; FGD places where fragmentation grows least."""

from __future__ import annotations

import numpy as np

from slicebox.policies.fgd import Fgd
from slicebox.policies.fragmentation import (
    NodeTable,
    TargetWorkload,
    fgd_choice,
    node_fragmentation,
)
from slicebox.policies.synergy import Synergy
from slicebox.snapshot import NodeView
from tests.policies.helpers import CpuProfiles, by_id, ids, job, snapshot

SENSITIVE = {1: 0.4, 3: 1.0, 6: 1.6, 9: 2.0, 12: 2.0, 24: 2.0}
INSENSITIVE = {1: 1.0}


def _node(name: str = "n1", free: tuple[float, ...] = (1.0,) * 4, cpus: float = 24.0,
          kind: str = "V100") -> NodeView:
    return NodeView(name, kind, free, cpus, 500.0)


def test_synergy_gives_cores_by_sensitivity() -> None:
    profiles = CpuProfiles({("w", "V100"): 1.0}, {"s": SENSITIVE, "i": INSENSITIVE})
    jobs = [job("s", cpus=3, submitted=0.0), job("i", cpus=3, submitted=1.0)]
    decision = Synergy().decide(snapshot(jobs, {"V100": 4}, profiles=profiles,
                                         nodes=[_node()]))
    got = by_id(decision)
    assert got["s"].cpus == 9  # the fewest cores at its best speed
    assert got["i"].cpus == 1  # gives up what it does not use
    assert got["s"].node == "n1" and got["i"].node == "n1"


def test_synergy_never_takes_the_proportional_share_of_free_gpus() -> None:
    # 4 free GPUs, 12 cores: after this job 3 GPUs stay free and keep 3 cores each.
    profiles = CpuProfiles({("w", "V100"): 1.0}, {"s": SENSITIVE})
    decision = Synergy().decide(snapshot([job("s", cpus=3)], {"V100": 4}, profiles=profiles,
                                         nodes=[_node(cpus=12.0)]))
    assert by_id(decision)["s"].cpus == 3


def test_synergy_without_sensitivity_data_is_fifo() -> None:
    jobs = [job("b", submitted=1.0), job("a", submitted=0.0)]
    decision = Synergy().decide(snapshot(jobs, {"V100": 4}, nodes=[_node()]))
    assert ids(decision) == ["a", "b"]
    assert all(a.cpus == 1 for a in decision.run)


# -- FGD -----------------------------------------------------------------------------------

HALF_AND_WHOLE = TargetWorkload(gpu=np.array([0.5, 1.0]), cpus=np.zeros(2),
                                memory=np.zeros(2), weight=np.array([0.5, 0.5]))


def test_fragmentation_of_a_node_for_a_workload() -> None:
    free = np.array([[0.5, 1.0], [1.0, 1.0], [0.3, 0.0]])
    frag = node_fragmentation(free, np.full(3, 8.0), np.full(3, 64.0), HALF_AND_WHOLE)
    # n1: 0.5 free on a shared card is useless to whole-GPU tasks -> 0.5 x 0.5.
    # n2: nothing is fragmented. n3: 0.3 fits neither class -> all of it, 0.3.
    assert np.allclose(frag, [0.25, 0.0, 0.3])


def test_fgd_prefers_the_placement_that_leaves_less_fragmentation() -> None:
    table = NodeTable(["n1", "n2"], ["V100", "V100"], np.array([[0.5, 1.0], [1.0, 1.0]]),
                      np.full(2, 8.0), np.full(2, 64.0), HALF_AND_WHOLE)
    # Filling n1's half-used card removes its fragment (delta -0.25); splitting a whole
    # card anywhere adds one (+0.25 on n2, +0.25 on n1's other card).
    assert fgd_choice(table, 0.5, 1.0, 1.0) == (0, (0,))


def test_fgd_decision_carries_the_placement_as_hints() -> None:
    nodes = [_node("n1", (0.5, 1.0)), _node("n2", (1.0, 1.0))]
    decision = Fgd(HALF_AND_WHOLE).decide(snapshot([job("t", fraction=0.5)], {"V100": 4},
                                                    nodes=nodes))
    (a,) = decision.run
    assert (a.node, a.devices) == ("n1", (0,))


def test_fgd_leaves_a_task_that_fits_nowhere_waiting() -> None:
    nodes = [_node("n1", (0.2, 0.0))]
    decision = Fgd(HALF_AND_WHOLE).decide(snapshot([job("t", fraction=0.5)], {"V100": 2},
                                                    nodes=nodes))
    assert decision.run == ()
