"""The main job end to end: `slicebox demo` on the shipped examples, then MLflow read back.

Slow (about two minutes of real training on 2 cores: the example jobs, then the elastic
scene): run by `make test-slow`, which CI runs.
"""

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.store import Store
from slicebox.tracking import EXPERIMENT

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_every_example_as_designed_and_tracks_each_job(tmp_path: Path,
                                                                  monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["--state", str(tmp_path), "demo", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # --json: the document alone on stdout
    assert report["ok"]
    ran_on = report["controller"]  # the report says where the controller ran
    assert ran_on["cores"] and ran_on["reserved"] is False and ran_on["cpu_seconds"] > 0
    checks = {c["name"]: c["ok"] for c in report["checks"]}
    assert all(checks.values()), checks
    assert {"every job succeeded", "every job reached its quality target",
            "jobs running at the same time never shared a core",
            "a dataset was staged once and then reused"} <= set(checks)
    assert any(name.startswith("wide-cnn-sparse") for name in checks)  # waited, then ran
    # the elastic scene: shrunk for the urgent job, trained on, grown back, resumed
    assert {"elastic-lm shrank when urgent-cnn arrived", "elastic-lm kept training on fewer cores",
            "elastic-lm grew back when the urgent job ended",
            "elastic-lm resumed from its checkpoint after each restart"} <= set(checks)
    assert (tmp_path / "demo" / "report" / "timeline.png").stat().st_size > 0

    store = Store.open(tmp_path / "demo")
    jobs = store.jobs()
    assert len(jobs) == len(list((ROOT / "examples/jobs").glob("*.yaml"))) + 2  # + the scene
    # report.json: every attempt the store recorded, with its start and end
    attempts = {(a["job_id"], a["attempt"]): a for j in report["jobs"] for a in j["attempts"]}
    history = store.composition_history()
    assert set(attempts) == {(r.job_id, r.attempt) for r in history}
    for rec in history:
        assert (attempts[rec.job_id, rec.attempt]["started_at"],
                attempts[rec.job_id, rec.attempt]["ended_at"]) == (rec.started_at, rec.ended_at)
    kinds = [m["kind"] for m in report["timeline"]["markers"] if m["job"] == "elastic-lm"]
    assert kinds[:1] == ["shrink"] and "grow" in kinds, kinds
    client = MlflowClient(tracking_uri=report["tracking_uri"])
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    by_job = {r.data.tags["slicebox.job_id"]: r for r in runs}
    assert set(by_job) == {j.id for j in jobs}
    for job in jobs:
        run = by_job[job.id]
        assert run.data.params["cores"] == ",".join(map(str, job.composition.cores))
        assert run.data.metrics["avg_samples_per_s"] > 0
        assert run.data.metrics["quality"] == pytest.approx(job.quality)
