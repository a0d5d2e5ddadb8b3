"""`slicebox up --allow-mig-reconfigure` as a user runs it: this machine's cores, a pool file
with one A100-80GB in MIG mode laid out 4g.40gb@0 + 3g.40gb@4 (the fake NVML serves the
card), seven 1g.10gb jobs that really run (`true`) under the local backend. Without the
flag, `ps` shows each job waiting for the re-layout and NVML is never changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from slicebox.backends import mig_reconfigure
from slicebox.cli import app
from slicebox.pool.gpus import discover_gpus
from tests.pool import fake_nvml

CORES = sorted(os.sched_getaffinity(0))
runner = CliRunner()


@pytest.fixture()
def nvml(monkeypatch):
    fake = fake_nvml.a100_relayout()
    monkeypatch.setattr(mig_reconfigure, "load_nvml", lambda: fake)
    return fake


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """(state directory, pool file); seven 1g.10gb jobs submitted through the CLI."""
    pool = tmp_path / "pool.yaml"
    pool.write_text(yaml.safe_dump({"name": "mig-box", "nodes": [{
        "name": "box", "memory_gib": 8, "cores": {0: CORES},
        "gpus": [{"kind": "A100-80GB", "count": 1, "numa": 0, "mig": True}],
        "mig_instances": [{"gpu": 0, "profile": "4g.40gb", "start": 0},
                          {"gpu": 0, "profile": "3g.40gb", "start": 4}]}]}))
    state = tmp_path / "state"
    files = []
    for i in range(7):
        path = tmp_path / f"nb{i}.yaml"
        path.write_text(yaml.safe_dump({"name": f"nb{i}", "command": ["true"], "resources": {
            "gpus": 1, "mig": "1g.10gb", "cpus": 1, "memory_gib": 0.25}}))
        files.append(str(path))
    result = runner.invoke(app, ["submit", *files, "--pool", str(pool), "--state", str(state)])
    assert result.exit_code == 0, result.output
    return state, pool


def ps(state: Path) -> list[dict]:
    result = runner.invoke(app, ["ps", "--all", "--json", "--state", str(state)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_without_the_flag_ps_shows_the_relayout_and_nvml_is_not_changed(setup, nvml) -> None:
    state, pool = setup
    result = runner.invoke(app, ["up", "--until-idle", "--no-mlflow", "--interval", "0.1",
                                 "--pool", str(pool), "--state", str(state)])
    assert result.exit_code == 0, result.output
    jobs = ps(state)
    assert len(jobs) == 7
    for job in jobs:
        assert job["state"] == "queued"
        assert job["reason"].startswith("waits for a MIG re-layout of box/gpu0 (box/gpu0 "
                                        "(A100-80GB): 4g.40gb@0 + 3g.40gb@4 -> 1g.10gb@0")
        assert "only with --allow-mig-reconfigure" in job["reason"]
    assert nvml.mig_calls == []


def test_up_with_the_flag_relays_out_the_card_and_runs_the_jobs(setup, nvml) -> None:
    state, pool = setup
    result = runner.invoke(app, ["up", "--until-idle", "--no-mlflow", "--interval", "0.1",
                                 "--allow-mig-reconfigure", "--json", "--pool", str(pool),
                                 "--state", str(state)])
    assert result.exit_code == 0, result.output
    rounds = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    said = [line for r in rounds for line in r["pool"]]
    assert len(said) == 1 and said[0].startswith("MIG re-layout done: box/gpu0 (A100-80GB): "
                                                 "4g.40gb@0 + 3g.40gb@4 -> 1g.10gb@0")
    assert rounds[0]["pool"] == said and rounds[0]["started"]  # starts in that same round
    creates = [where for name, _, where in nvml.mig_calls
               if name == "nvmlDeviceCreateGpuInstanceWithPlacement"]
    assert creates == [f"1g.10gb@{s}" for s in range(7)]
    new = {m.uuid for m in discover_gpus(nvml).devices[0].mig_instances}
    jobs = ps(state)
    assert [j["state"] for j in jobs] == ["succeeded"] * 7
    used = {s["uuid"] for j in jobs for p in j["composition"]["parts"] for s in p["slices"]}
    assert used <= new and len(used) >= 1


def test_the_flag_is_refused_with_the_ray_backend(tmp_path: Path) -> None:
    result = runner.invoke(app, ["up", "--backend", "ray", "--allow-mig-reconfigure",
                                 "--state", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "--allow-mig-reconfigure applies only to --backend local" in result.output
