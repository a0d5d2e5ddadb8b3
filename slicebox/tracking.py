"""MLflow for every job: one run per Slicebox job, composition as params, progress as metrics.

Uses ``MlflowClient`` (no global active run) so one controller can track many jobs at
once. Tracking must never take the controller down: a tracking error is logged and the
job goes on.

What a job's run holds:

* params: the composition it was given (cores, slices, memory, ...);
* metrics: samples, samples/s and quality as they arrive, and when an attempt ends every
  other number the job reported (``slicebox.report(loss=...)``), stepped by its sample
  count, from the attempt's part of the log;
* tags: ``slicebox.exit_code``, ``slicebox.reason``, ``slicebox.state``,
  ``slicebox.quality_metric`` and ``slicebox.quality_direction`` (``higher_is_better``,
  ``lower_is_better`` or ``unknown``), ``slicebox.team``, ``slicebox.attempt``;
* artifacts: ``spec.json``, ``composition-attempt<N>.json``, ``<job-id>.log`` (the whole log)
  and ``mllog-attempt<N>.txt`` (the attempt's ``:::MLLOG`` lines: an MLPerf log).

With the default SQLite store the artifacts go to ``<state>/mlartifacts``, never to the
directory the controller happened to start in.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from slicebox.store.records import JobRecord

log = logging.getLogger(__name__)

EXPERIMENT = "slicebox-jobs"
_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED",
           "preempted": "KILLED"}


def slicebox_home() -> Path:
    return Path(os.environ.get("SLICEBOX_HOME") or Path.home() / ".slicebox").expanduser()


def artifact_root_for(tracking_uri: str) -> str | None:
    """Where a new experiment keeps artifacts: beside an SQLite store's file, as a file
    URI (MLflow's default would be ``./mlruns`` of the current directory); None for a
    server or other store, which decides for itself."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    return (database.parent / "mlartifacts").resolve().as_uri()


def experiment_id_for(client: MlflowClient, tracking_uri: str, name: str) -> str:
    """The id of experiment ``name``, created (artifacts per `artifact_root_for`) if new."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name,
                                        artifact_location=artifact_root_for(tracking_uri)))


def default_tracking_uri(state_dir: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an SQLite store beside Slicebox's own state."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    directory = (state_dir or slicebox_home()).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'mlflow.db'}"


class JobTracker:
    """Mirrors Slicebox jobs into MLflow runs (experiment ``slicebox-jobs``).

    Calls are queued to one worker thread: MLflow's first connection to an SQLite store
    runs its schema migrations (seconds), which must not stall the control loop. A run is
    found again after a controller restart by its ``slicebox.job_id`` tag.
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str = EXPERIMENT) -> None:
        self.tracking_uri = tracking_uri or default_tracking_uri()
        self.experiment = experiment
        self._client: MlflowClient | None = None
        self._experiment_id = "0"
        self._runs: dict[str, str] = {}  # job id -> run id
        self._new_runs: dict[str, str] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="mlflow-tracker", daemon=True)
        self._worker.start()

    # ---- called by the controller (never blocks) --------------------------------------

    def job_started(self, job_id: str, job_name: str, params: Mapping[str, Any],
                    queue_wait_s: float, record: JobRecord | None = None) -> None:
        self._queue.put(lambda: self._start(job_id, job_name, params, queue_wait_s, record))

    def job_progress(self, job_id: str, metrics: Mapping[str, float | None], step: int,
                     timestamp_s: float) -> None:
        self._queue.put(lambda: self._log(job_id, metrics, step, timestamp_s))

    def job_finished(self, job_id: str, state: str, record: JobRecord | None = None,
                     exit_code: int | None = None, reason: str = "",
                     log_path: str | None = None) -> None:
        """An attempt ended (``state``: where the job went). ``record``: the job after the
        transition; ``log_path``: the job's log, whose part for this attempt is read for
        every metric and ``:::MLLOG`` line it holds."""
        ended = _AttemptEnd(state, record, exit_code, reason, log_path)
        self._queue.put(lambda: self._finish(job_id, ended))

    def new_run_ids(self) -> dict[str, str]:
        """Runs created since the last call (job id -> run id), for the store to record."""
        with self._lock:
            taken, self._new_runs = self._new_runs, {}
        return taken

    def close(self, timeout: float = 30.0) -> None:
        """Flush what is queued (bounded by ``timeout``) and stop the worker."""
        self._queue.put(None)
        self._worker.join(timeout)

    # ---- the worker ---------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            try:
                task()
            except Exception as exc:  # noqa: BLE001 - tracking must never stop a job
                log.warning("MLflow tracking failed: %s", exc)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            from mlflow import MlflowClient  # slow import: only when a job is tracked

            client = MlflowClient(tracking_uri=self.tracking_uri)
            self._experiment_id = experiment_id_for(client, self.tracking_uri, self.experiment)
            self._client = client
        return self._client

    def _run_for(self, job_id: str) -> str | None:
        if job_id not in self._runs:
            found = self.client.search_runs([self._experiment_id],
                                            f"tags.`slicebox.job_id` = '{job_id}'",
                                            max_results=1)
            if found:
                self._runs[job_id] = found[0].info.run_id
        return self._runs.get(job_id)

    def _start(self, job_id: str, job_name: str, params: Mapping[str, Any],
               queue_wait_s: float, record: JobRecord | None = None) -> None:
        from mlflow.entities import Metric, Param, RunTag

        # One request for params, tags and the metric: on a busy server each is slow.
        new_params: list[Param] = []
        run_id = self._run_for(job_id)
        if run_id is None:
            run = self.client.create_run(self._experiment_id, run_name=job_name,
                                         tags={"slicebox.job_id": job_id,
                                               "slicebox.job_name": job_name})
            run_id = run.info.run_id
            self._runs[job_id] = run_id
            with self._lock:
                self._new_runs[job_id] = run_id
            new_params = [Param(key, _param(value)) for key, value in params.items()]
        tags = []
        if record is not None:
            team = getattr(record.spec, "team", None) or "default"
            tags = [RunTag("slicebox.team", str(team)),
                    RunTag("slicebox.attempt", str(record.attempt))]
        self.client.log_batch(run_id, params=new_params, tags=tags,
                              metrics=[Metric("queue_wait_s", queue_wait_s,
                                              int(time.time() * 1000), 0)])
        if record is not None:
            self._attempt_artifacts(run_id, record)

    def _attempt_artifacts(self, run_id: str, record: JobRecord) -> None:
        """The spec, and the composition this attempt was given."""
        from slicebox.store.codec import composition_to_json

        self.client.log_dict(run_id, record.spec.model_dump(mode="json"), "spec.json")
        if record.composition is not None:
            self.client.log_dict(run_id, composition_to_json(record.composition),
                                 f"composition-attempt{record.attempt}.json")

    def _log(self, job_id: str, metrics: Mapping[str, float | None], step: int,
             timestamp_s: float) -> None:
        from mlflow.entities import Metric

        run_id = self._run_for(job_id)
        if run_id is None:
            return
        when = int(timestamp_s * 1000)
        batch = [Metric(key, float(value), when, step)
                 for key, value in metrics.items() if value is not None]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def _finish(self, job_id: str, ended: _AttemptEnd) -> None:
        from mlflow.entities import RunTag

        run_id = self._run_for(job_id)
        if run_id is None:
            return
        tags = {"slicebox.state": ended.state,
                "slicebox.exit_code": "none" if ended.exit_code is None else str(ended.exit_code),
                "slicebox.reason": ended.reason[:5000]}
        attempt = ended.record.attempt if ended.record is not None else None
        if attempt is not None:
            tags["slicebox.attempt"] = str(attempt)
        metrics: list[Metric] = []
        if ended.log_path is not None and Path(ended.log_path).is_file():
            report = read_attempt_log(Path(ended.log_path), attempt)
            tags.update(report.tags())
            metrics = report.metrics
            if report.mllog:
                name = f"mllog-attempt{attempt}.txt" if attempt is not None else "mllog.txt"
                self.client.log_text(run_id, "".join(report.mllog), name)
            self.client.log_artifact(run_id, ended.log_path)
        # Tags ride with the first batch of metrics: as few requests as a server allows.
        batch_tags = [RunTag(k, v) for k, v in tags.items()]
        for start in range(0, max(len(metrics), 1), _BATCH):
            self.client.log_batch(run_id, metrics=metrics[start:start + _BATCH],
                                  tags=batch_tags if start == 0 else [])
        self.client.set_terminated(run_id, status=_STATUS.get(ended.state, "FINISHED"))


