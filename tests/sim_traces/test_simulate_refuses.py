"""Issue 8's simulator repros through `slicebox simulate` itself: each ends at once with
exit code 2 and a one-line message naming the file (and the line where there is one),
never a traceback and never a hang."""

from __future__ import annotations

import os
import pathlib

import pytest
from typer.testing import CliRunner

from slicebox.cli import app
from tests.guard import time_limit

runner = CliRunner()
PHILLY_HEADER = "timestamp,duration,num_gpus,gpu_time,cluster\n"
POLLUX_HEADER = "name,time,application,num_replicas,batch_size\n"


@pytest.mark.parametrize(("name", "text", "pool", "where"), [
    ("philly.csv", PHILLY_HEADER + "nan,5,1,5,a\n", "philly-64", ":2:"),
    ("philly.csv", PHILLY_HEADER + "inf,5,1,5,a\n", "philly-64", ":2:"),
    ("philly.csv", PHILLY_HEADER + "2017-10-09 07:01:55,1e308,1,5,a\n", "philly-64", ":2:"),
    ("philly-workload-1.csv", POLLUX_HEADER + "a,0,cifar10,1000000,64\n", "sia-64", ":2:"),
    ("philly-workload-1.csv", POLLUX_HEADER + "a,0,cifar10,2,1" + "0" * 30 + "\n", "sia-64",
     ":2:"),
    ("philly.csv", PHILLY_HEADER + "2017-10-09 07:01:55,5,1" + "0" * 30 + ",5,a\n",
     "philly-64", ":2:"),
])
def test_simulate_refuses_bad_values(tmp_path: pathlib.Path, name: str, text: str, pool: str,
                                     where: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with time_limit(60):
        result = runner.invoke(app, ["simulate", "--trace", str(path), "--pool", pool,
                                     "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    squeezed = "".join(result.output.split())  # rich wraps long paths anywhere
    assert f"{path}{where}".replace(" ", "") in squeezed, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_simulate_refuses_a_path_that_is_not_a_file(tmp_path: pathlib.Path, kind: str) -> None:
    path = tmp_path / "philly.csv"
    if kind == "directory":
        path.mkdir()
    else:
        os.mkfifo(path)
    with time_limit(60):
        result = runner.invoke(app, ["simulate", "--trace", str(path), "--pool", "philly-64",
                                     "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "notaregularfile" in "".join(result.output.split())
