"""An open-loop load generator: requests at a rate that rises and falls in steps, each
one's latency and outcome recorded.

Open loop (as LoadGen's Server scenario): arrivals follow the schedule whatever the
server does, so an overloaded server shows up as latency and errors rather than as a
client that politely slows down. Arrivals within a step are Poisson (seeded, so two runs
send the same schedule). A request's latency is measured from the moment it was due, not
from when the client got round to sending it, so a lagging client is not hidden either
(coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from slicebox.errors import InputError
from slicebox.serving.balancer import percentile

MAX_RATE_RPS: Final = 10_000.0
MAX_SECONDS: Final = 3600.0


@dataclass(frozen=True)
class Step:
    rate_rps: float
    seconds: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_rps) and 0 <= self.rate_rps <= MAX_RATE_RPS):
            raise InputError(f"step rate_rps must be in 0..{MAX_RATE_RPS:g}, got {self.rate_rps}")
        if not (math.isfinite(self.seconds) and 0 < self.seconds <= MAX_SECONDS):
            raise InputError(f"step seconds must be in (0, {MAX_SECONDS:g}], got {self.seconds}")


def ramp(rates: Sequence[float], step_s: float) -> list[Step]:
    """Steps of ``step_s`` seconds at each of ``rates``."""
    return [Step(rate, step_s) for rate in rates]


@dataclass(frozen=True)
class Request:
    due_s: float  # when it was due, seconds since the ramp began
    latency_ms: float  # from due to the last response byte (or the failure)
    status: int  # the HTTP status; 0: no response (connection error, timeout)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Second:
    second: int
    offered: int
    served: int  # answered 200
    errors: int
    p99_ms: float  # over the requests answered 200
    over: bool  # p99 above the objective, or an error


@dataclass(frozen=True)
class RampReport:
    steps: tuple[Step, ...]
    requests: tuple[Request, ...]
    seconds_s: float

    def served_within(self, objective_ms: float) -> int:
        return sum(1 for r in self.requests if r.ok and r.latency_ms <= objective_ms)

    @property
    def errors(self) -> int:
        return sum(1 for r in self.requests if not r.ok)

    def p99_ms(self) -> float:
        return percentile(sorted(r.latency_ms for r in self.requests if r.ok), 99)

    def step_starts(self) -> list[float]:
        starts, at = [], 0.0
        for step in self.steps:
            starts.append(at)
            at += step.seconds
        return starts

    def per_second(self, objective_ms: float) -> list[Second]:
        buckets: dict[int, list[Request]] = {}
        for r in self.requests:
            buckets.setdefault(int(r.due_s), []).append(r)
        out = []
        for second in range(math.ceil(self.seconds_s)):
            these = buckets.get(second, [])
            served = sorted(r.latency_ms for r in these if r.ok)
            errors = len(these) - len(served)
            p99 = percentile(served, 99)
            out.append(Second(second, len(these), len(served), errors, p99,
                              errors > 0 or p99 > objective_ms))
        return out

    def seconds_over(self, objective_ms: float) -> list[int]:
        return [s.second for s in self.per_second(objective_ms) if s.over]

    def seconds_over_after_step(self, objective_ms: float, within_s: float,
                                settled_s: Sequence[float | None] = (),
                                drain_s: float = 3.0) -> tuple[int, int]:
        """(seconds over the objective right after a step began, the rest).

        "Right after" is ``within_s`` from the step's start or, where ``settled_s`` gives
        for step i the time (seconds since the ramp began) the serving side finished
        adjusting to it (its last new replica healthy), until ``drain_s`` past that, if
        later: on a loaded machine a replica can take longer than ``within_s`` to start, and
        until it serves (and the queue built meanwhile drains) the step is still a
        transient, not a steady state."""
        starts = self.step_starts()
        ends = [start + within_s for start in starts]
        for i, settled in enumerate(settled_s[:len(ends)]):
            if settled is not None:
                ends[i] = max(ends[i], settled + drain_s)
        near = rest = 0
        for second in self.seconds_over(objective_ms):
            if any(start <= second < end for start, end in zip(starts, ends, strict=True)):
                near += 1
            else:
                rest += 1
        return near, rest

    def longest_error_run_s(self) -> float:
        """The longest span (seconds, by due time) from a failed request to the last
        failed one after it with no request served in between."""
        longest, first_failed = 0.0, None
        for r in sorted(self.requests, key=lambda r: r.due_s):
            if r.ok:
                first_failed = None
                continue
            if first_failed is None:
                first_failed = r.due_s
            longest = max(longest, r.due_s - first_failed)
        return longest


def schedule(steps: Sequence[Step], seed: int = 0) -> list[float]:
    """Due times (seconds from the start): Poisson arrivals at each step's rate."""
    rng = random.Random(seed)
    due, start = [], 0.0
    for step in steps:
        at = start
        while step.rate_rps > 0:
            at += rng.expovariate(step.rate_rps)
            if at >= start + step.seconds:
                break
            due.append(at)
        start += step.seconds
    return due


async def _drive(url: str, steps: Sequence[Step], body: Any, timeout_s: float,
                 seed: int) -> RampReport:
    import httpx

    due = schedule(steps, seed)
    results: list[Request] = []
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        began = time.perf_counter()

        async def one(at: float) -> None:
            status = 0
            try:
                response = await client.post(url, json=body)
                status = response.status_code
            except httpx.HTTPError:
                pass
            results.append(Request(at, (time.perf_counter() - began - at) * 1000.0, status))

        tasks = []
        for at in due:
            delay = at - (time.perf_counter() - began)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(at)))
        await asyncio.gather(*tasks)
    results.sort(key=lambda r: r.due_s)
    return RampReport(tuple(steps), tuple(results), sum(s.seconds for s in steps))


def drive(url: str, steps: Sequence[Step], *, body: Any = None, timeout_s: float = 10.0,
          seed: int = 0) -> RampReport:
    """POST ``body`` (JSON; None: an empty body) to ``url`` on the ramp's schedule."""
    if not steps:
        raise InputError("a load ramp needs at least one step")
    return asyncio.run(_drive(url, steps, body, timeout_s, seed))
