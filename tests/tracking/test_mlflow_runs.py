"""One MLflow run per Slicebox job: composition as params, throughput and quality as
metrics, read back with MlflowClient, from an SQLite store and from a real server."""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from slicebox import policies, sdk
from slicebox.backends.local import LocalBackend
from slicebox.controller import Controller, submit_spec
from slicebox.placement import Placer
from slicebox.pool.discovery import discover_local
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import Store
from slicebox.store.records import JobRecord
from slicebox.tracking import EXPERIMENT, JobTracker, default_tracking_uri

QUICK_JOBS = [
    {"name": "digits", "workload": "image", "resources": {"cpus": 1, "memory_gib": 2},
     "command": ["python", "-m", "slicebox.bench.run", "image", "--quick"]},
    {"name": "clicks", "workload": "recsys", "resources": {"cpus": 1, "memory_gib": 2},
     "command": ["python", "-m", "slicebox.bench.run", "recsys", "--quick"]},
]


QUALITY = {"digits": "accuracy", "clicks": "auc"}


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
        assert_complete_run(client, run, job)


def assert_complete_run(client: MlflowClient, run, job) -> None:
    """Artifacts (log, spec, composition, MLLOG file), every reported metric stepped by
    samples, and the tags that say how the attempt ended and what its quality means."""
    run_id = run.info.run_id
    names = {a.path for a in client.list_artifacts(run_id)}
    attempt = job.attempt
    assert {"spec.json", f"composition-attempt{attempt}.json", f"{job.id}.log",
            f"mllog-attempt{attempt}.txt"} <= names, names
    local = Path(client.download_artifacts(run_id, f"mllog-attempt{attempt}.txt"))
    mllog = local.read_text().splitlines()
    assert mllog and all(line.startswith(":::MLLOG ") for line in mllog)
    assert any('"key": "run_stop"' in line for line in mllog)
    spec = json.loads(Path(client.download_artifacts(run_id, "spec.json")).read_text())
    assert spec["name"] == job.name and spec["command"] == list(job.spec.command)
    # "loss" and "epoch" are reported by the job beside samples: kept, one point per report.
    losses = client.get_metric_history(run_id, "loss")
    steps = [m.step for m in losses]
    assert len(losses) >= 2 and steps == sorted(steps) and steps[-1] > 0
    assert client.get_metric_history(run_id, "epoch")
    tags = run.data.tags
    assert tags["slicebox.exit_code"] == "0" and tags["slicebox.state"] == "succeeded"
    assert tags["slicebox.quality_metric"] == QUALITY[job.name]
    assert tags["slicebox.quality_direction"] == "higher_is_better"
    assert tags["slicebox.team"] == "default" and tags["slicebox.attempt"] == str(attempt)


def test_runs_in_the_default_sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.chdir(tmp_path)  # where MLflow would put ./mlruns by default
    state = tmp_path / "state"
    uri = default_tracking_uri(state)
    store = run_jobs(state, uri)
    assert_one_run_per_job(store, uri)
    client = MlflowClient(tracking_uri=uri)
    for run in client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id]):
        assert run.info.artifact_uri.startswith((state / "mlartifacts").resolve().as_uri())
    assert not (tmp_path / "mlruns").exists()


def test_a_failed_job_says_how_it_ended(tmp_path: Path) -> None:
    """Exit code and reason as tags, the quality metric's direction, every metric."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = parse_spec({"name": "ppl", "command": ["python", "train.py"]})
    record = JobRecord(id="job-1", name="ppl", spec=spec, state=JobState.FAILED,
                       reason="exited with 3", priority=0, submitted_at=0.0, attempt=2)
    log = tmp_path / "job-1.log"
    log.write_text(
        "--- slicebox: attempt 1 at t on cpu\n"
        + sdk.format_report(samples=10, quality=50.0, loss=9.0) + "\n"
        + "--- slicebox: attempt 2 at t on cpu\n"
        + sdk.format_report(samples=100, quality=40.0, loss=3.5, quality_metric="perplexity",
                            lr=0.1, phase="warmup") + "\n"
        + ':::MLLOG {"namespace": "", "time_ms": 1, "event_type": "POINT_IN_TIME", '
          '"key": "eval_accuracy", "value": 40.0, "metadata": {"metric": "perplexity"}}\n'
        + sdk.format_report(samples=200, quality=30.0, loss=2.5) + "\n")
    tracker = JobTracker(uri)
    tracker.job_started("job-1", "ppl", {"cores": "0"}, 1.0, record=record)
    tracker.job_finished("job-1", "failed", record=record, exit_code=3, reason="exited with 3",
                         log_path=str(log))
    tracker.close()

    client = MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])[0]
    assert run.info.status == "FAILED"
    tags = run.data.tags
    assert tags["slicebox.exit_code"] == "3" and tags["slicebox.reason"] == "exited with 3"
    assert tags["slicebox.quality_metric"] == "perplexity"
    assert tags["slicebox.quality_direction"] == "lower_is_better"
    assert tags["slicebox.attempt"] == "2" and tags["slicebox.reported.phase"] == "warmup"
    assert tags["slicebox.team"] == "default"  # the spec names no team
    # Only attempt 2's part of the log: attempt 1's loss was logged when attempt 1 ended.
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in losses] == [(100, 3.5), (200, 2.5)]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "lr")] == [0.1]
    mllog = client.download_artifacts(run.info.run_id, "mllog-attempt2.txt")
    assert Path(mllog).read_text().count(":::MLLOG ") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # 2-3 min on a loaded 2-core box: a server start and two jobs over HTTP
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
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:  # a loaded machine: do not fail a passed test
            server.kill()
            server.wait()
