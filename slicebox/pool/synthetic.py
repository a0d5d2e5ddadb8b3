"""Made-up pools of any size, for simulations, benchmarks and tests.

A trace names only how many GPUs of each kind a cluster had; these builders turn that
into nodes of a common shape (8 GPUs, two NUMA nodes, NVLink inside a node).
"""

from __future__ import annotations

from collections.abc import Mapping

from slicebox.pool.kinds import get_kind
from slicebox.pool.model import Device, Link, Node, Pool


def uniform_node(name: str, kind: str, gpus: int = 8, cores: int = 64, memory_gib: float = 512,
                 numa_nodes: int = 2, nvlink: bool = True) -> Node:
    """One node: GPUs split evenly over NUMA nodes; NVLink all-to-all or PCIe by NUMA."""
    kind_name = get_kind(kind).name
    per_numa = max(1, cores // numa_nodes)
    cores_by_numa = tuple((k, tuple(range(k * per_numa, (k + 1) * per_numa)))
                          for k in range(numa_nodes))
    numa_of = [min(i * numa_nodes // max(gpus, 1), numa_nodes - 1) for i in range(gpus)]
    devices = tuple(Device(i, kind_name, f"GPU-{name}-{i}", numa_of[i]) for i in range(gpus))

    def link(a: int, b: int) -> Link:
        if a == b:
            return Link.SELF
        if nvlink:
            return Link.NVLINK
        return Link.NODE if numa_of[a] == numa_of[b] else Link.SYS

    links = tuple(tuple(link(a, b) for b in range(gpus)) for a in range(gpus))
    return Node(name, cores_by_numa, memory_gib, devices, (), links if gpus else ())


def uniform_pool(gpus_by_kind: Mapping[str, int], gpus_per_node: int = 8, cores_per_node: int = 64,
                 memory_gib: float = 512, name: str = "synthetic") -> Pool:
    """``{"V100": 2000, "K80": 800}`` -> nodes of ``gpus_per_node`` (the last one smaller)."""
    nodes = []
    for kind, total in gpus_by_kind.items():
        prefix = get_kind(kind).name.lower()
        for i, start in enumerate(range(0, total, gpus_per_node)):
            count = min(gpus_per_node, total - start)
            nodes.append(uniform_node(f"{prefix}-{i}", kind, count, cores_per_node, memory_gib))
    return Pool(tuple(nodes), name)
