"""Benchmark results land in MLflow, one run per cell, and read back with MlflowClient."""

from __future__ import annotations

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
