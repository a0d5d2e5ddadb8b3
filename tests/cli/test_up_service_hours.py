"""`slicebox up --service-hours 08:00-20:00=0.5` gives the controller's services their hours,
instead of the pool file's ``service_hours``; a bad window is refused before anything
starts, naming it."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.controller import Controller
from slicebox.hours import Window

POOL = {"name": "day", "nodes": [{"name": "local", "memory_gib": 4, "cores": {0: "0-3"}}],
        "service_hours": [{"hours": "09:00-17:00", "at_least": 0.25}]}


def test_the_flag_replaces_the_pool_files_hours(tmp_path: Path, monkeypatch) -> None:
    seen: list[tuple[Window, ...]] = []

    def run(self, **_: object) -> None:  # stands in for the loop: what pool did it get?
        seen.append(self.pool.service_hours)

    monkeypatch.setattr(Controller, "run", run)
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text(yaml.safe_dump(POOL))
    runner = CliRunner()
    state = ["--state", str(tmp_path / "state")]
    result = runner.invoke(app, [*state, "up", "--no-mlflow", "--pool", str(pool_file)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*state, "up", "--no-mlflow", "--pool", str(pool_file),
                                 "--service-hours", "08:00-20:00=0.5",
                                 "--service-hours", "20:00-08:00=0.1"])
    assert result.exit_code == 0, result.output
    assert seen == [(Window(hours="09:00-17:00", at_least=0.25),),
                    (Window(hours="08:00-20:00", at_least=0.5),
                     Window(hours="20:00-08:00", at_least=0.1))]


def test_a_bad_window_is_refused_naming_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--state", str(tmp_path), "up", "--no-mlflow",
                                      "--service-hours", "08:00-20:00=lots"])
    assert result.exit_code != 0
    assert "--service-hours" in result.output and "lots" in result.output, result.output
