"""Resizing running jobs: when to ask the policy again, and how a resize is described.

A resize is a running job whose assignment in the decision differs in size from what it
holds: placement stops it and places it again at the new size (``PlacementRound``). The
controller turns that into one action: a checkpoint-stop with the reason "resize 1→2
cores"; once the process is gone the job is requeued, and the policy (which sees the
freed cores) starts it at its new size, where it restores its checkpoint.

An event-driven policy is asked only when something changed. A job that may grow into
idle cores changes nothing by itself, and whether growing pays depends on how long it has
run: while one could, the policy is asked again every ``RECHECK_SECONDS``.
"""

from __future__ import annotations

from collections.abc import Iterable

from slicebox.placement.state import PoolState
from slicebox.policies.elastic import honour_resizes
from slicebox.pool.composition import Composition
from slicebox.snapshot import ClusterSnapshot, Decision, JobState
from slicebox.store import JobRecord

RECHECK_SECONDS = 5.0


class ElasticWatch:
    """Remembers whether an elastic job could grow at the last decision, and the sizes
    of the jobs being resized until they start again."""

    def __init__(self, recheck_seconds: float = RECHECK_SECONDS) -> None:
        self.recheck_seconds = recheck_seconds
        self._could_grow = False
        self._checked_at = float("-inf")
        # Job id -> cores it was resized to (kept in memory only: a controller that
        # restarts lets the policy choose again, which is as safe, if less steady).
        self._targets: dict[str, int] = {}

    def resizing(self, job_id: str, cores: int) -> None:
        self._targets[job_id] = cores

    def restart_resized(self, snapshot: ClusterSnapshot, decision: Decision) -> Decision:
        """The decision with resized jobs started at their new size where there is room
        (``honour_resizes``); the sizes of jobs no longer waiting are forgotten."""
        if not self._targets:
            return decision
        # Kept while the job waits, or is out of the snapshot (still being stopped); a job
        # that started again (or ended while stopping) drops out.
        shown = {j.id: j.waiting for j in snapshot.jobs}
        self._targets = {k: v for k, v in self._targets.items() if shown.get(k, True)}
        return honour_resizes(snapshot, decision, self._targets)

    def note(self, jobs: Iterable[JobRecord], state: PoolState, now: float) -> bool:
        """Whether a running job may take more cores than it holds, and some are free."""
        self._checked_at = now
        free = state.capacity().free_cpus
        self._could_grow = free > 0 and any(_below_max(j) for j in jobs)
        return self._could_grow

    def due(self, now: float) -> bool:
        """Ask the policy again although nothing changed: an elastic job could grow."""
        return self._could_grow and now - self._checked_at >= self.recheck_seconds


def _below_max(job: JobRecord) -> bool:
    comp = job.composition
    if job.state is not JobState.RUNNING or job.stop is not None or comp is None:
        return False
    res = job.spec.resources
    return res.max_cpus > comp.core_count and not comp.slices


def _size(comp: Composition) -> tuple[int, int]:
    return comp.core_count, len(comp.slices)


def resize_reason(old: Composition, new: Composition, why: str | None) -> str:
    """"resize 1→2 cores" (and GPUs, where their count changes), with the policy's why."""
    (cores_was, gpus_was), (cores, gpus) = _size(old), _size(new)
    parts = []
    if cores != cores_was:
        parts.append(f"{cores_was}\u2192{cores} cores")
    if gpus != gpus_was:
        parts.append(f"{gpus_was}\u2192{gpus} GPUs")
    text = "resize " + (", ".join(parts) if parts else "(new shape)")
    if why:
        detail = why.split(": ", 1)[1] if why.startswith("resize ") and ": " in why else why
        text += f": {detail}"
    return text
