"""Simulations the service runs for its callers: a bounded queue and a few workers.

Each simulation gets a folder ``<state>/simulations/<id>/`` holding what was asked
(``request.json``), where it stands (``status.json``, rewritten at each change, so a
restarted service still lists what its predecessor ran), and, once done, the report
``slicebox simulate`` writes (``report/``). The simulation itself runs in a process of its
own (``sim_worker``), at most ``workers`` at a time and each for at most ``time_limit_s``;
at most ``queue_limit`` wait. A request past that is refused (``QueueFull``: the API's
429) rather than queued without bound.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from slicebox.errors import SliceboxError

log = logging.getLogger(__name__)
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
KEEP = 200  # finished simulations kept (their folders too); the oldest go first


class QueueFull(SliceboxError):
    """As many simulations wait as the service allows."""


@dataclass(frozen=True)
class SimulationRecord:
    id: str
    team: str
    state: str  # queued, running, succeeded, failed, cancelled
    trace: str  # a bundled trace's name, or "uploaded (<format>)"
    pool: str
    policy: str
    round_seconds: float | None
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None


class Simulations:
    """The queue, its workers and the records, for one service."""

    def __init__(self, root: Path, *, workers: int = 1, queue_limit: int = 4,
                 time_limit_s: float = 900.0) -> None:
        self.root = root
        self.workers, self.queue_limit, self.time_limit_s = workers, queue_limit, time_limit_s
        self._lock = threading.Lock()
        self._records: dict[str, SimulationRecord] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._running: dict[str, subprocess.Popen[bytes]] = {}
        self._closed = False
        self._load()

    # ---- asking -------------------------------------------------------------------------

    def submit(self, record: SimulationRecord, request: dict[str, Any],
               upload: bytes | None = None) -> SimulationRecord:
        """Queue a checked request; ``QueueFull`` when ``queue_limit`` already wait."""
        with self._lock:
            if self._closed:
                raise QueueFull("the service is stopping")
            waiting = sum(1 for r in self._records.values() if r.state == "queued")
            if waiting >= self.queue_limit:
                raise QueueFull(f"{waiting} simulations already wait (at most "
                                f"{self.queue_limit}); try again when one has finished")
            folder = self.root / record.id
            folder.mkdir(parents=True)
            if upload is not None:
                (folder / "trace.txt").write_bytes(upload)
                request = {**request, "trace_file": str(folder / "trace.txt")}
            (folder / "request.json").write_text(json.dumps(request), encoding="utf-8")
            self._set(record)
            self._start_workers()
            self._forget_old()
        self._queue.put(record.id)
        return record

    def get(self, sim_id: str) -> SimulationRecord | None:
        with self._lock:
            return self._records.get(sim_id)

    def all(self) -> list[SimulationRecord]:
        with self._lock:
            return sorted(self._records.values(), key=lambda r: (r.submitted_at, r.id))

    def progress(self, sim_id: str) -> dict[str, Any] | None:
        return _read_json(self.root / sim_id / "progress.json")

    def report(self, sim_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """The report's summary (as ``summary.json``) and its markdown, once succeeded."""
        out = self.root / sim_id / "report"
        try:
            markdown = (out / "summary.md").read_text(encoding="utf-8")
        except OSError:
            markdown = None
        return _read_json(out / "summary.json"), markdown

    def close(self) -> None:
        """Stop: waiting simulations are cancelled, running ones killed."""
        with self._lock:
            self._closed = True
            running = list(self._running.values())
        for process in running:
            process.kill()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(10)
        with self._lock:
            for record in list(self._records.values()):
                if record.state == "queued":
                    self._set(replace(record, state="cancelled", finished_at=time.time(),
                                      error="the service stopped before it ran"))

    # ---- internals ----------------------------------------------------------------------

    def _start_workers(self) -> None:
        while len(self._threads) < self.workers:
            thread = threading.Thread(target=self._work, daemon=True,
                                      name=f"slicebox-sim-{len(self._threads)}")
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            sim_id = self._queue.get()
            if sim_id is None:
                return
            with self._lock:
                record = self._records.get(sim_id)
                if self._closed or record is None or record.state != "queued":
                    continue
                record = replace(record, state="running", started_at=time.time())
                self._set(record)
            try:
                state, error = self._run(sim_id)
            except Exception as exc:  # noqa: BLE001 - one simulation, never the service
                log.exception("simulation %s", sim_id)
                state, error = "failed", f"could not run: {type(exc).__name__}"
            with self._lock:
                self._set(replace(record, state=state, error=error, finished_at=time.time()))

    def _run(self, sim_id: str) -> tuple[str, str | None]:
        folder = self.root / sim_id
        with open(folder / "worker.log", "wb") as out:
            process = subprocess.Popen(  # noqa: S603 - our own module, a folder we made
                [sys.executable, "-m", "slicebox.service.sim_worker", str(folder)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
            with self._lock:
                self._running[sim_id] = process
            try:
                code = process.wait(self.time_limit_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                return "failed", f"ran past the {self.time_limit_s:g} s limit and was stopped"
            finally:
                with self._lock:
                    self._running.pop(sim_id, None)
        if code == 0:
            return "succeeded", None
        if code == 3:  # sim_worker.USER_ERROR: the reason is the user's to read
            return "failed", _read_text(folder / "error.txt") or "refused by the simulator"
        if self._closed:
            return "cancelled", "the service stopped while it ran"
        log.error("simulation %s: worker exited %s (see %s)", sim_id, code,
                  folder / "worker.log")
        return "failed", "the simulation failed (the service's log has the reason)"

    def _set(self, record: SimulationRecord) -> None:
        """Record ``record`` (with the lock held): in memory and in its status file."""
        self._records[record.id] = record
        path = self.root / record.id / "status.json"
        try:
            partial = path.with_suffix(".part")
            partial.write_text(json.dumps(asdict(record)), encoding="utf-8")
            os.replace(partial, path)
        except OSError as exc:
            log.warning("simulation %s: status not saved: %s", record.id, exc)

    def _forget_old(self) -> None:
        ended = sorted((r for r in self._records.values() if r.state in TERMINAL),
                       key=lambda r: (r.submitted_at, r.id))
        for record in ended[:max(len(ended) - KEEP, 0)]:
            del self._records[record.id]
            shutil.rmtree(self.root / record.id, ignore_errors=True)

    def _load(self) -> None:
        """What an earlier service left: finished ones as they were; those it had not
        finished did not survive it."""
        if not self.root.is_dir():
            return
        for status in self.root.glob("*/status.json"):
            data = _read_json(status)
            try:
                record = SimulationRecord(**data) if data is not None else None
            except TypeError:
                record = None
            if record is None or record.id != status.parent.name:
                continue
            if record.state not in TERMINAL:
                record = replace(record, state="failed", finished_at=record.finished_at,
                                 error="the service stopped before it finished")
            self._set(record)


def new_id() -> str:
    return "sim-" + secrets.token_hex(4)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_text(path: Path, limit: int = 2000) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:limit].strip() or None
    except OSError:
        return None
