"""Metrics on a case small enough to work out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from slicebox.sim.result import SimJobOutcome, SimResult, Timeline


def _record(job_id: str, arrival: float, start: float, finish: float, isolated: float,
            preemptions: int = 0) -> SimJobOutcome:
    return SimJobOutcome(id=job_id, workload="w", arrival=arrival, gpus=1.0, work=1.0,
                     isolated_seconds=isolated, first_start=start, finish=finish, kind="V100",
                     preemptions=preemptions, run_seconds=finish - start, setup_seconds=0.0)


def test_metrics_of_two_jobs_on_two_gpus() -> None:
    # a: 0 -> 100 (alone 100 s). b: arrives 0, waits for a's 2 GPUs... modelled directly:
    # b runs 100 -> 300, so JCT 300, queueing 100, rho 300/200 = 1.5.
    jobs = (_record("a", 0, 0, 100, 100), _record("b", 0, 100, 300, 200, preemptions=1))
    # Timeline: 0-100: 2 GPUs held, 1 job waiting; 100-300: 1 GPU held, nobody waiting.
    timeline = Timeline(time=np.array([0.0, 100.0]), allocated_gpus=np.array([2.0, 1.0]),
                        busy_gpus=np.array([1.0, 1.0]), queued_jobs=np.array([1.0, 0.0]),
                        queued_gpus=np.array([1.0, 0.0]), running_jobs=np.array([1.0, 1.0]))
    result = SimResult("p", "pool", 4.0, "t", jobs, timeline, decisions=4,
                       decision_seconds=0.004)
    m = result.metrics
    assert m.avg_jct == pytest.approx(200.0)
    assert m.median_jct == pytest.approx(200.0)
    assert m.p99_jct == pytest.approx(100 + 0.99 * 200)
    assert m.makespan == pytest.approx(300.0)
    assert m.avg_queue == pytest.approx(50.0)
    # allocation: (2 x 100 + 1 x 200) / (4 GPUs x 300 s) = 1/3
    assert m.gpu_allocation == pytest.approx(400 / 1200)
    assert m.gpu_utilisation == pytest.approx(300 / 1200)
    # fragmentation: only 0-100 has a waiting job, with 2 of 4 GPUs free.
    assert m.fragmentation == pytest.approx(0.5)
    assert m.ftf_avg == pytest.approx(1.25) and m.ftf_max == pytest.approx(1.5)
    assert (m.preemptions, m.preempted_jobs) == (1, 1)
    assert m.avg_decision_ms == pytest.approx(1.0)


def test_unfinished_jobs_are_left_out_of_jct() -> None:
    unfinished = SimJobOutcome("u", "w", 0.0, 1.0, 1.0, 10.0, None, None, None, 0, 0.0, 0.0)
    jobs = (_record("a", 0, 0, 10, 10), unfinished)
    result = SimResult("p", "pool", 1.0, "t", jobs, Timeline.empty())
    assert result.metrics.finished == 1 and result.metrics.avg_jct == pytest.approx(10.0)
    assert result.unfinished == (unfinished,)
