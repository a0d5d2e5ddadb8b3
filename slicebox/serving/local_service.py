"""A service run on this machine: model-server replicas as local processes on their own
cores, the balancer in front, and (optionally) the autoscaler deciding the count.

This is the data plane end to end without the controller: what ``benchmarks/serving.py``
and the live autoscaling test run. A control thread asks the ``Autoscaler`` every
``tick_s`` with the balancer's stats; a new replica is started on free cores and handed
to the balancer (which admits it after a passing health check); a replica scaled away is
first removed from the balancer, drained, then stopped. ``timeline`` records, each tick,
how many replicas run and how many are healthy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slicebox.errors import InputError
from slicebox.serving.autoscaler import Autoscaler
from slicebox.serving.balancer import Balancer
from slicebox.serving.replicas import LocalReplicas

_DRAIN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Tick:
    at_s: float  # since the service started
    replicas: int
    healthy: int
    rate_rps: float
    p99_ms: float


class LocalService:
    def __init__(self, balancer: Balancer, replicas: LocalReplicas, cores: Sequence[int],
                 shape_cores: int, *, initial: int, autoscaler: Autoscaler | None = None,
                 tick_s: float = 0.5) -> None:
        slots = len(cores) // shape_cores if shape_cores > 0 else 0
        most = autoscaler.max_replicas if autoscaler is not None else initial
        if shape_cores < 1 or most > slots or initial > slots:
            raise InputError(f"{max(most, initial)} replicas of {shape_cores} core(s) do not "
                             f"fit the {len(cores)} core(s) given")
        self.balancer = balancer
        self.replicas = replicas
        self.cores = list(cores)
        self.shape_cores = shape_cores
        self.initial = initial
        self.autoscaler = autoscaler
        self.tick_s = tick_s
        self.timeline: list[Tick] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._lock = threading.Lock()  # one change of replicas at a time

    def _free_cores(self) -> list[int]:
        used = {c for r in self.replicas.replicas() for c in self.replicas.cores_of(r.name)}
        return [c for c in self.cores if c not in used][:self.shape_cores]

    def add(self) -> None:
        with self._lock:
            self.replicas.start(self._free_cores())
            self.balancer.set_replicas(self.replicas.replicas())

    def remove(self) -> None:
        """Take the newest replica out of the balancer, let it drain, stop it."""
        with self._lock:
            victim = self.replicas.replicas()[-1]
            self.balancer.set_replicas([r for r in self.replicas.replicas() if r != victim])
            self.balancer.wait_drained([victim.name], _DRAIN_TIMEOUT_S)
            self.replicas.stop(victim.name)

    def start(self, wait_ready: bool = True) -> None:
        """The initial replicas (ready, and admitted by the balancer), then the control
        thread."""
        for _ in range(self.initial):
            self.replicas.start(self._free_cores())
        if wait_ready:
            self.replicas.wait_ready()
        self.balancer.set_replicas(self.replicas.replicas())
        deadline = time.monotonic() + 30
        while len(self.balancer.healthy()) < self.initial and time.monotonic() < deadline:
            time.sleep(0.05)
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._control, name="slicebox-autoscale",
                                        daemon=True)
        self._thread.start()

    def _control(self) -> None:
        while not self._stop.wait(self.tick_s):
            now = time.monotonic()
            stats = self.balancer.stats()
            current = len(self.replicas.replicas())
            self.timeline.append(Tick(now - self._started, current,
                                      len(self.balancer.healthy()), stats.rate_rps,
                                      stats.p99_ms))
            if self.autoscaler is None:
                continue
            wanted = self.autoscaler.desired(now, current, stats)
            for _ in range(wanted - current):
                self.add()
            for _ in range(current - wanted):
                self.remove()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.replicas.stop_all()

    def __enter__(self) -> LocalService:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def prepare_weights(weights: Path, train_seconds: float = 2.0, width: int | None = None) -> None:
    """Train the served model once (in a child process: this one stays free of torch)
    so every replica only loads it."""
    import subprocess
    import sys

    if weights.is_file():
        return
    command = [sys.executable, "-m", "slicebox.serving.model_server", "--prepare-only",
               "--weights", str(weights), "--train-seconds", str(train_seconds)]
    if width is not None:
        command += ["--width", str(width)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, timeout=300)
