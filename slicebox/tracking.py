"""MLflow for every job: one run per Slicebox job, composition as params, progress as metrics.

Uses ``MlflowClient`` (no global active run) so one controller can track many jobs at
once. Tracking must never take the controller down: a tracking error is logged and the
job goes on.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

EXPERIMENT = "slicebox-jobs"
_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED",
           "preempted": "KILLED"}


def slicebox_home() -> Path:
    return Path(os.environ.get("SLICEBOX_HOME") or Path.home() / ".slicebox").expanduser()


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
                    queue_wait_s: float) -> None:
        self._queue.put(lambda: self._start(job_id, job_name, params, queue_wait_s))

    def job_progress(self, job_id: str, metrics: Mapping[str, float | None], step: int,
                     timestamp_s: float) -> None:
        self._queue.put(lambda: self._log(job_id, metrics, step, timestamp_s))

    def job_finished(self, job_id: str, state: str) -> None:
        self._queue.put(lambda: self._finish(job_id, state))

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
            found = client.get_experiment_by_name(self.experiment)
            self._experiment_id = (found.experiment_id if found is not None
                                   else client.create_experiment(self.experiment))
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
               queue_wait_s: float) -> None:
        run_id = self._run_for(job_id)
        if run_id is None:
            run = self.client.create_run(self._experiment_id, run_name=job_name,
                                         tags={"slicebox.job_id": job_id,
                                               "slicebox.job_name": job_name})
            run_id = run.info.run_id
            self._runs[job_id] = run_id
            with self._lock:
                self._new_runs[job_id] = run_id
            for key, value in params.items():
                self.client.log_param(run_id, key, _param(value))
        self.client.log_metric(run_id, "queue_wait_s", queue_wait_s)

    def _log(self, job_id: str, metrics: Mapping[str, float | None], step: int,
             timestamp_s: float) -> None:
        run_id = self._run_for(job_id)
        if run_id is None:
            return
        for key, value in metrics.items():
            if value is not None:
                self.client.log_metric(run_id, key, float(value),
                                       timestamp=int(timestamp_s * 1000), step=step)

    def _finish(self, job_id: str, state: str) -> None:
        run_id = self._run_for(job_id)
        if run_id is not None:
            self.client.set_terminated(run_id, status=_STATUS.get(state, "FINISHED"))


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:500]  # MLflow caps param values; a long core list is still readable
