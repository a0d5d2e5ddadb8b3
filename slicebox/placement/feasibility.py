"""Could a demand ever fit this pool, empty? If not, why, naming the spec field to change.

Asked at submit time, so an impossible job is refused instead of waiting forever. The
answer depends only on the hardware: nodes are summarised once and identical node
shapes collapse, so a 10,000-GPU pool of a few node types costs a few comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass

from slicebox.placement.state import EPS
from slicebox.pool.kinds import get_kind
from slicebox.pool.model import Pool
from slicebox.spec.demand import Demand


@dataclass(frozen=True)
class _NodeShape:
    cores: int
    memory_gib: float
    whole: tuple[tuple[str, int, float], ...]  # (kind, non-MIG cards, largest card memory)
    mig_kinds: frozenset[str]  # kinds with a MIG-enabled card here


def _shapes(pool: Pool) -> tuple[_NodeShape, ...]:
    shapes: dict[_NodeShape, None] = {}
    for node in pool.nodes:
        whole: dict[str, tuple[int, float]] = {}
        mig: set[str] = set()
        for dev in node.devices:
            kind = dev.kind.name
            if dev.mig_enabled:
                mig.add(kind)
            else:
                count, memory = whole.get(kind, (0, 0.0))
                whole[kind] = (count + 1, max(memory, dev.memory))
        shape = _NodeShape(len(node.cores), node.memory_gib,
                           tuple(sorted((k, c, m) for k, (c, m) in whole.items())),
                           frozenset(mig))
        shapes.setdefault(shape)
    return tuple(shapes)


class Feasibility:
    def __init__(self, pool: Pool):
        self.pool = pool
        self.shapes = _shapes(pool)
        self.kinds = tuple(pool.gpu_counts())
        self._cache: dict[Demand, str | None] = {}

    def __call__(self, demand: Demand) -> str | None:
        if demand not in self._cache:
            self._cache[demand] = self._check(demand)
        return self._cache[demand]

    def _check(self, d: Demand) -> str | None:
        most_cores = max(s.cores for s in self.shapes)
        most_memory = max(s.memory_gib for s in self.shapes)
        if d.cpus > most_cores:
            return (f"resources.cpus: {d.cpus} cores requested but the largest node has "
                    f"{most_cores}")
        if d.memory_gib > most_memory + EPS:
            return (f"resources.memory_gib: {d.memory_gib:g} GiB requested but the largest node "
                    f"has {most_memory:g} GiB")
        host = [s for s in self.shapes if s.cores >= d.cpus and s.memory_gib + EPS >= d.memory_gib]
        if not host:
            return (f"resources.cpus: no node has both {d.cpus} cores and {d.memory_gib:g} GiB "
                    "memory")
        if d.gpus == 0 and not d.shared:
            return None
        if not self.kinds:
            return "resources.gpus: GPUs requested but the pool has none"
        kinds = [k for k in (d.kinds or self.kinds) if k in self.kinds]
        if not kinds:
            return (f"resources.gpu_kinds: none of {', '.join(d.kinds)} is in the pool "
                    f"(kinds here: {', '.join(self.kinds)})")
        if d.mig is not None:
            return self._mig(d, kinds, host)
        if d.fraction is not None:
            return self._fraction(d, kinds, host)
        return self._whole(d, kinds, host)

    def _mig(self, d: Demand, kinds: list[str], host: list[_NodeShape]) -> str | None:
        name = d.mig or ""
        with_profile = [k for k in kinds if any(p.name == name for p in get_kind(k).mig_profiles)]
        usable = [k for k in with_profile if any(k in s.mig_kinds for s in self.shapes)]
        if not usable:
            return f"resources.mig: {name} needs a MIG-enabled card of a kind with that profile"
        memory = get_kind(usable[0]).mig_profile(name).memory_gib
        if d.gpu_memory_gib is not None and d.gpu_memory_gib > memory + EPS:
            return (f"resources.gpu_memory_gib: {d.gpu_memory_gib:g} GiB requested but a "
                    f"{name} instance has {memory:g} GiB")
        if not any(k in s.mig_kinds for s in host for k in usable):
            return (f"resources.cpus: no node with a MIG-enabled card for {name} has "
                    f"{d.cpus} cores and {d.memory_gib:g} GiB memory")
        return None

    def _fraction(self, d: Demand, kinds: list[str], host: list[_NodeShape]) -> str | None:
        cards = [(k, m) for s in self.shapes for k, _, m in s.whole if k in kinds]
        if not cards:
            return (f"resources.fraction: a share needs a card without MIG of kind "
                    f"{' or '.join(kinds)}")
        biggest = max(m for _, m in cards)
        cap = d.gpu_memory_gib
        if cap is not None and cap > biggest + EPS:
            return (f"resources.gpu_memory_gib: {cap:g} GiB requested but the largest card has "
                    f"{biggest:g} GiB")
        if not any(k in kinds and (cap is None or m + EPS >= cap)
                   for s in host for k, _, m in s.whole):
            return (f"resources.cpus: no node with a suitable card has {d.cpus} cores and "
                    f"{d.memory_gib:g} GiB memory")
        return None

    def _whole(self, d: Demand, kinds: list[str], host: list[_NodeShape]) -> str | None:
        def cards(shapes: list[_NodeShape] | tuple[_NodeShape, ...]) -> int:
            return max((c for s in shapes for k, c, m in s.whole if k in kinds
                        and (d.gpu_memory_gib is None or m + EPS >= d.gpu_memory_gib)),
                       default=0)

        if d.gpu_memory_gib is not None and not cards(self.shapes):
            biggest = max((get_kind(k).memory_gib for k in kinds), default=0)
            return (f"resources.gpu_memory_gib: {d.gpu_memory_gib:g} GiB per GPU requested but "
                    f"the largest card has {biggest:g} GiB")
        most = cards(self.shapes)
        if d.gpus > most:
            which = " or ".join(kinds) if d.kinds else "any kind"
            return (f"resources.gpus: {d.gpus} GPUs requested but the largest node has {most} "
                    f"({which}, without MIG); a job runs on one node")
        if cards(host) < d.gpus:
            return (f"resources.cpus: no node with {d.gpus} suitable GPUs also has {d.cpus} "
                    f"cores and {d.memory_gib:g} GiB memory")
        return None
