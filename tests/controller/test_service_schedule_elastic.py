"""A service's schedule moves capacity at its boundary by shrinking elastic training jobs
(issue 13, "preempting with checkpoints where the elastic-jobs issue allows it, and
otherwise by waiting for jobs to end"): with an elastic policy, the replicas a window asks
for are waiting jobs like any other, so ``resize_cores`` checkpoint-stops the elastic job
and restarts it smaller to seat them, in the same round. A rigid job is waited for instead
(``test_services.py``)."""

from __future__ import annotations

from pathlib import Path

from slicebox import policies
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec

from .test_services import World


def test_at_the_window_start_an_elastic_training_job_shrinks_to_seat_the_replicas(
        tmp_path: Path) -> None:
    world = World(tmp_path)  # one node, 8 cores; the clock's time of day is UTC
    world.controller.policy = policies.get("fifo-elastic")
    world.clock.advance_to(7 * 3600 + 50 * 60)  # 07:50
    training = world.store.submit(parse_spec({
        "name": "train", "command": ["true"], "resources": {"cpus": {"min": 2, "max": 7}}}))
    world.submit(min_replicas=1, max_replicas=6,
                 schedule=[{"hours": "08:00-20:00", "at_least": 0.5}])
    world.scaler.want = 1  # no traffic: the autoscaler alone would keep one replica
    world.rounds(3)
    assert len(world.running()) == 1
    job = world.store.job(training)
    assert job.state is JobState.RUNNING and job.composition is not None
    assert job.composition.core_count == 7  # all the service leaves
    # It has trained a while (an elastic policy leaves a job that has not reported yet alone).
    world.store.record_progress(training, world.clock.now, samples=100)
    world.clock.advance_to(world.clock.now + 60)
    world.store.record_progress(training, world.clock.now, samples=6100)

    world.clock.advance_to(8 * 3600)  # 08:00: half of 8 cores = 4 one-core replicas
    world.rounds(6)
    assert world.store.find_service("web").desired == 4
    assert len(world.running()) == 4
    job = world.store.job(training)
    assert job.state is JobState.RUNNING and job.composition is not None
    assert job.composition.core_count == 4  # shrank from 7 to what the replicas leave
    stops = [e.reason for e in world.store.events(training) if e.kind == "stopping"]
    assert len(stops) == 1 and stops[0].startswith("resize 7\u21924 cores"), stops
    assert job.attempt == 2 and job.preemptions >= 1
