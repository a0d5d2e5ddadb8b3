"""Sizing (the capacity the autoscaler plans with): the rate search and the shape pick,
on a modelled replica instead of a measured one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slicebox.serving import loadgen_driver
from slicebox.serving.autoscaler import Objective
from slicebox.serving.local_service import prepare_weights
from slicebox.serving.replicas import free_port
from slicebox.serving.sizing import (
    RatePoint,
    ShapeMeasurement,
    SizingError,
    capacity,
    measure_rates,
    measure_shape,
    pick,
)
from tests.serving.conftest import FakeReplicas

OBJECTIVE = Objective(p99_ms=100.0)


def modelled(knee_rps: float):  # type: ignore[no-untyped-def]
    """A replica whose p99 is 20 ms below ``knee_rps`` and explodes above it."""
    calls: list[float] = []

    def driver(url: str, rate: float, seconds: float) -> RatePoint:
        calls.append(rate)
        return RatePoint(rate, 20.0 if rate <= knee_rps else 900.0, 0, int(rate * seconds))

    return driver, calls


def test_rate_search_doubles_until_a_break_then_bisects_once() -> None:
    driver, calls = modelled(knee_rps=50.0)
    points = measure_rates("http://x", OBJECTIVE, driver, start_rps=5.0, max_rps=1000.0,
                           step_s=1.0)
    assert calls == [5.0, 10.0, 20.0, 40.0, 80.0, 60.0]
    assert capacity(points, OBJECTIVE) == 40.0  # 60 broke it too
    driver, calls = modelled(knee_rps=70.0)
    points = measure_rates("http://x", OBJECTIVE, driver, start_rps=5.0, max_rps=1000.0,
                           step_s=1.0)
    assert capacity(points, OBJECTIVE) == 60.0  # the bisection found more


def test_errors_break_the_objective_whatever_the_latency() -> None:
    assert not RatePoint(10.0, 5.0, errors=1, requests=30).meets(OBJECTIVE)
    assert not RatePoint(10.0, 0.0, errors=0, requests=0).meets(OBJECTIVE)


def test_rate_search_stops_at_max_rps() -> None:
    driver, calls = modelled(knee_rps=10_000.0)
    measure_rates("http://x", OBJECTIVE, driver, start_rps=10.0, max_rps=45.0, step_s=1.0)
    assert calls == [10.0, 20.0, 40.0]


def shape(cores: int, capacity_rps: float) -> ShapeMeasurement:
    return ShapeMeasurement(cores, (RatePoint(capacity_rps, 20.0, 0, 10),), capacity_rps)


def test_picks_the_smallest_shape_that_meets_the_objective() -> None:
    shapes = [shape(4, 120.0), shape(1, 30.0), shape(2, 60.0)]
    result = pick(shapes, OBJECTIVE)
    assert (result.cores, result.capacity_rps) == (1, 30.0)
    assert result.planning_rps() == pytest.approx(24.0)
    # A service that needs 50 rps from one replica: 1 core is too small.
    assert pick(shapes, OBJECTIVE, min_capacity_rps=50.0).cores == 2


def test_no_shape_meets_it_says_what_was_measured() -> None:
    with pytest.raises(SizingError, match=r"1 core\(s\): 0.0 rps"):
        pick([shape(1, 0.0)], OBJECTIVE)


needs_loadgen = pytest.mark.skipif(not loadgen_driver.available(),
                                   reason="MLPerf LoadGen is not installed")


@needs_loadgen
def test_loadgen_server_step_against_a_replica_measures_latency(fakes: FakeReplicas) -> None:
    replica = fakes.start("a", delay_ms=30)
    driver = loadgen_driver.server_point({"count": 1}, latency_bound_ms=OBJECTIVE.p99_ms)
    point = driver(f"http://127.0.0.1:{replica.port}/predict", 20.0, 1.5)
    assert point.errors == 0 and point.requests >= 10
    assert 30.0 <= point.p99_ms < 2000.0  # at least the replica's own delay
    assert point.meets(Objective(p99_ms=2000.0))


@needs_loadgen
def test_loadgen_step_counts_failed_requests() -> None:
    driver = loadgen_driver.server_point(None, latency_bound_ms=OBJECTIVE.p99_ms)
    point = driver(f"http://127.0.0.1:{free_port()}/predict", 20.0, 0.5)  # nobody there
    assert point.requests > 0 and point.errors == point.requests
    assert not point.meets(OBJECTIVE)


@pytest.mark.slow
def test_measures_a_real_replica_shape(tmp_path: Path) -> None:
    weights = tmp_path / "model.pt"
    prepare_weights(weights, train_seconds=0.5)
    core = min(os.sched_getaffinity(0))
    shape = measure_shape([core], weights, Objective(p99_ms=1000.0), body={"count": 8},
                          start_rps=10.0, max_rps=20.0, step_s=1.0)
    assert shape.cores == 1 and [p.rate_rps for p in shape.points] == [10.0, 20.0]
    assert shape.capacity_rps == 20.0
    assert all(p.requests > 0 and p.p99_ms > 0 for p in shape.points)
