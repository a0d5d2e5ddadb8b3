"""The autoscaler driving real model-server replicas through the balancer on a load ramp:
replicas are added as the rate rises and removed as it falls, and the seconds over the
objective are only those right after a step."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slicebox.serving.autoscaler import Autoscaler, Objective
from slicebox.serving.balancer import Balancer
from slicebox.serving.loadramp import Step, drive
from slicebox.serving.local_service import LocalService, prepare_weights
from slicebox.serving.replicas import LocalReplicas

pytestmark = pytest.mark.slow
OBJECTIVE = Objective(p99_ms=500.0)  # generous: this machine is shared and small
SETTLE_S = 4.0


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_replicas_follow_a_rising_then_falling_rate(tmp_path: Path) -> None:
    weights = tmp_path / "model.pt"
    prepare_weights(weights, train_seconds=1.0)
    cores = sorted(os.sched_getaffinity(0))[:2]
    # A planning capacity well below what a replica serves: the point is the decisions.
    scaler = Autoscaler(OBJECTIVE, 1, 2, replica_capacity_rps=8.0, up_after_s=1.0,
                        down_after_s=3.0)
    steps = [Step(4.0, 5.0), Step(14.0, 8.0), Step(4.0, 8.0)]
    with Balancer(health_interval_s=0.5, window_s=3.0,
                  objective_p99_ms=OBJECTIVE.p99_ms) as balancer:
        service = LocalService(balancer, LocalReplicas(weights, log_dir=tmp_path), cores, 1,
                               initial=1, autoscaler=scaler)
        with service:
            report = drive(balancer.url + "/predict", steps, body={"count": 16}, seed=3)
            timeline = list(service.timeline)
    counts = [(round(t.at_s), t.replicas) for t in timeline]
    assert max(c for _, c in counts) == 2, counts
    first_up = next(at for at, c in counts if c == 2)
    assert 5 <= first_up <= 5 + 4, counts  # up soon after the rate rose at 5 s
    healthy_two = [t.at_s for t in timeline if t.healthy == 2]
    assert healthy_two, "the second replica never became healthy"
    assert counts[-1][1] == 1, counts  # back down after the rate fell at 13 s
    assert report.errors == 0
    near_step, elsewhere = report.seconds_over_after_step(OBJECTIVE.p99_ms, SETTLE_S)
    assert elsewhere == 0, [s for s in report.per_second(OBJECTIVE.p99_ms) if s.over]
    assert near_step <= 2 * SETTLE_S
