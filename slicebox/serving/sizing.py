"""Sizing from measurement: each slice shape's latency and throughput for a service, and
the smallest shape that meets the objective.

A shape here is a number of cores (1, 2, ...): one replica is started pinned to that
many cores and driven at rising rates, one short step each, by MLPerf LoadGen's Server
scenario (``loadgen_driver``: Poisson arrivals, LoadGen's own p99; each query one HTTP
request) where LoadGen is installed, else by the open-loop ``loadramp`` (also Poisson),
until the p99 breaks the objective or requests fail. A shape's **capacity** is the
highest rate it served within the objective (refined by one bisection between the last
rate that passed and the first that failed). The smallest shape whose capacity reaches
``min_capacity_rps`` is chosen, and its capacity is what the ``Autoscaler`` divides the
observed rate by.

``measure_shape`` runs processes and takes seconds per shape; ``pick`` is pure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slicebox.errors import SliceboxError
from slicebox.serving.autoscaler import Objective
from slicebox.serving.balancer import percentile
from slicebox.serving.loadramp import Step, drive
from slicebox.serving.replicas import LocalReplicas


class SizingError(SliceboxError):
    """No shape measured meets the objective."""


@dataclass(frozen=True)
class RatePoint:
    rate_rps: float
    p99_ms: float
    errors: int
    requests: int

    def meets(self, objective: Objective) -> bool:
        return self.errors == 0 and self.requests > 0 and self.p99_ms <= objective.p99_ms


@dataclass(frozen=True)
class ShapeMeasurement:
    cores: int
    points: tuple[RatePoint, ...]  # in the order measured
    capacity_rps: float  # highest rate served within the objective; 0: none

    def p99_at_lightest_ms(self) -> float:
        return min(self.points, key=lambda p: p.rate_rps).p99_ms if self.points else math.inf


@dataclass(frozen=True)
class SizingResult:
    cores: int
    capacity_rps: float
    shapes: tuple[ShapeMeasurement, ...]

    def planning_rps(self, headroom: float = 0.8) -> float:
        """The capacity to plan replicas with: measured capacity is the edge of the
        objective, so plan below it."""
        return self.capacity_rps * headroom


def capacity(points: Sequence[RatePoint], objective: Objective) -> float:
    passing = [p.rate_rps for p in points if p.meets(objective)]
    return max(passing, default=0.0)


def pick(shapes: Sequence[ShapeMeasurement], objective: Objective,
         min_capacity_rps: float = 0.0) -> SizingResult:
    """The smallest shape (fewest cores) whose capacity reaches ``min_capacity_rps``
    (and is above zero: it served some rate within the objective)."""
    for shape in sorted(shapes, key=lambda s: s.cores):
        if shape.capacity_rps > 0 and shape.capacity_rps >= min_capacity_rps:
            return SizingResult(shape.cores, shape.capacity_rps, tuple(shapes))
    measured = ", ".join(f"{s.cores} core(s): {s.capacity_rps:.1f} rps" for s in shapes)
    raise SizingError(f"no shape serves {min_capacity_rps:g} rps within p99 "
                      f"{objective.p99_ms:g} ms (measured: {measured or 'nothing'})")


Driver = Callable[[str, float, float], RatePoint]


def http_point(body: Any, seed: int = 0) -> Driver:
    """Drive ``url`` at ``rate`` for ``seconds`` with ``body``; the step as a RatePoint
    (the first quarter is warm-up and not counted)."""

    def run(url: str, rate: float, seconds: float) -> RatePoint:
        report = drive(url, [Step(rate, seconds)], body=body, seed=seed)
        counted = [r for r in report.requests if r.due_s >= seconds / 4]
        served = sorted(r.latency_ms for r in counted if r.ok)
        return RatePoint(rate, percentile(served, 99), len(counted) - len(served), len(counted))

    return run


def measure_rates(url: str, objective: Objective, driver: Driver, *, start_rps: float,
                  max_rps: float, step_s: float) -> tuple[RatePoint, ...]:
    """Double the rate from ``start_rps`` until a step breaks the objective (or
    ``max_rps``), then bisect once between the last pass and the first failure."""
    points: list[RatePoint] = []
    rate = start_rps
    while rate <= max_rps:
        point = driver(url, rate, step_s)
        points.append(point)
        if not point.meets(objective):
            break
        rate *= 2
    passed = [p.rate_rps for p in points if p.meets(objective)]
    failed = [p.rate_rps for p in points if not p.meets(objective)]
    if passed and failed:
        points.append(driver(url, (max(passed) + min(failed)) / 2, step_s))
    return tuple(points)


def default_driver(body: Any, objective: Objective) -> Driver:
    """LoadGen's Server scenario where LoadGen is installed, else the open-loop ramp."""
    from slicebox.serving import loadgen_driver

    if loadgen_driver.available():
        return loadgen_driver.server_point(body, objective.p99_ms)
    return http_point(body)


