"""Every registered policy: found by name, pure, and sane on a hand-made snapshot."""

from __future__ import annotations

import copy

import pytest

from slicebox import policies
from slicebox.snapshot import NodeView
from tests.policies.helpers import TableProfiles, job, snapshot

NAMES = ["fifo", "srtf", "tiresias", "gavel", "synergy", "fgd", "slicebox"]


def test_every_policy_is_registered() -> None:
    assert set(NAMES) <= set(policies.names())


@pytest.mark.parametrize("name", NAMES)
def test_decide_is_pure_and_only_names_known_jobs(name: str) -> None:
    profiles = TableProfiles({("w", "V100"): 1.0, ("w", "K80"): 0.3})
    jobs = [job("r", remaining=50, running_on="V100", attained=100.0),
            job("a", remaining=10, submitted=1.0), job("b", gpus=2, remaining=30,
                                                       submitted=2.0)]
    nodes = [NodeView("n1", "V100", (0.0, 1.0, 1.0, 1.0), 30.0, 200.0),
             NodeView("n2", "K80", (1.0, 1.0), 10.0, 100.0)]
    snap = snapshot(jobs, {"V100": 4, "K80": 2}, now=3.0, profiles=profiles, nodes=nodes,
                    round_seconds=360.0)
    before = copy.deepcopy(snap.jobs)
    policy = policies.get(name)
    first = policy.decide(snap)
    second = policy.decide(snap)
    assert first.run == second.run
    assert snap.jobs == before
    chosen = [a.job_id for a in first.run]
    assert len(chosen) == len(set(chosen))
    assert set(chosen) <= {"r", "a", "b"}
