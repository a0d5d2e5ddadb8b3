"""kill -9 of the controller while a job is saving the checkpoint it was asked for: the
job is not lost, nor its last good checkpoint. The next controller adopts the stopping
job (or records how it ended while no controller ran), records its checkpoint with the
requeue, and the job resumes from it and finishes with every step done exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slicebox import sdk
from slicebox.snapshot import JobState

from .helpers import JOBS, Setup

STEPS, PAUSE, EVERY, PREEMPT_AT, SLOW_SAVE = 40, 0.05, 10, 15, 4.0


def _wait(predicate, timeout: float = 60.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


@pytest.mark.slow
@pytest.mark.parametrize("job_ends_before_restart", [False, True],
                         ids=["adopted-while-saving", "ended-while-no-controller"])
def test_kill_9_of_the_controller_during_a_checkpoint(tmp_path: Path,
                                                      job_ends_before_restart: bool):
    setup = Setup(tmp_path)
    result = tmp_path / "counter.json"
    command = setup.python_job("checkpointing.py", str(STEPS), str(PAUSE), str(EVERY),
                               str(result))
    job_id = setup.submit("counter", command, env={"SLOW_STOP_SAVE": str(SLOW_SAVE)},
                          checkpoint={"grace_seconds": 60})
    folder = setup.state / "checkpoints" / job_id
    first = subprocess.Popen([sys.executable, str(JOBS / "preempting_controller.py"),
                              str(setup.state), str(setup.pool_file), job_id, str(PREEMPT_AT)])
    try:
        _wait(lambda: setup.store.job(job_id).stop is not None, what="the stop request")
        time.sleep(0.5)  # the signal is sent right after the stop is recorded
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # Killed mid-checkpoint: the job is still saving (SLOW_STOP_SAVE), and the last good
    # checkpoint (a periodic one) is on disk, whole.
    stopping = setup.store.job(job_id)
    assert stopping.state is JobState.RUNNING and stopping.stop is not None
    before = sdk.read_manifest(folder)
    assert before is not None and before["step"] is not None and before["step"] % EVERY == 0
    assert not (setup.state / "exit" / job_id).exists(), "the job did not wait to save"
    if job_ends_before_restart:
        _wait((setup.state / "exit" / job_id).exists, what="the job's exit record")

    controller = setup.new_controller()
    controller.start()
    if not job_ends_before_restart:
        assert setup.reasons(job_id)[-1][0] == "adopted"
    setup.run_until(setup.finished(job_id), timeout=120)
    job = setup.store.job(job_id)
    assert job.state is JobState.SUCCEEDED, setup.reasons(job_id)
    assert job.attempt == 2 and job.preemptions == 1
    record = setup.store.checkpoints(job_id)[0]
    assert record.outcome == "checkpointed" and record.attempt == 1
    assert record.samples is not None and record.samples >= PREEMPT_AT
    assert record.lost_samples == 0
    assert record.save_seconds is not None and record.save_seconds < SLOW_SAVE
    done = json.loads(result.read_text())
    assert (done["steps"], done["sum"], done["attempts"]) == (
        STEPS, STEPS * (STEPS + 1) // 2, [1, 2])
