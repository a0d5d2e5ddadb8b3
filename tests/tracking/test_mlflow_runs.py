"""One MLflow run per Slicebox job: composition as params, throughput and quality as
metrics, read back with MlflowClient, from an SQLite store and from a real server."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from slicebox import policies
from slicebox.backends.local import LocalBackend
from slicebox.controller import Controller, submit_spec
from slicebox.placement import Placer
from slicebox.pool.discovery import discover_local
from slicebox.spec import parse_spec
from slicebox.store import Store
from slicebox.tracking import EXPERIMENT, JobTracker

QUICK_JOBS = [
    {"name": "digits", "workload": "image", "resources": {"cpus": 1, "memory_gib": 2},
     "command": ["python", "-m", "slicebox.bench.run", "image", "--quick"]},
    {"name": "clicks", "workload": "recsys", "resources": {"cpus": 1, "memory_gib": 2},
     "command": ["python", "-m", "slicebox.bench.run", "recsys", "--quick"]},
]


def run_jobs(state: Path, tracking_uri: str) -> Store:
    pool = discover_local(measure=False)
    store = Store.open(state)
    placer = Placer(pool)
    for data in QUICK_JOBS:
        submit_spec(store, pool, placer, parse_spec(data))
    controller = Controller(store, pool, policies.get("fifo"), placer,
                            LocalBackend(state, node=pool.nodes[0].name), state,
                            tracker=JobTracker(tracking_uri), interval=0.3)
    controller.run(until_idle=True)
    return store


def assert_one_run_per_job(store: Store, tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    jobs = store.jobs()
    assert all(j.state.value == "succeeded" for j in jobs), [(j.name, j.reason) for j in jobs]
    by_job = {r.data.tags["slicebox.job_id"]: r for r in runs}
    assert set(by_job) == {j.id for j in jobs}
    for job in jobs:
        run = by_job[job.id]
        assert job.mlflow_run_id == run.info.run_id
        assert run.info.status == "FINISHED"
        params = run.data.params
        comp = job.composition
        assert params["cores"] == ",".join(map(str, comp.cores))
        assert params["device_kind"] == "cpu" and params["memory_gib"] == str(comp.memory_gib)
        assert params["workload"] == job.spec.workload_class
        metrics = run.data.metrics
        assert metrics["samples_per_s"] > 0 and metrics["avg_samples_per_s"] > 0
        assert metrics["run_time_s"] > 0 and "queue_wait_s" in metrics
        assert metrics["quality"] == pytest.approx(job.quality)


def test_runs_in_the_default_sqlite_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = run_jobs(tmp_path / "state", uri)
    assert_one_run_per_job(store, uri)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_runs_on_a_real_mlflow_server(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--default-artifact-root", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    pytest.fail("mlflow server did not start")
                time.sleep(0.5)
        store = run_jobs(tmp_path / "state", uri)
        assert_one_run_per_job(store, uri)
    finally:
        server.terminate()
        server.wait(20)
