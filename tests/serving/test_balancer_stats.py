"""The balancer's sliding window of traffic, on a fake clock."""

from __future__ import annotations

import pytest

from slicebox.serving.balancer import TrafficWindow, percentile


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 99) == 0.0


def test_rate_latency_and_errors_over_the_window_and_old_requests_expire() -> None:
    clock = Clock()
    window = TrafficWindow(10.0, objective_p99_ms=100.0, clock=clock)
    for _second in range(10):  # 10 s at 5 requests/s, 10 ms each
        for _request in range(5):
            window.record(10.0, error=False)
        clock.now += 1.0
    stats = window.stats()
    assert stats.requests == 50 and stats.rate_rps == pytest.approx(5.0)
    assert stats.p50_ms == 10.0 and stats.p99_ms == 10.0 and stats.errors == 0
    assert stats.over_objective_s == 0
    for _ in range(20):  # one busy second, slow, with an error
        window.record(300.0, error=False)
    window.record(5.0, error=True)
    stats = window.stats()
    assert stats.requests == 71 and stats.errors == 1
    assert stats.p99_ms == 300.0  # errors are not latencies
    assert stats.over_objective_s == 1
    clock.now += 10.5  # everything above is now older than the window
    stats = window.stats()
    assert stats.requests == 0 and stats.rate_rps == 0.0 and stats.p99_ms == 0.0
    assert stats.over_objective_s == 0


def test_rate_right_after_start_is_over_the_time_seen_not_the_whole_window() -> None:
    clock = Clock()
    window = TrafficWindow(10.0, objective_p99_ms=None, clock=clock)
    clock.now += 2.0
    for _ in range(20):
        window.record(1.0, error=False)
    assert window.stats().rate_rps == pytest.approx(10.0)


def test_an_error_alone_breaks_its_second() -> None:
    clock = Clock()
    window = TrafficWindow(10.0, objective_p99_ms=100.0, clock=clock)
    window.record(1.0, error=False)
    clock.now += 1.0
    window.record(1.0, error=True)
    assert window.stats().over_objective_s == 1
