"""Could a demand ever fit this pool, empty? If not, why, naming the spec field to change.

Asked at submit time, so an impossible job is refused instead of waiting forever. The
answer depends only on the hardware: nodes are summarised once and identical node
shapes collapse (with their count), so a 10,000-GPU pool of a few node types costs a
few comparisons. The answer is a ``NoFit`` (``never=True``) whose message starts with the
spec field, e.g. ``resources.gpus: ...``.

A whole-GPU job that may spread (``pack`` or ``spread``) fits if the pool has enough
cards of one allowed kind in all, on nodes that also have the cores and memory for
their share; a ``one_node`` job, and any share or MIG instance, needs one node.
"""

from __future__ import annotations

from dataclasses import dataclass

from slicebox.placement.gang import gpus_for_share
from slicebox.placement.state import EPS
from slicebox.pool.composition import NoFit
from slicebox.pool.kinds import get_kind
from slicebox.pool.model import Pool
from slicebox.spec.demand import Demand, Spread


def _never(field: str, short: str, wanted: float, available: float, message: str) -> NoFit:
    return NoFit(field, short, float(wanted), float(available), message, never=True)


@dataclass(frozen=True)
class _NodeShape:
    cores: int
    memory_gib: float
    whole: tuple[tuple[str, int, float], ...]  # (kind, non-MIG cards, largest card memory)
    mig_kinds: frozenset[str]  # kinds with a MIG-enabled card here


def _shapes(pool: Pool) -> dict[_NodeShape, int]:
    """Each distinct node shape and how many nodes have it."""
    shapes: dict[_NodeShape, int] = {}
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
        shapes[shape] = shapes.get(shape, 0) + 1
    return shapes


