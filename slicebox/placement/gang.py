"""Whole GPUs for one job over several nodes (a gang), all or nothing.

Used when a job's ``spread`` lets it leave one node (``Spread`` in ``spec/demand.py``
says which Ray strategy each value follows):

* ``pack``, when no single node has room: whole free nodes first (all of a node's GPUs
  of the kind free; the best-connected nodes first, then by number), then the tightest
  node that holds the remainder, then the partly free nodes with most free GPUs;
* ``spread``: one GPU per node on as many nodes as have room, most free first, and
  more per node (round robin) only when fewer nodes have room than GPUs are wanted.

Each part gets cores and memory in proportion to its GPUs (cores by largest remainder,
at least one per part, since a part is a process on its node). A node is chosen only if
it has free cores and memory for its share, rounded up, so the apportioned cores always
fit. Candidates come from the state's free-GPU buckets, so a gang looks at the nodes it
takes plus those it skips for lack of cores or memory, not at the pool.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from slicebox.placement.search import (
    _numa_preference,
    _whole_slice,
    best_gpu_set,
    nofit,
    pick_cores,
)
from slicebox.placement.state import EPS, PoolState
from slicebox.pool.composition import Composition, NoFit, Part
from slicebox.spec.demand import Spread


def split_cores(cpus: int, takes: Sequence[int]) -> list[int]:
    """``cpus`` cores over parts in proportion to their GPUs (largest remainder), at least
    one per part when any cores are asked for."""
    total = sum(takes)
    if cpus <= 0 or total <= 0:
        return [0] * len(takes)
    exact = [cpus * t / total for t in takes]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(takes)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[:cpus - sum(shares)]:
        shares[i] += 1
    return [max(1, s) for s in shares]


def gpus_for_share(cores: int, memory: float, cpus: int, memory_gib: float, count: int
                   ) -> int:
    """How many of a ``count``-GPU gang's GPUs a node with ``cores`` and ``memory`` free
    can hold, given each part's cores and memory in proportion to its GPUs."""
    most = count
    if cpus > 0:
        most = min(most, math.floor(cores * count / cpus + EPS))
    if memory_gib > 0:
        most = min(most, math.floor(memory * count / memory_gib + EPS))
    return max(0, most)


class _Gang:
    def __init__(self, state: PoolState, kind: str, count: int, cpus: int, memory: float,
                 gpu_memory: float | None):
        self.state, self.kind, self.count = state, kind, count
        self.cpus, self.memory, self.gpu_memory = cpus, memory, gpu_memory
        self.chosen: dict[int, int] = {}  # node -> GPUs taken there, in choice order
        self.left = count

    def usable(self, n: int) -> list[int]:
        free = self.state.free_gpus_on(n, self.kind)
        if self.gpu_memory is not None:
            topo = self.state.topo
            free = [d for d in free if topo.dev_memory[d] + EPS >= self.gpu_memory]
        return free

    def room(self, n: int, take: int, free: int) -> bool:
        """Node ``n`` (not chosen yet) can hold ``take`` GPUs and their share of cores and
        memory (rounded up)."""
        if n in self.chosen or take <= 0:
            return False
        state = self.state
        if state.free_core_count(n) < math.ceil(self.cpus * take / self.count - EPS):
            return False
        if state.free_memory(n) + EPS < self.memory * take / self.count:
            return False
        return self.gpu_memory is None and free >= take or len(self.usable(n)) >= take

    def cap(self, n: int, free: int) -> int:
        """The most of ``free`` GPUs node ``n`` can take with its share of cores and memory
        (k GPUs need ceil(cpus * k / count) cores and memory * k / count GiB)."""
        return min(free, gpus_for_share(self.state.free_core_count(n),
                                        self.state.free_memory(n), self.cpus, self.memory,
                                        self.count))

    def take(self, n: int, take: int) -> None:
        self.chosen[n] = take
        self.left -= take

    def pack(self) -> None:
        state, topo, kind = self.state, self.state.topo, self.kind
        largest = state.largest_free_set(kind)
        for size in range(min(largest, self.left), 0, -1):  # whole nodes, biggest first
            nodes: Iterable[int] = state.whole_nodes(kind, size)
            if not topo.kind_links_uniform.get(kind, True):  # best-connected first
                nodes = sorted(nodes, key=lambda n: (topo.node_worst_rank[n], n))
            for n in nodes:
                if self.left < size:
                    break
                if self.room(n, size, size):
                    self.take(n, size)
        if self.left > 0:  # the remainder on the tightest node that holds it
            need = math.ceil(self.cpus * self.left / self.count - EPS)
            for n in state.nodes_with_free_gpus(kind, self.left, need):
                if self.room(n, self.left, len(state.free_gpus_on(n, kind))):
                    self.take(n, self.left)
                    break
        if self.left > 0:  # then partly free nodes, most free first
            for free, n in state.nodes_by_most_free_gpus(kind, min(self.cpus, 1)):
                take = min(self.cap(n, free), self.left)
                if self.room(n, take, free):
                    self.take(n, take)
                    if self.left <= 0:
                        break

    def spread(self) -> None:
        state, per_gpu = self.state, 1
        room: dict[int, int] = {}
        need = math.ceil(self.cpus * per_gpu / self.count - EPS)
        for free, n in state.nodes_by_most_free_gpus(self.kind, need):
            if self.room(n, per_gpu, free):
                room[n] = self.cap(n, free)
                if len(room) >= self.count:
                    break  # one GPU per node is possible: no need to look further
        if sum(room.values()) < self.count:
            return
        takes = dict.fromkeys(room, 0)
        left = self.count
        while left > 0:  # round robin: one more GPU per node per pass
            for n in takes:
                if left > 0 and takes[n] < room[n]:
                    takes[n] += 1
                    left -= 1
        for n, take in takes.items():
            if take and self.room(n, take, room[n]):
                self.take(n, take)

    def compose(self, job_id: str) -> Composition | None:
        state = self.state
        takes = list(self.chosen.values())
        cores = split_cores(self.cpus, takes)
        parts = []
        for (n, take), n_cores in zip(self.chosen.items(), cores, strict=True):
            free = self.usable(n)
            devices = tuple(free) if len(free) == take else \
                best_gpu_set(state, n, free, take, n_cores)[1]
            picked = pick_cores(state, n, n_cores, _numa_preference(state, devices))
            if picked is None:
                return None
            parts.append(Part(state.pool.nodes[n].name,
                              tuple(_whole_slice(state, d) for d in devices), picked[0],
                              self.memory * take / self.count, picked[1]))
        return Composition(job_id, tuple(parts))


