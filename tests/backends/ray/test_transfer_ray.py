"""Pulling a dataset between two real Ray nodes through their agents: node-b's agent
serves the listing and the chunks, node-a's agent writes the copy, and every chunk crosses
Ray's object store. The copy goes where ``DataCache`` says and is reused by the next job
there."""

from __future__ import annotations

import filecmp
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slicebox.backends.base import Staged, StagingFailed
from slicebox.backends.ray import transfer
from slicebox.backends.ray.agent import NAMESPACE, agent_name
from slicebox.placement.staging import DataCache
from slicebox.pool.composition import CACHE_DIR, Composition, Staging
from slicebox.pool.model import Node, Tier, Volume
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.spec.demand import DatasetRef
from slicebox.store.records import JobRecord

from .cluster import RayTestCluster
from .helpers import make_backend

MIB = 1 << 20


@pytest.fixture()
def agents(ray_connected: RayTestCluster, tmp_path: Path, agent_root: str) -> Iterator[Any]:
    """The node agents (made by a Ray backend, as a controller makes them)."""
    backend = make_backend(tmp_path / "state", ray_connected.address, agent_root)
    yield lambda name: ray_get_actor(agent_name(ray_connected.node_id(name)))
    backend.close()


def ray_get_actor(name: str) -> Any:
    import ray

    return ray.get_actor(name, namespace=NAMESPACE)


def pull(target: Any, source: Any, staging: Staging, job_id: str) -> Staged | StagingFailed:
    """What RayBackend.stage does for data only another node has, then its poll."""
    import ray

    job = JobRecord(job_id, "t", parse_spec({"name": "t", "command": ["true"]}),
                    JobState.STAGING, "", 0, 0.0, attempt=1)
    comp = Composition.on_node(job_id, "node-a", (), (0,), 0.5, staging=staging)
    ray.get(target.pull.remote(job, comp, source))
    end = time.monotonic() + 60
    while time.monotonic() < end:
        for event in ray.get(target.poll.remote()):
            if isinstance(event, Staged | StagingFailed) and event.job_id == job_id:
                return event
        time.sleep(0.1)
    raise TimeoutError("the pull did not finish in 60 s")


def node_a(tmp_path: Path) -> Node:
    nvme = tmp_path / "node-a-nvme"
    nvme.mkdir()
    return Node("node-a", ((0, (0,)),), 4.0, volumes=(
        Volume("nvme", str(nvme), Tier.NVME, 10.0, 2000.0, 2000.0),))


def dataset(tmp_path: Path) -> Path:
    data = tmp_path / "node-b-disk" / "digits"
    (data / "train").mkdir(parents=True)
    (data / "train" / "big.bin").write_bytes(os.urandom(20 * MIB + 7))  # 3 chunks
    (data / "train" / "small.txt").write_text("small\n")
    (data / "labels.csv").write_bytes(os.urandom(12345))
    return data


def same_tree(a: Path, b: Path) -> None:
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only and not cmp.funny_files
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    assert not mismatch and not errors
    for sub in cmp.common_dirs:
        same_tree(a / sub, b / sub)


def test_a_pulled_copy_is_identical_cached_where_datacache_says_and_reused(
        agents: Any, tmp_path: Path):
    data = dataset(tmp_path)
    node = node_a(tmp_path)
    ref = DatasetRef("digits", str(data), 0.03)
    cache = DataCache()

    first = cache.choose(node, ref)
    assert first is not None and not first.cached
    assert Path(first.target).parent.name == CACHE_DIR
    event = pull(agents("node-a"), agents("node-b"), first, "pull-1")
    assert isinstance(event, Staged), event
    assert event.bytes == 20 * MIB + 7 + len("small\n") + 12345
    same_tree(data, Path(first.target))
    cache.commit(node.name, first, now=1.0)

    # The next job on node-a: DataCache hands out the same copy, and nothing is pulled.
    second = cache.choose(node, ref)
    assert second is not None and second.cached and second.target == first.target
    assert not transfer.needs_copy(second)  # what the backend asks before it copies


def test_a_pull_past_the_byte_limit_is_refused_and_leaves_nothing(
        agents: Any, tmp_path: Path):
    data = dataset(tmp_path)
    node = node_a(tmp_path)
    # Measured (at submit) as nothing at all; since then a 70 MiB file appeared: past the
    # 64 MiB slack every copy is allowed (sparse, so it costs no disk here).
    staging = DataCache().choose(node, DatasetRef("digits", str(data), 0.0))
    assert staging is not None
    with open(data / "train" / "huge.bin", "wb") as f:
        f.truncate(70 * MIB)
    event = pull(agents("node-a"), agents("node-b"), staging, "pull-2")
    assert isinstance(event, StagingFailed)
    assert "more than" in (event.error or "") and "bytes" in (event.error or "")
    cache_dir = Path(staging.target).parent
    assert not Path(staging.target).exists()
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []
