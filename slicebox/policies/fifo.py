"""Priority, then first-come first-served, with backfill of jobs that fit."""

from __future__ import annotations

from slicebox.policies.base import Policy
from slicebox.policies.registry import POLICIES
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobView


def keep_or_request(job: JobView) -> Assignment:
    """A running job keeps what it has; a waiting one asks for its minimum."""
    if job.current is not None:
        return job.current
    return Assignment(job.id, job.demand.gpus)


@POLICIES.register("fifo", "priority-fifo")
class Fifo(Policy):
    """Non-preemptive: running jobs keep their slices; waiting jobs follow in
    (priority desc, arrival) order, and any that fits the leftovers starts (backfill)."""

    name = "fifo"
    reads_progress = False

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        running = [keep_or_request(j) for j in snapshot.jobs if j.state.active]
        waiting = sorted(snapshot.waiting, key=lambda j: (-j.priority, j.submitted_at, j.id))
        return Decision(tuple(running) + tuple(keep_or_request(j) for j in waiting))