def find_gang(state: PoolState, job_id: str, kind: str, count: int, cpus: int, memory: float,
              gpu_memory: float | None = None, spread: Spread = Spread.PACK
              ) -> Composition | NoFit:
    """``count`` whole GPUs of ``kind`` over as many nodes as ``spread`` asks, or why not."""
    want = f"needs {count} GPUs of kind {kind}"
    total = state.free_whole_gpus(kind)
    if total < count:
        return nofit("gpus", f"free {kind} GPUs in the pool", count, total,
                     f"{want}; {total} are free across the pool")
    gang = _Gang(state, kind, count, cpus, memory, gpu_memory)
    if spread is Spread.SPREAD:
        gang.spread()
    else:
        gang.pack()
    comp = gang.compose(job_id) if gang.left <= 0 else None
    if comp is None:
        return nofit("cpus", f"free cores and memory beside free {kind} GPUs", cpus, 0,
                     f"{want} with {cpus} cores and {memory:g} GiB memory across nodes; "
                     f"{total} are free but their nodes lack cores or memory for their share")
    return comp


def find_cpu_gang(state: PoolState, job_id: str, nodes: int, cpus: int, memory: float
                  ) -> Composition | NoFit:
    """A CPU-only gang: ``cpus`` cores and ``memory`` GiB on each of ``nodes`` distinct
    nodes, all or nothing. CPU-only nodes first (as ``search.find_cpu``), then the nodes
    with fewest free cores that still hold a rank, so big nodes stay whole."""
    hosts: list[int] = []
    for gpu_nodes in (False, True):
        found = [n for n in state.nodes_with_free_cores(cpus, gpu_nodes)
                 if state.free_memory(n) + EPS >= memory]
        hosts.extend(sorted(found, key=lambda n: (state.free_core_count(n), n)))
    if len(hosts) < nodes:
        return nofit("nodes", f"nodes with {cpus} free cores and {memory:g} GiB", nodes,
                     len(hosts), f"needs {nodes} nodes with {cpus} free cores and "
                     f"{memory:g} GiB memory each; {len(hosts)} have them now")
    parts = []
    for n in hosts[:nodes]:
        picked = pick_cores(state, n, cpus, ())
        if picked is None:
            return nofit("cpus", "free cores on a chosen node", cpus, 0,
                         f"needs {cpus} cores on node {state.pool.nodes[n].name}")
        parts.append(Part(state.pool.nodes[n].name, (), picked[0], memory, picked[1]))
    return Composition(job_id, tuple(parts))
