"""`slicebox run -- COMMAND`: a job without a file, through the same admission as submit."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.cli.run_cmd import default_name
from slicebox.store import Store


def invoke(state: Path, *args: str):
    return CliRunner().invoke(app, ["--state", str(state), *args])


def test_run_queues_the_command_as_an_argv_with_the_resources_asked(tmp_path: Path) -> None:
    result = invoke(tmp_path, "run", "--cpus", "1", "--memory-gib", "0.5", "--priority", "3",
                    "--json", "--", "python", "-c", "print('a; b')")
    assert result.exit_code == 0, result.output
    (job_id,) = json.loads(result.stdout)["submitted"]
    store = Store.open(tmp_path)
    try:
        job = store.job(job_id)
    finally:
        store.close()
    assert job.spec.command == ("python", "-c", "print('a; b')")  # never a shell line
    assert (job.spec.resources.cpus, job.spec.resources.memory_gib) == (1, 0.5)
    assert job.priority == 3 and job.name == "python"


def test_run_refuses_what_submit_refuses_and_queues_nothing(tmp_path: Path) -> None:
    bad = invoke(tmp_path, "run", "--cpus", "0", "--", "python", "x.py")
    assert bad.exit_code == 2 and "resources.cpus" in bad.output
    missing = invoke(tmp_path, "run", "--", "no-such-program-here")
    assert missing.exit_code == 2 and "not found" in missing.output
    listed = invoke(tmp_path, "ps", "--all", "--json")
    assert json.loads(listed.stdout) == []


def test_default_name_comes_from_the_script() -> None:
    assert default_name(["python", "-u", "train.py", "--lr", "1"]) == "train"
    assert default_name(["/usr/bin/My Tool"]) == "my-tool"
    assert default_name(["--"]) == "job"


def test_a_run_job_runs_to_the_end(tmp_path: Path) -> None:
    queued = invoke(tmp_path, "run", "--name", "hello", "--json", "--", "python", "-c",
                    "print('hello from slicebox run')")
    assert queued.exit_code == 0, queued.output
    (job_id,) = json.loads(queued.stdout)["submitted"]
    up = invoke(tmp_path, "up", "--until-idle", "--no-mlflow", "--interval", "0.2")
    assert up.exit_code == 0, up.output
    logs = invoke(tmp_path, "logs", job_id)
    assert "hello from slicebox run" in logs.stdout
