"""Checkpoint and resume through the real controller and LocalBackend: a preempted job
saves on the checkpoint signal, exits ``CHECKPOINTED``, is requeued with the record of its
checkpoint (in the requeue's transaction), and the next attempt resumes from it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from slicebox.controller.actions import RoundReport
from slicebox.sdk import CHECKPOINTED
from slicebox.snapshot import JobState

from .helpers import Setup

STEPS, PAUSE, EVERY = 40, 0.04, 10


def _checkpointing_job(setup: Setup, name: str = "counter", **fields: object) -> str:
    command = setup.python_job("checkpointing.py", str(STEPS), str(PAUSE), str(EVERY),
                               str(setup.root / f"{name}.json"))
    return setup.submit(name, command, **fields)


def _preempt_when(setup: Setup, job_id: str, samples: int, timeout: float = 60.0) -> None:
    """Run rounds until the job has reported ``samples``, then checkpoint-stop it."""
    controller = setup.controller or setup.new_controller()
    setup.run_until(lambda: (setup.store.job(job_id).samples or 0) >= samples
                    and setup.state_of(job_id) is JobState.RUNNING, timeout=timeout)
    controller.actions.checkpoint_stop(setup.store.job(job_id), "preempted by the test",
                                       RoundReport(0.0))


def test_preempted_job_checkpoints_and_resumes_where_it_stopped(tmp_path: Path):
    setup = Setup(tmp_path)
    job_id = _checkpointing_job(setup, checkpoint={"grace_seconds": 30})
    other = setup.state / "checkpoints" / "another-job"
    other.mkdir(parents=True)
    (other / "latest.json").write_text("{}")
    setup.new_controller()
    _preempt_when(setup, job_id, 15)
    setup.run_until(lambda: setup.store.job(job_id).attempt == 2, timeout=60)
    first = setup.store.checkpoints(job_id)
    assert len(first) == 1, first
    record = first[0]
    # Saved on request at the step boundary after the signal: nothing is redone.
    assert record.outcome == "checkpointed" and record.attempt == 1
    assert record.samples is not None and record.samples >= 15
    assert record.step == record.samples  # this job reports samples = step
    assert record.lost_samples == 0 and record.reported_samples == record.samples
    assert record.save_seconds is not None and record.save_seconds >= 0
    assert record.restore_seconds is None  # the first attempt started fresh
    folder = setup.state / "checkpoints" / job_id
    assert record.path is not None and Path(record.path).parent == folder
    assert setup.store.job(job_id).preemptions == 1
    events = setup.reasons(job_id)
    assert ("preempted", "preempted by the test (checkpointed)") in events

    setup.run_until(setup.finished(job_id), timeout=60)
    job = setup.store.job(job_id)
    assert job.state is JobState.SUCCEEDED, setup.reasons(job_id)
    result = json.loads((tmp_path / "counter.json").read_text())
    # Every step exactly once across the two attempts.
    assert {k: result[k] for k in ("steps", "sum", "attempts")} == {
        "steps": STEPS, "sum": STEPS * (STEPS + 1) // 2, "attempts": [1, 2]}
    if setup.controller is not None and setup.controller.backend.isolation.namespaces:
        # Its own folder is bound into the hidden state dir; another job's is not there.
        assert result["siblings"] == [job_id]
    records = setup.store.checkpoints(job_id)
    assert [r.outcome for r in records] == ["checkpointed", "succeeded"]
    assert records[1].restored_samples == record.samples
    assert records[1].restore_seconds is not None and records[1].restore_seconds >= 0
    summary = setup.store.checkpoint_summaries([job_id])[job_id]
    assert summary.requeues == 1 and summary.checkpointed == 1 and summary.lost_samples == 0
    assert summary.last_restore_seconds == records[1].restore_seconds


@pytest.mark.slow
def test_a_job_killed_at_its_grace_period_resumes_from_its_last_periodic_checkpoint(
        tmp_path: Path):
    """No time to save on request (grace 0: SIGKILL at once): the next attempt resumes
    from the last periodic checkpoint and redoes at most one interval, as recorded."""
    setup = Setup(tmp_path)
    job_id = _checkpointing_job(setup, checkpoint={"grace_seconds": 0})
    setup.new_controller()
    _preempt_when(setup, job_id, 25)
    setup.run_until(setup.finished(job_id), timeout=90)
    assert setup.state_of(job_id) is JobState.SUCCEEDED, setup.reasons(job_id)
    record = setup.store.checkpoints(job_id)[0]
    assert record.outcome == "killed"
    assert record.samples is not None and record.samples % EVERY == 0
    assert record.reported_samples is not None and record.reported_samples >= 25
    assert record.lost_samples == record.reported_samples - record.samples
    assert 0 <= record.lost_samples <= EVERY
    result = json.loads((tmp_path / "counter.json").read_text())
    assert result["sum"] == STEPS * (STEPS + 1) // 2 and result["attempts"] == [1, 2]


def test_a_job_that_exits_checkpointed_on_its_own_is_requeued_not_failed(tmp_path: Path):
    setup = Setup(tmp_path)
    job_id = setup.submit("once", [sys.executable, "-c", f"raise SystemExit({CHECKPOINTED})"])
    setup.new_controller()
    setup.run_until(lambda: setup.store.job(job_id).preemptions >= 1, timeout=30)
    kinds = [k for k, _ in setup.reasons(job_id)]
    assert "failed" not in kinds
    assert ("preempted", f"checkpointed on its own (exit code {CHECKPOINTED})") in \
        setup.reasons(job_id)


_TRY_WRITE = """
import os, sys
folder = os.environ["SLICEBOX_CHECKPOINT_PATH"]
try:
    with open(os.path.join(folder, "forged"), "w") as out:
        out.write("x")
    result = "wrote"
except OSError as exc:
    result = type(exc).__name__
with open(sys.argv[1], "w") as out:
    out.write(result)
"""


def test_a_checkpoint_path_inside_the_state_dir_stays_hidden(tmp_path: Path):
    """Only the job's own folder is bound into its namespace: a spec naming the exit
    records as its checkpoint path gets no way to forge another job's exit."""
    setup = Setup(tmp_path)
    exits = setup.state / "exit"
    exits.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "tried.txt"
    job_id = setup.submit("forger", [sys.executable, "-c", _TRY_WRITE, str(out)],
                          checkpoint={"path": str(exits)})
    controller = setup.new_controller()
    if not controller.backend.isolation.namespaces:
        pytest.skip("no private mount namespace here")
    setup.run_until(setup.finished(job_id), timeout=60)
    assert out.read_text() != "wrote"
    assert not (exits / "forged").exists()
