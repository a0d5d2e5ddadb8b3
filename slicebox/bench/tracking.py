"""Benchmark results into MLflow: one MLflow run per suite cell.

Works with no MLflow server (a SQLite file under ``$SLICEBOX_HOME``, default
``~/.slicebox``) and with one (``MLFLOW_TRACKING_URI`` or ``tracking_uri=``).
Uses an ``MlflowClient`` bound to that URI rather than ``mlflow.set_tracking_uri``, so
logging benchmarks never changes where the caller's own ``mlflow.log_*`` calls go.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from slicebox.bench.results import STATUS_OK, BenchResult
from slicebox.tracking import default_tracking_uri, slicebox_home

EXPERIMENT = "slicebox-bench"


def _params(result: BenchResult) -> dict[str, str]:
    params = {
        "workload": result.workload,
        "slice": result.slice,
        "precision": result.precision,
        "device": result.device,
        "quality_metric": result.quality_metric,
        "runs": str(result.runs),
    }
    if result.cores is not None:
        params["cores"] = str(result.cores)
    if result.quality_target is not None:
        params["quality_target"] = f"{result.quality_target:g}"
    if result.server_target_qps is not None:
        params["server_target_qps"] = f"{result.server_target_qps:g}"
    return params


def _metrics(result: BenchResult) -> dict[str, float]:
    values: dict[str, float | None] = {
        "samples_per_s": result.samples_per_s,
        "time_to_quality_s": result.time_to_quality_s,
        "quality": result.quality,
        "reached_target": float(result.reached_target) if result.status == STATUS_OK else None,
        "server_p99_latency_ms": result.server_p99_latency_ms,
        "dense_quality": result.dense_quality,
        "sparse_speedup": result.sparse_speedup,
        "wall_s": result.wall_s if result.wall_s else None,
        "cotenant_cores": result.cotenant_cores,
    }
    return {name: float(v) for name, v in values.items() if v is not None}


def log_bench_results(
    results: Sequence[BenchResult],
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT,
) -> list[str]:
    """Log each result as a finished MLflow run; returns the run ids in order.

    Params: workload, slice, precision, device, cores, quality metric and target.
    Metrics: samples/s, time-to-quality, quality, reached_target, and where measured
    server p99 latency, dense quality and 2:4 speed-up. A cell that was not measured
    (not supported, skipped, failed) is still a run, with its status and reason as tags.
    """
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        # A file store next to the database; MLflow's default would be ./mlruns of
        # whatever directory the CLI happened to run in.
        artifacts = (
            (slicebox_home() / "mlartifacts").resolve().as_uri()
            if uri.startswith("sqlite")
            else None
        )
        experiment_id = client.create_experiment(experiment, artifact_location=artifacts)
    run_ids = []
    now_ms = int(time.time() * 1000)
    for result in results:
        run = client.create_run(
            experiment_id, run_name=f"{result.workload}/{result.slice}/{result.precision}"
        )
        tags = {"slicebox.kind": "bench", "slicebox.status": result.status}
        if result.reason:
            tags["slicebox.reason"] = result.reason[:5000]
        if result.note:
            tags["slicebox.note"] = result.note[:5000]
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now_ms, 0) for k, v in _metrics(result).items()],
            params=[Param(k, v) for k, v in _params(result).items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        client.set_terminated(
            run.info.run_id, status="FINISHED" if result.status == STATUS_OK else "FAILED"
        )
        run_ids.append(run.info.run_id)
    return run_ids
