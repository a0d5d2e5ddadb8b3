"""Fake replicas as real processes (so a test can SIGKILL one) and a started balancer."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slicebox.serving.balancer import Balancer, Replica
from slicebox.serving.replicas import free_port

FAKE = Path(__file__).with_name("fake_replica.py")


class FakeReplicas:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str, delay_ms: float = 0.0, port: int | None = None) -> Replica:
        port = port or self.ports.get(name) or free_port()
        process = subprocess.Popen(
            [sys.executable, str(FAKE), str(port), name, str(delay_ms)],
            env={"FAKE_REPLICA_DIR": str(self.directory), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes[name], self.ports[name] = process, port
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, f"fake replica {name} exited"
            assert time.monotonic() < deadline, f"fake replica {name} did not start"
            time.sleep(0.05)
        return Replica(name, "127.0.0.1", port)

    def kill(self, name: str) -> None:
        self.processes[name].kill()
        self.processes[name].wait()

    def sick(self, name: str, sick: bool) -> None:
        flag = self.directory / f"{name}.sick"
        if sick:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[FakeReplicas]:
    replicas = FakeReplicas(tmp_path)
    try:
        yield replicas
    finally:
        replicas.stop_all()


@pytest.fixture
def balancer() -> Iterator[Balancer]:
    b = Balancer(health_interval_s=0.2, window_s=5.0, objective_p99_ms=500.0)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def wait_until(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