class Feasibility:
    def __init__(self, pool: Pool):
        self.pool = pool
        self.counts = _shapes(pool)
        self.shapes = tuple(self.counts)
        self.kinds = tuple(pool.gpu_counts())
        self._cache: dict[Demand, NoFit | None] = {}

    def __call__(self, demand: Demand) -> NoFit | None:
        if demand not in self._cache:
            self._cache[demand] = self._check(demand)
        return self._cache[demand]

    def _check(self, d: Demand) -> NoFit | None:
        if not self.shapes:
            return _never("cpus", "nodes", d.cpus, 0, "resources.cpus: the pool has no nodes")
        gang = d.spread is not Spread.ONE_NODE and not d.shared and d.gpus > 1
        if gang:
            return self._gang(d)
        if d.nodes > 1:
            return self._cpu_gang(d)
        most_cores = max(s.cores for s in self.shapes)
        most_memory = max(s.memory_gib for s in self.shapes)
        if d.cpus > most_cores:
            return _never("cpus", "cores on one node", d.cpus, most_cores,
                          f"resources.cpus: {d.cpus} cores requested but the largest node has "
                          f"{most_cores}")
        if d.memory_gib > most_memory + EPS:
            return _never("memory_gib", "memory on one node", d.memory_gib, most_memory,
                          f"resources.memory_gib: {d.memory_gib:g} GiB requested but the "
                          f"largest node has {most_memory:g} GiB")
        host = [s for s in self.shapes if s.cores >= d.cpus and s.memory_gib + EPS >= d.memory_gib]
        if not host:
            return _never("cpus", "cores and memory on one node", d.cpus, 0,
                          f"resources.cpus: no node has both {d.cpus} cores and "
                          f"{d.memory_gib:g} GiB memory")
        if d.gpus == 0 and not d.shared:
            return None
        kinds = self._kinds(d)
        if isinstance(kinds, NoFit):
            return kinds
        if d.mig is not None:
            return self._mig(d, kinds, host)
        if d.fraction is not None:
            return self._fraction(d, kinds, host)
        return self._whole(d, kinds, host)

    def _kinds(self, d: Demand) -> list[str] | NoFit:
        if not self.kinds:
            return _never("gpus", "GPUs", d.gpus, 0,
                          "resources.gpus: GPUs requested but the pool has none")
        kinds = [k for k in (d.kinds or self.kinds) if k in self.kinds]
        if not kinds:
            return _never("kind", "GPUs of an allowed kind", d.gpus, 0,
                          f"resources.gpu_kinds: none of {', '.join(d.kinds)} is in the pool "
                          f"(kinds here: {', '.join(self.kinds)})")
        return kinds

    def _cpu_gang(self, d: Demand) -> NoFit | None:
        """A CPU-only job of ``nodes`` ranks: that many nodes each hold ``cpus`` cores and
        ``memory_gib`` GiB."""
        hosts = sum(count for shape, count in self.counts.items()
                    if shape.cores >= d.cpus and shape.memory_gib + EPS >= d.memory_gib)
        if hosts >= d.nodes:
            return None
        return _never("nodes", "nodes with the cores and memory of one rank", d.nodes, hosts,
                      f"resources.nodes: {d.nodes} nodes with {d.cpus} cores and "
                      f"{d.memory_gib:g} GiB each requested but the pool has {hosts}")

    def _gang(self, d: Demand) -> NoFit | None:
        """A whole-GPU job that may span nodes: some allowed kind has ``gpus`` cards (with
        the memory asked for) in all, on nodes with cores and memory for their share."""
        kinds = self._kinds(d)
        if isinstance(kinds, NoFit):
            return kinds
        best_cards, best_raw = 0, 0
        for kind in kinds:
            cards = raw = 0
            for shape, count in self.counts.items():
                here = sum(c for k, c, m in shape.whole if k == kind
                           and (d.gpu_memory_gib is None or m + EPS >= d.gpu_memory_gib))
                raw += here * count
                usable = min(here, gpus_for_share(shape.cores, shape.memory_gib, d.cpus,
                                                  d.memory_gib, d.gpus))
                cards += usable * count
            if cards >= d.gpus:
                return None
            best_cards, best_raw = max(best_cards, cards), max(best_raw, raw)
        which = " or ".join(kinds) if d.kinds else "any one kind"
        memory = f" with {d.gpu_memory_gib:g} GiB each" if d.gpu_memory_gib is not None else ""
        if best_raw < d.gpus:
            return _never("gpus", "GPUs of one kind in the pool", d.gpus, best_raw,
                          f"resources.gpus: {d.gpus} GPUs{memory} requested but the pool has "
                          f"{best_raw} ({which}, without MIG)")
        return _never("cpus", "GPUs whose nodes have cores and memory for their share",
                      d.gpus, best_cards,
                      f"resources.cpus: {d.gpus} GPUs with {d.cpus} cores and "
                      f"{d.memory_gib:g} GiB memory, split over nodes in proportion to GPUs, "
                      f"fit nowhere: the nodes' cores and memory carry only {best_cards} "
                      "such GPUs")

    def _mig(self, d: Demand, kinds: list[str], host: list[_NodeShape]) -> NoFit | None:
        name = d.mig or ""
        with_profile = [k for k in kinds if any(p.name == name for p in get_kind(k).mig_profiles)]
        usable = [k for k in with_profile if any(k in s.mig_kinds for s in self.shapes)]
        if not usable:
            return _never("mig", f"MIG-enabled cards with {name}", 1, 0,
                          f"resources.mig: {name} needs a MIG-enabled card of a kind with "
                          "that profile")
        memory = get_kind(usable[0]).mig_profile(name).memory_gib
        if d.gpu_memory_gib is not None and d.gpu_memory_gib > memory + EPS:
            return _never("gpu_memory_gib", f"memory of a {name} instance", d.gpu_memory_gib,
                          memory, f"resources.gpu_memory_gib: {d.gpu_memory_gib:g} GiB "
                          f"requested but a {name} instance has {memory:g} GiB")
        if not any(k in s.mig_kinds for s in host for k in usable):
            return _never("cpus", "cores beside a MIG-enabled card", d.cpus, 0,
                          f"resources.cpus: no node with a MIG-enabled card for {name} has "
                          f"{d.cpus} cores and {d.memory_gib:g} GiB memory")
        return None

    def _fraction(self, d: Demand, kinds: list[str], host: list[_NodeShape]) -> NoFit | None:
        cards = [(k, m) for s in self.shapes for k, _, m in s.whole if k in kinds]
        if not cards:
            return _never("fraction", "cards without MIG", 1, 0,
                          f"resources.fraction: a share needs a card without MIG of kind "
                          f"{' or '.join(kinds)}")
        biggest = max(m for _, m in cards)
        cap = d.gpu_memory_gib
        if cap is not None and cap > biggest + EPS:
            return _never("gpu_memory_gib", "memory of the largest card", cap, biggest,
                          f"resources.gpu_memory_gib: {cap:g} GiB requested but the largest "
                          f"card has {biggest:g} GiB")
        if not any(k in kinds and (cap is None or m + EPS >= cap)
                   for s in host for k, _, m in s.whole):
            return _never("cpus", "cores beside a suitable card", d.cpus, 0,
                          f"resources.cpus: no node with a suitable card has {d.cpus} cores "
                          f"and {d.memory_gib:g} GiB memory")
        return None

    def _whole(self, d: Demand, kinds: list[str], host: list[_NodeShape]) -> NoFit | None:
        def cards(shapes: list[_NodeShape] | tuple[_NodeShape, ...]) -> int:
            return max((c for s in shapes for k, c, m in s.whole if k in kinds
                        and (d.gpu_memory_gib is None or m + EPS >= d.gpu_memory_gib)),
                       default=0)

        if d.gpu_memory_gib is not None and not cards(self.shapes):
            biggest = max((get_kind(k).memory_gib for k in kinds), default=0)
            return _never("gpu_memory_gib", "memory of the largest card", d.gpu_memory_gib,
                          biggest, f"resources.gpu_memory_gib: {d.gpu_memory_gib:g} GiB per "
                          f"GPU requested but the largest card has {biggest:g} GiB")
        most = cards(self.shapes)
        if d.gpus > most:
            which = " or ".join(kinds) if d.kinds else "any kind"
            tail = ("resources.spread is one_node" if d.spread is Spread.ONE_NODE
                    else "a share runs on one node")
            return _never("gpus", "GPUs on one node", d.gpus, most,
                          f"resources.gpus: {d.gpus} GPUs requested but the largest node has "
                          f"{most} ({which}, without MIG); {tail}")
        if cards(host) < d.gpus:
            return _never("cpus", "cores beside the GPUs", d.cpus, 0,
                          f"resources.cpus: no node with {d.gpus} suitable GPUs also has "
                          f"{d.cpus} cores and {d.memory_gib:g} GiB memory")
        return None
