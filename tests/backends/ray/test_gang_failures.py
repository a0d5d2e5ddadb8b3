"""A Ray node dies under one rank of a running gang: every rank stops, and the job comes
back once, as a node loss (requeued to resume from its checkpoint), not as a failure."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from slicebox.backends import procs
from slicebox.backends.ray.backend import RayBackend
from slicebox.backends.ray.gang import group_name
from slicebox.store import Store

from .cluster import GIB, RayTestCluster
from .helpers import started_job, wait_exit
from .test_gang_ray import gang_on, rank_program, removed, wait_files

pytestmark = pytest.mark.slow


def wait_for_node(backend: RayBackend, name: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        backend.poll()
        if name in {n.name for n in backend.nodes()}:
            return
        time.sleep(0.2)
    raise TimeoutError(f"node {name} never joined")


def test_a_node_lost_under_one_rank_stops_every_rank_and_is_the_jobs_node_loss(
        ray_connected: RayTestCluster, backend: RayBackend, store: Store, tmp_path: Path):
    ray_connected.add_node("node-g", cpus=1, memory=2 * GIB)
    try:
        wait_for_node(backend, "node-g")
        argv, out = rank_program(tmp_path)  # the ranks run until told "go": never, here
        job, comp = started_job(store, gang_on(backend, ("node-a", "node-g")), argv,
                                resources={"cpus": 1, "nodes": 2})
        backend.launch(job, comp)
        wait_files(out, ["rank-0.json", "rank-1.json"])
        assert len(procs.job_processes(job.id)) >= 2
    finally:
        ray_connected.remove_node("node-g")
    exited, seen = wait_exit(backend, job.id, timeout=90)
    assert exited.node_lost and exited.attempt == job.attempt
    assert "node-g" in (exited.error or "")
    assert [e for e in seen if getattr(e, "job_id", None) == job.id
            and type(e).__name__ == "Exited"] == [exited]  # one exit for the whole gang
    # Rank 0, on the node that lived, was stopped too: nothing of the job runs anywhere.
    end = time.monotonic() + 10
    while procs.job_processes(job.id) and time.monotonic() < end:
        time.sleep(0.2)
    assert procs.job_processes(job.id) == []
    assert removed(group_name(job.id, job.attempt))
