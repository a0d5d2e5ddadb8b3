"""Live sizing's decision (slicebox.serving.sizing.observe_shape / next_shape) on a fake
clock: a shape moves up only when its objective stays broken at low load per replica for
the sustain time; overload (short of replicas, or above what the shape has served) is the
autoscaler's to fix, one good window clears the break, and it never moves down or past
the last shape."""

from __future__ import annotations

from slicebox.serving.sizing import LIVE_MIN_REQUESTS, ShapeStats, next_shape, observe_shape

OBJECTIVE_MS = 100.0


def window(stats: ShapeStats, now: float, p99_ms: float, per_replica_rps: float = 5.0, *,
           requests: int = 200, errors: int = 0, short: bool = False) -> ShapeStats:
    return observe_shape(stats, now, p99_ms=p99_ms, per_replica_rps=per_replica_rps,
                         requests=requests, errors=errors, objective_p99_ms=OBJECTIVE_MS,
                         short_of_replicas=short)


def run(windows: list[tuple[float, float]], *, sustain_s: float = 30.0, n_shapes: int = 3,
        current: int = 0, **kw: object) -> tuple[int, ShapeStats]:
    """Feed (p99_ms, per_replica_rps) windows one a second; the shape after each."""
    stats = ShapeStats()
    shape = current
    for t, (p99, rate) in enumerate(windows):
        stats = window(stats, float(t), p99, rate, **kw)  # type: ignore[arg-type]
        shape = next_shape(n_shapes, current, {current: stats}, float(t), sustain_s)
        if shape != current:
            return shape, stats
    return shape, stats


def test_a_shape_broken_at_low_load_moves_up_only_after_the_sustain_time() -> None:
    slow = [(250.0, 2.0)] * 40  # 2 rps per replica, p99 2.5x the objective
    assert run(slow[:30])[0] == 0  # 29 s broken: not yet (hysteresis)
    shape, stats = run(slow)
    assert shape == 1
    assert stats.broken_since == 0.0 and stats.p99_ms == 250.0 and stats.capacity_rps == 0.0


def test_one_good_window_clears_the_break() -> None:
    flapping = [(250.0, 2.0)] * 20 + [(80.0, 2.0)] + [(250.0, 2.0)] * 20
    shape, stats = run(flapping)
    assert shape == 0
    assert stats.broken_since == 21.0  # counting again from the next bad window
    assert stats.capacity_rps == 2.0  # the good window showed 2 rps per replica is served


def test_overload_is_the_autoscalers_and_does_not_move_the_shape() -> None:
    # Short of replicas (the autoscaler is adding some): broken windows do not count.
    assert run([(250.0, 2.0)] * 60, short=True) == (0, ShapeStats(0.0, 250.0, 60, None))
    # Above the per-replica rate the shape has served within the objective: overload.
    served = [(60.0, 10.0)] * 5
    shape, stats = run(served + [(250.0, 15.0)] * 60)
    assert shape == 0 and stats.capacity_rps == 10.0 and stats.broken_since is None
    # At or below that rate, the same p99 is the shape's own limit: it moves.
    shape, stats = run(served + [(250.0, 8.0)] * 60)
    assert shape == 1 and stats.broken_since == 5.0


def test_errors_break_the_objective_and_quiet_windows_say_nothing() -> None:
    shape, _ = run([(20.0, 2.0)] * 40, errors=3)  # fast but failing
    assert shape == 1
    quiet = window(ShapeStats(), 0.0, 900.0, requests=LIVE_MIN_REQUESTS - 1)
    assert quiet == ShapeStats()


def test_never_past_the_last_shape_nor_down() -> None:
    broken = ShapeStats(0.0, 250.0, 40, broken_since=0.0)
    assert next_shape(3, 2, {2: broken}, 100.0) == 2  # the last one stays
    assert next_shape(3, 1, {1: ShapeStats(5.0, 40.0, 9, None), 0: broken}, 100.0) == 1
    assert next_shape(3, 1, {}, 100.0) == 1  # nothing measured yet
    assert next_shape(3, 0, {0: broken}, 100.0, sustain_s=200.0) == 0
