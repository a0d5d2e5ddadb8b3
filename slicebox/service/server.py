"""Running the service: uvicorn on a thread of the calling process (beside the
controller's loop), a pid file under the state directory, and a clean stop.

``serve(...)`` binds the socket first (so "address in use" is an error at once, in the
caller), starts uvicorn on a thread, waits until it answers, and writes
``<state>/service.json`` (pid, its start time, url). ``Service.stop()`` lets requests in
flight finish (for up to ``grace_seconds``), stops the thread and removes the file.
``running(state)`` reads the file back (a file whose process is gone, or whose pid now
belongs to another process, is stale and ignored); ``stop_running(state)`` stops the
process that serves (SIGTERM), which is how ``slicebox down`` stops a detached ``up``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from slicebox.errors import SliceboxError
from slicebox.listening import listening_socket, serve_on_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    import uvicorn
    from fastapi import FastAPI

    from slicebox.placement import Placer
    from slicebox.pool.model import Pool
    from slicebox.service.metrics import RoundLatency
    from slicebox.store import Store

log = logging.getLogger(__name__)
PID_FILE = "service.json"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class ServiceError(SliceboxError):
    """The service could not be started or stopped."""


@dataclass(frozen=True)
class ServiceInfo:
    """What ``service.json`` says about a running service."""

    pid: int
    started_at: float  # the process's start time (psutil), against pid reuse
    host: str
    port: int
    url: str


@dataclass
class Service:
    """A service running on a thread of this process."""

    url: str
    host: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread
    pid_file: Path | None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, finish what is in flight, stop the thread, remove the pid file."""
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():  # a stream still open past the grace period
            self.server.force_exit = True
            self.thread.join(timeout)
        if self.pid_file is not None:
            _remove_if_ours(self.pid_file)
        simulations = getattr(getattr(self.server.config.app, "state", None), "simulations",
                              None)
        if simulations is not None:
            simulations.close()  # waiting ones cancelled, running ones stopped

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start(store: Store, pool: Pool | Callable[[], Pool],
          placer: Placer | Callable[[], Placer] | None = None, *, state_dir: Path,
          host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          rounds: RoundLatency | None = None, mlflow_ui: str | None = None) -> Service:
    """The API over ``store`` served for ``state_dir`` (its pid file there): what
    ``slicebox up`` runs beside its controller (``pool``/``placer``: the controller's, or
    functions returning its current ones; see ``app.create_app``; ``rounds``: where the
    controller times its rounds, for /metrics; ``mlflow_ui``: the MLflow UI the dashboard
    links jobs' runs to)."""
    from slicebox.service.app import create_app

    app = create_app(store, pool, placer, state_dir=state_dir, rounds=rounds,
                     mlflow_ui=mlflow_ui)
    return serve(app, host=host, port=port, state_dir=state_dir)


def serve(app: FastAPI, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          state_dir: Path | None = None, grace_seconds: float = 5.0,
          access_log: bool = False) -> Service:
    """Serve ``app`` on ``host:port`` (port 0: any free port) from a thread; returns once
    it answers. ``state_dir``: where the pid file goes (None: no pid file)."""
    import uvicorn

    pid_file = Path(state_dir) / PID_FILE if state_dir is not None else None
    if pid_file is not None:
        other = running(pid_file.parent)
        if other is not None and other.pid != os.getpid():
            raise ServiceError(f"a service already runs for this state directory "
                               f"(pid {other.pid}, {other.url}); stop it first "
                               "(slicebox down)")
    sock = listening_socket(host, port, backlog=128, error=ServiceError, host_label="--host")
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(app, log_config=None, access_log=access_log,
                            timeout_graceful_shutdown=int(max(grace_seconds, 1)),
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = serve_on_thread(server, lambda: server.serve(sockets=[sock]),
                             name="slicebox-service", what="service", error=ServiceError,
                             on_exit=sock.close)
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{shown_host}:{bound_port}"
    if pid_file is not None:
        _write_pid_file(pid_file, bound_host, bound_port, url)
    log.info("service on %s", url)
    return Service(url, bound_host, bound_port, server, thread, pid_file)


def _write_pid_file(path: Path, host: str, port: int, url: str) -> None:
    me = psutil.Process()
    data = {"pid": me.pid, "started_at": me.create_time(), "host": host, "port": port,
            "url": url}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _remove_if_ours(path: Path) -> None:
    info = _read(path)
    if info is not None and info.pid == os.getpid():
        path.unlink(missing_ok=True)


def _read(path: Path) -> ServiceInfo | None:
    try:
        data: Any = json.loads(path.read_text())
        return ServiceInfo(pid=int(data["pid"]), started_at=float(data["started_at"]),
                           host=str(data["host"]), port=int(data["port"]),
                           url=str(data["url"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running(state_dir: Path) -> ServiceInfo | None:
    """The service serving ``state_dir``, if its process is alive (and is the one that
    wrote the file: same pid and start time)."""
    info = _read(Path(state_dir) / PID_FILE)
    if info is None:
        return None
    try:
        process = psutil.Process(info.pid)
        if abs(process.create_time() - info.started_at) > 1.0:
            return None  # the pid was reused
    except psutil.Error:
        return None
    return info


def _wait_ended(process: psutil.Process, timeout: float) -> None:
    """Until ``process`` has exited. Not ``Process.wait``: for a process that is not our
    child it waits for the pid to vanish, and an exited process whose parent has not
    reaped it yet (a zombie) keeps its pid."""
    deadline = time.monotonic() + timeout
    while process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
        if time.monotonic() >= deadline:
            raise psutil.TimeoutExpired(timeout, process.pid)
        time.sleep(0.1)


def stop_running(state_dir: Path, timeout: float = 30.0) -> ServiceInfo | None:
    """Ask the process that serves ``state_dir`` to stop (SIGTERM) and wait for it; what
    was stopped, or None when nothing ran. The stale file of a dead one is removed."""
    info = running(state_dir)
    path = Path(state_dir) / PID_FILE
    if info is None:
        path.unlink(missing_ok=True)
        return None
    if info.pid == os.getpid():
        raise ServiceError("the service runs in this process; call Service.stop()")
    try:
        process = psutil.Process(info.pid)
        process.send_signal(signal.SIGTERM)
        _wait_ended(process, timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        raise ServiceError(f"the service (pid {info.pid}) did not stop within "
                           f"{timeout:.0f} s") from None
    path.unlink(missing_ok=True)
    return info
