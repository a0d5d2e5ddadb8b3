"""Replicas as local processes, each pinned to its own cores: what the benchmark, sizing
and the tests run the model server as (the controller runs replicas through its backend).

The model server pins itself (``--cpus``) before torch starts, so no ``taskset`` and no
``preexec_fn`` (unsafe in a process with threads, as one running a balancer is).
Every replica's allocated core-seconds (cores x seconds alive) and the CPU time it
actually burned are kept, for the benchmark's comparison.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from slicebox.errors import SliceboxError
from slicebox.serving.balancer import Replica

_START_TIMEOUT_S = 60.0


class ReplicaError(SliceboxError):
    """A replica process could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class _Running:
    replica: Replica
    cores: tuple[int, ...]
    process: subprocess.Popen[bytes]
    started: float
    cpu_s: float = 0.0  # last CPU time seen (kept when the process is gone)


@dataclass
class LocalReplicas:
    """Model-server replicas of one service on this machine."""

    weights: Path
    host: str = "127.0.0.1"
    log_dir: Path | None = None
    extra_args: Sequence[str] = ()
    core_seconds: float = 0.0  # of replicas that have ended
    cpu_seconds: float = 0.0  # of replicas that have ended
    _running: dict[str, _Running] = field(default_factory=dict)
    _serial: int = 0

    def start(self, cores: Sequence[int], name: str | None = None) -> Replica:
        """Start one replica pinned to ``cores``; returns at once (it is not yet ready)."""
        self._serial += 1
        name = name or f"replica-{self._serial}"
        port = free_port(self.host)
        command = [sys.executable, "-m", "slicebox.serving.model_server", "--host", self.host,
                   "--port", str(port), "--cpus", ",".join(map(str, cores)),
                   "--weights", str(self.weights), *self.extra_args]
        if self.log_dir is None:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        else:
            with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its copy
                process = subprocess.Popen(command, stdout=log, stderr=log,
                                           stdin=subprocess.DEVNULL)
        replica = Replica(name, self.host, port)
        self._running[name] = _Running(replica, tuple(cores), process, time.monotonic())
        return replica

    def replicas(self) -> list[Replica]:
        return [r.replica for r in self._running.values()]

    def cores_of(self, name: str) -> tuple[int, ...]:
        return self._running[name].cores

    def pid(self, name: str) -> int:
        return self._running[name].process.pid

    def wait_ready(self, names: Sequence[str] | None = None,
                   timeout_s: float = _START_TIMEOUT_S) -> None:
        """Wait until each replica answers its health check (raises if one exits)."""
        import httpx

        deadline = time.monotonic() + timeout_s
        for name in names or list(self._running):
            run = self._running[name]
            url = f"http://{run.replica.host}:{run.replica.port}/health"
            while True:
                if run.process.poll() is not None:
                    raise ReplicaError(f"replica {name} exited with {run.process.returncode}")
                try:
                    if httpx.get(url, timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ReplicaError(f"replica {name} not ready within {timeout_s:.0f} s")
                time.sleep(0.1)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would: the replica stays listed (its port stays its own)."""
        run = self._running[name]
        self._sample_cpu(run)
        run.process.send_signal(signal.SIGKILL)
        run.process.wait()

    def stop(self, name: str, grace_s: float = 5.0) -> None:
        run = self._running.pop(name)
        self._sample_cpu(run)
        if run.process.poll() is None:
            run.process.terminate()
            try:
                run.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.process.wait()
        self.core_seconds += len(run.cores) * (time.monotonic() - run.started)
        self.cpu_seconds += run.cpu_s

    def stop_all(self) -> None:
        for name in list(self._running):
            self.stop(name)

    def usage(self) -> tuple[float, float]:
        """(allocated core-seconds, CPU seconds burned) so far, ended and running."""
        now = time.monotonic()
        core_s, cpu_s = self.core_seconds, self.cpu_seconds
        for run in self._running.values():
            self._sample_cpu(run)
            core_s += len(run.cores) * (now - run.started)
            cpu_s += run.cpu_s
        return core_s, cpu_s

    @staticmethod
    def _sample_cpu(run: _Running) -> None:
        try:
            times = psutil.Process(run.process.pid).cpu_times()
            run.cpu_s = times.user + times.system
        except psutil.Error:
            pass

    def __enter__(self) -> LocalReplicas:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()


def affinity_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))
