"""The resource demand of one job, as policies and placement see it (frozen, no pydantic).

A ``JobSpec`` becomes a ``Demand`` at the edge; the simulator builds ``Demand`` straight from
trace records, so policies and placement never know where a job came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from slicebox.spec.job import JobSpec


class Spread(StrEnum):
    """How a job may spread over nodes, after Ray's placement-group strategies.

    * ``ONE_NODE`` (Ray ``STRICT_PACK``): every GPU, core and byte on one node; a job
      larger than every node never fits.
    * ``PACK`` (Ray ``PACK``, Ray's default and ours): the fewest nodes. One node when
      one has room now; else whole free nodes first (the best-connected ones), then the
      tightest node for the remainder, then the largest partly free nodes.
    * ``SPREAD`` (Ray ``SPREAD``): one GPU per node, over as many nodes as have room
      (most free first); more than one per node only when fewer nodes have room.

    Placement is all or nothing (a gang) for every strategy. Shares and MIG instances are
    one GPU: always one node. A CPU-only job runs on one node unless it asks for
    ``nodes`` > 1: then one rank on each of that many distinct nodes (``STRICT_SPREAD``).
    """

    ONE_NODE = "one_node"
    PACK = "pack"
    SPREAD = "spread"


@dataclass(frozen=True)
class DatasetRef:
    """A job's input data: cache key, where it lives, how big it is."""

    key: str
    path: str | None
    size_gib: float


@dataclass(frozen=True)
class Demand:
    gpus: int = 0  # minimum GPU count (0: CPU-only job)
    max_gpus: int = 0  # > gpus for an elastic job
    kinds: tuple[str, ...] = ()  # allowed device kinds; empty = any
    gpu_memory_gib: float | None = None
    fraction: float | None = None  # share of one GPU's compute
    mig: str | None = None  # MIG profile name
    cpus: int = 1  # minimum core count
    max_cpus: int = 0  # > cpus for a job that may grow into idle cores; 0: rigid
    memory_gib: float = 1.0
    spread: Spread = Spread.PACK
    nodes: int = 1  # > 1: a CPU-only gang, cpus and memory_gib on each of that many nodes

    @property
    def shared(self) -> bool:
        """True when the job asks for less than a whole GPU."""
        return self.fraction is not None or self.mig is not None

    @property
    def gpu_share(self) -> float:
        """GPUs this job occupies, counting a fraction as part of one (for accounting)."""
        if self.fraction is not None:
            return self.fraction
        if self.mig is not None:
            return int(self.mig.split("g.")[0]) / 7
        return float(self.gpus)

    @classmethod
    def from_spec(cls, spec: JobSpec) -> Demand:
        res = spec.resources
        return cls(gpus=res.min_gpus, max_gpus=res.max_gpus, kinds=res.gpu_kinds,
                   gpu_memory_gib=res.gpu_memory_gib, fraction=res.fraction, mig=res.mig,
                   cpus=res.min_cpus,
                   max_cpus=res.max_cpus if res.max_cpus > res.min_cpus else 0,
                   memory_gib=res.memory_gib, spread=Spread(res.spread), nodes=res.nodes)