@dataclass(frozen=True)
class _AttemptEnd:
    state: str
    record: JobRecord | None
    exit_code: int | None
    reason: str
    log_path: str | None


# ---- what a job reported, read back from its log ----------------------------------------

ATTEMPT_HEADER = "--- slicebox: attempt "  # the line LocalBackend writes as an attempt starts
LIVE_METRICS = frozenset({"time", "samples", "quality", "source"})  # logged as they arrive
MAX_REPORTED_POINTS = 50_000  # metric points per attempt; beyond that the run says so
MAX_LOG_BYTES = 256 * 2**20  # of one attempt's log read for metrics
_BATCH = 900  # MLflow takes at most 1000 metrics, params and tags together per log_batch
_HIGHER_IS_BETTER = {"accuracy", "acc", "top1", "top5", "auc", "roc_auc", "map", "bleu",
                     "f1", "precision", "recall", "rouge", "dice", "iou", "mlm_accuracy"}
_LOWER_IS_BETTER = {"perplexity", "ppl", "loss", "error", "wer", "cer", "rmse", "mse", "mae",
                    "log_loss", "fid"}


@dataclass
class AttemptReport:
    """What one attempt's log said beyond samples and quality."""

    metrics: list[Metric] = field(default_factory=list)
    mllog: list[str] = field(default_factory=list)
    quality_metric: str | None = None
    higher_is_better: bool | None = None
    text: dict[str, str] = field(default_factory=dict)  # string values the job reported
    truncated: bool = False

    def tags(self) -> dict[str, str]:
        tags = {f"slicebox.reported.{k}": v[:500] for k, v in self.text.items()}
        if self.quality_metric:
            tags["slicebox.quality_metric"] = self.quality_metric
        direction = self.higher_is_better
        if direction is None and self.quality_metric:
            name = self.quality_metric.lower()
            direction = (True if name in _HIGHER_IS_BETTER
                         else False if name in _LOWER_IS_BETTER else None)
        tags["slicebox.quality_direction"] = ("unknown" if direction is None
                                              else "higher_is_better" if direction
                                              else "lower_is_better")
        if self.truncated:
            tags["slicebox.metrics_truncated"] = (f"only the first {MAX_REPORTED_POINTS} "
                                                  "reported values were logged")
        return tags


