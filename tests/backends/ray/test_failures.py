"""Nodes that join, die, or freeze under running jobs (real Ray nodes, removed or stopped).

Each test adds a node of its own, so the shared nodes stay healthy for the other tests."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from slicebox.backends import procs
from slicebox.backends.base import Exited
from slicebox.backends.ray.backend import RayBackend
from slicebox.store import Store

from .cluster import GIB, RayTestCluster
from .helpers import (
    FENCE,
    HEARTBEAT,
    job_argv,
    node_named,
    on_node,
    started_job,
    wait_exit,
    wait_progress,
)

pytestmark = pytest.mark.slow


def _wait_for_node(backend: RayBackend, name: str, present: bool, timeout: float = 30.0
                   ) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        backend.poll()
        if (name in {n.name for n in backend.nodes()}) == present:
            return
        time.sleep(0.2)
    raise TimeoutError(f"node {name} {'never joined' if present else 'never left'}")


def test_a_node_that_joins_is_used_and_one_that_dies_loses_its_jobs(
        ray_connected: RayTestCluster, backend: RayBackend, store: Store, tmp_path: Path):
    ray_connected.add_node("node-c", cpus=1, memory=2 * GIB)
    try:
        _wait_for_node(backend, "node-c", present=True)
        node = node_named(backend, "node-c")
        assert len(node.cores) == 1
        job, comp = started_job(store, on_node(node),
                                job_argv("sleeper.py", "120", str(tmp_path)))
        backend.launch(job, comp)
        wait_progress(backend, job.id)
        assert procs.job_processes(job.id)
    finally:
        ray_connected.remove_node("node-c")
    exited, _ = wait_exit(backend, job.id, timeout=90)
    assert exited.node_lost and exited.attempt == job.attempt
    assert procs.job_processes(job.id) == []  # nothing of it runs on
    assert "node-c" not in {n.name for n in backend.nodes()}


def test_a_frozen_agent_is_fenced_before_its_node_is_declared_lost(
        ray_connected: RayTestCluster, backend: RayBackend, store: Store, tmp_path: Path):
    import ray

    from slicebox.backends.ray.agent import agent_name

    node_id = ray_connected.add_node("node-f", cpus=1, memory=2 * GIB)
    try:
        _wait_for_node(backend, "node-f", present=True)
        agent = ray.get_actor(agent_name(node_id), namespace="slicebox")
        agent_pid = ray.get(agent.describe.remote()).pid
        node = node_named(backend, "node-f")
        job, comp = started_job(store, on_node(node),
                                job_argv("sleeper.py", "120", str(tmp_path)))
        backend.launch(job, comp)
        wait_progress(backend, job.id)
        frozen = time.monotonic()
        os.kill(agent_pid, signal.SIGSTOP)
        try:
            gone_at = None
            end = time.monotonic() + 60
            exited = None
            while exited is None and time.monotonic() < end:
                if gone_at is None and not procs.job_processes(job.id):
                    gone_at = time.monotonic()
                exited = next((e for e in backend.poll()
                               if isinstance(e, Exited) and e.job_id == job.id), None)
                time.sleep(0.1)
            lost_at = time.monotonic()
            assert exited is not None and exited.node_lost
            # Its launcher fenced it (keepalive stale) before the node was declared lost.
            assert gone_at is not None and gone_at < lost_at
            # Not at once (the job ran on while its keepalive was fresh: last touched up
            # to a heartbeat before the freeze), and the controller waited for it.
            assert gone_at - frozen >= FENCE - 1.5
            assert lost_at - frozen >= HEARTBEAT + FENCE
            assert "node-f" not in {n.name for n in backend.nodes()}
        finally:
            os.kill(agent_pid, signal.SIGCONT)
        # Back in touch: the node returns to the pool, and the attempt never runs again.
        _wait_for_node(backend, "node-f", present=True)
        assert procs.job_processes(job.id) == []
        assert not (tmp_path / "VIOLATIONS").exists()
        # And it runs new work again.
        job2, comp2 = started_job(store, on_node(node), job_argv("sleeper.py", "0.3",
                                                                 str(tmp_path)))
        backend.launch(job2, comp2)
        assert wait_exit(backend, job2.id)[0].exit_code == 0
    finally:
        ray_connected.remove_node("node-f")
