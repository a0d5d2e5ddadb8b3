"""Sia's policy: its configurations, restart penalty, exploration and ILP, and its
published result on Pollux/Sia workload 1."""

from __future__ import annotations

import numpy as np
import pytest

from slicebox.policies import get
from slicebox.policies.sia import (
    Config,
    SiaPolicy,
    choose,
    configurations,
    realloc_factor,
    restart_penalty,
)
from slicebox.sim import api
from slicebox.snapshot import Assignment, JobState, JobView, NodeView
from slicebox.spec.demand import Demand
from tests.policies.helpers import TableProfiles, snapshot

ELASTIC = Demand(gpus=1, max_gpus=16, cpus=1, memory_gib=1.0)
NODES = [NodeView(f"n{i}", "A100", (1.0,) * 8, 64.0, 512.0) for i in range(2)]


def _job(state: JobState = JobState.QUEUED, current: Assignment | None = None) -> JobView:
    return JobView("j", ELASTIC, 0.0, workload="w", state=state, current=current,
                   remaining_work=1e6)


def test_configurations_are_sias() -> None:
    # CONFIGS_4GPU / CONFIGS_8GPU of sia-simulator/sia.py, cut at the type's nodes.
    assert configurations(4, 6) == [1, 2, 4, 8, 12, 16, 20, 24]
    assert configurations(8, 3) == [1, 2, 4, 8, 16, 24]
    assert configurations(8, 2) == [1, 2, 4, 8, 16]


def test_restart_penalty_and_realloc_factor_by_hand() -> None:
    assert restart_penalty("imagenet-11") == 250.0
    assert restart_penalty("cifar10-3") == 30.0
    assert restart_penalty("ncf-9") == 30.0
    assert realloc_factor(age=100.0, restarts=3, penalty=250.0) == 1.0  # too young
    # (age - restarts x penalty) / (age + penalty)
    assert realloc_factor(3600.0, 2, 250.0) == pytest.approx((3600 - 500) / 3850)
    assert realloc_factor(600.0, 5, 250.0) == 0.0


def test_ilp_keeps_capacity_and_one_config_per_job() -> None:
    configs = [Config("a", 1), Config("a", 2), Config("a", 4)]
    # Three jobs that each prefer 4 GPUs of a 4-GPU kind: the ILP must share.
    cost = np.array([[-1.0, -1.5, -2.0]] * 3)
    chosen = choose(cost, np.ones_like(cost, dtype=bool), configs, {"a": 4})
    used = sum(configs[c].gpus for c in chosen.values())
    assert used <= 4 and len(chosen) == 3  # 2 + 1 + 1 beats 4 + 0 + 0
    # A fixed pair is kept even when it is not the best.
    fixed = choose(cost, np.ones_like(cost, dtype=bool), configs, {"a": 4}, [(0, 0)])
    assert fixed[0] == 0


def test_a_new_job_gets_one_gpu_and_grows_by_doubling() -> None:
    """Sia knows nothing of a job before it runs: one GPU; then up to twice what it
    ran with (the pool here has room for much more)."""
    profiles = TableProfiles({("w", "A100"): 100.0})
    policy = SiaPolicy()
    first = policy.decide(snapshot([_job()], {"A100": 16}, profiles=profiles, nodes=NODES,
                                   now=600.0))
    assert [(a.job_id, a.gpus) for a in first.run] == [("j", 1)]
    ran = _job(JobState.RUNNING, Assignment("j", 1, "A100"))
    second = policy.decide(snapshot([ran], {"A100": 16}, profiles=profiles, nodes=NODES,
                                    now=660.0))
    assert [(a.job_id, a.gpus) for a in second.run] == [("j", 2)]


def test_a_job_in_checkpoint_restore_keeps_its_allocation() -> None:
    profiles = TableProfiles({("w", "A100"): 100.0})
    current = Assignment("j", 4, "A100")
    restoring = _job(JobState.STAGING, current)
    decision = SiaPolicy().decide(snapshot([restoring], {"A100": 16}, profiles=profiles,
                                           nodes=NODES, now=600.0))
    assert decision.run == (current,)


def test_registered() -> None:
    assert isinstance(get("sia"), SiaPolicy)


@pytest.mark.slow
def test_sia_reproduces_its_published_jct_on_workload_1() -> None:
    """Sia's paper and artifact: 0.54 h average JCT, 15.5 h makespan on Pollux/Sia
    Philly workload 1 on its 64-GPU cluster. Ours must be within 10 %."""
    result = api.simulate("data/traces/pollux-workloads/philly-workload-1.csv", "sia-64",
                          "sia")
    assert result.round_seconds == 60.0
    assert result.metrics.avg_jct / 3600 == pytest.approx(0.54, rel=0.10)
    assert result.metrics.makespan / 3600 == pytest.approx(15.5, rel=0.10)


class _Goodput(TableProfiles):
    """Goodput ``per_gpu x gpus ** exponent`` and a fixed restart cost."""

    def __init__(self, exponent: float, restart: float) -> None:
        super().__init__({("w", "A100"): 100.0})
        self.exponent, self.restart = exponent, restart

    def goodput(self, job_id: str, kind: str, gpus: int, nodes: object = None,
                max_batch: object = None) -> float:
        return 100.0 * gpus ** self.exponent

    def restart_seconds(self, job_id: str) -> float:
        return self.restart


@pytest.mark.parametrize(("exponent", "restart", "grows"),
                         [(0.9, 30.0, True), (0.02, 3000.0, False)])
def test_slicebox_resizes_only_when_the_gain_pays_the_restart(
        exponent: float, restart: float, grows: bool) -> None:
    """A running elastic job alone on a 16-GPU pool, on 1 GPU: it grows when more GPUs
    save far more than the restart, and stays when they save little."""
    current = Assignment("j", 1, "A100")
    running = JobView("j", ELASTIC, 0.0, workload="w", state=JobState.RUNNING,
                      current=current, remaining_work=1e6)
    decision = get("slicebox").decide(snapshot([running], {"A100": 16},
                                               profiles=_Goodput(exponent, restart),
                                               nodes=NODES, now=600.0))
    (chosen,) = decision.run
    assert (chosen.gpus > 1) is grows
    if not grows:
        assert chosen is current  # kept as it is: no restart
