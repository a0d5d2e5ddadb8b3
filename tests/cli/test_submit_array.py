"""`slicebox submit --array`: one job per index, all or none, each told its index."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from slicebox.cli import app

SPEC = """name: arr
command: [python, -c, "import os; print('index', os.environ['SLICEBOX_ARRAY_INDEX'])"]
"""


def invoke(state: Path, *args: str):
    return CliRunner().invoke(app, ["--state", str(state), *args])


def test_an_array_queues_one_job_per_index_and_each_sees_its_index(tmp_path: Path) -> None:
    spec = tmp_path / "arr.yaml"
    spec.write_text(SPEC)
    queued = invoke(tmp_path, "submit", "--array", "0-1,5", "--json", str(spec))
    assert queued.exit_code == 0, queued.output
    ids = json.loads(queued.stdout)["submitted"]
    assert len(ids) == 3
    up = invoke(tmp_path, "up", "--until-idle", "--no-mlflow", "--interval", "0.2")
    assert up.exit_code == 0, up.output
    jobs = {j["id"]: j for j in json.loads(invoke(tmp_path, "ps", "--all", "--json").stdout)}
    assert [jobs[i]["name"] for i in ids] == ["arr-0", "arr-1", "arr-5"]
    for job_id, index in zip(ids, (0, 1, 5), strict=True):
        assert jobs[job_id]["state"] == "succeeded"
        assert f"index {index}" in invoke(tmp_path, "logs", job_id).stdout


def test_a_bad_array_or_a_name_too_long_for_it_queues_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "arr.yaml"
    spec.write_text(SPEC)
    bad = invoke(tmp_path, "submit", "--array", "3-1", str(spec))
    assert bad.exit_code == 2 and "--array" in bad.output
    huge = invoke(tmp_path, "submit", "--array", "0-20000", str(spec))
    assert huge.exit_code == 2 and "at most 10,000" in huge.output
    long_name = tmp_path / "long.yaml"
    long_name.write_text(SPEC.replace("name: arr", "name: " + "a" * 62))
    too_long = invoke(tmp_path, "submit", "--array", "0-11", str(spec), str(long_name))
    assert too_long.exit_code == 2 and "name" in too_long.output
    assert json.loads(invoke(tmp_path, "ps", "--all", "--json").stdout) == []
