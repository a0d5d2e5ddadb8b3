"""Progress values from a job's log, bounded and typed before they reach the store.

A job prints what it likes: ``{"samples": 10**26}`` overflows SQLite's INTEGER, a list or
a string where a number belongs breaks arithmetic. Whatever the parser hands over, only
finite numbers in range get through; the rest is dropped with a note saying why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_SAMPLES = 2**63 - 1  # SQLite INTEGER (and PostgreSQL BIGINT)
MAX_QUALITY = 1e300  # finite, and far from overflowing any sum of a few of them
_YEAR_3000 = 32_503_680_000.0


@dataclass(frozen=True)
class CleanProgress:
    time: float
    samples: int | None
    quality: float | None
    problems: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.samples is None and self.quality is None


def _number(value: object) -> float | None:
    # bool is an int in Python; True samples is nonsense, not 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def clean(time: object, samples: object, quality: object, now: float) -> CleanProgress:
    """The report with every value checked; ``problems`` says what was dropped."""
    problems = []
    when = _number(time)
    if when is None or not 0 < when < _YEAR_3000:
        if time is not None:
            problems.append(f"time {_show(time)} is not a plausible unix time")
        when = now
    count: int | None = None
    if samples is not None:
        number = _number(samples)
        if number is None or not 0 <= number <= MAX_SAMPLES:
            problems.append(f"samples {_show(samples)} is not a count in 0..{MAX_SAMPLES}")
        else:
            count = samples if isinstance(samples, int) else int(number)
    score: float | None = None
    if quality is not None:
        number = _number(quality)
        if number is None or abs(number) > MAX_QUALITY:
            problems.append(f"quality {_show(quality)} is not a finite number")
        else:
            score = number
    return CleanProgress(when, count, score, tuple(problems))


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
