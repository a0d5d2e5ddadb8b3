"""Gang jobs on a real local Ray cluster, through the Ray backend and its node agents: a
2-rank gang on two Ray nodes (placement group pinned there, both ranks at once, the
torch.distributed variables), and gangs that must start no rank at all."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from slicebox.backends.base import LaunchError
from slicebox.backends.ray.agent import NAMESPACE, agent_name
from slicebox.backends.ray.backend import RayBackend
from slicebox.backends.ray.gang import GangLauncher, RayGangAgent, group_name
from slicebox.pool.composition import Composition, Part
from slicebox.store import Store

from .cluster import RayTestCluster
from .helpers import node_named, started_job, wait_exit

# Each rank writes what it was given, then waits (a barrier through files) until every
# rank has started, and until the test says "go": it exits 0 only if it saw all of them.
RANK = r'''
import json, os, sys, time
out = sys.argv[1]
me = int(os.environ["RANK"]); world = int(os.environ["WORLD_SIZE"])
keys = ["MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "SLICEBOX_NODE",
        "SLICEBOX_WORLD_SIZE", "SLICEBOX_RANK"]
info = {k: os.environ.get(k) for k in keys}
info["started"] = time.time()
with open(os.path.join(out, f"rank-{me}.tmp"), "w") as f:
    json.dump(info, f)
os.rename(os.path.join(out, f"rank-{me}.tmp"), os.path.join(out, f"rank-{me}.json"))
end = time.time() + 60
while time.time() < end:
    if all(os.path.exists(os.path.join(out, f"rank-{r}.json")) for r in range(world)) \
            and os.path.exists(os.path.join(out, "go")):
        sys.exit(0)
    time.sleep(0.05)
sys.exit(3)
'''


def rank_program(tmp_path: Path) -> tuple[list[str], Path]:
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    out = tmp_path / "ranks"
    out.mkdir()
    return [sys.executable, str(script), str(out)], out


def gang_on(backend: RayBackend, names: tuple[str, ...], cpus: dict[str, int] | None = None
            ) -> Callable[[str], Composition]:
    """One part per node, with the node's cores, or ``cpus[name]`` cores (0, 1, ...)."""
    def comp(job_id: str) -> Composition:
        parts = []
        for name in names:
            cores = node_named(backend, name).cores
            if cpus and name in cpus:
                cores = tuple(range(cpus[name]))
            parts.append(Part(name, (), tuple(cores), 0.5))
        return Composition(job_id, tuple(parts))
    return comp


def wait_files(out: Path, names: list[str], timeout: float = 40.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all((out / n).exists() for n in names):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{names} not all written in {out}: {sorted(p.name for p in out.iterdir())}")


def test_a_two_rank_gang_runs_on_two_ray_nodes_at_once(
        backend: RayBackend, store: Store, tmp_path: Path, ray_connected: RayTestCluster):
    import ray

    argv, out = rank_program(tmp_path)
    job, comp = started_job(store, gang_on(backend, ("node-a", "node-b")), argv,
                            resources={"cpus": 1, "memory_gib": 0.5, "nodes": 2})
    backend.launch(job, comp)
    wait_files(out, ["rank-0.json", "rank-1.json"])
    # While both run, their reservation holds a bundle on each of their own Ray nodes.
    table = ray.util.placement_group_table(
        ray.util.get_placement_group(group_name(job.id, job.attempt)))
    assert table["state"] == "CREATED" and table["strategy"] == "STRICT_SPREAD"
    assert [table["bundles_to_node_id"][i] for i in (0, 1)] == [
        ray_connected.node_id("node-a"), ray_connected.node_id("node-b")]
    (out / "go").touch()
    exited, _ = wait_exit(backend, job.id, timeout=60)
    assert exited.exit_code == 0 and exited.error is None and not exited.node_lost
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]
    master: Any = ray.get(ray.get_actor(agent_name(ray_connected.node_id("node-a")),
                                        namespace=NAMESPACE).describe.remote())
    master_ip = master.ip
    for r, seen in enumerate(ranks):
        assert seen["SLICEBOX_NODE"] == ("node-a", "node-b")[r]
        assert (seen["RANK"], seen["WORLD_SIZE"], seen["LOCAL_RANK"]) == (str(r), "2", "0")
        assert (seen["SLICEBOX_RANK"], seen["SLICEBOX_WORLD_SIZE"]) == (str(r), "2")
        assert seen["MASTER_ADDR"] == master_ip
    assert ranks[0]["MASTER_PORT"] == ranks[1]["MASTER_PORT"]
    assert 0 < int(ranks[0]["MASTER_PORT"]) < 65536
    # Launched together: well inside the barrier's minute, whatever the machine's load.
    assert abs(ranks[0]["started"] - ranks[1]["started"]) < 15
    assert removed(group_name(job.id, job.attempt))  # with the attempt


