"""Shortest remaining time first, preemptive.

The remaining time is the job's remaining work over its speed on its requested GPUs of
the reference kind (``JobView.reference_rate``): heterogeneity-agnostic on purpose,
as the classic policy is. Jobs take GPUs in that order while the pool lasts; a running
job that no longer fits is preempted.
"""

from __future__ import annotations

import numpy as np

from slicebox.policies import common
from slicebox.policies.base import Policy
from slicebox.policies.registry import POLICIES
from slicebox.snapshot import ClusterSnapshot, Decision


@POLICIES.register("srtf", "shortest-remaining")
class Srtf(Policy):
    name = "srtf"
    preemptive = True
    progress_when_contended = True

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        running, waiting = common.split(snapshot.jobs)
        if common.free_fits(waiting, snapshot):
            order = np.lexsort((common.submitted(waiting), common.remaining_seconds(waiting)))
            return Decision(tuple(common.everyone(running, waiting, order)))
        jobs = snapshot.jobs
        remaining = common.remaining_seconds(jobs)
        order = np.lexsort((common.submitted(jobs), remaining))
        return Decision(tuple(common.greedy_fill(jobs, order, snapshot)))
