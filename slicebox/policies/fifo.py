"""Priority, then first-come first-served, with backfill of jobs that fit."""

from __future__ import annotations

from slicebox.policies import common
from slicebox.policies.base import Policy
from slicebox.policies.registry import POLICIES
from slicebox.snapshot import ClusterSnapshot, Decision


@POLICIES.register("fifo", "priority-fifo")
class Fifo(Policy):
    """Non-preemptive: running jobs keep their slices; waiting jobs follow in
    (priority desc, arrival) order, and any that fits the leftovers starts (backfill)."""

    name = "fifo"
    reads_progress = False

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        running = [common.keep_or_request(j) for j in snapshot.jobs if j.state.active]
        waiting = sorted(snapshot.waiting, key=common.fifo_key)
        return Decision(tuple(running) + tuple(common.keep_or_request(j) for j in waiting))
