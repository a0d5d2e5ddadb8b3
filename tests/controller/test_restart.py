"""kill -9 of the controller while two jobs run, then a new controller: every accepted job
is still accounted for (the live one adopted, the dead one requeued) and none runs twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from slicebox.snapshot import JobState

from .helpers import JOBS, Setup


def _wait(predicate, timeout: float = 20.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _controller_process(setup: Setup) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(JOBS / "run_controller.py"),
                             str(setup.state), str(setup.pool_file)])


def test_kill_9_controller_then_restart(tmp_path: Path):
    setup = Setup(tmp_path)
    sleeper = setup.python_job("sleeper.py", "3", str(setup.locks))
    survivor = setup.submit("survivor", sleeper)
    victim = setup.submit("victim", sleeper)
    first = _controller_process(setup)
    try:
        def both_reporting() -> bool:
            jobs = [setup.store.job(j) for j in (survivor, victim)]
            return all(j.state is JobState.RUNNING and j.samples for j in jobs)

        _wait(both_reporting, what="both jobs running under the first controller")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    before = {j: setup.store.job(j) for j in (survivor, victim)}
    # While no controller runs: one job dies with everything it had, another is accepted.
    os.killpg(before[victim].pid, signal.SIGKILL)
    _wait(lambda: _gone(before[victim].pid), what="victim gone")
    late = setup.submit("late", ["true"])

    controller = setup.new_controller()
    controller.start()  # takes over the lease of the dead controller at once, reconciles
    assert setup.store.lease().controller_id == controller.id
    survivor_now = setup.store.job(survivor)
    assert survivor_now.state is JobState.RUNNING and survivor_now.pid == before[survivor].pid
    assert setup.reasons(survivor)[-1] == (
        "adopted", f"adopted process {before[survivor].pid} after controller restart")
    assert setup.reasons(victim)[-2:] == [("preempted", "controller restarted; process gone"),
                                          ("queued", "requeued")]

    setup.run_until(setup.finished(survivor, victim, late), timeout=30)
    for job_id in (survivor, victim, late):
        assert setup.state_of(job_id) is JobState.SUCCEEDED, setup.reasons(job_id)
    # The adopted job was not our child: its exit code came from the launcher's record.
    assert setup.store.job(survivor).exit_code == 0
    assert setup.store.job(survivor).attempt == 1 and setup.store.job(victim).attempt == 2
    # Never twice at once: the job's own lock saw no second holder, and the attempts of
    # the victim did not overlap in time.
    assert not (setup.locks / "VIOLATIONS").exists()
    first_try, second_try = setup.store.composition_history(victim)
    assert first_try.ended_at is not None and first_try.ended_at <= second_try.started_at
    assert setup.store.core_conflicts() == []


def test_a_job_that_ended_while_no_controller_ran_keeps_its_result(tmp_path: Path):
    setup = Setup(tmp_path)
    job_id = setup.submit("quick", setup.python_job("sleeper.py", "3", str(setup.locks)))
    first = _controller_process(setup)
    try:
        _wait(lambda: bool(setup.store.job(job_id).samples), what="job reporting")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    exit_file = setup.state / "exit" / job_id
    _wait(exit_file.exists, what="the launcher's exit record")
    setup.new_controller().start()
    job = setup.store.job(job_id)
    assert job.state is JobState.SUCCEEDED and job.exit_code == 0
    assert job.reason == "exit code 0 (ended while no controller ran)"
