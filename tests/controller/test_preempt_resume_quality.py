"""The must-show: a training job preempted 3 times through the real controller and
LocalBackend reaches the same final quality as an uninterrupted run with the same seed
(within 0.5 %), and each preemption redoes at most one checkpoint interval of steps, as
the store recorded it. Two jobs side by side: one saves on the checkpoint signal, one is
killed at once (grace 0) and so resumes from its last periodic checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slicebox.controller.actions import RoundReport
from slicebox.snapshot import JobState

from .helpers import Setup

EVERY = 10  # steps between periodic checkpoints
BATCH = 32  # the image workload's batch (full size)
ARGS = ["-m", "slicebox.bench.run", "image", "--epochs", "2", "--target", "2", "--seed", "7",
        "--checkpoint-every", str(EVERY)]
PREEMPT_AT = (500, 1200, 1900)  # samples reported before each of the 3 preemptions (of 2876)
RESULT_KIND = "slicebox.bench.result"


def _result(text: str) -> dict[str, object]:
    for line in reversed(text.splitlines()):
        if RESULT_KIND in line and line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no result line in:\n{text[-3000:]}")


@pytest.mark.slow
def test_three_preemptions_reach_the_quality_of_an_uninterrupted_run(tmp_path: Path):
    setup = Setup(tmp_path)
    resources = {"cpus": 1, "memory_gib": 2}
    graceful = setup.submit("graceful", [sys.executable, *ARGS], resources=resources,
                            checkpoint={"grace_seconds": 60})
    killed = setup.submit("killed", [sys.executable, *ARGS], resources=resources,
                          checkpoint={"grace_seconds": 0})
    # The uninterrupted run, meanwhile: same seed, one thread as the jobs have.
    baseline = subprocess.Popen([sys.executable, *ARGS, "--threads", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    controller = setup.new_controller()
    done = {graceful: 0, killed: 0}  # preemptions so far

    def step() -> bool:
        for job_id, count in done.items():
            job = setup.store.job(job_id)
            if (count < len(PREEMPT_AT) and job.state is JobState.RUNNING
                    and job.stop is None and job.attempt == count + 1
                    and job.reported_at is not None and (job.samples or 0) >= PREEMPT_AT[count]):
                controller.actions.checkpoint_stop(job, f"test preemption {count + 1}",
                                                   RoundReport(0.0))
                done[job_id] = count + 1
        return all(setup.state_of(j).terminal for j in done)

    try:
        setup.run_until(step, timeout=900)
        base_out, _ = baseline.communicate(timeout=900)
    finally:
        baseline.kill()
    expected = _result(base_out)
    for job_id in (graceful, killed):
        job = setup.store.job(job_id)
        assert job.state is JobState.SUCCEEDED, setup.reasons(job_id)
        assert job.attempt == 4 and job.preemptions == 3
        got = _result((setup.state / "logs" / f"{job_id}.log").read_text())
        assert got["train_samples"] == expected["train_samples"]
        quality, reference = float(got["quality"]), float(expected["quality"])
        assert abs(quality - reference) <= 0.005 * reference, (quality, reference)
        records = setup.store.checkpoints(job_id)
        requeued = [r for r in records if r.outcome in ("checkpointed", "killed")]
        assert len(requeued) == 3, records
        for record in requeued:
            assert record.lost_samples is not None
            assert record.lost_samples <= EVERY * BATCH, record
        final = records[-1]
        assert final.outcome == "succeeded" and final.restore_seconds is not None
        assert final.lost_samples is None  # it was not requeued: nothing redone after it
        print(f"\n{setup.store.job(job_id).name}: quality {quality:.6f} vs {reference:.6f}; "
              + "; ".join(f"attempt {r.attempt}: {r.outcome}, lost {r.lost_samples} samples "
                          f"({(r.lost_samples or 0) / BATCH:.1f} steps), save "
                          f"{r.save_seconds or 0:.3f}s, restore {r.restore_seconds or 0:.3f}s"
                          for r in records))
    graceful_records = setup.store.checkpoints(graceful)[:3]
    assert [r.outcome for r in graceful_records] == ["checkpointed"] * 3
    assert [r.outcome for r in setup.store.checkpoints(killed)[:3]] == ["killed"] * 3
