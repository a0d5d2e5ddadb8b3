"""`slicebox up --policy quota --pool FILE` hands the pool file's team quotas to the
policy (and a later `up` without --pool uses the file it recorded)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.controller import Controller

TEAMS = Path(__file__).resolve().parents[2] / "examples" / "pools" / "teams.yaml"


def test_up_with_the_quota_policy_reads_the_pool_files_quotas(tmp_path: Path,
                                                              monkeypatch) -> None:
    seen: list[set[str]] = []

    def run(self, **_: object) -> None:  # stands in for the loop: what was the policy given?
        seen.append(set(self.policy.quotas.tracked))

    monkeypatch.setattr(Controller, "run", run)
    runner = CliRunner()
    first = runner.invoke(app, ["--state", str(tmp_path), "up", "--no-mlflow", "--policy",
                                "quota", "--pool", str(TEAMS)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["--state", str(tmp_path), "up", "--no-mlflow", "--policy",
                                "quota"])
    assert again.exit_code == 0, again.output
    assert len(seen) == 2 and seen[0] == seen[1]
    assert "cpus" in seen[0] and any(key.startswith("gpus") for key in seen[0])
