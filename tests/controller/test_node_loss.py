"""The controller on a pool whose nodes leave and come back (a ``NodeSource`` backend, as
Ray is), with the in-memory backend on a manual clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slicebox import policies
from slicebox.backends.memory import ChangingPoolBackend
from slicebox.controller import Controller
from slicebox.controller.live_pool import POOL_KEY, recorded
from slicebox.controller.outcome import MAX_ATTEMPTS_ASKING_REQUEUE
from slicebox.placement.placer import Placer
from slicebox.pool.files import parse_pool
from slicebox.pool.model import Pool
from slicebox.sdk import CHECKPOINTED
from slicebox.sim.clock import ManualClock
from slicebox.snapshot import JobState
from slicebox.spec import Demand, parse_spec
from slicebox.store import Store
from tests.sim.helpers import pool

BIG = {"name": "big", "memory_gib": 256, "cores": 32, "gpus": [{"kind": "A100", "count": 4}]}


class Cluster:
    """Store + changing-pool backend + controller on a manual clock."""

    def __init__(self, root: Path, the_pool: Pool) -> None:
        self.clock = ManualClock()
        self.store = Store.open(root / "state", clock=self.clock)
        self.checkpoints = root / "checkpoints"
        self.backend = ChangingPoolBackend(the_pool.nodes, clock=self.clock,
                                           checkpoint_root=self.checkpoints)
        self.nodes = {n.name: n for n in the_pool.nodes}
        self.controller = Controller(self.store, the_pool, policies.get("fifo"),
                                     Placer(the_pool), self.backend, root / "state",
                                     clock=self.clock, ident="test")

    def submit(self, name: str, **resources: object) -> str:
        return self.store.submit(parse_spec({"name": name, "command": ["true"],
                                             "resources": resources}))

    def round(self, seconds: float = 1.0) -> list[str]:
        self.clock.advance_to(self.clock() + seconds)
        return self.controller.run_once().pool_changes

    def nodes_of(self, job_id: str) -> tuple[str, ...]:
        comp = self.store.job(job_id).composition
        assert comp is not None
        return comp.nodes

    def save_checkpoint(self, job_id: str, step: int, samples: int) -> None:
        """What ``slicebox.sdk.checkpoint`` leaves: the manifest the controller reads."""
        folder = self.checkpoints / job_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"ckpt-{step:012d}.pt").write_bytes(b"")
        (folder / "latest.json").write_text(json.dumps(
            {"version": 1, "file": f"ckpt-{step:012d}.pt", "step": step, "samples": samples,
             "saved_at": 1.0, "save_seconds": 0.1, "attempt": 1}))


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path, pool(nodes=2, gpus=2, extra=[BIG]))


def test_a_lost_node_requeues_its_job_which_resumes_elsewhere_from_its_checkpoint(
        cluster: Cluster) -> None:
    job = cluster.submit("train", gpus=2, gpu_kinds=["V100"])
    cluster.round()
    [first] = cluster.nodes_of(job)
    cluster.save_checkpoint(job, step=40, samples=4000)
    cluster.backend.remove_node(first)
    changes = cluster.round()
    assert changes == [f"node {first} left the pool"]
    assert first not in {n.name for n in cluster.controller.pool.nodes}
    # Requeued and started again within the same round, on the other V100 node.
    record = cluster.store.job(job)
    assert record.state is JobState.RUNNING and record.attempt == 2
    [second] = cluster.nodes_of(job)
    assert second != first and second.startswith("n-")
    [ckpt] = cluster.store.checkpoints(job)
    assert ckpt.outcome == "gone" and ckpt.step == 40 and ckpt.samples == 4000
    assert f"node {first} left the pool" in ckpt.reason
    kinds = [e.kind for e in cluster.store.events(job)]
    assert "failed" not in kinds and "preempted" in kinds


def test_a_job_that_fits_only_the_lost_node_waits_and_starts_when_it_is_back(
        cluster: Cluster) -> None:
    big = cluster.nodes["big"]
    cluster.backend.remove_node("big")
    cluster.round()
    assert [n.name for n in cluster.controller.pool.nodes] == ["n-0", "n-1"]
    # Admission still knows the node (the store's record): the job is accepted.
    known = recorded(cluster.store)
    assert isinstance(known, Pool) and "big" in {n.name for n in known.nodes}
    wide = parse_spec({"name": "wide", "command": ["true"],
                       "resources": {"gpus": 4, "gpu_kinds": ["A100"]}})
    assert Placer(known).feasible(Demand.from_spec(wide)) is None
    assert Placer(cluster.controller.pool).feasible(Demand.from_spec(wide)) is not None
    job = cluster.submit("wide", gpus=4, gpu_kinds=["A100"])
    for _ in range(3):
        cluster.round(60.0)
    record = cluster.store.job(job)
    assert record.state is JobState.QUEUED
    assert "left the pool" in record.reason and "big" in record.reason
    cluster.backend.add_node(big)
    assert cluster.round() == ["node big joined the pool"]
    assert cluster.store.job(job).state is JobState.RUNNING
    assert cluster.nodes_of(job) == ("big",)


def test_a_gang_that_loses_one_node_restarts_all_its_ranks_once(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, pool(nodes=3, gpus=2))
    job = cluster.submit("gang", gpus=4)
    cluster.round()
    nodes = cluster.nodes_of(job)
    assert len(nodes) == 2
    cluster.backend.remove_node(nodes[1])
    cluster.round()
    record = cluster.store.job(job)
    assert record.state is JobState.RUNNING and record.attempt == 2
    assert nodes[1] not in cluster.nodes_of(job) and len(cluster.nodes_of(job)) == 2
    assert len(cluster.store.checkpoints(job)) == 1  # one requeue for the whole gang
    launches = [launch for launch in cluster.backend.launches if launch.job_id == job]
    assert [launch.attempt for launch in launches] == [1, 2]
    assert len(launches[1].comp.parts) == 2  # every rank started again


def test_node_losses_do_not_count_against_the_requeue_limit(cluster: Cluster) -> None:
    job = cluster.submit("train", gpus=2, gpu_kinds=["V100"])
    cluster.round()
    spare = {n: cluster.nodes[n] for n in ("n-0", "n-1")}
    for _ in range(MAX_ATTEMPTS_ASKING_REQUEUE):
        [node] = cluster.nodes_of(job)
        cluster.backend.remove_node(node)
        cluster.round()
        cluster.backend.add_node(spare[node])
        cluster.round()
    record = cluster.store.job(job)
    assert record.attempt == MAX_ATTEMPTS_ASKING_REQUEUE + 1
    assert record.state is JobState.RUNNING
    cluster.backend.finish(job, CHECKPOINTED)  # asks to be requeued: its first time
    cluster.round()
    record = cluster.store.job(job)
    assert record.state is JobState.RUNNING and record.attempt == MAX_ATTEMPTS_ASKING_REQUEUE + 2


def test_the_live_pool_is_recorded_for_admission_elsewhere(cluster: Cluster) -> None:
    cluster.round()
    text = cluster.store.value(POOL_KEY)
    assert text is not None and json.loads(text)["live"] == ["n-0", "n-1", "big"]
    cluster.backend.remove_node("n-1")
    cluster.round()
    data = json.loads(cluster.store.value(POOL_KEY) or "")
    assert data["live"] == ["n-0", "big"]
    assert {n["name"] for n in data["pool"]["nodes"]} == {"n-0", "n-1", "big"}


def test_a_node_lost_while_no_controller_ran_requeues_its_job(cluster: Cluster,
                                                               tmp_path: Path) -> None:
    job = cluster.submit("train", gpus=2, gpu_kinds=["V100"])
    cluster.round()
    [node] = cluster.nodes_of(job)
    cluster.controller.close()
    cluster.backend.remove_node(node)
    cluster.backend.poll()  # the exit is reported to nobody
    second = Controller(cluster.store, cluster.controller.pool, policies.get("fifo"),
                        Placer(cluster.controller.pool), cluster.backend,
                        tmp_path / "state", clock=cluster.clock, ident="second")
    cluster.clock.advance_to(cluster.clock() + 1.0)
    second.run_once()
    record = cluster.store.job(job)
    assert record.state is JobState.RUNNING and record.attempt == 2
    assert node not in cluster.nodes_of(job)
    [ckpt] = cluster.store.checkpoints(job)
    assert ckpt.outcome == "gone" and node in ckpt.reason


def test_a_restart_adopts_a_job_on_a_node_not_listed_yet_rather_than_run_it_twice(
        cluster: Cluster, tmp_path: Path) -> None:
    job = cluster.submit("train", gpus=2, gpu_kinds=["V100"])
    cluster.round()
    [node] = cluster.nodes_of(job)
    cluster.controller.close()
    hidden = cluster.backend.hide_node(node)  # its agent has not answered the new controller
    second = Controller(cluster.store, cluster.controller.pool, policies.get("fifo"),
                        Placer(cluster.controller.pool), cluster.backend,
                        tmp_path / "state", clock=cluster.clock, ident="second")
    cluster.clock.advance_to(cluster.clock() + 1.0)
    second.run_once()
    record = cluster.store.job(job)
    assert record.state is JobState.RUNNING and record.attempt == 1
    assert len(cluster.backend.launches) == 1  # adopted where it runs, not started again
    assert any(e.kind == "process" and "adopted" in e.reason and node in e.reason
               or e.kind == "adopted" for e in cluster.store.events(job))
    cluster.backend.add_node(hidden)
    cluster.clock.advance_to(cluster.clock() + 1.0)
    second.run_once()
    assert cluster.store.job(job).state is JobState.RUNNING
    assert cluster.nodes_of(job) == (node,)


def test_a_cpu_gang_on_two_nodes_loses_one_and_restarts_whole(tmp_path: Path) -> None:
    cpu_nodes = parse_pool({"name": "cpus", "nodes": [
        {"name": "cpu", "replicas": 3, "memory_gib": 16, "cores": 4}]}, "test pool")
    cluster = Cluster(tmp_path, cpu_nodes)
    job = cluster.submit("ddp", cpus=2, nodes=2)
    cluster.round()
    nodes = cluster.nodes_of(job)
    assert len(nodes) == 2
    cluster.backend.remove_node(nodes[0])
    cluster.round()
    record = cluster.store.job(job)
    assert record.state is JobState.RUNNING and record.attempt == 2
    again = cluster.nodes_of(job)
    assert len(again) == 2 and nodes[0] not in again
    assert len(cluster.store.checkpoints(job)) == 1


def test_a_job_fenced_while_no_controller_ran_is_a_node_loss_not_a_failure(
        cluster: Cluster, tmp_path: Path) -> None:
    job = cluster.submit("train", gpus=2, gpu_kinds=["V100"])
    cluster.round()
    [node] = cluster.nodes_of(job)
    cluster.save_checkpoint(job, step=7, samples=700)
    cluster.controller.close()
    cluster.backend.fence(job)  # its launcher killed it: the agent lost touch
    second = Controller(cluster.store, cluster.controller.pool, policies.get("fifo"),
                        Placer(cluster.controller.pool), cluster.backend,
                        tmp_path / "state", clock=cluster.clock, ident="second")
    cluster.clock.advance_to(cluster.clock() + 1.0)
    second.run_once()
    record = cluster.store.job(job)
    assert record.state is JobState.RUNNING and record.attempt == 2  # requeued, restarted
    [ckpt] = cluster.store.checkpoints(job)
    assert ckpt.outcome == "gone" and ckpt.step == 7
    assert ckpt.reason.startswith("node lost") and node in ckpt.reason


def test_a_damaged_pool_record_is_ignored_not_fatal(cluster: Cluster, tmp_path: Path) -> None:
    cluster.store.put_value(POOL_KEY, '{"format": "slicebox-live-pool/1", "backend": "ray", '
                                      '"pool": {"nodes": "not a list"}}')
    again = Controller(cluster.store, cluster.controller.pool, policies.get("fifo"),
                       Placer(cluster.controller.pool), cluster.backend, tmp_path / "state",
                       clock=cluster.clock, ident="again")
    assert again.live is not None and again.live.down() == ()
    job = cluster.submit("train", gpus=1)
    again.run_once()
    assert cluster.store.job(job).state is JobState.RUNNING
    assert isinstance(recorded(cluster.store), Pool)  # rewritten whole


def test_admission_through_the_controller_accepts_a_job_for_a_node_that_is_down(
        cluster: Cluster) -> None:
    cluster.backend.remove_node("big")
    cluster.round()
    wide = parse_spec({"name": "wide", "command": ["true"],
                       "resources": {"gpus": 4, "gpu_kinds": ["A100"]}})
    controller = cluster.controller
    assert "big" not in {n.name for n in controller.pool.nodes}
    assert "big" in {n.name for n in controller.admission_pool.nodes}
    assert controller.admission_placer.feasible(Demand.from_spec(wide)) is None
    too_big = parse_spec({"name": "huge", "command": ["true"], "resources": {"gpus": 8}})
    assert controller.admission_placer.feasible(Demand.from_spec(too_big)) is not None


def test_a_copy_and_the_job_waiting_for_it_are_requeued_when_their_node_leaves(
        tmp_path: Path) -> None:
    clock = ManualClock()
    the_pool = pool(nodes=2, gpus=2, volumes=True)
    store = Store.open(tmp_path / "state", clock=clock)
    backend = ChangingPoolBackend(the_pool.nodes, clock=clock, stage_seconds=100.0)
    controller = Controller(store, the_pool, policies.get("fifo"), Placer(the_pool), backend,
                            tmp_path / "state", clock=clock, ident="test")

    def submit(name: str) -> str:
        return store.submit(parse_spec({"name": name, "command": ["true"],
                                        "resources": {"gpus": 1},
                                        "dataset": {"path": "/data/corpus", "name": "corpus"}}),
                            dataset_size_gib=1.0)

    maker = submit("maker")
    controller.run_once()
    clock.advance_to(1.0)
    waiter = submit("waiter")
    controller.run_once()
    comps = {j: store.job(j).composition for j in (maker, waiter)}
    assert all(c is not None and c.nodes == ("n-0",) for c in comps.values())
    assert comps[waiter].staging.cached  # type: ignore[union-attr]  # waits for maker's copy
    backend.remove_node("n-0")
    clock.advance_to(2.0)
    report = controller.run_once()
    assert report.pool_changes == ["node n-0 left the pool"]
    for job_id in (maker, waiter):
        record = store.job(job_id)
        assert record.state is JobState.STAGING and record.attempt == 2, record.reason
        assert record.composition is not None and record.composition.nodes == ("n-1",)
        [ckpt] = store.checkpoints(job_id)
        assert ckpt.outcome == "gone" and "node n-0 left the pool" in ckpt.reason
    clock.advance_to(200.0)
    controller.run_once()
    assert {store.job(j).state for j in (maker, waiter)} == {JobState.RUNNING}
