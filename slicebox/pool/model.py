"""What exists: nodes, their devices, cores, memory and volumes. Frozen; usage lives elsewhere.

These types describe hardware only. Who uses what at a given moment is tracked by
``slicebox.placement.state.PoolState`` so that the same ``Pool`` can back the live system,
a dry-run ``plan`` and a simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from slicebox.hours import Window
from slicebox.pool.kinds import DeviceKind, get_kind


class Link(StrEnum):
    """How two GPUs of one node talk, best first (the order ``nvidia-smi topo -m`` uses)."""

    SELF = "X"
    NVLINK = "NV"
    PIX = "PIX"  # same PCIe switch
    PXB = "PXB"  # several PCIe switches, no host bridge
    NODE = "NODE"  # same NUMA node, through the host bridge
    SYS = "SYS"  # across sockets

    @property
    def rank(self) -> int:
        return _LINK_RANK[self]


_LINK_RANK = {Link.SELF: 0, Link.NVLINK: 1, Link.PIX: 2, Link.PXB: 3, Link.NODE: 4, Link.SYS: 5}


class Tier(StrEnum):
    """Storage tiers, fastest first."""

    TMPFS = "tmpfs"
    NVME = "nvme"
    SSD = "ssd"
    HDD = "hdd"
    NETWORK = "network"

    @property
    def rank(self) -> int:
        return list(Tier).index(self)


@dataclass(frozen=True)
class Volume:
    name: str
    path: str
    tier: Tier
    capacity_gib: float
    read_mbps: float
    write_mbps: float
    shared: bool = False  # a network share is visible from every node


@dataclass(frozen=True)
class MigInstance:
    """A MIG instance that already exists on a card (found by discovery)."""

    profile: str
    start: int
    uuid: str


@dataclass(frozen=True)
class Device:
    index: int
    kind_name: str
    uuid: str
    numa_node: int | None = None
    mig_enabled: bool = False
    memory_gib: float | None = None  # None: the kind's memory
    mig_instances: tuple[MigInstance, ...] = ()

    @property
    def kind(self) -> DeviceKind:
        return get_kind(self.kind_name)

    @property
    def memory(self) -> float:
        return self.memory_gib if self.memory_gib is not None else self.kind.memory_gib


@dataclass(frozen=True)
class Node:
    name: str
    cores_by_numa: tuple[tuple[int, tuple[int, ...]], ...]  # ((numa node, (core ids)), ...)
    memory_gib: float
    devices: tuple[Device, ...] = ()
    volumes: tuple[Volume, ...] = ()
    # links[i][j]: how device i reaches device j; empty means "unknown, assume SYS".
    links: tuple[tuple[Link, ...], ...] = ()

    @property
    def cores(self) -> tuple[int, ...]:
        return tuple(c for _, cores in self.cores_by_numa for c in cores)

    def numa_of_core(self, core: int) -> int:
        for numa, cores in self.cores_by_numa:
            if core in cores:
                return numa
        raise KeyError(f"core {core} is not on node {self.name}")

    def link(self, a: int, b: int) -> Link:
        if a == b:
            return Link.SELF
        if not self.links:
            return Link.SYS
        return self.links[a][b]

    def device(self, index: int) -> Device:
        for dev in self.devices:
            if dev.index == index:
                return dev
        raise KeyError(f"node {self.name} has no device {index}")


@dataclass(frozen=True)
class Pool:
    nodes: tuple[Node, ...]
    name: str = "pool"
    shared_volumes: tuple[Volume, ...] = field(default=())
    # Environment variable names a job of this pool may set although admission's default
    # deny-list (LD_*, PYTHON*, PATH: they change how programs load) refuses them. Exact,
    # case-sensitive names; empty means the deny-list applies in full.
    env_allow: frozenset[str] = field(default=frozenset())
    # Hours of the day in which the services together keep at least a share of the pool
    # (``service_hours`` in a pool file, or ``slicebox up --service-hours``).
    service_hours: tuple[Window, ...] = field(default=())

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node {name!r} in pool {self.name}; nodes: "
                       f"{', '.join(n.name for n in self.nodes)}")

    def gpu_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            for dev in node.devices:
                counts[dev.kind.name] = counts.get(dev.kind.name, 0) + 1
        return counts

    @property
    def total_cores(self) -> int:
        return sum(len(n.cores) for n in self.nodes)

    @property
    def total_gpus(self) -> int:
        return sum(len(n.devices) for n in self.nodes)
