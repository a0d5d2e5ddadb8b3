"""The event loop: every job finishes, nothing is over-allocated, times add up."""

from __future__ import annotations

import numpy as np
import pytest

from slicebox import policies
from slicebox.policies.base import Policy
from slicebox.sim.engine import Engine, EngineOptions, SimulationError
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision
from slicebox.spec.demand import DatasetRef
from tests.sim.helpers import duration_job, pool, speeds


def run(jobs, the_pool, policy="fifo", **options):  # type: ignore[no-untyped-def]
    engine = Engine(jobs, the_pool, policies.get(policy) if isinstance(policy, str)
                          else policy, speeds(the_pool), EngineOptions(**options))
    return engine.run()


def test_fifo_on_one_node_gives_hand_computed_times() -> None:
    # 2 GPUs: a (2 GPUs, 100 s) at 0; b (1 GPU, 50 s) at 10 waits for a; c (1 GPU, 30 s)
    # at 20 also waits; both start at 100.
    jobs = [duration_job("a", 0, 100, gpus=2), duration_job("b", 10, 50),
            duration_job("c", 20, 30)]
    result = run(jobs, pool(gpus=2))
    finish = {j.id: j.finish for j in result.jobs}
    assert finish == pytest.approx({"a": 100.0, "b": 150.0, "c": 130.0})
    by_id = {j.id: j for j in result.jobs}
    assert by_id["b"].queue_seconds == pytest.approx(90.0)


@pytest.mark.parametrize("policy", ["fifo", "srtf", "tiresias", "gavel", "synergy", "fgd",
                                    "slicebox"])
def test_invariants_on_a_small_random_trace(policy: str) -> None:
    rng = np.random.default_rng(7)
    jobs = [duration_job(f"j{i}", float(rng.uniform(0, 2000)), float(rng.uniform(10, 900)),
                         gpus=int(rng.choice([1, 1, 2, 4, 8])), restart=5.0)
            for i in range(40)]
    the_pool = pool(nodes=2, gpus=4)
    result = run(jobs, the_pool, policy, round_seconds=60.0 if policy == "gavel" else None)
    assert all(j.finished for j in result.jobs), result.notes
    duration = {j.id: j.duration for j in jobs}
    for record in result.jobs:
        assert record.jct >= duration[record.id] - 1e-6  # never faster than alone
        assert record.first_start is not None and record.first_start >= record.arrival
    t = result.timeline
    assert np.all(t.allocated_gpus <= 8 + 1e-9) and np.all(t.allocated_gpus >= -1e-9)
    assert np.all(t.busy_gpus <= t.allocated_gpus + 1e-9)


def test_a_job_larger_than_a_node_spans_nodes() -> None:
    result = run([duration_job("wide", 0, 100, gpus=12)], pool(nodes=2, gpus=8))
    assert result.jobs[0].finish == pytest.approx(100.0)


def test_preemption_charges_the_restart_cost() -> None:
    # SRTF: long (1 GPU, 1,000 s) runs from 0; short (1 GPU, 10 s) arrives at 100 and
    # preempts it; long restarts at 110 paying 30 s, then runs its last 900 s.
    jobs = [duration_job("long", 0, 1000, restart=30.0),
            duration_job("short", 100, 10, restart=30.0)]
    result = run(jobs, pool(gpus=1), "srtf")
    by_id = {j.id: j for j in result.jobs}
    assert by_id["short"].finish == pytest.approx(110.0)
    assert by_id["long"].preemptions == 1
    assert by_id["long"].finish == pytest.approx(110.0 + 30.0 + 900.0)
    assert by_id["long"].setup_seconds == pytest.approx(30.0)


def test_round_mode_starts_jobs_only_at_round_boundaries() -> None:
    # Rounds every 100 s from the first arrival (0): b arrives at 130, starts at 200.
    jobs = [duration_job("a", 0, 50), duration_job("b", 130, 50)]
    result = run(jobs, pool(gpus=2), "fifo", round_seconds=100.0)
    by_id = {j.id: j for j in result.jobs}
    assert by_id["a"].first_start == pytest.approx(0.0)
    assert by_id["b"].first_start == pytest.approx(200.0)
    assert by_id["b"].finish == pytest.approx(250.0)  # finishes mid-round, at its time