def removed(name: str, timeout: float = 10.0) -> bool:
    import ray

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            group = ray.util.get_placement_group(name)
        except ValueError:  # no group of that name any more
            return True
        if ray.util.placement_group_table(group)["state"] == "REMOVED":
            return True
        time.sleep(0.1)
    return False


def team_of(cluster: RayTestCluster, names: tuple[str, ...]) -> dict[str, RayGangAgent]:
    import ray

    team: dict[str, RayGangAgent] = {}
    for name in names:
        node_id = cluster.node_id(name)
        handle = ray.get_actor(agent_name(node_id), namespace=NAMESPACE)
        info: Any = ray.get(handle.describe.remote())
        team[name] = RayGangAgent(handle, name, node_id, info.ip)
    return team


def running_on(cluster: RayTestCluster, name: str) -> dict[str, int]:
    import ray

    handle = ray.get_actor(agent_name(cluster.node_id(name)), namespace=NAMESPACE)
    ray.get(handle.poll.remote())
    return dict(ray.get(handle.running.remote()))


def test_a_gang_whose_second_node_cannot_be_reserved_starts_no_rank(
        backend: RayBackend, store: Store, tmp_path: Path, ray_connected: RayTestCluster):
    argv, out = rank_program(tmp_path)
    # node-b declares 1 CPU; its part asks for 2.
    job, comp = started_job(store, gang_on(backend, ("node-a", "node-b"), {"node-b": 2}),
                            argv, resources={"cpus": 1, "nodes": 2})
    team = team_of(ray_connected, ("node-a", "node-b"))
    with pytest.raises(LaunchError, match=r"could not reserve .*node-b \(CPU 2 wanted, 1 free\)"
                       ) as info:
        GangLauncher(ready_timeout_s=2.0).start(job, comp, team)
    assert "node-a" not in str(info.value)
    time.sleep(1.0)
    assert list(out.iterdir()) == []
    assert job.id not in running_on(ray_connected, "node-a")
    assert removed(group_name(job.id, job.attempt))


class Refusing(RayGangAgent):
    """A real agent whose launch fails, as a node's does once it is fenced."""

    def launch(self, job: Any, comp: Any, env: Any) -> Any:
        time.sleep(1.0)  # rank 0 is up by now
        raise LaunchError(f"node {self.node} was declared lost and starts nothing")


def test_a_rank_that_cannot_launch_leaves_no_rank_running(
        backend: RayBackend, store: Store, tmp_path: Path, ray_connected: RayTestCluster):
    argv, out = rank_program(tmp_path)
    job, comp = started_job(store, gang_on(backend, ("node-a", "node-b")), argv,
                            resources={"nodes": 2})
    team = team_of(ray_connected, ("node-a", "node-b"))
    b = team["node-b"]
    team["node-b"] = Refusing(b.handle, b.node, b.node_id, b.address)
    with pytest.raises(LaunchError, match="rank 1 on node-b could not start: node node-b "
                       "was declared lost and starts nothing; no rank runs"):
        GangLauncher(ready_timeout_s=10.0).start(job, comp, team)
    wait_files(out, ["rank-0.json"])  # rank 0 did start ...
    end = time.monotonic() + 10
    while job.id in running_on(ray_connected, "node-a") and time.monotonic() < end:
        time.sleep(0.2)
    assert job.id not in running_on(ray_connected, "node-a")  # ... and was killed
    assert removed(group_name(job.id, job.attempt))


def test_a_launch_error_inside_an_agent_comes_back_as_one(
        backend: RayBackend, store: Store, tmp_path: Path, ray_connected: RayTestCluster):
    argv, out = rank_program(tmp_path)
    job, comp = started_job(store, gang_on(backend, ("head", "node-b"), {"head": 1}), argv)
    team = team_of(ray_connected, ("head",))
    head = team["head"]
    # node-b's rank handed to the head's agent: the agent refuses a part not its own.
    team["node-b"] = RayGangAgent(head.handle, "node-b", head.node_id, head.address)
    with pytest.raises(LaunchError, match=r"rank 1 on node-b could not start: .*no part on "
                       r"node head.*; no rank runs"):
        GangLauncher(ready_timeout_s=10.0).start(job, comp, team)
    end = time.monotonic() + 10
    while job.id in running_on(ray_connected, "head") and time.monotonic() < end:
        time.sleep(0.2)
    assert job.id not in running_on(ray_connected, "head")
    assert removed(group_name(job.id, job.attempt))