def read_attempt_log(path: Path, attempt: int | None) -> AttemptReport:
    """Every report in ``attempt``'s part of the log (all of it when attempt is None):
    numbers become metrics stepped by the sample count reported with them."""
    from mlflow.entities import Metric

    from slicebox import sdk

    report = AttemptReport()
    step = 0
    for line in _attempt_lines(path, attempt):
        parsed = sdk.parse_report_line(line)
        if parsed is None:
            continue
        if parsed["source"] == "mllog":
            report.mllog.append(line[line.find(sdk.MLLOG_PREFIX):].rstrip("\n") + "\n")
            metadata = parsed.get("metadata") or {}
            if parsed.get("key") == "eval_accuracy" and isinstance(metadata.get("metric"), str):
                report.quality_metric = report.quality_metric or metadata["metric"]
            continue
        if isinstance(parsed.get("samples"), int):
            step = parsed["samples"]
        when = int((parsed.get("time") or time.time()) * 1000)
        for name, value in parsed.items():
            if name in LIVE_METRICS:
                continue
            if name == "quality_metric" and isinstance(value, str):
                report.quality_metric = value
            elif name == "higher_is_better" and isinstance(value, bool):
                report.higher_is_better = value
            elif isinstance(value, str):
                report.text[name] = value
            elif isinstance(value, int | float) and not isinstance(value, bool):
                if len(report.metrics) >= MAX_REPORTED_POINTS:
                    report.truncated = True
                    continue
                report.metrics.append(Metric(name, float(value), when, step))
    return report


def _attempt_lines(path: Path, attempt: int | None) -> list[str]:
    """The lines of ``attempt``'s part of the log, bounded by MAX_LOG_BYTES."""
    with open(path, "rb") as log:
        # The latest attempt is at the end of the log: read the end when it is long.
        size = log.seek(0, 2)
        log.seek(max(size - MAX_LOG_BYTES, 0))
        data = log.read(MAX_LOG_BYTES)
    text = data.decode("utf-8", errors="replace")
    if attempt is not None:
        marker = f"{ATTEMPT_HEADER}{attempt} "
        start = text.rfind(marker)
        if start >= 0:
            text = text[start:]
            following = text.find(f"\n{ATTEMPT_HEADER}")
            if following >= 0:
                text = text[:following + 1]
    return text.splitlines(keepends=True)


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:500]  # MLflow caps param values; a long core list is still readable
