"""What a job gets (a composition) and what one round hands the backend (a plan).

These are domain types, below placement: placement produces them, the store persists
them and backends enforce them, so neither the store nor a backend imports placement.
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
class Composition:
    """Everything one job gets."""

    job_id: str
    node: str
    slices: tuple[Slice, ...]
    cores: tuple[int, ...]
    memory_gib: float
    numa_nodes: tuple[int, ...] = ()
    data_path: str | None = None  # what SLICEBOX_DATA points at
    staging: Staging | None = None

    @property
    def gpu_share(self) -> float:
        return sum(s.compute for s in self.slices)

    @property
    def kind(self) -> str:
        return self.slices[0].kind if self.slices else "cpu"

    def describe(self) -> str:
        gpus = ", ".join(s.describe() for s in self.slices) or "no GPU"
        return f"{self.node}: {gpus}; cores {list(self.cores)}; {self.memory_gib:g} GiB"


@dataclass(frozen=True)
class Plan:
    start: tuple[Composition, ...] = ()
    keep: tuple[str, ...] = ()  # running jobs that stay where they are
    stop: tuple[str, ...] = ()  # running jobs to preempt
    waiting: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
