"""The fixed facts of a pool, flattened into arrays once so that usage accounting is cheap.

Devices get a global number ``d`` (0..D-1) and nodes a number ``n`` (0..N-1); the
mutable ``PoolState`` keeps its counters in lists indexed by them and its indexes as
integer bitmasks over them. One ``Topology`` is shared by a state and all its copies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from slicebox.pool.kinds import MigProfile, get_kind
from slicebox.pool.model import Device, Node, Pool

MIG_SLICES = 8  # memory slices of an A100/H100/H200 card
MIG_COMPUTE = 7  # compute slices


@dataclass(frozen=True)
class Topology:
    pool: Pool
    node_index: dict[str, int]
    node_has_gpu: tuple[bool, ...]
    node_numa: tuple[tuple[int, ...], ...]  # NUMA node ids of node n, in order
    node_numa_cores: tuple[tuple[int, ...], ...]  # bitmask of node n's cores per NUMA position
    node_devices: tuple[tuple[int, ...], ...]  # global device numbers on node n
    node_link_rank: tuple[tuple[tuple[int, ...], ...], ...]  # [n][p][q] by device position
    node_uniform_rank: tuple[int | None, ...]  # the one link rank between any two GPUs, if so
    node_worst_rank: tuple[int, ...]  # worst link between two GPUs of node n (gang choice)
    node_whole_count: tuple[dict[str, int], ...]  # [n] kind -> non-MIG devices on node n
    kind_links_uniform: dict[str, bool]  # every node with the kind has the same worst link
    device: tuple[Device, ...]
    dev_node: tuple[int, ...]
    dev_pos: tuple[int, ...]  # position of d within its node's devices
    dev_kind: tuple[str, ...]
    dev_memory: tuple[float, ...]
    dev_numa: tuple[int | None, ...]
    dev_mig: tuple[bool, ...]
    dev_at: dict[tuple[int, int], int]  # (node number, device index) -> d
    kinds: tuple[str, ...]  # GPU kinds present, in catalogue order of first appearance
    kind_devices: dict[str, int]  # bitmask of every device of a kind
    max_whole_per_node: dict[str, int]  # most non-MIG devices of a kind on one node
    max_cores_per_node: int
    total_by_kind: dict[str, int]
    total_cores: int
    total_memory_gib: float

    @classmethod
    def of(cls, pool: Pool) -> Topology:
        node_index: dict[str, int] = {}
        has_gpu, numa_ids, numa_cores, node_devs, link_rank = [], [], [], [], []
        devices: list[Device] = []
        dev_node, dev_pos, dev_at = [], [], {}
        kinds: dict[str, None] = {}
        kind_devices: dict[str, int] = {}
        max_whole: dict[str, int] = {}
        whole_counts: list[dict[str, int]] = []
        for n, node in enumerate(pool.nodes):
            if node.name in node_index:
                raise ValueError(f"pool {pool.name}: node {node.name!r} appears twice")
            node_index[node.name] = n
            has_gpu.append(bool(node.devices))
            numa_ids.append(tuple(numa for numa, _ in node.cores_by_numa))
            numa_cores.append(tuple(_mask(cores) for _, cores in node.cores_by_numa))
            ids = []
            whole: dict[str, int] = {}
            for pos, dev in enumerate(node.devices):
                d = len(devices)
                if (n, dev.index) in dev_at:
                    raise ValueError(f"node {node.name}: device index {dev.index} appears twice")
                kind = dev.kind.name
                devices.append(dev)
                dev_node.append(n)
                dev_pos.append(pos)
                dev_at[(n, dev.index)] = d
                ids.append(d)
                kinds.setdefault(kind)
                kind_devices[kind] = kind_devices.get(kind, 0) | 1 << d
                if not dev.mig_enabled:
                    whole[kind] = whole.get(kind, 0) + 1
            for kind, count in whole.items():
                max_whole[kind] = max(max_whole.get(kind, 0), count)
            whole_counts.append(whole)
            node_devs.append(tuple(ids))
            link_rank.append(_ranks(node))
        worst = tuple(max((max(row) for row in r), default=0) for r in link_rank)
        return cls(
            pool=pool, node_index=node_index, node_has_gpu=tuple(has_gpu),
            node_numa=tuple(numa_ids), node_numa_cores=tuple(numa_cores),
            node_devices=tuple(node_devs), node_link_rank=tuple(link_rank),
            node_uniform_rank=tuple(_uniform(r) for r in link_rank),
            node_worst_rank=worst, node_whole_count=tuple(whole_counts),
            kind_links_uniform={k: len({worst[n] for n, c in enumerate(whole_counts) if k in c})
                                <= 1 for k in kinds},
            device=tuple(devices), dev_node=tuple(dev_node), dev_pos=tuple(dev_pos),
            dev_kind=tuple(d.kind.name for d in devices),
            dev_memory=tuple(d.memory for d in devices),
            dev_numa=tuple(d.numa_node for d in devices),
            dev_mig=tuple(d.mig_enabled for d in devices), dev_at=dev_at,
            kinds=tuple(kinds), kind_devices=kind_devices, max_whole_per_node=max_whole,
            max_cores_per_node=max((len(n.cores) for n in pool.nodes), default=0),
            total_by_kind=pool.gpu_counts(), total_cores=pool.total_cores,
            total_memory_gib=sum(n.memory_gib for n in pool.nodes),
        )

    def node(self, n: int) -> Node:
        return self.pool.nodes[n]

    def numa_position(self, n: int, numa: int | None) -> int | None:
        try:
            return self.node_numa[n].index(numa) if numa is not None else None
        except ValueError:
            return None

    def mig_profile(self, d: int, name: str) -> MigProfile:
        return get_kind(self.dev_kind[d]).mig_profile(name)


def _mask(items: tuple[int, ...]) -> int:
    mask = 0
    for i in items:
        mask |= 1 << i
    return mask


def _ranks(node: Node) -> tuple[tuple[int, ...], ...]:
    devs = node.devices
    return tuple(tuple(node.link(a.index, b.index).rank for b in devs) for a in devs)


def _uniform(ranks: tuple[tuple[int, ...], ...]) -> int | None:
    off = {r for p, row in enumerate(ranks) for q, r in enumerate(row) if p != q}
    return off.pop() if len(off) == 1 else None


def bits(mask: int) -> Iterator[int]:
    """Set bit positions of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low
