"""The controller on a real local Ray cluster (H1's test cluster): jobs placed across its
nodes, a node lost under a running job (requeued, waits, resumes from its checkpoint on a
node that joins), and `slicebox up --backend ray` killed with SIGKILL and started again
(its jobs adopted, none run twice)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray")

from slicebox import policies  # noqa: E402
from slicebox.backends.ray.backend import RayBackend  # noqa: E402
from slicebox.controller import Controller  # noqa: E402
from slicebox.placement.placer import Placer  # noqa: E402
from slicebox.pool.model import Pool  # noqa: E402
from slicebox.snapshot import JobState  # noqa: E402
from slicebox.spec import parse_spec  # noqa: E402
from slicebox.store import Store  # noqa: E402
from tests.backends.ray.cluster import GIB, RayTestCluster  # noqa: E402
from tests.backends.ray.helpers import job_argv, make_backend  # noqa: E402

pytestmark = pytest.mark.slow
SLICEBOX = [sys.executable, "-c", "from slicebox.cli import app; app(prog_name='slicebox')"]


class RayController:
    def __init__(self, state: Path, backend: RayBackend) -> None:
        self.store = Store.open(state)
        self.backend = backend
        the_pool = Pool(backend.nodes(), "ray")
        self.controller = Controller(self.store, the_pool, policies.get("fifo"),
                                     Placer(the_pool), backend, state, interval=0.2)

    def submit(self, name: str, argv: list[str], **resources: object) -> str:
        return self.store.submit(parse_spec({"name": name, "command": argv,
                                             "resources": resources}))

    def run_until(self, done: Callable[[], bool], timeout: float, what: str) -> list[str]:
        changes: list[str] = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            changes += self.controller.run_once().pool_changes
            if done():
                return changes
            time.sleep(0.2)
        states = {j.id: (j.state.value, j.reason) for j in self.store.jobs()}
        raise TimeoutError(f"{what} not within {timeout}s: {states}; pool changes {changes}")

    def state(self, job_id: str) -> JobState:
        return self.store.job(job_id).state


@pytest.fixture()
def ray_controller(ray_connected: RayTestCluster, tmp_path: Path,  # noqa: F811
                   agent_root: str) -> Iterator[RayController]:  # noqa: F811
    backend = make_backend(tmp_path / "state", ray_connected.address, agent_root)
    made = RayController(tmp_path / "state", backend)
    try:
        yield made
    finally:
        made.controller.close()


def test_jobs_run_through_the_controller_across_the_clusters_nodes(
        ray_controller: RayController, tmp_path: Path) -> None:
    ids = [ray_controller.submit(f"sleeper-{i}", job_argv("sleeper.py", "3", str(tmp_path)),
                                 cpus=1, memory_gib=0.5) for i in range(4)]
    ray_controller.run_until(
        lambda: all(ray_controller.state(j).terminal for j in ids), 120, "all jobs ended")
    nodes = set()
    for job_id in ids:
        record = ray_controller.store.job(job_id)
        assert record.state is JobState.SUCCEEDED, (record.reason, record.log_path)
        assert record.samples and record.samples > 0  # progress came back from the agent
        assert record.composition is not None
        nodes.update(record.composition.nodes)
    assert len(nodes) >= 2  # four one-core jobs on nodes of 2, 1 and 1 cores
    assert not (tmp_path / "VIOLATIONS").exists()


def test_a_node_lost_under_a_job_requeues_it_to_resume_on_a_node_that_joins(
        ray_connected: RayTestCluster, ray_controller: RayController,  # noqa: F811
        tmp_path: Path) -> None:
    # Only node-c (6 GiB declared) fits a 5 GiB job: it must run there, and after the
    # node dies it can run nowhere until node-d joins.
    ray_connected.add_node("node-c", cpus=1, memory=6 * GIB)
    added = ["node-c"]
    try:
        ray_controller.run_until(
            lambda: "node-c" in {n.name for n in ray_controller.controller.pool.nodes}, 60,
            "node-c in the pool")
        result = tmp_path / "result.json"
        job = ray_controller.submit("ckpt", job_argv("checkpointing.py", "400", "0.05", "20",
                                                     str(result)), cpus=1, memory_gib=5)
        ray_controller.run_until(
            lambda: (ray_controller.store.job(job).samples or 0) >= 40, 120,
            "two checkpoints saved")
        assert ray_controller.store.job(job).composition.nodes == ("node-c",)  # type: ignore[union-attr]
        ray_connected.remove_node("node-c")
        added.remove("node-c")
        changes = ray_controller.run_until(
            lambda: ray_controller.state(job) is JobState.QUEUED, 90, "requeued")
        assert "node node-c left the pool" in changes
        record = ray_controller.store.job(job)
        assert "node-c" in record.reason  # waits for capacity that left, not failed
        [ckpt] = ray_controller.store.checkpoints(job)
        assert ckpt.outcome == "gone" and "node node-c left the pool" in ckpt.reason
        ray_connected.add_node("node-d", cpus=1, memory=6 * GIB)
        added.append("node-d")
        ray_controller.run_until(lambda: ray_controller.state(job).terminal, 180,
                                 "the job finished on node-d")
        record = ray_controller.store.job(job)
        assert record.state is JobState.SUCCEEDED, record.reason
        assert record.composition is not None and record.composition.nodes == ("node-d",)
        done = json.loads(result.read_text())
        assert done["steps"] == 400 and done["sum"] == 400 * 401 // 2  # nothing lost twice
        assert done["attempts"] == [1, 2]  # the second attempt restored the first's state
    finally:
        for name in added:
            ray_connected.remove_node(name)


def _cli(state: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SLICEBOX, "--state", str(state), *args], capture_output=True,
                          text=True, timeout=120, check=False, **kwargs)  # type: ignore[call-overload]


def _up(state: Path, address: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([*SLICEBOX, "--state", str(state), "up", "--backend", "ray",
                                 "--address", address, "--no-mlflow", "--interval", "0.2"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait(done: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if done():
            return
        time.sleep(0.3)
    raise TimeoutError(f"{what} not within {timeout}s; controller log:\n{log.read_text()}")


def test_up_killed_with_sigkill_and_started_again_adopts_its_ray_jobs(
        ray_connected: RayTestCluster, tmp_path: Path) -> None:  # noqa: F811
    state, log = tmp_path / "state", tmp_path / "up.log"
    jobs = []
    for i in range(2):
        spec = tmp_path / f"sleeper-{i}.yaml"
        spec.write_text(json.dumps({
            "name": f"sleeper-{i}", "command": job_argv("sleeper.py", "25", str(tmp_path)),
            "resources": {"cpus": 1, "memory_gib": 0.5}}))
        jobs.append(spec)
    first = _up(state, ray_connected.address, log)
    try:
        submitted = _cli(state, "submit", *map(str, jobs), "--json")
        assert submitted.returncode == 0, submitted.stderr
        ids = json.loads(submitted.stdout)["submitted"]
        store = Store.open(state)
        _wait(lambda: all((store.job(j).samples or 0) > 0 for j in ids), 120,
              "both jobs running and reporting", log)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    assert all(store.job(j).state is JobState.RUNNING for j in ids)
    second = _up(state, ray_connected.address, log)
    try:
        _wait(lambda: all(store.job(j).state.terminal for j in ids), 180,
              "both jobs finished under the second controller", log)
    finally:
        second.send_signal(signal.SIGINT)
        try:
            second.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(second.pid, signal.SIGKILL)
    for job_id in ids:
        record = store.job(job_id)
        assert record.state is JobState.SUCCEEDED, record.reason
        assert record.attempt == 1  # adopted, never started again
        assert any("adopted" in e.reason for e in store.events(job_id)), \
            [e.reason for e in store.events(job_id)]
    assert not (tmp_path / "VIOLATIONS").exists()  # no job ran twice at once
