"""The one local Ray cluster the test session shares (a pytest plugin, loaded by the root
conftest): three Ray nodes on this machine with different declared resources, standing in
for machines with different core counts. Started on first use; Ray is imported only then,
so a run without Ray installed skips these tests instead of failing to collect."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.backends.ray.cluster import RayTestCluster


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayTestCluster]:
    """Three Ray nodes on this machine: head (2 CPUs), node-a (1), node-b (1, less memory)."""
    pytest.importorskip("ray")
    from tests.backends.ray.cluster import RayTestCluster

    cluster = RayTestCluster.start()
    try:
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture(scope="session")
def ray_connected(ray_cluster: RayTestCluster) -> RayTestCluster:
    """This process connected to the cluster (as a controller would be), once."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_cluster.address, namespace="slicebox", include_dashboard=False,
                 log_to_driver=False)
    return ray_cluster


@pytest.fixture(scope="session")
def agent_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("agents"))
