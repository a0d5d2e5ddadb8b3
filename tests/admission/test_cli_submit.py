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
