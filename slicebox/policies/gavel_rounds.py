"""Gavel's round mechanism, as its own simulator runs it (stanford-futuredata/gavel,
``scheduler/scheduler.py`` in simulation mode), for the fidelity configuration.

What it reproduces, each round:

- **Time received per job and per worker type.** Every job starts with half a round on
  every type (``time_per_iteration / 2``); a job that ran a round is credited the round
  on the type it ran on.
- **Resets.** When the job set changed (an arrival or a completion) and at least
  ``reset_seconds`` (Gavel's ``minimum_time_between_allocation_resets``, 1,920 s) passed
  since the last reset (or none happened yet, or the cluster ran nothing last round), the
  allocation is recomputed and the time received goes back to half a round, the
  difference from what the allocation promised going into a per-type deficit. Between
  resets the allocation is stale: a job that arrived since has none, and is not run.
- **Priorities per worker type**: allocation over time received on that type; ties go to
  the larger deficit, then the larger allocation, then the earlier job.
- **Greedy fill**: the types are visited in Gavel's order (V100, P100, K80, shuffled every
  round with ``random.Random(seed + 5)`` for the heterogeneity-agnostic policy, as Gavel
  does for a policy whose name has no "Perf"), each type's jobs by priority; a job is
  taken once, if its whole scale factor fits in what is left of the type and its
  throughput there is not zero. A job without an allocation still uses up workers there
  (Gavel picks it, then finds no allocation when it assigns workers).

The ledger is state the policy builds from the snapshots it is shown, one per round, in
order: it needs to know which type each job ran on in the previous round, which the
snapshot's ``attained_gpu_seconds`` does not say.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from slicebox.snapshot import ClusterSnapshot, JobView

GAVEL_TYPE_ORDER = ("v100", "p100", "k80")  # scheduler.py: worker_types = [...]
RESET_SECONDS = 1920.0  # Scheduler(minimum_time_between_allocation_resets=1920)

Allocation = dict[str, dict[str, float]]  # job id -> kind -> share of time
Allocate = Callable[[Sequence[JobView], Sequence[str]], Allocation]
Rates = Sequence[float] | np.ndarray  # work/s of a job on each kind, in ``kinds`` order


def type_order(kinds: Sequence[str]) -> list[str]:
    """Gavel's fixed order for its three types, then any other kind by name."""
    rank = {name: i for i, name in enumerate(GAVEL_TYPE_ORDER)}
    return sorted(kinds, key=lambda k: (rank.get(k.lower(), len(rank)), k))


@dataclass
class RoundLedger:
    """Per-job, per-kind time received and deficits, and the allocation of the last reset."""

    round_seconds: float
    reset_seconds: float = RESET_SECONDS
    shuffle_seed: int | None = None  # None: fixed type order (Gavel's "Perf" policies)
    time: dict[str, dict[str, float]] = field(default_factory=dict)
    deficit: dict[str, dict[str, float]] = field(default_factory=dict)
    allocation: Allocation = field(default_factory=dict)
    last_reset: float = 0.0
    changed: bool = False
    ran: dict[str, str] = field(default_factory=dict)  # job -> kind, last round
    last_now: float | None = None
    _rng: random.Random | None = None

    def __post_init__(self) -> None:
        if self.shuffle_seed is not None:
            self._rng = random.Random(self.shuffle_seed + 5)

    def observe(self, snapshot: ClusterSnapshot, jobs: Sequence[JobView],
                kinds: Sequence[str]) -> None:
        """Credit last round's service, and take arrivals and completions into account."""
        now = snapshot.now
        present = {j.id for j in jobs}
        if self.last_now is not None:
            elapsed = max(now - self.last_now, 0.0)
            for job_id, kind in self.ran.items():
                if job_id in present:
                    self.time[job_id][kind] = self.time[job_id].get(kind, 0.0) + elapsed
        for job_id in [j for j in self.time if j not in present]:
            del self.time[job_id]
            self.deficit.pop(job_id, None)
            self.changed = True
        half = self.round_seconds / 2.0
        for job in jobs:
            if job.id not in self.time:
                self.time[job.id] = {k: half for k in kinds}
                self.deficit[job.id] = {k: 0.0 for k in kinds}
                self.changed = True
        if not self.ran:
            self.last_reset = 0.0  # nothing ran last round: Gavel forces a reset
        self.last_now = now

    def maybe_reset(self, now: float, jobs: Sequence[JobView], kinds: Sequence[str],
                    allocate: Allocate) -> None:
        due = now - self.last_reset >= self.reset_seconds or self.last_reset == 0.0
        if not (self.changed and due):
            return
        elapsed = now - self.last_reset
        half = self.round_seconds / 2.0
        for job_id, per_kind in self.time.items():
            promised = self.allocation.get(job_id, {})
            for k in kinds:
                received = per_kind.get(k, half) - half
                self.deficit[job_id][k] += promised.get(k, 0.0) * elapsed - received
                per_kind[k] = half
        self.last_reset = now
        self.allocation = allocate(jobs, kinds)
        self.changed = False

    def choose(self, jobs: Sequence[JobView], kinds: Sequence[str],
               capacity: Mapping[str, int], rates: Callable[[JobView], Rates],
               ) -> dict[str, str]:
        """Job id -> kind for the coming round, by Gavel's greedy fill."""
        order = type_order(kinds)
        if self._rng is not None:
            # Gavel shuffles a fresh [v100, p100, k80] (less absent types) every round.
            gavel = [k for k in order if k.lower() in GAVEL_TYPE_ORDER]
            self._rng.shuffle(gavel)
            order = gavel + [k for k in order if k.lower() not in GAVEL_TYPE_ORDER]
        index = {k: i for i, k in enumerate(kinds)}
        entries: list[tuple[JobView, str]] = []
        for kind in order:
            rows = []
            for job in jobs:
                alloc = self.allocation.get(job.id)
                x = alloc.get(kind, 0.0) if alloc is not None else 0.0
                # Allocation over time received; Gavel's ratio to the type's total time
                # is the same factor for every job of the type, so it cannot reorder.
                priority = x / self.time[job.id][kind] if x > 0.0 else 0.0
                rows.append((priority, self.deficit[job.id][kind], x, job))
            rows.sort(key=lambda r: (r[0], r[1], r[2]), reverse=True)  # stable: earlier job first
            entries += [(r[3], kind) for r in rows]
        left = {k: float(capacity.get(k, 0)) for k in kinds}
        chosen: dict[str, str] = {}
        for job, kind in entries:
            if left[kind] <= 0 or job.id in chosen:
                continue
            if rates(job)[index[kind]] <= 0.0:
                continue
            gpus = float(job.demand.gpus)
            if gpus > left[kind]:
                continue
            left[kind] -= gpus
            chosen[job.id] = kind
        # Gavel picked jobs without an allocation too (they used up workers above) but
        # assigns them no workers.
        run = {j: k for j, k in chosen.items() if j in self.allocation}
        self.ran = run
        return run
