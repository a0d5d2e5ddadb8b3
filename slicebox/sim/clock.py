"""The simulated clock and its events.

Three kinds of moments move the clock: an arrival (read from the jobs sorted by arrival,
not from the heap, so a trace of 80,000 jobs never sits in it), a job's completion or
the end of its setup (staging or restart) from the heap, and (in round mode) a round
tick. Heap entries are never removed: each carries a token, and an entry whose token no
longer matches its job's is stale and skipped (a completion once the job's speed
changed, the end of a setup once the job was stopped or started again).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

COMPLETE, READY = 0, 1  # event codes
EPS = 1e-6  # events this close together happen at once


class EventClock:
    """Now, the arrivals still to come, the pending events and the next round tick."""

    def __init__(self, arrivals: Sequence[float], round_seconds: float | None) -> None:
        self.now = 0.0
        self._arrivals = arrivals  # sorted
        self.next_arrival = 0  # index of the next job to arrive
        self._heap: list[tuple[float, int, int, int, int]] = []
        self._seq = 0
        self.round_seconds = round_seconds
        self.next_tick = arrivals[0] if arrivals and round_seconds else math.inf

    # -- events --------------------------------------------------------------------

    def push(self, when: float, code: int, handle: int, token: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, code, handle, token))

    def due(self) -> list[tuple[int, int, int]]:
        """(code, handle, token) of every event at now, in the order they were pushed."""
        heap, limit, out = self._heap, self.now + EPS, []
        while heap and heap[0][0] <= limit:
            _, _, code, handle, token = heapq.heappop(heap)
            out.append((code, handle, token))
        return out

    def arrived(self) -> range:
        """Indexes of the jobs that arrive at now (consumed: each is returned once)."""
        first, arrivals, limit = self.next_arrival, self._arrivals, self.now + EPS
        last = first
        while last < len(arrivals) and arrivals[last] <= limit:
            last += 1
        self.next_arrival = last
        return range(first, last)

    @property
    def pending_events(self) -> bool:
        return bool(self._heap)

    @property
    def arrivals_left(self) -> bool:
        return self.next_arrival < len(self._arrivals)

    # -- moving on -----------------------------------------------------------------

    def advance(self, idle: bool) -> float:
        """The next moment anything happens (inf: nothing will). ``idle``: no job is
        waiting or running, so in round mode the next tick is the first one after the
        next arrival rather than every empty round in between."""
        t_arrival = (self._arrivals[self.next_arrival] if self.arrivals_left else math.inf)
        t_event = self._heap[0][0] if self._heap else math.inf
        rounds = self.round_seconds
        if not rounds:
            return min(t_arrival, t_event)
        if idle:
            if t_arrival == math.inf and t_event == math.inf:
                return math.inf
            if t_arrival < math.inf and self.next_tick < t_arrival:
                self.next_tick += math.ceil((t_arrival - self.next_tick) / rounds) * rounds
        return min(t_arrival, t_event, self.next_tick)

    def tick_due(self) -> bool:
        """In round mode, whether now is a round boundary (and move to the next one)."""
        if not self.round_seconds or self.now + EPS < self.next_tick:
            return False
        self.next_tick += self.round_seconds
        return True


class ManualClock:
    """Time that moves only when told. Given as the clock of the live controller, its
    store and the in-memory backend, it runs them on the simulator's notion of time:
    ``clock()`` is now, and a driver moves it from event to event."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance_to(self, when: float) -> None:
        if when < self.now:
            raise ValueError(f"time runs forward: {when} is before now ({self.now})")
        self.now = when
