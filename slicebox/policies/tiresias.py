"""Tiresias: discretised two-dimensional least-attained-service (NSDI'19), preemptive.

Service is two-dimensional: GPUs x time (``attained_gpu_seconds``). Jobs sit in
priority queues by attained service: queue 0 until ``thresholds[0]`` GPU-seconds,
queue 1 until ``thresholds[1]``, and so on; a job that crosses a threshold is demoted.
Inside a queue jobs go first-come first-served (Tiresias' choice, which keeps jobs
from preempting each other back and forth). Starvation guard: a job that has waited
``promote_after`` times as long as it last ran (and at least ``min_wait`` seconds)
goes back to queue 0, as Tiresias' PROMOTE knob does. Jobs take GPUs in queue order
while the pool lasts; running jobs past the end are preempted.

No job length is needed: that is Tiresias' point (the Gittins-index variant that
uses a length distribution is not implemented).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from slicebox.policies import common
from slicebox.policies.base import Policy
from slicebox.policies.registry import POLICIES
from slicebox.snapshot import ClusterSnapshot, Decision


@POLICIES.register("tiresias", "2d-las", "las")
class Tiresias(Policy):
    name = "tiresias"
    preemptive = True
    progress_when_contended = True
    #: GPU-seconds at which a job moves down one queue (3,600 GPU-s is one GPU-hour).
    thresholds: ClassVar[tuple[float, ...]] = (3_600.0, 36_000.0)
    promote_after: ClassVar[float] = 8.0
    min_wait: ClassVar[float] = 3_600.0

    def queues(self, snapshot: ClusterSnapshot) -> np.ndarray:
        """Queue index of each job of the snapshot (0 is served first)."""
        jobs = snapshot.jobs
        attained = np.fromiter((j.attained_gpu_seconds for j in jobs), float, len(jobs))
        queue = np.searchsorted(np.asarray(self.thresholds), attained, side="right")
        # Promotion: waited long relative to the service it got (time at its GPU count).
        for i, job in enumerate(jobs):
            if job.waiting and queue[i] > 0:
                waited = snapshot.now - job.submitted_at - job.attained_gpu_seconds / max(
                    common.share(job), 1e-9)
                ran = job.attained_gpu_seconds / max(common.share(job), 1e-9)
                if waited >= max(self.min_wait, self.promote_after * ran):
                    queue[i] = 0
        return queue

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        running, waiting = common.split(snapshot.jobs)
        if common.free_fits(waiting, snapshot):
            attained = np.fromiter((j.attained_gpu_seconds for j in waiting), float,
                                   len(waiting))
            queue = np.searchsorted(np.asarray(self.thresholds), attained, side="right")
            order = np.lexsort((common.submitted(waiting), queue))
            return Decision(tuple(common.everyone(running, waiting, order)))
        jobs = snapshot.jobs
        order = np.lexsort((common.submitted(jobs), self.queues(snapshot)))
        return Decision(tuple(common.greedy_fill(jobs, order, snapshot)))