def test_round_mode_keeps_a_running_job_without_restart() -> None:
    # A job kept round after round is a lease extension: no restart cost, no preemption.
    result = run([duration_job("a", 0, 1000, restart=30.0)], pool(gpus=1), "gavel",
                 round_seconds=100.0)
    assert result.jobs[0].finish == pytest.approx(1000.0)
    assert result.jobs[0].preemptions == 0


def test_staging_is_charged_once_per_node() -> None:
    data = DatasetRef("imagenet", "/data/imagenet", 10.0)  # 10 GiB at 1,024 MB/s: 10 s
    jobs = [duration_job("a", 0, 100, dataset=data), duration_job("b", 200, 100,
                                                                   dataset=data)]
    result = run(jobs, pool(gpus=1, volumes=True))
    by_id = {j.id: j for j in result.jobs}
    assert by_id["a"].finish == pytest.approx(110.0)
    assert by_id["b"].finish == pytest.approx(300.0)  # cached on the node: no copy
    assert by_id["a"].setup_seconds == pytest.approx(10.0)


def test_until_stops_the_clock() -> None:
    result = run([duration_job("a", 0, 100), duration_job("b", 500, 10)], pool(), until=50.0)
    assert not any(j.finished for j in result.jobs)


class _UnknownJob(Policy):
    name = "unknown-job"

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        return Decision((Assignment("nobody", 1),))


class _Idle(Policy):
    name = "idle"

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        return Decision(())


def test_a_policy_naming_an_unknown_job_is_an_error() -> None:
    with pytest.raises(SimulationError, match="unknown job 'nobody'"):
        run([duration_job("a", 0, 10)], pool(), _UnknownJob())


def test_jobs_a_policy_never_starts_are_reported_not_looped_on() -> None:
    result = run([duration_job("a", 0, 10)], pool(), _Idle())
    assert result.unfinished and "never started" in result.notes[0]


def test_a_job_the_pool_can_never_hold_is_rejected_up_front() -> None:
    with pytest.raises(SimulationError, match="can never hold"):
        run([duration_job("huge", 0, 10, gpus=64)], pool(gpus=4))


def test_the_engine_places_through_one_long_lived_pool_state() -> None:
    # Preemptive policy on a random trace: every start is a composition the live placer
    # made on the engine's PoolState; at every start no device or core is held twice, and
    # at the end everything is released exactly (the state is that of an empty pool).
    from slicebox.placement.state import PoolState

    rng = np.random.default_rng(11)
    jobs = [duration_job(f"j{i}", float(rng.uniform(0, 1500)), float(rng.uniform(10, 600)),
                         gpus=int(rng.choice([1, 2, 4, 6])), restart=5.0) for i in range(30)]
    the_pool = pool(nodes=2, gpus=4)
    engine = Engine(jobs, the_pool, policies.get("srtf"), speeds(the_pool), EngineOptions())
    result = engine.run()
    assert all(j.finished for j in result.jobs)
    assert len(engine.start_log) >= len(jobs)
    assert any(len(comp.parts) > 1 for _, comp in engine.start_log)  # 6 GPUs: a gang
    assert engine.placement.state.fingerprint() == PoolState(the_pool).fingerprint()
    assert engine.placement.allocated_share == pytest.approx(0.0)


def test_jobs_left_waiting_are_counted_by_the_field_placement_names() -> None:
    # Two 4-GPU jobs on one 4-GPU node: FIFO chooses the second while the first runs, and
    # placement's NoFit says GPUs are short.
    jobs = [duration_job("a", 0, 100, gpus=4), duration_job("b", 1, 100, gpus=4)]
    result = run(jobs, pool(gpus=4))
    assert result.jobs[1].first_start == pytest.approx(100.0)
    assert result.not_placed.get("gpus", 0) >= 1
    from slicebox.sim import report

    assert report.summary(result)["run"]["not_placed"] == dict(result.not_placed)  # type: ignore[index]
    assert "left waiting by placement (what was short, times): gpus" in report.markdown(result)
