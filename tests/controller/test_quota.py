"""Team quotas on a live controller with real processes: team a borrows team b's idle
core; when team b submits, a's borrowed job is checkpoint-stopped and b's job starts
within one round of its exit; a's job resumes from its checkpoint later and nothing is
lost (every job's running sum is exact)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from slicebox.backends.local import LocalBackend
from slicebox.controller import Controller
from slicebox.placement.placer import Placer
from slicebox.policies.quota import QuotaPolicy, configure
from slicebox.pool.files import load_pool_and_quotas
from slicebox.snapshot import JobState

from .helpers import CORES, NODE, Setup

# a's jobs must still be running when b submits (STEPS x PAUSE seconds, more when loaded)
A_STEPS, B_STEPS, PAUSE, EVERY = 60, 10, 0.1, 5

# ~35 s on two loaded cores: three checkpointing jobs (torch imports) and a resume.
pytestmark = [pytest.mark.skipif(len(CORES) < 2, reason="needs two cores"), pytest.mark.slow]


def _quota_pool(root: Path) -> Path:
    pool = {"name": "teams", "nodes": [{"name": NODE, "memory_gib": 8, "cores": {0: CORES[:2]}}],
            "quotas": {"a": {"cpus": 1}, "b": {"cpus": 1}}}
    path = root / "teams.yaml"
    path.write_text(yaml.safe_dump(pool))
    return path


def _setup(root: Path) -> tuple[Setup, Controller]:
    setup = Setup(root)
    setup.pool_file = _quota_pool(root)
    setup.pool, quotas = load_pool_and_quotas(setup.pool_file)
    setup.placer = Placer(setup.pool)
    policy = configure(QuotaPolicy(), setup.pool_file)
    assert isinstance(policy, QuotaPolicy) and set(policy.quotas.teams) == {"a", "b", "*"}
    assert policy.quotas == quotas
    setup.controller = Controller(setup.store, setup.pool, policy, setup.placer,
                                  LocalBackend(setup.state, node=NODE), setup.state,
                                  interval=0.05)
    return setup, setup.controller


def _job(setup: Setup, name: str, team: str, steps: int) -> str:
    command = setup.python_job("checkpointing.py", str(steps), str(PAUSE), str(EVERY),
                               str(setup.root / f"{name}.json"))
    return setup.submit(name, command, team=team, resources={"cpus": 1},
                        checkpoint={"grace_seconds": 60})


def test_team_b_reclaims_its_core_from_team_a_within_one_round(tmp_path: Path):
    setup, controller = _setup(tmp_path)
    a1 = _job(setup, "a1", "a", A_STEPS)
    a2 = _job(setup, "a2", "a", A_STEPS)
    # Both of a's jobs run: the second borrows b's idle core.
    setup.run_until(lambda: all((setup.store.job(j).samples or 0) >= 2 for j in (a1, a2)),
                    timeout=90)
    assert setup.state_of(a1) is JobState.RUNNING and setup.state_of(a2) is JobState.RUNNING

    b1 = _job(setup, "b1", "b", B_STEPS)
    rounds: list[dict[str, JobState]] = []
    end = time.monotonic() + 90
    while time.monotonic() < end and setup.state_of(b1) is not JobState.RUNNING:
        controller.run_once()
        rounds.append({j: setup.state_of(j) for j in (a1, a2, b1)})
        time.sleep(0.05)
    assert setup.state_of(b1) is JobState.RUNNING, rounds[-3:]
    # The newest borrowed job was the one preempted; a's job within its quota kept running.
    exited = next(i for i, r in enumerate(rounds) if r[a2] is not JobState.RUNNING)
    started = next(i for i, r in enumerate(rounds) if r[b1] is JobState.RUNNING)
    assert started - exited <= 1, rounds[exited - 1:started + 1]
    assert all(r[a1] is JobState.RUNNING for r in rounds)
    a2_now = setup.store.job(a2)
    assert a2_now.state in (JobState.QUEUED, JobState.PREEMPTED)
    assert a2_now.preemptions == 1
    assert setup.store.job(a1).preemptions == 0
    record = setup.store.checkpoints(a2)[0]
    assert record.outcome == "checkpointed" and record.attempt == 1
    assert any(kind == "preempted" and "team a borrows beyond its quota" in reason
               for kind, reason in setup.reasons(a2))

    # a's borrowed job comes back when a core frees up, from its checkpoint; all finish.
    setup.run_until(setup.finished(a1, a2, b1), timeout=180)
    for job_id, steps in ((a1, A_STEPS), (a2, A_STEPS), (b1, B_STEPS)):
        job = setup.store.job(job_id)
        assert job.state is JobState.SUCCEEDED, setup.reasons(job_id)
        done = json.loads((tmp_path / f"{setup.store.job(job_id).spec.name}.json").read_text())
        assert (done["steps"], done["sum"]) == (steps, steps * (steps + 1) // 2)
    assert setup.store.job(a2).attempt == 2
    assert json.loads((tmp_path / "a2.json").read_text())["attempts"] == [1, 2]
