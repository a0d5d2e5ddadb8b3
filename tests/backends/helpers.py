"""Helpers for tests that drive the local backend directly."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from slicebox.backends.base import BackendEvent, Exited
from slicebox.backends.local import LocalBackend
from slicebox.pool.composition import Composition
from slicebox.pool.slices import Slice, SliceType
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import JobRecord, Store

JOBS = Path(__file__).resolve().parents[1] / "jobs"
CORES = tuple(sorted(os.sched_getaffinity(0)))


def job_argv(script: str, *args: str) -> list[str]:
    return [sys.executable, str(JOBS / script), *args]


def composition(job_id: str, cores: tuple[int, ...] = CORES[-1:], memory_gib: float = 1.5,
                gpu_uuid: str | None = None, data: str | None = None) -> Composition:
    slices = ()
    if gpu_uuid is not None:  # a card that is not here: only its UUID reaches the job
        slices = (Slice("local", 0, "H100", SliceType.FRACTION, 0.5, 40.0, gpu_uuid),)
    return Composition.on_node(job_id, "local", slices, cores, memory_gib, (0,), data)


def started_job(store: Store, comp_for: Callable[[str], Composition], argv: list[str],
                **spec: object) -> tuple[JobRecord, Composition]:
    job_id = store.submit(parse_spec({"name": "t", "command": argv, **spec}))
    comp = comp_for(job_id)
    return store.start(job_id, JobState.RUNNING, comp, "test"), comp


def wait_for(backend: LocalBackend, job_id: str, timeout: float = 20.0
             ) -> tuple[Exited, list[BackendEvent]]:
    seen: list[BackendEvent] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for event in backend.poll():
            seen.append(event)
            if isinstance(event, Exited) and event.job_id == job_id:
                return event, seen
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} did not exit within {timeout}s")
