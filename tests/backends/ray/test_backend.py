"""The Ray backend on a real 3-node local Ray cluster: the pool, jobs on each node, logs
and progress at the controller, stops, and adoption by a new controller."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slicebox.backends.base import NodeSource, Progress
from slicebox.backends.ray.backend import RayBackend
from slicebox.store import Store

from .cluster import DEFAULT_NODES, GIB, RayTestCluster
from .helpers import (
    job_argv,
    make_backend,
    node_named,
    on_node,
    started_job,
    wait_exit,
    wait_progress,
)


def _introspection(log: Path) -> dict:
    for line in log.read_text().splitlines():
        if line.startswith("INTROSPECT "):
            return json.loads(line.removeprefix("INTROSPECT "))
    raise AssertionError(f"no INTROSPECT line in {log}:\n{log.read_text()}")


def test_the_pool_is_what_the_agents_report(backend: RayBackend):
    assert isinstance(backend, NodeSource)
    nodes = {n.name: n for n in backend.nodes()}
    assert set(nodes) == set(DEFAULT_NODES)
    for name, (cpus, memory) in DEFAULT_NODES.items():
        assert len(nodes[name].cores) == cpus  # the first N discovered cores
        assert nodes[name].memory_gib == pytest.approx(memory / GIB)
    assert nodes["node-b"].memory_gib < nodes["node-a"].memory_gib


@pytest.mark.parametrize("name", list(DEFAULT_NODES))
def test_a_job_runs_on_its_node_pinned_and_its_log_reaches_the_controller(
        backend: RayBackend, store: Store, state: Path, name: str):
    node = node_named(backend, name)
    job, comp = started_job(store, on_node(node), job_argv("introspect.py"))
    started = backend.launch(job, comp)
    assert Path(started.log_path) == state / "logs" / f"{job.id}.log"
    exited, _ = wait_exit(backend, job.id)
    assert exited.exit_code == 0 and not exited.node_lost
    seen = _introspection(Path(started.log_path))  # read from the controller's copy
    assert seen["job_id"] == job.id
    assert seen["affinity"] == list(node.cores)


def test_progress_is_read_from_the_controllers_copy(backend: RayBackend, store: Store,
                                                    tmp_path: Path):
    node = node_named(backend, "node-a")
    job, comp = started_job(store, on_node(node), job_argv("sleeper.py", "1", str(tmp_path)))
    started = backend.launch(job, comp)
    _, events = wait_exit(backend, job.id)
    progress = [e for e in events if isinstance(e, Progress) and e.job_id == job.id]
    samples = [e.samples for e in progress if e.samples]
    assert samples and samples == sorted(samples) and samples[0] == 100
    # Offsets are positions in the controller's copy, which holds every report line.
    copy = Path(started.log_path).read_bytes()
    assert progress[-1].log_offset == len(copy)
    assert copy.count(b":::SLICEBOX") >= len(samples)


def test_stop_sends_the_checkpoint_signal(backend: RayBackend, store: Store, tmp_path: Path):
    node = node_named(backend, "node-b")
    job, comp = started_job(store, on_node(node), job_argv("sleeper.py", "30", str(tmp_path)),
                            checkpoint={"signal": "SIGTERM", "grace_seconds": 10})
    backend.launch(job, comp)
    wait_progress(backend, job.id)
    backend.stop(job)
    exited, _ = wait_exit(backend, job.id)
    assert (exited.exit_code, exited.stopped, exited.killed) == (0, True, False)
    assert (tmp_path / f"{job.id}.checkpoint").read_text() == "checkpointed"


def test_a_new_controller_adopts_a_running_job_and_sees_its_exit(
        ray_connected: RayTestCluster, backend: RayBackend, store: Store, state: Path,
        agent_root: str, tmp_path: Path):
    node = node_named(backend, "node-a")
    job, comp = started_job(store, on_node(node), job_argv("sleeper.py", "4", str(tmp_path)))
    started = backend.launch(job, comp)
    store.set_process(job.id, started.pid, started.start_time, started.log_path,
                      started.log_offset)
    progress = wait_progress(backend, job.id)
    store.record_progress(job.id, progress.time, progress.samples, progress.quality,
                          progress.log_offset)
    backend.close()  # the controller goes; the agent and the job stay
    fresh = make_backend(state, ray_connected.address, agent_root)
    try:
        adopted = fresh.adopt(store.job(job.id))
        assert adopted is not None and adopted.pid == started.pid
        assert adopted.log_path == started.log_path
        exited, events = wait_exit(fresh, job.id)
        assert exited.exit_code == 0
        samples = [e.samples for e in events if isinstance(e, Progress) and e.samples]
        # From the recorded offset on: nothing reread, nothing printed meanwhile lost.
        assert samples and samples[0] > (progress.samples or 0) and samples[-1] >= 3000
        assert not (tmp_path / "VIOLATIONS").exists()
    finally:
        fresh.close()


def test_a_job_on_a_node_not_in_the_pool_is_refused(backend: RayBackend, store: Store):
    from slicebox.backends.base import LaunchError
    from slicebox.pool.composition import Composition

    job, comp = started_job(store, lambda j: Composition.on_node(j, "nowhere", (), (0,), 1.0),
                            ["true"])
    with pytest.raises(LaunchError, match="nowhere"):
        backend.launch(job, comp)


def test_a_gang_runs_one_rank_on_each_node_and_ends_as_one_job(
        backend: RayBackend, store: Store, tmp_path: Path):
    from slicebox.pool.composition import Composition, Part

    head, node_a = node_named(backend, "head"), node_named(backend, "node-a")
    script = ("import os, pathlib, sys; env = os.environ; "
              "pathlib.Path(sys.argv[1], 'rank' + env['RANK']).write_text("
              "env['WORLD_SIZE'] + ' ' + env['SLICEBOX_NODE']); "
              "print('rank', env['RANK'], 'of', env['WORLD_SIZE'])")
    job, comp = started_job(store, lambda j: Composition(j, (
        Part("head", (), head.cores[:1], 1.0, (0,)),
        Part("node-a", (), node_a.cores, 1.0, (0,)))),
        ["python", "-c", script, str(tmp_path)], resources={"cpus": 1, "nodes": 2})
    started = backend.launch(job, comp)
    exited, _ = wait_exit(backend, job.id)
    assert exited.exit_code == 0, exited
    assert (tmp_path / "rank0").read_text() == "2 head"
    assert (tmp_path / "rank1").read_text() == "2 node-a"
    assert "rank 0 of 2" in Path(started.log_path).read_text()  # rank 0's log, copied


def test_a_job_that_ended_while_no_controller_watched_is_not_adopted_but_its_exit_is_read(
        ray_connected: RayTestCluster, backend: RayBackend, store: Store, state: Path,
        agent_root: str):
    node = node_named(backend, "node-b")
    job, comp = started_job(store, on_node(node), [
        "python", "-c", "import time, sys; time.sleep(0.5); sys.exit(7)"])
    started = backend.launch(job, comp)
    store.set_process(job.id, started.pid, started.start_time, started.log_path,
                      started.log_offset)
    backend.close()
    import time

    time.sleep(2.5)  # it ends while no controller runs
    fresh = make_backend(state, ray_connected.address, agent_root)
    try:
        record = store.job(job.id)
        assert fresh.adopt(record) is None
        exit_record = fresh.exit_record(record)
        assert exit_record is not None and exit_record.exit_code == 7
    finally:
        fresh.close()


def test_a_dataset_is_staged_on_the_chosen_node(backend: RayBackend, store: Store,
                                                tmp_path: Path):
    from slicebox.backends.base import Staged
    from slicebox.pool.composition import Composition, Staging

    from .helpers import wait_until

    source = tmp_path / "data"
    source.mkdir()
    (source / "train.bin").write_bytes(b"x" * 4096)
    target = tmp_path / "fast" / "data"
    node = node_named(backend, "node-a")
    staging = Staging("data", str(source), "fast", str(target), 4096 / GIB, cached=False)
    job, comp = started_job(store, lambda j: Composition.on_node(
        j, node.name, (), node.cores, 1.0, (0,), str(target), staging), ["true"])
    backend.stage(job, comp)
    event, _ = wait_until(backend, lambda e: isinstance(e, Staged) and e.job_id == job.id)
    assert isinstance(event, Staged) and event.bytes == 4096
    assert (target / "train.bin").read_bytes() == b"x" * 4096


def test_a_node_an_earlier_controller_fenced_runs_nothing_of_before_and_rejoins(
        ray_connected: RayTestCluster, backend: RayBackend, store: Store, state: Path,
        agent_root: str, tmp_path: Path):
    """As if the controller had declared node-b lost (fence marker written) and died:
    the next controller must not adopt what ran there, and gets the node back clean."""
    import time

    from ray.experimental import internal_kv

    from slicebox.backends import procs
    from slicebox.backends.ray.agent import fence_key

    node = node_named(backend, "node-b")
    job, comp = started_job(store, on_node(node), job_argv("sleeper.py", "60", str(tmp_path)))
    started = backend.launch(job, comp)
    store.set_process(job.id, started.pid, started.start_time, started.log_path,
                      started.log_offset)
    wait_progress(backend, job.id)
    key = fence_key(ray_connected.node_id("node-b"))
    internal_kv._internal_kv_put(key, b"{}", namespace="slicebox")
    backend.close()
    try:
        fresh = make_backend(state, ray_connected.address, agent_root)
        try:
            assert fresh.adopt(store.job(job.id)) is None
            end = time.monotonic() + 20
            while procs.job_processes(job.id) and time.monotonic() < end:
                time.sleep(0.2)
            assert procs.job_processes(job.id) == []
            end = time.monotonic() + 60  # taking the node back waits for its fence time
            while "node-b" not in {n.name for n in fresh.nodes()} and time.monotonic() < end:
                fresh.poll()
                time.sleep(0.2)
            assert not internal_kv._internal_kv_exists(key, namespace="slicebox")
            again, comp2 = started_job(store, on_node(node_named(fresh, "node-b")), ["true"])
            fresh.launch(again, comp2)
            assert wait_exit(fresh, again.id)[0].exit_code == 0
        finally:
            fresh.close()
    finally:
        internal_kv._internal_kv_del(key, namespace="slicebox")
