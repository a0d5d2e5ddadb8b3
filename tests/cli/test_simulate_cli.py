"""`slicebox simulate` as a user runs it: a real trace, then bad trace input."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slicebox.cli import app

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = ROOT / "data/traces/pollux-workloads/philly-workload-1.csv"
runner = CliRunner()


def test_simulates_a_sia_workload_and_writes_a_report(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", "--trace", str(WORKLOAD), "--pool", "sia-64",
                                 "--policy", "fifo", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["metrics"]["finished"] == 160 and summary["gpus"] == 64
    assert summary["metrics"]["avg_jct"] > 0
    assert (tmp_path / "summary.md").exists() and (tmp_path / "jct_cdf.png").exists()


def test_bad_line_names_file_line_and_reason_then_can_be_skipped(tmp_path: Path) -> None:
    lines = WORKLOAD.read_text().splitlines()
    lines.insert(3, "cifar10-x,not-a-number,cifar10,2,128")
    bad = tmp_path / "philly-workload-bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    args = ["simulate", "--trace", str(bad), "--pool", "sia-64", "--policy", "fifo",
            "--out", str(tmp_path / "r")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    squeezed = "".join(result.output.split())  # rich wraps long paths anywhere
    assert f"{bad}:4:column'time':'not-a-number'isnotanumber" in squeezed
    skipped = runner.invoke(app, [*args, "--skip-bad-lines", "--json"])
    assert skipped.exit_code == 0, skipped.output
    assert json.loads(skipped.output)["run"]["skipped_lines"] == 1


def test_empty_trace_is_rejected(tmp_path: Path) -> None:
    empty = tmp_path / "philly-workload-empty.csv"
    empty.write_text("")
    result = runner.invoke(app, ["simulate", "--trace", str(empty), "--pool", "sia-64"])
    assert result.exit_code == 2 and "empty" in result.output


def test_without_out_the_report_goes_under_the_state_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    state = tmp_path / "state"
    result = runner.invoke(app, ["simulate", "--trace", str(WORKLOAD), "--pool", "sia-64",
                                 "--policy", "fifo", "--json", "--state", str(state)])
    assert result.exit_code == 0, result.output
    written = Path(json.loads(result.stdout)["report"])
    assert written == state / "reports" / "fifo"
    assert (written / "summary.md").is_file()
    assert list(elsewhere.iterdir()) == []  # nothing where the command happened to run
