"""The autoscaler's decisions on a fake clock: fast up, slow down, no flapping."""

from __future__ import annotations

import pytest

from slicebox.errors import InputError
from slicebox.serving.autoscaler import Autoscaler, Objective
from slicebox.serving.balancer import TrafficStats

WINDOW = 5.0


def traffic(rate: float, p99: float = 20.0, errors: int = 0) -> TrafficStats:
    requests = int(rate * WINDOW)
    return TrafficStats(WINDOW, requests, rate, p99 / 2, p99 if requests else 0.0, errors, 0)


def scaler(**kw: float) -> Autoscaler:
    settings = {"up_after_s": 2.0, "down_after_s": 10.0} | kw
    return Autoscaler(Objective(p99_ms=100.0), 1, 3, replica_capacity_rps=10.0, **settings)


def run(a: Autoscaler, start: float, seconds: float, current: int, stats: TrafficStats,
        tick: float = 0.5) -> tuple[float, int, list[float]]:
    """Call desired() every ``tick`` and apply its answer; (end, count, times of changes)."""
    now, changes = start, []
    while now < start + seconds:
        wanted = a.desired(now, current, stats)
        if wanted != current:
            changes.append(now)
            current = wanted
        now += tick
    return now, current, changes


def test_rate_above_capacity_scales_up_to_the_needed_count_after_up_after_s() -> None:
    a = scaler()
    assert a.desired(0.0, 1, traffic(25.0)) == 1  # not yet: the breach must last
    assert a.desired(1.5, 1, traffic(25.0)) == 1
    assert a.desired(2.0, 1, traffic(25.0)) == 3  # ceil(25 / 10), in one step


def test_a_short_spike_does_not_scale() -> None:
    a = scaler()
    assert a.desired(0.0, 1, traffic(25.0)) == 1
    assert a.desired(1.0, 1, traffic(5.0)) == 1  # gone before up_after_s
    assert a.desired(2.5, 1, traffic(25.0)) == 1  # a new breach starts its own clock
    assert a.desired(4.4, 1, traffic(25.0)) == 1
    assert a.desired(4.5, 1, traffic(25.0)) == 3


def test_latency_breach_alone_adds_one_replica_then_waits_for_a_fresh_window() -> None:
    a = scaler()
    slow = traffic(8.0, p99=250.0)  # the rate fits one replica, the latency does not
    assert a.desired(0.0, 1, slow) == 1
    assert a.desired(2.0, 1, slow) == 2
    # The window still holds the old replica's latencies: no second step for them.
    assert a.desired(4.0, 2, slow) == 2
    assert a.desired(6.9, 2, slow) == 2
    # A full window after the change and still slow: another replica.
    assert a.desired(7.0, 2, slow) == 2  # the breach clock starts now
    assert a.desired(9.0, 2, slow) == 3


def test_scales_down_one_at_a_time_each_after_down_after_s() -> None:
    a = scaler()
    end, count, changes = run(a, 0.0, 40.0, 3, traffic(2.0))
    assert count == 1
    # One step per down_after_s, never both at once: the second waits a full period.
    assert changes[0] == 10.0 and len(changes) == 2
    assert 10.0 <= changes[1] - changes[0] <= 11.0


def test_rate_inside_the_hysteresis_band_never_changes_the_count() -> None:
    # 2 replicas, 16 rps: above 1 replica's 75 % (7.5) so no down; below 2 x 10 so no up.
    a = scaler()
    _, count, changes = run(a, 0.0, 120.0, 2, traffic(16.0))
    assert (count, changes) == (2, [])


def test_rate_wobbling_around_a_boundary_does_not_flap() -> None:
    # The rate alternates 11 / 9 rps in 3 s phases around one replica's capacity (10):
    # the first 11 rps phase lasts past up_after_s, so it goes up to 2, once; it never
    # comes back down, since 9 rps is over 75 % of what one replica carries.
    a = scaler()
    now, current, changes = 0.0, 1, []
    for phase in range(20):
        rate = 11.0 if phase % 2 == 0 else 9.0
        for _ in range(6):
            wanted = a.desired(now, current, traffic(rate))
            if wanted != current:
                changes.append((now, wanted))
                current = wanted
            now += 0.5
    assert changes == [(2.0, 2)]


def test_down_waits_while_latency_is_near_the_objective() -> None:
    a = scaler()
    _, count, _ = run(a, 0.0, 60.0, 2, traffic(2.0, p99=90.0))  # 90 % of the objective
    assert count == 2


def test_bounds_hold() -> None:
    a = scaler()
    assert a.desired(0.0, 5, traffic(0.0)) == 3  # above max: down to max at once
    assert a.desired(0.0, 0, traffic(0.0)) == 1  # below min: up to min at once
    _, count, _ = run(scaler(), 0.0, 10.0, 3, traffic(500.0, p99=900.0))
    assert count == 3


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"min_replicas": 0}, "min_replicas"),
    ({"max_replicas": 0}, "max_replicas"),
    ({"replica_capacity_rps": 0.0}, "replica_capacity_rps"),
    ({"up_after_s": 20.0}, "up_after_s"),
])
def test_rejects_bad_settings(kwargs: dict[str, float], field: str) -> None:
    settings: dict = {"min_replicas": 1, "max_replicas": 3, "replica_capacity_rps": 10.0}
    settings |= kwargs
    with pytest.raises(InputError, match=field):
        Autoscaler(Objective(100.0), settings.pop("min_replicas"),
                   settings.pop("max_replicas"), **settings)
    with pytest.raises(InputError, match="p99_ms"):
        Objective(p99_ms=0.0)
