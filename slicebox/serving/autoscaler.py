"""How many replicas a service should have: from the observed rate and each replica's
measured capacity, with hysteresis so the count does not flap.

Pure: ``desired(now, current, stats)`` reads only its arguments and its own memory of
when a condition began, so it runs on any clock (tests use a fake one).

- **Needed replicas** = ceil(rate / capacity), where capacity is what one replica serves
  within the objective (``sizing.py`` measures it).
- **Up, fast:** when the rate needs more replicas than run, or the p99 breaks the
  objective, continuously for ``up_after_s``. A rate breach goes straight to the needed
  count; a latency breach alone adds one. A latency breach counts only once the stats
  window holds no requests from before the last change (the old replicas' latencies
  would otherwise trigger a second step for the same overload).
- **Down, slowly:** only when ``current - 1`` replicas would carry the rate below
  ``down_utilization`` of their capacity and the p99 is comfortably inside the objective,
  continuously for ``down_after_s``; one replica at a time, each step waiting
  ``down_after_s`` again. Between the two thresholds nothing changes: the hysteresis band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from slicebox.errors import InputError
from slicebox.serving.balancer import TrafficStats

# Scale down only if the smaller count would run at most this loaded: the band between
# this and 1.0 is where the count holds still.
DOWN_UTILIZATION = 0.75
# ... and only while the p99 is at most this share of the objective.
DOWN_LATENCY_SHARE = 0.8


@dataclass(frozen=True)
class Objective:
    p99_ms: float
    # The rate the whole service must carry within p99_ms. The autoscaler follows the
    # observed rate instead; the controller may use this to seed a capacity estimate.
    rate_rps: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.p99_ms) and self.p99_ms > 0):
            raise InputError(f"objective p99_ms must be a positive number, got {self.p99_ms}")
        if self.rate_rps is not None and not (math.isfinite(self.rate_rps)
                                              and self.rate_rps > 0):
            raise InputError(f"objective rate_rps must be a positive number, got {self.rate_rps}")


class Autoscaler:
    def __init__(self, objective: Objective, min_replicas: int, max_replicas: int, *,
                 replica_capacity_rps: float, up_after_s: float = 2.0,
                 down_after_s: float = 10.0,
                 down_utilization: float = DOWN_UTILIZATION) -> None:
        if min_replicas < 1:
            raise InputError(f"min_replicas must be at least 1, got {min_replicas}")
        if max_replicas < min_replicas:
            raise InputError(f"max_replicas ({max_replicas}) must be at least "
                             f"min_replicas ({min_replicas})")
        if not (math.isfinite(replica_capacity_rps) and replica_capacity_rps > 0):
            raise InputError("replica_capacity_rps must be a positive number, "
                             f"got {replica_capacity_rps}")
        if not (0 <= up_after_s <= down_after_s):
            raise InputError(f"need 0 <= up_after_s ({up_after_s}) <= "
                             f"down_after_s ({down_after_s})")
        if not 0 < down_utilization < 1:
            raise InputError(f"down_utilization must be in (0, 1), got {down_utilization}")
        self.objective = objective
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.capacity = replica_capacity_rps
        self.up_after_s = up_after_s
        self.down_after_s = down_after_s
        self.down_utilization = down_utilization
        self._up_since: float | None = None  # when the current "too few" condition began
        self._down_since: float | None = None  # when the current "too many" condition began
        self._changed_at: float | None = None  # the last change this autoscaler asked for

    def needed(self, rate_rps: float) -> int:
        """Replicas that carry ``rate_rps`` at their measured capacity."""
        return max(1, math.ceil(rate_rps / self.capacity - 1e-9))

    def _clamp(self, count: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, count))

    def desired(self, now: float, current: int, stats: TrafficStats) -> int:
        if current != self._clamp(current):  # outside the bounds: fix that first
            return self._changed(now, self._clamp(current))
        need = self.needed(stats.rate_rps)
        latency_breach = (stats.requests > 0 and stats.p99_ms > self.objective.p99_ms
                          and self._window_is_fresh(now, stats))
        if need > current or latency_breach:
            self._down_since = None
            if self._up_since is None:
                self._up_since = now
            if now - self._up_since >= self.up_after_s:
                target = self._clamp(max(need, current + 1) if latency_breach else need)
                # At the maximum already: nothing to change, and no change recorded.
                return current if target == current else self._changed(now, target)
            return current
        self._up_since = None
        fits_in_fewer = stats.rate_rps <= (current - 1) * self.capacity * self.down_utilization
        calm = stats.p99_ms <= DOWN_LATENCY_SHARE * self.objective.p99_ms and stats.errors == 0
        if current > self.min_replicas and fits_in_fewer and calm:
            if self._down_since is None:
                self._down_since = now
            if now - self._down_since >= self.down_after_s:
                return self._changed(now, current - 1)
            return current
        self._down_since = None
        return current

    def _window_is_fresh(self, now: float, stats: TrafficStats) -> bool:
        return self._changed_at is None or now - self._changed_at >= stats.window_s

    def _changed(self, now: float, target: int) -> int:
        self._up_since = self._down_since = None
        self._changed_at = now
        return target
