"""Request-rate curves of inference services for the simulator: a daily sine, or a rate
recorded at points in time (a CSV read as untrusted input, like every trace).

A curve answers ``rates(times)`` (requests/s at each time, vectorised: the shortfall of a
day is counted on a 10 s grid) and ``peak()`` (what a static reservation is sized for).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from slicebox.errors import InputError
from slicebox.sim.traces import csvrows, limits, model

DAY_SECONDS = 86_400.0
# Requests/s of one service. Far above any single service (a large web property serves
# 1e5-1e6 requests/s in all); a rate is refused above it, as a trace value would be.
MAX_RATE_RPS = 1e7
# Points of a recorded curve: one a minute for two months.
MAX_CURVE_POINTS = 100_000
REQUIRED_COLUMNS = ("time_s", "rate_rps")


class RateCurveError(InputError):
    """A rate curve that cannot be simulated; the message names the field."""


class RateCurve(Protocol):
    def rates(self, times: np.ndarray) -> np.ndarray: ...  # requests/s at each time

    def peak(self) -> float: ...  # the highest rate the curve ever reaches


def _rate(value: float, field: str) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= MAX_RATE_RPS:
        raise RateCurveError(f"{field}: a rate is 0..{MAX_RATE_RPS:g} requests/s, got {value!r}")
    return float(value)


def _seconds(value: float, field: str, low: float = 0.0) -> float:
    if not math.isfinite(value) or not low <= value <= limits.MAX_SECONDS:
        raise RateCurveError(f"{field}: {low:g}..{limits.MAX_SECONDS:g} s, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SineRate:
    """``min_rps`` at the trough, ``max_rps`` at ``peak_at_s`` (seconds into each period,
    14:00 by default), a cosine between them: the shape of a day of user traffic."""

    min_rps: float
    max_rps: float
    period_s: float = DAY_SECONDS
    peak_at_s: float = 14 * 3600.0

    def __post_init__(self) -> None:
        _rate(self.min_rps, "min_rps")
        _rate(self.max_rps, "max_rps")
        if self.min_rps > self.max_rps:
            raise RateCurveError(f"min_rps ({self.min_rps:g}) is above max_rps "
                                 f"({self.max_rps:g})")
        _seconds(self.period_s, "period_s", low=60.0)
        _seconds(self.peak_at_s, "peak_at_s")

    def rates(self, times: np.ndarray) -> np.ndarray:
        phase = 2.0 * np.pi * (np.asarray(times, dtype=float) - self.peak_at_s) / self.period_s
        return self.min_rps + (self.max_rps - self.min_rps) * 0.5 * (1.0 + np.cos(phase))

    def peak(self) -> float:
        return self.max_rps


@dataclass(frozen=True)
class RecordedRate:
    """A measured curve: straight lines between (time, rate) points; before the first
    point and after the last the end values hold, unless ``period_s`` repeats the
    curve (a recorded day replayed every day)."""

    times_s: tuple[float, ...]
    rates_rps: tuple[float, ...]
    period_s: float | None = None

    def __post_init__(self) -> None:
        if not self.times_s or len(self.times_s) != len(self.rates_rps):
            raise RateCurveError("a recorded curve needs at least one point and as many "
                                 "rates as times")
        if len(self.times_s) > MAX_CURVE_POINTS:
            raise RateCurveError(f"{len(self.times_s):,} points; at most "
                                 f"{MAX_CURVE_POINTS:,}")
        for i, (t, r) in enumerate(zip(self.times_s, self.rates_rps, strict=True)):
            _seconds(t, f"time_s[{i}]")
            _rate(r, f"rate_rps[{i}]")
        if any(b <= a for a, b in zip(self.times_s, self.times_s[1:], strict=False)):
            raise RateCurveError("time_s must increase from point to point")
        if self.period_s is not None:
            _seconds(self.period_s, "period_s", low=60.0)
            if self.times_s[-1] > self.period_s:
                raise RateCurveError(f"period_s ({self.period_s:g}) is shorter than the "
                                     f"curve ({self.times_s[-1]:g} s)")

    def rates(self, times: np.ndarray) -> np.ndarray:
        t = np.asarray(times, dtype=float)
        if self.period_s is None:
            return np.interp(t, self.times_s, self.rates_rps)
        # Periodic: the segment from the last point wraps round to the first.
        xs = np.append(self.times_s, self.times_s[0] + self.period_s)
        ys = np.append(self.rates_rps, self.rates_rps[0])
        return np.interp(self.times_s[0] + np.mod(t - self.times_s[0], self.period_s), xs, ys)

    def peak(self) -> float:
        return max(self.rates_rps)


def read_rate_curve(path: str | os.PathLike[str], period_s: float | None = None
                    ) -> RecordedRate:
    """A recorded curve from a CSV with columns ``time_s,rate_rps`` (other columns are
    ignored). Read as a trace is: a regular file, bounded size and rows, every value
    finite and in range; a bad value raises ``TraceError`` naming file, line and column."""
    name = os.fspath(path)
    errors = csvrows.LineErrors(name, skip_bad_lines=False)
    with csvrows.open_table(name, REQUIRED_COLUMNS, errors) as table:
        i_time, i_rate = table.columns["time_s"], table.columns["rate_rps"]

        def convert(row: csvrows.Row) -> tuple[int, float, float]:
            fields = row.fields
            return (row.line,
                    csvrows.parse_float(fields[i_time], "time_s", low=0.0,
                                        high=limits.MAX_SECONDS),
                    csvrows.parse_float(fields[i_rate], "rate_rps", low=0.0,
                                        high=MAX_RATE_RPS))

        rows = csvrows.convert_rows(table.rows, convert, errors)
    if len(rows) > MAX_CURVE_POINTS:
        raise model.TraceError(name, rows[MAX_CURVE_POINTS][0],
                               f"more than {MAX_CURVE_POINTS:,} points")
    for (_, before, _), (line, t, _) in zip(rows, rows[1:], strict=False):
        if t <= before:
            raise model.TraceError(name, line, f"column 'time_s': {t:g} is not after the "
                                   f"previous point ({before:g}); times must increase",
                                   "time_s")
    try:
        return RecordedRate(tuple(r[1] for r in rows), tuple(r[2] for r in rows), period_s)
    except RateCurveError as exc:  # period_s shorter than the file
        raise model.TraceError(name, 0, str(exc)) from None

