"""Chaos: the controller is killed with -9 at 100 random moments while jobs run and new
ones arrive. Afterwards every accepted job has succeeded exactly once: none lost, none
ever running twice at once (each job's lock would see it), no core held twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slicebox.snapshot import JobState

from .helpers import JOBS, Setup

KILLS = int(os.environ.get("SLICEBOX_CHAOS_KILLS", "100"))


@pytest.mark.slow
def test_100_random_kill_9s_lose_nothing_and_run_nothing_twice(tmp_path: Path):
    setup = Setup(tmp_path)
    rng = random.Random(8)
    sleeper = setup.python_job("sleeper.py", "0.6", str(setup.locks))
    jobs = [setup.submit(f"j{i}", sleeper) for i in range(4)]
    for kill in range(KILLS):
        controller = subprocess.Popen([sys.executable, str(JOBS / "run_controller.py"),
                                       str(setup.state), str(setup.pool_file)],
                                      stderr=subprocess.DEVNULL)
        # Import time varies; moments from "still starting" to "several rounds in".
        time.sleep(rng.uniform(0.3, 2.0))
        controller.send_signal(signal.SIGKILL)
        controller.wait()
        if kill % 2 == 0:  # jobs keep arriving while controllers die
            jobs.append(setup.submit(f"late{kill}", sleeper))
    setup.run_until(setup.finished(*jobs), timeout=240)
    states = {j: setup.state_of(j) for j in jobs}
    assert all(s is JobState.SUCCEEDED for s in states.values()), {
        j: (setup.reasons(j)[-3:], _log_tail(setup.state / "logs", j))
        for j, s in states.items() if s is not JobState.SUCCEEDED}
    assert not (setup.locks / "VIOLATIONS").exists(), (setup.locks / "VIOLATIONS").read_text()
    assert setup.store.core_conflicts() == []
    # Every attempt but the last ended before the next began (never twice at once).
    for job_id in jobs:
        attempts = setup.store.composition_history(job_id)
        for earlier, later in zip(attempts, attempts[1:], strict=False):
            assert earlier.ended_at is not None and earlier.ended_at <= later.started_at


def _log_tail(logs: Path, job_id: str) -> str:
    """The end of every log the job's attempts left, so a failure says why it exited."""
    return " | ".join(p.read_text(errors="replace")[-600:] for p in sorted(logs.glob(f"{job_id}*")))
