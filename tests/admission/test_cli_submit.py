"""The issue's first repro as a user types it: ``slicebox submit p.yaml`` refuses the file
(exit 2, one line naming the field) and queues nothing for ``slicebox up`` to crash on."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from slicebox.cli.app import app

from .helpers import DGX

runner = CliRunner()


def test_submit_refuses_a_nul_in_an_env_value(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    # printf 'name: p\ncommand: [python, -c, pass]\nenv: {A: "x\\0y"}\n' > p.yaml
    (tmp_path / "p.yaml").write_bytes(b'name: p\ncommand: [python, -c, pass]\n'
                                      b'env: {A: "x\\0y"}\n')
    state = ["--state", str(tmp_path / "state")]
    result = runner.invoke(app, [*state, "submit", "p.yaml", "--pool", str(DGX)])
    assert result.exit_code == 2, result.output
    assert "env.A: contains a NUL character" in result.output
    listed = runner.invoke(app, [*state, "ps", "--all", "--json"])
    assert json.loads(listed.output) == []


def test_a_pool_file_allow_list_lets_a_loader_name_through(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "j.yaml").write_text("name: p\ncommand: [python3, -c, pass]\n"
                                     "env: {PYTHONPATH: /opt/lib}\n")
    allowing = tmp_path / "pool.yaml"
    allowing.write_text(DGX.read_text() + "\nenv_allow: [PYTHONPATH]\n")
    state = ["--state", str(tmp_path / "state")]
    refused = runner.invoke(app, [*state, "submit", "j.yaml", "--pool", str(DGX)])
    assert refused.exit_code == 2 and "env.PYTHONPATH: changes how programs load" in (
        refused.output)
    queued = runner.invoke(app, [*state, "submit", "j.yaml", "--pool", str(allowing), "--json"])
    assert queued.exit_code == 0, queued.output
    assert len(json.loads(queued.output)["submitted"]) == 1
