"""Resizing through the real controller and LocalBackend: an elastic job grows into a core
another job leaves, and shrinks for a higher-priority job, each time as one action (a
checkpoint-stop with the reason "resize 1→2 cores", then a restart at the new size that
resumes from the checkpoint). Nothing is lost.

The speeds are a given profile here (the slow test in ``test_elastic_recsys.py`` measures
real ones); the point is the controller's side of a resize."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slicebox.backends.local import LocalBackend
from slicebox.controller import Controller
from slicebox.policies.elastic import ElasticFifo, ElasticRules
from slicebox.profiles.table import ProfileEntry, ProfileTable
from slicebox.snapshot import JobState

from .helpers import NODE, Setup

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")

STEPS, PAUSE, EVERY = 150, 0.05, 10
# Restarts are cheap here and the profile says 2 cores are 1.5x: growing pays quickly,
# once the job has run long enough to have installed its checkpoint-signal handler.
RULES = ElasticRules(restart_seconds=0.2, min_interval=4.0)


def _controller(setup: Setup) -> Controller:
    profiles = ProfileTable([ProfileEntry("counter", "cpu", 1.0, "fp32", 100.0, "bench"),
                             ProfileEntry("counter", "cpu", 2.0, "fp32", 150.0, "bench")])
    setup.controller = Controller(setup.store, setup.pool, ElasticFifo(RULES), setup.placer,
                                  LocalBackend(setup.state, node=NODE), setup.state,
                                  profiles=profiles, interval=0.05)
    return setup.controller


def _cores_by_attempt(setup: Setup, job_id: str) -> list[int]:
    return [c.composition.core_count for c in setup.store.composition_history(job_id)]


@pytest.mark.slow  # three attempts of a torch job and two other jobs: ~30 s when loaded
def test_elastic_job_grows_into_a_freed_core_and_shrinks_for_a_higher_priority_job(
        tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    _controller(setup)
    blocker = setup.submit("blocker", setup.python_job("sleeper.py", "1.5", str(setup.locks)),
                           resources={"cpus": 1})
    result = tmp_path / "counter.json"
    elastic = setup.submit(
        "counter", setup.python_job("checkpointing.py", str(STEPS), str(PAUSE), str(EVERY),
                                    str(result)),
        workload="counter", resources={"cpus": {"min": 1, "max": 2}},
        checkpoint={"grace_seconds": 30})
    setup.run_until(lambda: setup.state_of(elastic) is JobState.RUNNING)
    assert _cores_by_attempt(setup, elastic) == [1]  # the blocker holds the other core

    # The blocker ends: the job is checkpoint-stopped and restarted on both cores.
    setup.run_until(lambda: _cores_by_attempt(setup, elastic) == [1, 2], timeout=60)
    events = setup.reasons(elastic)
    grow = [r for k, r in events if k == "stopping"]
    assert len(grow) == 1 and grow[0].startswith("resize 1\u21922 cores"), events
    assert setup.state_of(blocker) is JobState.SUCCEEDED

    # A higher-priority job arrives: the elastic job gives its borrowed core back.
    # ... once the restarted attempt itself has reported progress: before that it may not
    # have installed its checkpoint-signal handler yet (a loaded machine starts it slowly).
    resumed_at = setup.store.job(elastic).samples or 0
    setup.run_until(lambda: setup.store.job(elastic).reported_at is not None
                    and (setup.store.job(elastic).samples or 0) >= max(60, resumed_at + 10),
                    timeout=60)
    urgent = setup.submit("urgent", setup.python_job("sleeper.py", "1", str(setup.locks)),
                          resources={"cpus": 1}, priority=5)
    setup.run_until(lambda: setup.state_of(urgent) is JobState.RUNNING, timeout=60)
    assert _cores_by_attempt(setup, elastic)[:3] == [1, 2, 1]
    shrink = [r for k, r in setup.reasons(elastic) if k == "stopping"][1]
    assert shrink.startswith("resize 2\u21921 cores") and urgent in shrink

    setup.run_until(setup.finished(elastic, urgent), timeout=120)
    assert setup.state_of(elastic) is JobState.SUCCEEDED, setup.reasons(elastic)
    # Nothing lost, nothing done twice: every step counted exactly once over the attempts.
    done = json.loads(result.read_text())
    assert done["steps"] == STEPS and done["sum"] == STEPS * (STEPS + 1) // 2
    records = setup.store.checkpoints(elastic)
    resizes = records[:2]  # (the last record is the finished attempt's restore)
    assert [r.outcome for r in resizes] == ["checkpointed", "checkpointed"], records
    assert [r.lost_samples for r in resizes] == [0, 0], records
    assert [r.reason.split(":")[0] for r in resizes] == ["resize 1\u21922 cores",
                                                         "resize 2\u21921 cores"]
    assert not (setup.locks / "VIOLATIONS").exists()


def test_plain_fifo_never_resizes(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    setup.new_controller()  # the default policy
    result = tmp_path / "counter.json"
    elastic = setup.submit(
        "counter", setup.python_job("checkpointing.py", "20", str(PAUSE), str(EVERY),
                                    str(result)),
        workload="counter", resources={"cpus": {"min": 1, "max": 2}})
    setup.run_until(setup.finished(elastic), timeout=60)
    assert setup.state_of(elastic) is JobState.SUCCEEDED
    assert _cores_by_attempt(setup, elastic) == [1]
