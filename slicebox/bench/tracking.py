"""Benchmark results into MLflow: one parent run per ``slicebox bench``, one child per cell.

Works with no MLflow server (a SQLite file in the state directory) and with one
(``MLFLOW_TRACKING_URI`` or ``tracking_uri=``). Uses an ``MlflowClient`` bound to that URI
rather than ``mlflow.set_tracking_uri``, so logging benchmarks never changes where the
caller's own ``mlflow.log_*`` calls go.

The parent run holds the invocation's ``results.json`` and plots as artifacts; each child
holds its cell's output folder (per seed: stdout, stderr, the ``:::MLLOG`` file, and for
inference LoadGen's summary and detail logs).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slicebox.bench.results import STATUS_OK, BenchResult
from slicebox.tracking import default_tracking_uri, experiment_id_for

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT = "slicebox-bench"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests children under it


@dataclass(frozen=True)
class BenchRuns:
    parent: str
    cells: list[str]  # one per result, in order


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


def _tags(result: BenchResult, parent: str) -> dict[str, str]:
    tags = {
        "slicebox.kind": "bench",
        "slicebox.status": result.status,
        "slicebox.shared": str(result.contended).lower(),
        PARENT_TAG: parent,
    }
    if result.quality_metric:
        tags["slicebox.quality_metric"] = result.quality_metric
        tags["slicebox.quality_direction"] = "higher" if result.higher_is_better else "lower"
    if result.reason:
        tags["slicebox.reason"] = result.reason[:5000]
    if result.note:
        tags["slicebox.note"] = result.note[:5000]
    return tags


def log_bench_suite(
    results: Sequence[BenchResult],
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT,
    *,
    run_name: str = "bench",
    artifacts: Sequence[Path] = (),
    params: dict[str, str] | None = None,
) -> BenchRuns:
    """Log one invocation: a parent run (``artifacts``: its results.json and plots,
    ``params``: how it was asked for) and a finished child run per cell.

    Params per cell: workload, slice, precision, device, cores, quality metric and
    target. Metrics: samples/s, time-to-quality, quality, reached_target, and where
    measured server p99 latency, dense quality and 2:4 speed-up. A cell that was not
    measured (not supported, skipped, failed) is still a run, with its status and reason
    as tags. The parent is FAILED when no cell was measured.
    """
    from mlflow.entities import Metric, Param, RunTag

    client, experiment_id = _client(tracking_uri, experiment)
    parent = client.create_run(experiment_id, run_name=run_name,
                               tags={"slicebox.kind": "bench-suite"})
    parent_id = parent.info.run_id
    for key, value in (params or {}).items():
        client.log_param(parent_id, key, value[:500])
    cells = []
    now_ms = int(time.time() * 1000)
    for result in results:
        run = client.create_run(
            experiment_id,
            run_name=f"{result.workload}/{result.slice}/{result.precision}",
            tags=_tags(result, parent_id),
        )
        run_id = run.info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now_ms, 0) for k, v in _metrics(result).items()],
            params=[Param(k, v) for k, v in _params(result).items()],
            tags=[RunTag(k, v) for k, v in _tags(result, parent_id).items()],
        )
        if result.log_dir and Path(result.log_dir).is_dir():
            client.log_artifacts(run_id, result.log_dir)
        client.set_terminated(run_id, status="FINISHED" if result.status == STATUS_OK
                              else "FAILED")
        cells.append(run_id)
    for path in artifacts:
        if path.is_file():
            client.log_artifact(parent_id, str(path))
    measured = sum(r.status == STATUS_OK for r in results)
    client.log_metric(parent_id, "cells_measured", measured)
    client.log_metric(parent_id, "cells", len(results))
    client.set_terminated(parent_id, status="FINISHED" if measured else "FAILED")
    return BenchRuns(parent_id, cells)


def log_bench_results(
    results: Sequence[BenchResult],
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT,
) -> list[str]:
    """`log_bench_suite` without artifacts; the cells' run ids in order."""
    return log_bench_suite(results, tracking_uri, experiment).cells


def _client(tracking_uri: str | None, experiment: str) -> tuple[MlflowClient, str]:
    from mlflow import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    return client, experiment_id_for(client, uri, experiment)
