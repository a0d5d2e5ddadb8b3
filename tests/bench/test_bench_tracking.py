"""Benchmark results land in MLflow, one run per cell, and read back with MlflowClient."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slicebox.bench import tracking
from slicebox.bench.results import BenchResult


def test_default_store_is_sqlite_under_slicebox_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SLICEBOX_HOME", str(tmp_path))
    assert tracking.default_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.default_tracking_uri() == "http://127.0.0.1:5000"


def test_results_read_back_from_mlflow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SLICEBOX_HOME", str(tmp_path))
    results = [
        BenchResult(
            "recsys",
            "cpu-2c",
            "bf16",
            "ok",
            samples_per_s=31000.0,
            time_to_quality_s=11.5,
            quality=0.751,
            quality_target=0.75,
            reached_target=True,
            quality_metric="auc",
            cores=2,
            runs=1,
        ),
        BenchResult("recsys", "cpu-2c", "fp16", "not supported here", reason="needs a GPU"),
    ]
    run_ids = tracking.log_bench_results(results)

    client = MlflowClient(tracking.default_tracking_uri())
    measured, unsupported = (client.get_run(run_id) for run_id in run_ids)
    assert measured.data.params["slice"] == "cpu-2c" and measured.data.params["cores"] == "2"
    assert measured.data.params["precision"] == "bf16"
    assert measured.data.metrics["samples_per_s"] == 31000.0
    assert measured.data.metrics["time_to_quality_s"] == 11.5
    assert measured.data.metrics["reached_target"] == 1.0
    assert measured.info.status == "FINISHED"
    assert unsupported.info.status == "FAILED"
    assert unsupported.data.tags["slicebox.status"] == "not supported here"
    assert "samples_per_s" not in unsupported.data.metrics  # nothing measured, nothing logged
    assert (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_bench_quick_leaves_mlperf_logs_and_mlflow_runs_with_them(tmp_path: Path) -> None:
    """`slicebox bench --quick` on a fresh state directory, then read back: MLLOG files and
    VALID LoadGen logs under <state>/bench/<run>/, and one parent MLflow run with a child
    per cell, each holding those files as artifacts."""
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    state = tmp_path / "state"
    done = subprocess.run(
        [sys.executable, "-c", "from slicebox.cli import app; app(prog_name='slicebox')",
         "--state", str(state), "bench", "--quick", "--workloads", "image,inference",
         "--slices", "cpu:1", "--precisions", "fp32"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = [p for p in (state / "bench").iterdir() if p.is_dir()]
    image = run_dir / "image_cpu-1c_fp32" / "seed0"
    assert ":::MLLOG " in (image / "mllog.txt").read_text()
    served = run_dir / "inference_cpu-1c_fp32" / "seed0"
    for scenario in ("offline", "server"):
        summary = (served / "loadgen" / scenario / "mlperf_log_summary.txt").read_text()
        assert "Result is : VALID" in summary, summary
        assert (served / "loadgen" / scenario / "mlperf_log_detail.txt").is_file()

    uri = tracking.default_tracking_uri(state)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    assert experiment.artifact_location.startswith((state / "mlartifacts").as_uri())
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.info.run_name: r for r in runs if r not in (parent,)}
    assert set(children) == {"image/cpu-1c/fp32", "inference/cpu-1c/fp32"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {
        "results.json", "bench.png"}
    for child in children.values():
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED" and child.data.metrics["samples_per_s"] > 0
        kept = {a.path for a in client.list_artifacts(child.info.run_id, "seed0")}
        assert "seed0/mllog.txt" in kept and "seed0/stdout.log" in kept
    summaries = client.list_artifacts(children["inference/cpu-1c/fp32"].info.run_id,
                                      "seed0/loadgen/offline")
    assert "seed0/loadgen/offline/mlperf_log_summary.txt" in {a.path for a in summaries}
    results = json.loads(Path(client.download_artifacts(parent.info.run_id, "results.json"))
                         .read_text())
    assert [r["workload"] for r in results] == ["image", "inference"]
