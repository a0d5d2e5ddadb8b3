"""``--json`` is one JSON document, or JSON Lines for a stream (``up``, ``logs -f``), and
nothing else reaches stdout; ``logs`` hides progress lines and ``logs -f`` waits for a job
that has not started."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.pool.composition import Composition, Part
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import Store

runner = CliRunner()
TWO_CORES = "name: two-cores\nnodes:\n  - {name: here, memory_gib: 2, cores: {0: \"0\"}}\n"
PROGRESS = ':::SLICEBOX {"time":1.0,"samples":10,"quality":null}'


def json_lines(stdout: str) -> list[dict]:
    """Every stdout line parsed as one JSON object (fails on anything else)."""
    return [json.loads(line) for line in stdout.splitlines()]


def started_job(state: Path, lines: list[str]) -> str:
    """A job that ran and wrote ``lines`` to its log, as the local backend leaves it."""
    store = Store.open(state)
    job_id = store.submit(parse_spec({"name": "talker", "command": ["python", "-c", "pass"]}))
    log = state / "logs" / f"{job_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(line + "\n" for line in lines))
    store.start(job_id, JobState.RUNNING, Composition(job_id, (Part("n0", (), (0,), 1.0),)),
                "placed")
    store.set_process(job_id, 4242, 1.0, log_path=str(log))
    return job_id


# ---- logs -------------------------------------------------------------------------------


def test_logs_hide_progress_lines_unless_raw_is_asked(tmp_path: Path) -> None:
    job_id = started_job(tmp_path, ["epoch 1 [a-z]", PROGRESS, "done"])
    plain = runner.invoke(app, ["--state", str(tmp_path), "logs", job_id])
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.splitlines() == ["epoch 1 [a-z]", "done"]
    raw = runner.invoke(app, ["--state", str(tmp_path), "logs", job_id, "--raw"])
    assert raw.stdout.splitlines() == ["epoch 1 [a-z]", PROGRESS, "done"]
    as_json = runner.invoke(app, ["--state", str(tmp_path), "logs", job_id, "--json"])
    assert json.loads(as_json.stdout)["lines"] == ["epoch 1 [a-z]", "done"]


def test_logs_follow_waits_for_a_queued_job_then_streams_until_it_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slicebox.cli.logs_cmd.POLL_SECONDS", 0.05)
    store = Store.open(tmp_path)
    job_id = store.submit(parse_spec({"name": "later", "command": ["python", "-c", "pass"]}))
    log = tmp_path / "logs" / f"{job_id}.log"

    def backend() -> None:  # what the controller and the job do, a little later
        time.sleep(0.5)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("starting\n")
        store.start(job_id, JobState.RUNNING,
                    Composition(job_id, (Part("n0", (), (0,), 1.0),)), "placed")
        store.set_process(job_id, 4242, 1.0, log_path=str(log))
        time.sleep(0.3)
        with log.open("a") as out:
            out.write(f"{PROGRESS}\nstep 1\nlast line, no newline")
        time.sleep(0.3)
        store.transition(job_id, JobState.SUCCEEDED, "exit code 0", exit_code=0)

    thread = threading.Thread(target=backend)
    thread.start()
    try:
        result = runner.invoke(app, ["--state", str(tmp_path), "logs", "later", "-f", "--json"])
    finally:
        thread.join()
    assert result.exit_code == 0, result.output
    records = json_lines(result.stdout)
    assert [r["line"] for r in records] == ["starting", "step 1", "last line, no newline"]
    assert {r["id"] for r in records} == {job_id}
    assert "waiting for job" in result.stderr


def test_logs_of_a_job_that_never_ran_says_so_on_stderr(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    job_id = store.submit(parse_spec({"name": "idle", "command": ["python", "-c", "pass"]}))
    result = runner.invoke(app, ["--state", str(tmp_path), "logs", job_id, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"id": job_id, "log_path": None, "lines": []}
    assert "has not run" in result.stderr
    store.request_cancel(job_id)
    followed = runner.invoke(app, ["--state", str(tmp_path), "logs", job_id, "-f"])
    assert followed.exit_code == 0 and followed.stdout == ""  # it ended without running


# ---- up --json: JSON Lines --------------------------------------------------------------


def test_up_json_is_json_lines_with_nothing_else_on_stdout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pool = tmp_path / "pool.yaml"
    pool.write_text(TWO_CORES)
    (tmp_path / "job.yaml").write_text(
        "name: hello\ncommand: [python, -c, \"print('hi')\"]\n"
        "resources: {cpus: 1, memory_gib: 1}\n")
    state = ["--state", str(tmp_path / "state")]
    submitted = runner.invoke(app, [*state, "submit", "job.yaml", "--pool", str(pool)])
    assert submitted.exit_code == 0, submitted.output
    result = runner.invoke(app, [*state, "up", "--until-idle", "--no-mlflow", "--json",
                                 "--interval", "0.2", "--pool", str(pool)])
    assert result.exit_code == 0, result.output
    rounds = json_lines(result.stdout)
    assert [r["started"] for r in rounds if r["started"]] == [[rounds[0]["started"][0]]]
    (ended,) = [f for r in rounds for f in r["finished"]]
    assert (ended["state"], ended["exit_code"]) == ("succeeded", 0)
    assert "controller up" in result.stderr


# ---- demo --json: the child's "wrote N rows" is not on stdout ----------------------------


def test_making_the_demo_data_prints_nothing_on_stdout(
        tmp_path: Path, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from slicebox.demo import run

    monkeypatch.setattr(run, "CLICKLOG_ROWS", 2_000)
    run.ensure_clicklog(tmp_path / "clicks.npz", Console(stderr=True))  # as demo --json
    out, err = capfd.readouterr()
    assert out == ""
    assert "2000" in err.replace(",", "")  # the child's own "wrote ... rows" line
    assert (tmp_path / "clicks.npz").is_file()
