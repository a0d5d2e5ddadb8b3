"""A one-node pool of this machine's cores (plus a card that is not here, for its UUID)
with a slow and a fast volume in temporary folders, and a controller driving it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from slicebox import policies
from slicebox.backends.local import LocalBackend
from slicebox.controller import Controller, submit_file
from slicebox.placement.placer import Placer
from slicebox.pool.files import load_pool
from slicebox.pool.model import Pool
from slicebox.snapshot import JobState
from slicebox.store import Store

JOBS = Path(__file__).resolve().parents[1] / "jobs"
CORES = sorted(os.sched_getaffinity(0))
GPU_UUID = "GPU-00000000-5b1c-4e0a-9000-00000000000a"
NODE = "local"


def write_pool(root: Path) -> Path:
    """The pool file; volumes ``hdd`` and ``nvme`` live under ``root``."""
    for tier in ("hdd", "nvme"):
        (root / tier).mkdir(parents=True, exist_ok=True)
    volume = {"capacity_gib": 10, "read_mbps": 100, "write_mbps": 100}
    pool = {"name": "test", "nodes": [{
        "name": NODE, "memory_gib": 8, "cores": {0: CORES},
        "gpus": [{"kind": "L4", "count": 1, "numa": 0, "uuids": [GPU_UUID]}],
        "volumes": [{"name": "hdd", "path": str(root / "hdd"), "tier": "hdd", **volume},
                    {"name": "nvme", "path": str(root / "nvme"), "tier": "nvme", **volume}],
    }]}
    path = root / "pool.yaml"
    path.write_text(yaml.safe_dump(pool))
    return path


class Setup:
    """Store, pool, placer and a controller over one state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.pool_file = write_pool(root)
        self.pool: Pool = load_pool(self.pool_file)
        self.store = Store.open(self.state)
        self.placer = Placer(self.pool)
        self.locks = root / "locks"
        self.locks.mkdir(exist_ok=True)
        self.controller: Controller | None = None

    def new_controller(self) -> Controller:
        backend = LocalBackend(self.state, node=NODE)
        self.controller = Controller(self.store, self.pool, policies.get("fifo"), self.placer,
                                     backend, self.state, interval=0.05)
        return self.controller

    def job_file(self, name: str, command: list[str], **fields: object) -> Path:
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, "command": command, **fields}))
        return path

    def submit(self, name: str, command: list[str], **fields: object) -> str:
        return submit_file(self.store, self.pool, self.placer,
                           self.job_file(name, command, **fields), cwd=self.root)

    def python_job(self, script: str, *args: str) -> list[str]:
        return [sys.executable, str(JOBS / script), *args]

    def run_until(self, done: Callable[[], bool], timeout: float = 30.0,
                  every: float = 0.05) -> None:
        """Controller rounds every ``every`` seconds until ``done()``. Tests that measure
        a job's speed use `slicebox up`'s own 1 s: a test polling the store 20 times a
        second takes CPU from the job it measures."""
        controller = self.controller or self.new_controller()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            controller.run_once()
            if done():
                return
            time.sleep(every)
        states = {j.id: (j.state.value, j.reason) for j in self.store.jobs()}
        raise TimeoutError(f"not done within {timeout}s: {states}")

    def state_of(self, job_id: str) -> JobState:
        return self.store.job(job_id).state

    def finished(self, *job_ids: str) -> Callable[[], bool]:
        return lambda: all(self.state_of(j).terminal for j in job_ids)

    def reasons(self, job_id: str) -> list[tuple[str, str]]:
        return [(e.kind, e.reason) for e in self.store.events(job_id)]
