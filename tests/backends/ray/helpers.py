"""Helpers for tests that drive the Ray backend on the test cluster."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from slicebox.backends.base import BackendEvent, Exited, Progress
from slicebox.backends.ray.backend import RayBackend
from slicebox.pool.composition import Composition
from slicebox.pool.model import Node
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import JobRecord, Store

from ..helpers import job_argv

FENCE = 3.0
HEARTBEAT = 6.0

__all__ = ["FENCE", "HEARTBEAT", "job_argv", "make_backend", "node_named", "on_node",
           "started_job", "wait_until", "wait_exit"]


def make_backend(state: Path, address: str, agent_root: str) -> RayBackend:
    return RayBackend(state, address, fence_seconds=FENCE, heartbeat_timeout=HEARTBEAT,
                      agent_root=agent_root)


def node_named(backend: RayBackend, name: str) -> Node:
    for node in backend.nodes():
        if node.name == name:
            return node
    raise AssertionError(f"no node {name} in {[n.name for n in backend.nodes()]}")


def on_node(node: Node, memory_gib: float = 1.0) -> Callable[[str], Composition]:
    return lambda job_id: Composition.on_node(job_id, node.name, (), node.cores, memory_gib,
                                              (node.cores_by_numa[0][0],))


def started_job(store: Store, comp_for: Callable[[str], Composition], argv: list[str],
                **spec: object) -> tuple[JobRecord, Composition]:
    job_id = store.submit(parse_spec({"name": "t", "command": argv, **spec}))
    comp = comp_for(job_id)
    return store.start(job_id, JobState.RUNNING, comp, "test"), comp


def wait_until(backend: RayBackend, done: Callable[[BackendEvent], bool],
               timeout: float = 30.0) -> tuple[BackendEvent, list[BackendEvent]]:
    seen: list[BackendEvent] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for event in backend.poll():
            seen.append(event)
            if done(event):
                return event, seen
        time.sleep(0.1)
    raise TimeoutError(f"no such event within {timeout}s; saw {seen[-5:]}")


def wait_exit(backend: RayBackend, job_id: str, timeout: float = 30.0
              ) -> tuple[Exited, list[BackendEvent]]:
    event, seen = wait_until(
        backend, lambda e: isinstance(e, Exited) and e.job_id == job_id, timeout)
    assert isinstance(event, Exited)
    return event, seen


def wait_progress(backend: RayBackend, job_id: str, timeout: float = 30.0) -> Progress:
    event, _ = wait_until(
        backend, lambda e: isinstance(e, Progress) and e.job_id == job_id
        and e.samples is not None, timeout)
    assert isinstance(event, Progress)
    return event
