"""A real Ray cluster of several nodes on 127.0.0.1, standing in for machines of different
sizes (each node declares its own CPUs and memory). Shared by the Ray backend, gang and
controller tests: ``from tests.backends.ray.cluster import RayTestCluster``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

MIB = 1 << 20
GIB = 1 << 30
OBJECT_STORE = 80 * MIB

# name -> (CPUs, memory bytes); the head is the node the test process is connected to.
DEFAULT_NODES: dict[str, tuple[int, int]] = {
    "head": (2, 4 * GIB),
    "node-a": (1, 3 * GIB),
    "node-b": (1, 2 * GIB),
}


@dataclass
class RayTestCluster:
    """``ray.cluster_utils.Cluster`` with named nodes (label ``slicebox/name``)."""

    cluster: Any
    nodes: dict[str, Any] = field(default_factory=dict)  # name -> ray._private.node.Node

    @classmethod
    def start(cls, nodes: dict[str, tuple[int, int]] | None = None) -> RayTestCluster:
        from ray.cluster_utils import Cluster

        spec = dict(nodes or DEFAULT_NODES)
        (head_name, (head_cpus, head_memory)), *rest = spec.items()
        cluster = Cluster(initialize_head=True, head_node_args=_node_args(
            head_name, head_cpus, head_memory))
        made = cls(cluster, {head_name: cluster.head_node})
        for name, (cpus, memory) in rest:
            made.add_node(name, cpus, memory)
        return made

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def node_id(self, name: str) -> str:
        return str(self.nodes[name].node_id)

    def add_node(self, name: str, cpus: int = 1, memory: int = 2 * GIB) -> str:
        node = self.cluster.add_node(wait=True, **_node_args(name, cpus, memory))
        self.nodes[name] = node
        return str(node.node_id)

    def remove_node(self, name: str) -> None:
        """Kills the node's Ray processes at once (as a machine failing would)."""
        node = self.nodes.pop(name)
        self.cluster.remove_node(node, allow_graceful=False)

    def wait_dead(self, node_id: str, timeout: float = 60.0) -> None:
        import ray

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes()):
                return
            time.sleep(0.2)
        raise TimeoutError(f"Ray still says node {node_id} is alive")

    def shutdown(self) -> None:
        import ray

        ray.shutdown()
        self.cluster.shutdown()


def _node_args(name: str, cpus: int, memory: int) -> dict[str, Any]:
    return {"num_cpus": cpus, "memory": memory, "object_store_memory": OBJECT_STORE,
            "include_dashboard": False, "labels": {"slicebox/name": name}}
