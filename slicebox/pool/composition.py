"""What a job gets (a composition), why it got nothing (a ``NoFit``), and what one round
hands the backend (a plan).

These are domain types, below placement: placement produces them, the store persists
them and backends enforce them, so neither the store nor a backend imports placement.

A composition is made of parts, one per node. Most jobs have one part; a gang (a job
larger than a node, or one that asked to spread) has several and is placed all or
nothing. Single-node code (the local backend) reads ``node``/``cores``/``numa_nodes``,
which refuse, naming the job, a composition that spans nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from slicebox.pool.slices import Slice

CACHE_DIR = "slicebox-cache"  # the folder staged copies live in, on every volume


@dataclass(frozen=True)
class Staging:
    """Copy a dataset to a faster volume before the job starts (or reuse an earlier copy)."""

    dataset: str  # cache key
    source: str  # path it is read from
    volume: str  # name of the volume it is staged to
    target: str  # path of the staged copy
    size_gib: float
    cached: bool  # True: a copy is already there (or is being made) and is reused
    evict: tuple[str, ...] = ()  # cached copies to delete first, least recently used first


@dataclass(frozen=True)
class Part:
    """What a job gets on one node."""

    node: str
    slices: tuple[Slice, ...]
    cores: tuple[int, ...]
    memory_gib: float
    numa_nodes: tuple[int, ...] = ()

    def describe(self) -> str:
        gpus = ", ".join(s.describe() for s in self.slices) or "no GPU"
        return f"{self.node}: {gpus}; cores {list(self.cores)}; {self.memory_gib:g} GiB"


@dataclass(frozen=True)
class Composition:
    """Everything one job gets: one part per node (a gang when there are several)."""

    job_id: str
    parts: tuple[Part, ...]
    data_path: str | None = None  # what SLICEBOX_DATA points at
    staging: Staging | None = None  # staged on the first part's node

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError(f"job {self.job_id}: a composition needs at least one part")
        names = [p.node for p in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"job {self.job_id}: node listed twice in {names}")

    @classmethod
    def on_node(cls, job_id: str, node: str, slices: tuple[Slice, ...], cores: tuple[int, ...],
                memory_gib: float, numa_nodes: tuple[int, ...] = (),
                data_path: str | None = None, staging: Staging | None = None) -> Composition:
        """A composition on one node (what every job had before gangs)."""
        return cls(job_id, (Part(node, tuple(slices), tuple(cores), memory_gib,
                                 tuple(numa_nodes)),), data_path, staging)

    # -- the whole gang ---------------------------------------------------------------------
    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(p.node for p in self.parts)

    @property
    def multi_node(self) -> bool:
        return len(self.parts) > 1

    @property
    def slices(self) -> tuple[Slice, ...]:
        if len(self.parts) == 1:
            return self.parts[0].slices
        return tuple(s for p in self.parts for s in p.slices)

    @property
    def gpu_share(self) -> float:
        return sum(s.compute for s in self.slices)

    @property
    def kind(self) -> str:
        slices = self.slices
        return slices[0].kind if slices else "cpu"

    @property
    def memory_gib(self) -> float:
        return sum(p.memory_gib for p in self.parts)

    @property
    def core_count(self) -> int:
        return sum(len(p.cores) for p in self.parts)

    def describe(self) -> str:
        return " + ".join(p.describe() for p in self.parts)

    # -- single-node views (the local backend) --------------------------------------------
    def _only(self) -> Part:
        if len(self.parts) != 1:
            raise ValueError(f"job {self.job_id}: its composition spans {len(self.parts)} "
                             f"nodes ({', '.join(self.nodes)}); this needs a single node")
        return self.parts[0]

    @property
    def node(self) -> str:
        return self._only().node

    @property
    def cores(self) -> tuple[int, ...]:
        return self._only().cores

    @property
    def numa_nodes(self) -> tuple[int, ...]:
        return self._only().numa_nodes


@dataclass(frozen=True)
class NoFit:
    """Why a job was not placed: the spec field to look at, what is short, and how much
    of it was wanted and is available (both counted in what ``short`` names, e.g. GPUs
    for "GPUs whose nodes have cores for their share").

    ``str()`` is the one-line human message (what wait reasons and admission errors show).
    """

    field: str  # "gpus", "cpus", "memory_gib", "mig", "fraction", "kind", "gpu_memory_gib",
    # or, when nothing is short, "order" (waits behind a strict head) / "job" (unknown job)
    short: str  # what is short, e.g. "free H100 GPUs on one node"
    wanted: float
    available: float
    message: str
    never: bool = False  # True: does not fit even the empty pool (the spec must change)

    @property
    def short_by(self) -> float:
        return max(0.0, self.wanted - self.available)

    def __str__(self) -> str:
        return self.message


def _no_waiting() -> Mapping[str, NoFit]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Plan:
    start: tuple[Composition, ...] = ()
    keep: tuple[str, ...] = ()  # running jobs that stay where they are
    stop: tuple[str, ...] = ()  # running jobs to preempt
    waiting: Mapping[str, NoFit] = field(default_factory=_no_waiting)
