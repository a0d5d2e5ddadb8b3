"""Slicebox's elastic plan (``goodput_plan.plan_ilp``): jobs weighted by their rank by
remaining time (heSRPT), and every GPU count a kind holds on offer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from slicebox.policies import goodput_plan
from slicebox.policies.goodput_plan import PlanKnobs, plan_ilp, rank_weights
from slicebox.policies.sia import Config
from slicebox.snapshot import Assignment, JobState, JobView, NodeView
from slicebox.spec.demand import Demand
from tests.policies.helpers import TableProfiles, snapshot

ELASTIC = Demand(gpus=1, max_gpus=8, cpus=1, memory_gib=1.0)
NODES = [NodeView("n0", "A100", (1.0,) * 8, 64.0, 512.0)]


class _Scaling(TableProfiles):
    """Every job's goodput is ``100 x gpus ** 0.9``; a restart costs 30 s."""

    def __init__(self) -> None:
        super().__init__({("w", "A100"): 100.0})

    def goodput(self, job_id: str, kind: str, gpus: int, nodes: object = None,
                max_batch: object = None) -> float:
        return 100.0 * gpus ** 0.9

    def restart_seconds(self, job_id: str) -> float:
        return 30.0


def _waiting(job_id: str, remaining: float) -> JobView:
    return JobView(job_id, ELASTIC, 0.0, workload="w", remaining_work=remaining)


def _split(knobs: PlanKnobs) -> dict[str, int]:
    jobs = [_waiting("long", 1e7), _waiting("short", 1e5)]
    plan = plan_ilp(snapshot(jobs, {"A100": 8}, profiles=_Scaling(), nodes=NODES), jobs,
                    knobs)
    return {a.job_id: a.gpus for a in plan}


def test_the_shorter_job_gets_more_of_the_pool_and_the_pool_is_used_exactly() -> None:
    """Two jobs that scale alike on 8 GPUs: the shorter gets the larger share (rank
    weights), at a count Sia's configurations do not have (every count on offer)."""
    split = _split(PlanKnobs())
    assert split["short"] > split["long"] >= 1
    assert split["short"] + split["long"] == 8
    assert split["short"] not in (1, 2, 4, 8)


def test_with_sias_configurations_the_same_jobs_can_only_split_evenly() -> None:
    """The contrast: limited to 1, 2, 4 and whole nodes, both run only as 4 + 4."""
    split = _split(dataclasses.replace(PlanKnobs(), shapes="sia"))
    assert split == {"short": 4, "long": 4}


def test_rank_weights_depend_on_the_order_of_remaining_times_not_their_spread() -> None:
    knobs = PlanKnobs()
    close = rank_weights(np.array([3.0, 1.0, 2.0]), knobs)
    far = rank_weights(np.array([3000.0, 0.01, 2.0]), knobs)
    assert close == pytest.approx(far)
    assert close[1] > close[2] > close[0]  # shortest heaviest, longest lightest
    by_time = rank_weights(np.array([3000.0, 0.01, 2.0]),
                           dataclasses.replace(knobs, weights="time"))
    assert by_time[1] / by_time[0] > close[1] / close[0]  # time weights swing with spread


class _Flat(_Scaling):
    """Goodput grows to 2 GPUs and no further."""

    def goodput(self, job_id: str, kind: str, gpus: int, nodes: object = None,
                max_batch: object = None) -> float:
        return 100.0 * min(gpus, 2)


def _alone(job: JobView, profiles: TableProfiles) -> list[tuple[str, int]]:
    plan = plan_ilp(snapshot([job], {"A100": 8}, profiles=profiles, nodes=NODES), [job])
    return [(a.job_id, a.gpus) for a in plan]


def test_a_shape_no_faster_than_a_smaller_one_is_not_taken() -> None:
    """3..8 GPUs are no faster than 2: a waiting job takes 2, not idle GPUs it cannot use."""
    assert _alone(_waiting("j", 1e6), _Flat()) == [("j", 2)]


def test_a_running_job_keeps_a_shape_that_is_not_faster_rather_than_restart() -> None:
    """The same job running on 6 GPUs: 6 stays on offer (it holds them) and shrinking to
    2, no faster, would cost a restart for nothing."""
    running = dataclasses.replace(_waiting("j", 1e6), state=JobState.RUNNING,
                                  current=Assignment("j", 6, "A100"))
    assert _alone(running, _Flat()) == [("j", 6)]


def test_a_job_whose_restore_is_under_way_keeps_its_shape() -> None:
    """Alone on 8 GPUs that it would use (goodput grows with every GPU), a long job
    restoring onto 1 GPU is left to finish its restore; running, it grows."""
    restoring = dataclasses.replace(_waiting("j", 1e9), state=JobState.STAGING,
                                    current=Assignment("j", 1, "A100"))
    assert _alone(restoring, _Scaling()) == [("j", 1)]
    running = dataclasses.replace(restoring, state=JobState.RUNNING)
    assert _alone(running, _Scaling()) == [("j", 8)]


# -- the exact solver (choose_shapes) against HiGHS ---------------------------------------

