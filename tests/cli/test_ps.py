"""``slicebox ps``: full ids at any width, the throughput a job's log reported, and the
work a checkpointed job lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.cli.common import console
from slicebox.pool.composition import Composition, Part
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import Store

runner = CliRunner()


def queued(store: Store, name: str) -> str:
    return store.submit(parse_spec({"name": name, "command": ["python", "-c", "pass"]}))


def run(store: Store, job_id: str) -> None:
    store.start(job_id, JobState.RUNNING, Composition(job_id, (Part("n0", (), (0,), 1.0),)),
                "placed")


def ps(state: Path, *args: str) -> str:
    result = runner.invoke(app, ["--state", str(state), "ps", "--all", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("width", [40, 60, 100])
def test_ids_are_printed_whole_at_any_terminal_width(tmp_path: Path, width: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(tmp_path)
    ids = [queued(store, f"a-rather-long-job-name-{i}") for i in range(3)]
    monkeypatch.setattr(console, "width", width)
    out = ps(tmp_path)
    assert all(job_id in out for job_id in ids), out


def test_a_finished_job_shows_the_throughput_its_log_reported(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    job_id = queued(store, "train")
    run(store, job_id)
    store.record_progress(job_id, 100.0, samples=1_000)
    store.record_progress(job_id, 101.0, samples=4_000)  # 3,000 samples/s
    # A job reports its final quality with the same sample count, then ends: no evidence
    # of zero throughput, and ps must not say 0.
    store.record_progress(job_id, 103.0, samples=4_000, quality=0.97)
    store.transition(job_id, JobState.SUCCEEDED, "exit code 0", exit_code=0)
    (row,) = json.loads(ps(tmp_path, "--json"))
    assert row["samples_per_s"] == pytest.approx(3_000)
    assert row["quality"] == pytest.approx(0.97)
    assert "3,000" in ps(tmp_path)


def test_a_repeated_count_does_not_move_the_point_rates_are_measured_from(
        tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    job_id = queued(store, "train")
    run(store, job_id)
    store.record_progress(job_id, 100.0, samples=1_000)
    store.record_progress(job_id, 102.0, samples=1_000, quality=0.5)  # an evaluation
    store.record_progress(job_id, 104.0, samples=5_000)  # 4,000 over 4 s, not over 2 s
    assert store.job(job_id).samples_per_s == pytest.approx(1_000)


def test_a_requeued_job_shows_its_lost_work_and_checkpoint_times(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slicebox.store.records import CheckpointRecord  # issue 11's checkpoints

    store = Store.open(tmp_path)
    job_id, other = queued(store, "resized"), queued(store, "plain")
    run(store, job_id)
    store.record_checkpoint(job_id, CheckpointRecord(
        job_id, 1, 10.0, "checkpointed", reason="resize: 1 -> 2 cores", path="/ck/7.pt",
        step=7, samples=700, save_seconds=0.25, reported_samples=900, lost_samples=200,
        restore_seconds=1.5))
    rows = {r["name"]: r for r in json.loads(ps(tmp_path, "--json"))}
    assert rows["resized"]["checkpoint"]["lost_samples"] == 200
    assert rows["resized"]["checkpoint"]["last_save_seconds"] == 0.25
    assert rows["plain"]["checkpoint"] is None
    monkeypatch.setattr(console, "width", 250)
    table = ps(tmp_path)
    line = next(x for x in table.splitlines() if job_id in x)
    assert "200" in line and "step 7" in line and "saved in 0.25s" in line
    assert "restored in 1.50s" in line
    assert other in table
