"""MLPerf's rule for combining runs into one result."""

from __future__ import annotations

import math

import pytest

from slicebox.bench.results import BenchResult, RunResult, mlperf_result


def test_drops_fastest_and_slowest_and_means_the_rest() -> None:
    assert mlperf_result([50.0, 10.0, 30.0, 40.0, 20.0]) == pytest.approx(30.0)
    assert mlperf_result([3.0, 100.0, 1.0]) == pytest.approx(3.0)


def test_one_run_that_missed_the_target_counts_as_the_slowest() -> None:
    assert mlperf_result([10.0, None, 20.0, 30.0]) == pytest.approx(25.0)
    assert mlperf_result([10.0, math.inf, 20.0, 30.0]) == pytest.approx(25.0)


def test_two_runs_that_missed_the_target_invalidate_the_result() -> None:
    with pytest.raises(ValueError, match="did not reach the target"):
        mlperf_result([10.0, None, None, 30.0, 40.0])


def test_fewer_than_three_runs_is_not_a_result() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        mlperf_result([10.0, 20.0])


def test_results_round_trip_through_dicts() -> None:
    run = RunResult(
        workload="lm",
        precision="bf16",
        device="cpu",
        status="ok",
        quality=5.4,
        time_to_quality_s=12.5,
        reached_target=True,
    )
    assert RunResult.from_dict(run.to_dict()) == run
    cell = BenchResult(
        workload="lm", slice="cpu-1c", precision="bf16", status="ok", samples_per_s=300.0
    )
    assert BenchResult.from_dict(cell.to_dict()) == cell