def _random_plan(seed: int, jobs: int, caps: dict[str, int]
                 ) -> tuple[np.ndarray, np.ndarray, list[Config]]:
    """A plan's ILP as plan_ilp builds it: every count of each kind, costs negative
    (weighted log speed-up plus lambda_n) and some shapes unusable."""
    rng = np.random.default_rng(seed)
    configs = [Config(kind, n) for kind in sorted(caps) for n in range(1, caps[kind] + 1)]
    gpus = np.array([c.gpus for c in configs], dtype=float)
    speed = {kind: rng.uniform(0.5, 3.0, jobs) for kind in caps}
    scale = rng.uniform(0.3, 0.95, jobs)
    rate = np.array([[speed[c.kind][j] * c.gpus ** scale[j] for c in configs]
                     for j in range(jobs)])
    usable = rng.random(rate.shape) < 0.8
    weight = rng.uniform(0.2, 3.0, jobs)
    cost = -weight[:, None] * (np.log(rate / rate.min(axis=1, keepdims=True)) + 1.1)
    assert gpus.max() <= max(caps.values())
    return cost, usable, configs


def _value(cost: np.ndarray, chosen: dict[int, int]) -> float:
    return float(sum(cost[j, c] for j, c in chosen.items()))


def _feasible(chosen: dict[int, int], configs: list[Config], caps: dict[str, int],
              usable: np.ndarray, fixed: list[tuple[int, int]]) -> bool:
    used: dict[str, int] = {}
    for j, c in chosen.items():
        used[configs[c].kind] = used.get(configs[c].kind, 0) + configs[c].gpus
        if not usable[j, c] and (j, c) not in fixed:
            return False
    return all(used.get(k, 0) <= caps[k] for k in caps) and \
        all(chosen.get(j) == c for j, c in fixed)


@pytest.mark.parametrize("seed", range(12))
def test_the_exact_solver_finds_the_optimum_highs_proves(seed: int) -> None:
    """Random plans on a three-kind pool (contended: more jobs than one GPU each would
    leave idle): the exact solver's choice is feasible and worth what HiGHS's is when
    HiGHS is asked to prove optimality (gap 0), and it answers without HiGHS."""
    caps = {"A100": 8, "T4": 12, "V100": 6}
    cost, usable, configs = _random_plan(seed, jobs=9 + seed % 5, caps=caps)
    fixed = [(0, 2)] if seed % 3 == 0 else []
    usable[0, 2] = seed % 2 == 0  # a fixed shape need not be usable
    exact = goodput_plan._choose_exact(cost, usable, configs, caps, fixed)
    assert exact is not None
    highs = goodput_plan._choose_usable(cost, usable, configs, caps, fixed, 0.0)
    assert _feasible(exact, configs, caps, usable, fixed)
    assert _value(cost, exact) == pytest.approx(_value(cost, highs), rel=1e-9, abs=1e-9)
    assert list(exact) == sorted(exact)  # by job row, as HiGHS's (the placement order)


def test_the_exact_solver_keeps_fixed_jobs_that_overfill_a_kind() -> None:
    caps = {"A100": 4}
    configs = [Config("A100", n) for n in range(1, 5)]
    cost = -np.ones((2, 4))
    usable = np.ones((2, 4), dtype=bool)
    assert goodput_plan._choose_exact(cost, usable, configs, caps, [(0, 3), (1, 1)]) == \
        {0: 3, 1: 1}


def test_a_pool_too_large_to_tabulate_goes_to_highs(monkeypatch: pytest.MonkeyPatch) -> None:
    caps = {"A100": 8, "T4": 12, "V100": 6}
    cost, usable, configs = _random_plan(3, jobs=10, caps=caps)
    monkeypatch.setattr(goodput_plan, "EXACT_WORK", 10.0)
    assert goodput_plan._choose_exact(cost, usable, configs, caps, []) is None
    calls: list[int] = []
    real = goodput_plan._choose_usable

    def spy(*args: object) -> dict[int, int]:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(goodput_plan, "_choose_usable", spy)
    chosen = goodput_plan.choose_shapes(cost, usable, configs, caps)
    assert calls and _feasible(chosen, configs, caps, usable, [])


def test_hesrpt_weights_count_the_makespan_as_a_completion_behind_the_longest_job() -> None:
    """heSRPT's shares r ** c - (r - 1) ** c (rank 1 the longest); counting the end of the
    schedule as one more completion that waits on the longest job raises its weight, the
    more so against the others the fewer jobs are left."""
    hours = np.array([5.0, 1.0, 3.0])
    plain = rank_weights(hours, PlanKnobs(weights="hesrpt", makespan_weight=0.0))
    c = 1.65
    assert plain == pytest.approx([1.0, 3 ** c - 2 ** c, 2 ** c - 1.0])
    ends = rank_weights(hours, PlanKnobs(weights="hesrpt", makespan_weight=1.0))
    assert ends[0] / ends[1] > 2 * plain[0] / plain[1]
    assert ends[1] > ends[2]  # among the others, the shorter still weighs more
    many = rank_weights(np.arange(20.0, 0.0, -1.0), PlanKnobs(weights="hesrpt"))
    few = rank_weights(np.array([3.0, 2.0, 1.0]), PlanKnobs(weights="hesrpt"))
    assert many[0] / many.mean() < few[0] / few.mean()