def measure_shape(cores: Sequence[int], weights: Path, objective: Objective, *, body: Any,
                  start_rps: float = 5.0, max_rps: float = 400.0, step_s: float = 3.0,
                  path: str = "/predict", driver: Driver | None = None) -> ShapeMeasurement:
    """Start one replica on ``cores``, measure it, stop it."""
    with LocalReplicas(weights) as replicas:
        replica = replicas.start(cores)
        replicas.wait_ready([replica.name])
        url = f"http://{replica.host}:{replica.port}{path}"
        points = measure_rates(url, objective, driver or default_driver(body, objective),
                               start_rps=start_rps, max_rps=max_rps, step_s=step_s)
    return ShapeMeasurement(len(cores), points, capacity(points, objective))


def size_service(available: Sequence[int], weights: Path, objective: Objective, *, body: Any,
                 shapes: Sequence[int] | None = None, min_capacity_rps: float = 0.0,
                 **measure: Any) -> SizingResult:
    """Measure each shape (``shapes``: core counts; default 1..len(available)) on the
    first cores of ``available``, and pick the smallest that meets the objective."""
    counts = shapes or range(1, len(available) + 1)
    measured = [measure_shape(available[:n], weights, objective, body=body, **measure)
                for n in counts if n <= len(available)]
    return pick(measured, objective, min_capacity_rps)


# ---- live sizing: from the service's own traffic, in the controller ------------------------
#
# The controller's ServiceManager feeds each round's balancer window, while every serving
# replica is on the current shape, to ``observe_shape``; ``next_shape`` says when to move to
# the next (bigger) shape. Both are pure: the clock is an argument.

LIVE_MIN_REQUESTS = 20  # a window with fewer requests says nothing about latency
LIVE_SUSTAIN_S = 30.0  # the objective must stay broken this long before the shape moves


@dataclass(frozen=True)
class ShapeStats:
    """What the service's own traffic has shown about one shape."""

    capacity_rps: float = 0.0  # highest per-replica rate served within the objective; 0: none
    p99_ms: float = 0.0  # last window's
    windows: int = 0  # windows with enough requests to count
    broken_since: float | None = None  # every counted window since then broke the objective
                                       # while the replicas were not short of capacity


def observe_shape(stats: ShapeStats, now: float, *, p99_ms: float, per_replica_rps: float,
                  requests: int, errors: int, objective_p99_ms: float,
                  short_of_replicas: bool) -> ShapeStats:
    """One balancer window on this shape. A window within the objective raises the shape's
    capacity and clears the break. A window that broke it counts towards moving up when
    the replicas were at low load: not short of replicas (the autoscaler's count is
    serving, or the count is at max_replicas) and at or below a per-replica rate the shape
    has served within the objective (any rate, when it never has). Windows while the
    autoscaler is still adding replicas, or above the shape's capacity, are overload,
    which more replicas fix: they neither count nor clear."""
    if requests < LIVE_MIN_REQUESTS:
        return stats
    seen = ShapeStats(stats.capacity_rps, p99_ms, stats.windows + 1, stats.broken_since)
    if p99_ms <= objective_p99_ms and errors == 0:
        return ShapeStats(max(stats.capacity_rps, per_replica_rps), p99_ms, seen.windows, None)
    low_load = stats.capacity_rps == 0.0 or per_replica_rps <= stats.capacity_rps
    if short_of_replicas or not low_load:
        return seen
    broken_since = now if stats.broken_since is None else stats.broken_since
    return ShapeStats(stats.capacity_rps, p99_ms, seen.windows, broken_since)


def next_shape(n_shapes: int, current: int, stats_by_shape: dict[int, ShapeStats],
               now: float, sustain_s: float = LIVE_SUSTAIN_S) -> int:
    """The shape the service should run on: the next one when the current one's objective
    has stayed broken at low load for ``sustain_s`` (hysteresis: one bad window does not
    move a service), else the current. Never down (the smallest shape that meets the
    objective is the one that stays) and never past the last."""
    stats = stats_by_shape.get(current)
    if stats is None or stats.broken_since is None or current + 1 >= n_shapes:
        return current
    return current + 1 if now - stats.broken_since >= sustain_s else current
