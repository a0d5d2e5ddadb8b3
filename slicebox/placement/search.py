"""Finding exact slices for one job in a ``PoolState``: whole GPUs, MIG, shares, cores.

Each ``find_*`` returns a one-node ``Composition`` or, when nothing fits, a ``NoFit`` that
says what is short (``gang.py`` finds the compositions that span nodes). None of them
changes the state; the caller allocates what it accepts.

Choices, and why:

* whole GPUs: candidate nodes come from the state's index, tightest free set first (best
  fit keeps big free sets whole for big jobs). On each node the set of GPUs minimises the
  worst link between any two of them (NVLink < PIX < PXB < NODE < SYS), then stays on as
  few NUMA nodes as possible, then takes GPUs from the NUMA node with fewest free GPUs.
  The first node whose best set is all NVLink is taken; otherwise a few candidates are
  compared, so a 10,000-GPU pool costs the same as an 8-GPU one.
* MIG: an existing unused instance of the profile first (nothing to reconfigure), then a
  new instance on the fullest card that has a valid start, at the start that leaves the
  most room for other profiles. A new instance has a placeholder uuid
  (``PLANNED_MIG_PREFIX``): it models a card that can be carved, for the simulator and dry
  runs. Nothing creates it at launch, so the live controller places with
  ``free_room=False`` (existing instances only) and creates instances by a MIG re-layout
  (``slicebox.controller.mig``).
* fractions: the partly shared card with least compute left that still fits, else a free
  card on the tightest node.
* cores: on the GPUs' NUMA nodes; other NUMA nodes only when those are short (the
  composition's ``numa_nodes`` then lists them).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from operator import itemgetter

from slicebox.placement.state import EPS, PoolState
from slicebox.placement.topology import MIG_COMPUTE
from slicebox.pool.composition import Composition, NoFit
from slicebox.pool.kinds import MigProfile, get_kind
from slicebox.pool.model import Link
from slicebox.pool.slices import Slice, SliceType

MAX_COMPARED_NODES = 8  # nodes whose best GPU set is compared when none is all-NVLink
MAX_COMBINATIONS = 256  # beyond this many GPU sets on a node, grow sets greedily instead
PLANNED_MIG_PREFIX = "MIG-planned:"  # an instance in free room: exists in no backend
_SELF_RANK = Link.SELF.rank  # the worst link of a one-GPU set (an enum property: look up once)
_first = itemgetter(0)


def _node_fits(state: PoolState, n: int, cpus: int, memory: float) -> bool:
    return state.free_core_count(n) >= cpus and state.free_memory(n) + EPS >= memory


def pick_cores(state: PoolState, n: int, count: int, prefer: Sequence[int | None] = ()
               ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """``count`` free cores of node ``n`` and the NUMA nodes they are on.

    NUMA nodes in ``prefer`` are used first, in that order. Without a preference (or
    once it is used up) one NUMA node that can hold all that is left is taken, the
    tightest such; only if none can are cores spread, largest group first.
    """
    if count <= 0:
        return (), ()
    free = state.free_cores(n)
    by_numa = {numa: mask for numa, mask in free}
    first = prefer[0] if prefer else None
    if first is not None and first in by_numa and by_numa[first].bit_count() >= count:
        # The usual case: the first preferred NUMA node holds them all; its ``count``
        # lowest free cores, as the general walk below would take them.
        mask, lowest = by_numa[first], []
        for _ in range(count):
            low = mask & -mask
            lowest.append(low.bit_length() - 1)
            mask ^= low
        return tuple(lowest), (first,)
    order: list[int] = [p for p in dict.fromkeys(prefer) if p is not None and p in by_numa]
    rest = [numa for numa, _ in free if numa not in order]
    need = count - sum(by_numa[p].bit_count() for p in order)
    if need > 0:
        whole = [numa for numa in rest if by_numa[numa].bit_count() >= need]
        if whole:
            best = min(whole, key=lambda numa: (by_numa[numa].bit_count(), numa))
            rest = [best] + [numa for numa in rest if numa != best]
        else:
            rest.sort(key=lambda numa: -by_numa[numa].bit_count())
    cores: list[int] = []
    used: list[int] = []
    for numa in order + rest:
        mask = by_numa[numa]
        while mask and len(cores) < count:
            low = mask & -mask
            cores.append(low.bit_length() - 1)
            mask ^= low
            if not used or used[-1] != numa:
                used.append(numa)
        if len(cores) == count:
            return tuple(sorted(cores)), tuple(used)
    return None


def _set_score(state: PoolState, n: int, combo: Sequence[int], cpus: int,
               numa_free_gpus: dict[int | None, int], numa_free_cores: dict[int, int]
               ) -> tuple[object, ...]:
    t = state.topo
    if len(combo) == 1:
        # One GPU (most jobs, and a placement looks at thousands): no pairs, one NUMA
        # node; the same tuple as the general case below.
        numa = t.dev_numa[combo[0]]
        if numa is None:
            return (_SELF_RANK, False, 1, numa_free_gpus[numa], 0, tuple(combo))
        short = bool(cpus) and numa_free_cores.get(numa, 0) < cpus
        return (_SELF_RANK, short, 1, numa_free_gpus[numa], 0, tuple(combo))
    ranks = t.node_link_rank[n]
    pos = [t.dev_pos[d] for d in combo]
    pairs = [ranks[a][b] for a, b in itertools.combinations(pos, 2)]
    worst = max(pairs, default=Link.SELF.rank)
    numas = {t.dev_numa[d] for d in combo}
    local = sum(numa_free_cores.get(numa, 0) for numa in numas if numa is not None)
    short = bool(cpus) and None not in numas and local < cpus
    spread = sum(numa_free_gpus[t.dev_numa[d]] for d in combo)
    return (worst, short, len(numas), spread, sum(pairs), tuple(combo))


def best_gpu_set(state: PoolState, n: int, free: list[int], k: int, cpus: int
                 ) -> tuple[tuple[object, ...], tuple[int, ...]]:
    """The best ``k`` of the free devices ``free`` on node ``n``, with its score."""
    t = state.topo
    dev_numa = t.dev_numa
    numa_free_gpus: dict[int | None, int] = {}
    for d in free:
        numa = dev_numa[d]
        numa_free_gpus[numa] = numa_free_gpus.get(numa, 0) + 1
    numa_free_cores = {numa: mask.bit_count() for numa, mask in state.free_cores(n)}

    if len(free) == k:
        combos: list[tuple[int, ...]] = [tuple(free)]
    elif t.node_uniform_rank[n] is not None:
        combos = [_by_numa(state, free, k, cpus, numa_free_gpus, numa_free_cores)]
    elif math.comb(len(free), k) <= MAX_COMBINATIONS:
        combos = list(itertools.combinations(free, k))
    else:
        combos = [_grow(state, n, seed, free, k) for seed in free]
    if len(combos) == 1:  # the usual case: score it once, no comparison
        best = combos[0]
        return _set_score(state, n, best, cpus, numa_free_gpus, numa_free_cores), best
    # Each set scored once; the first of equal scores wins, as min(combos, key=score) does.
    scored = [(_set_score(state, n, combo, cpus, numa_free_gpus, numa_free_cores), combo)
              for combo in combos]
    return min(scored, key=_first)


def _by_numa(state: PoolState, free: list[int], k: int, cpus: int,
             numa_free_gpus: dict[int | None, int], numa_free_cores: dict[int, int]
             ) -> tuple[int, ...]:
    """When every pair of GPUs links alike only NUMA matters: one NUMA node if any can hold
    the set (the one with enough local cores and fewest free GPUs), else the fewest nodes."""
    t = state.topo
    groups: dict[int | None, list[int]] = {}
    for d in free:
        groups.setdefault(t.dev_numa[d], []).append(d)

    def short(numa: int | None) -> bool:
        return numa is not None and numa_free_cores.get(numa, 0) < cpus

    single = [numa for numa, devs in groups.items() if len(devs) >= k]
    if single:
        numa = min(single, key=lambda m: (short(m), numa_free_gpus[m], m if m is not None else -1))
        return tuple(groups[numa][:k])
    chosen: list[int] = []
    for numa in sorted(groups, key=lambda m: -len(groups[m])):
        chosen.extend(groups[numa][:k - len(chosen)])
        if len(chosen) == k:
            break
    return tuple(sorted(chosen))


def _grow(state: PoolState, n: int, seed: int, free: list[int], k: int) -> tuple[int, ...]:
    """Greedy set: add the device whose worst link to the set is best (same NUMA breaks ties)."""
    t = state.topo
    ranks = t.node_link_rank[n]
    chosen = [seed]
    while len(chosen) < k:
        def cost(d: int) -> tuple[int, bool, int]:
            worst = max(ranks[t.dev_pos[d]][t.dev_pos[c]] for c in chosen)
            return worst, t.dev_numa[d] != t.dev_numa[seed], d
        chosen.append(min((d for d in free if d not in chosen), key=cost))
    return tuple(sorted(chosen))


def _compose(state: PoolState, job_id: str, n: int, slices: list[Slice], cpus: int,
             memory: float, prefer: Sequence[int | None]) -> Composition | None:
    picked = pick_cores(state, n, cpus, prefer)
    if picked is None:
        return None
    cores, numas = picked
    return Composition.on_node(job_id, state.pool.nodes[n].name, tuple(slices), cores, memory,
                               numas)


def _whole_slice(state: PoolState, d: int) -> Slice:
    return state.whole_slice(d)


def _numa_preference(state: PoolState, devices: Sequence[int]) -> list[int | None]:
    dev_numa = state.topo.dev_numa
    if len(devices) == 1:
        return [dev_numa[devices[0]]]
    numas = [dev_numa[d] for d in devices]
    return sorted(dict.fromkeys(numas), key=lambda numa: -numas.count(numa))


def nofit(field: str, short: str, wanted: float, available: float, message: str) -> NoFit:
    return NoFit(field, short, float(wanted), float(available), message)


def _short(what: str, cpus: int, memory: float, seen_cores: int, seen_memory: float) -> NoFit:
    """The nodes with the GPUs lack cores or memory: name whichever is short."""
    message = (f"{what} with {cpus} cores and {memory:g} GiB memory on one node; the nodes "
               f"that have them offer at most {seen_cores} free cores and {seen_memory:g} GiB")
    if seen_cores < cpus:
        return nofit("cpus", "free cores beside the GPUs", cpus, seen_cores, message)
    return nofit("memory_gib", "free memory beside the GPUs", memory, seen_memory, message)


def find_whole(state: PoolState, job_id: str, kind: str, count: int, cpus: int,
               memory: float, gpu_memory: float | None = None) -> Composition | NoFit:
    """``count`` whole GPUs of ``kind`` on one node."""
    t = state.topo
    if kind not in t.kinds:
        return nofit("kind", f"{kind} GPUs", count, 0,
                     f"{_wants(count, kind)}; the pool has no {kind}")
    if gpu_memory is not None and get_kind(kind).memory_gib + EPS < gpu_memory:
        want = _wants(count, kind)
        have = get_kind(kind).memory_gib
        return nofit("gpu_memory_gib", f"memory on a {kind}", gpu_memory, have,
                     f"{want} with {gpu_memory:g} GiB each; a {kind} has {have:g}")
    largest = state.largest_free_set(kind)
    if largest < count:
        total = state.free_whole_gpus(kind)
        tail = (f" ({total} free across nodes; this job runs on one node)" if total >= count
                else "")
        return nofit("gpus", f"free {kind} GPUs on one node", count, largest,
                     f"{_wants(count, kind)} on one node; largest free set is "
                     f"{largest}{tail}")
    best: tuple[tuple[object, ...], int, tuple[int, ...]] | None = None
    compared = 0
    # Only nodes with the cores are walked (the index has them): in a busy pool most nodes
    # with free GPUs may have too few cores left, and skipping them one by one is the cost.
    for n in state.nodes_with_free_gpus(kind, count, cpus):
        if not _node_fits(state, n, cpus, memory):
            continue
        free = state.free_gpus_on(n, kind)
        if gpu_memory is not None:
            free = [d for d in free if t.dev_memory[d] + EPS >= gpu_memory]
            if len(free) < count:
                continue
        score, devices = best_gpu_set(state, n, free, count, cpus)
        if best is None or score[:3] < best[0][:3]:
            best = (score, n, devices)
        compared += 1
        worst = score[0]  # the worst link of the set: an int rank
        if isinstance(worst, int) and worst <= Link.NVLINK.rank or compared >= MAX_COMPARED_NODES:
            break
    if best is None:
        return _short_of(state, _wants(count, kind), kind, count, cpus, memory)
    _, n, devices = best
    comp = _compose(state, job_id, n, [state.whole_slice(d) for d in devices], cpus, memory,
                    _numa_preference(state, devices))
    if comp is not None:
        return comp
    return _short_of(state, _wants(count, kind), kind, count, cpus, memory)


def _wants(count: int, kind: str) -> str:
    """The start of a whole-GPU job's NoFit message (built only when it is needed)."""
    return f"needs {count} GPU{'s' if count > 1 else ''} of kind {kind}"


def _short_of(state: PoolState, want: str, kind: str, count: int, cpus: int, memory: float
              ) -> NoFit:
    """What the nodes with ``count`` free GPUs lack (a walk over them all: only on failure,
    and a round remembers failures)."""
    seen_cores, seen_memory = 0, 0.0
    for n in state.nodes_with_free_gpus(kind, count):
        seen_cores = max(seen_cores, state.free_core_count(n))
        seen_memory = max(seen_memory, state.free_memory(n))
    return _short(want, cpus, memory, seen_cores, seen_memory)


def find_fraction(state: PoolState, job_id: str, kind: str, fraction: float, cpus: int,
                  memory: float, gpu_memory: float | None = None) -> Composition | NoFit:
    t = state.topo
    kind_memory = get_kind(kind).memory_gib
    want = f"needs a {fraction:.0%} share of a {kind}"
    if kind not in t.kinds:
        return nofit("kind", f"{kind} GPUs", 1, 0, f"{want}; the pool has no {kind}")
    seen_cores, seen_memory = 0, 0.0

    def share(d: int) -> Slice:
        cap = gpu_memory if gpu_memory is not None else fraction * t.dev_memory[d]
        dev = t.device[d]
        return Slice(state.pool.nodes[t.dev_node[d]].name, dev.index, t.dev_kind[d],
                     SliceType.FRACTION, fraction, cap, dev.uuid)

    for d in state.shared_cards(kind, fraction):
        compute_left, memory_left = state.shared_room(d)
        cap = gpu_memory if gpu_memory is not None else fraction * t.dev_memory[d]
        if compute_left + EPS < fraction or memory_left + EPS < cap:
            continue
        n = t.dev_node[d]
        if not _node_fits(state, n, cpus, memory):
            seen_cores = max(seen_cores, state.free_core_count(n))
            seen_memory = max(seen_memory, state.free_memory(n))
            continue
        comp = _compose(state, job_id, n, [share(d)], cpus, memory, [t.dev_numa[d]])
        if comp is not None:
            return comp
    for n in state.nodes_with_free_gpus(kind, 1):
        if not _node_fits(state, n, cpus, memory):
            seen_cores = max(seen_cores, state.free_core_count(n))
            seen_memory = max(seen_memory, state.free_memory(n))
            continue
        free = [d for d in state.free_gpus_on(n, kind)
                if gpu_memory is None or t.dev_memory[d] + EPS >= gpu_memory]
        if not free:
            continue
        _, (d,) = best_gpu_set(state, n, free, 1, cpus)
        comp = _compose(state, job_id, n, [share(d)], cpus, memory, [t.dev_numa[d]])
        if comp is not None:
            return comp
    cap_text = f"{gpu_memory:g} GiB" if gpu_memory is not None else \
        f"{fraction * kind_memory:g} GiB"
    if seen_cores or seen_memory:
        return _short(f"{want} ({cap_text})", cpus, memory, seen_cores, seen_memory)
    return nofit("fraction", f"compute share left on a {kind}", fraction, 0.0,
                 f"{want} with {cap_text} of its memory; no {kind} card without MIG has that "
                 "much compute and memory left")


def _start_score(profiles: Sequence[MigProfile], mask: int, used: int) -> int:
    """How many instances of all profiles could still be started (more room = better)."""
    return sum(1 for p in profiles if used + p.compute <= MIG_COMPUTE
               for s in p.starts if not mask & (((1 << p.size) - 1) << s))


def find_mig(state: PoolState, job_id: str, kind: str, profile_name: str, cpus: int,
             memory: float, free_room: bool = True) -> Composition | NoFit:
    """A MIG instance of ``profile_name`` on a ``kind``: an unused existing one, else (only
    with ``free_room``) a new one in a card's free room, with a placeholder uuid."""
    t = state.topo
    want = f"needs a MIG {profile_name} instance on a {kind}"
    try:
        p = get_kind(kind).mig_profile(profile_name)
    except KeyError:
        return nofit("mig", f"{profile_name} profile on a {kind}", 1, 0,
                     f"{want}; {kind} has no such MIG profile")
    seen_cores, seen_memory = 0, 0.0

    def mig_slice(d: int, start: int, uuid: str) -> Slice:
        return Slice(state.pool.nodes[t.dev_node[d]].name, t.device[d].index, kind,
                     SliceType.MIG, p.compute / MIG_COMPUTE, p.memory_gib, uuid, p.name, start)

    for d in state.cards_with_unused_instance(kind, p.name):
        n = t.dev_node[d]
        if not _node_fits(state, n, cpus, memory):
            seen_cores = max(seen_cores, state.free_core_count(n))
            seen_memory = max(seen_memory, state.free_memory(n))
            continue
        inst = t.device[d].mig_instances[state.unused_instances(d, p.name)[0]]
        comp = _compose(state, job_id, n, [mig_slice(d, inst.start, inst.uuid)], cpus, memory,
                        [t.dev_numa[d]])
        if comp is not None:
            return comp
    profiles = get_kind(kind).mig_profiles
    for d in state.mig_cards(kind, p.size):
        mask, used = state.mig_usage(d)
        if used + p.compute > MIG_COMPUTE:
            continue
        starts = [s for s in p.starts if not mask & (((1 << p.size) - 1) << s)]
        if not starts:
            continue
        n = t.dev_node[d]
        if not _node_fits(state, n, cpus, memory):
            seen_cores = max(seen_cores, state.free_core_count(n))
            seen_memory = max(seen_memory, state.free_memory(n))
            continue
        node = state.pool.nodes[n].name
        if not free_room:  # room, but the instance must be created before a job can use it
            return nofit("mig", f"an unused {profile_name} instance", 1, 0,
                         f"{want}; no MIG-enabled {kind} has an unused one; {node}/gpu"
                         f"{t.device[d].index} has room, but the instance must be created "
                         "first (a MIG re-layout that only creates)")
        start = max(starts, key=lambda s: (
            _start_score(profiles, mask | (((1 << p.size) - 1) << s), used + p.compute), -s))
        uuid = f"{PLANNED_MIG_PREFIX}{node}/gpu{t.device[d].index}/{p.name}@{start}"
        comp = _compose(state, job_id, n, [mig_slice(d, start, uuid)], cpus, memory,
                        [t.dev_numa[d]])
        if comp is not None:
            return comp
    if seen_cores or seen_memory:
        return _short(want, cpus, memory, seen_cores, seen_memory)
    return nofit("mig", f"room for a {profile_name} instance", 1, 0,
                 f"{want}; no MIG-enabled {kind} has room for one (a valid start and compute "
                 "left)")


def find_cpu(state: PoolState, job_id: str, cpus: int, memory: float) -> Composition | NoFit:
    """A CPU-only job: CPU-only nodes first, so GPU nodes keep their cores for GPU jobs."""
    seen_memory = 0.0
    for gpu_nodes in (False, True):
        for n in state.nodes_with_free_cores(cpus, gpu_nodes):
            if state.free_memory(n) + EPS < memory:
                seen_memory = max(seen_memory, state.free_memory(n))
                continue
            comp = _compose(state, job_id, n, [], cpus, memory, ())
            if comp is not None:
                return comp
    most = state.most_free_cores()
    if most < cpus:
        return nofit("cpus", "free cores on one node", cpus, most,
                     f"needs {cpus} cores on one node; the most free on a node is {most}")
    return nofit("memory_gib", f"free memory on a node with {cpus} free cores", memory,
                 seen_memory, f"needs {cpus} cores and {memory:g} GiB memory on one node; "
                 f"nodes with {cpus} free cores have at most {seen_memory:g} GiB free")


def find_hinted(state: PoolState, job_id: str, node: str, devices: Sequence[int] | None,
                kinds: Sequence[str], count: int, fraction: float | None, cpus: int,
                memory: float, gpu_memory: float | None = None) -> Composition | None:
    """Follow a policy's placement hint (node, and maybe device indices) if it fits exactly;
    None otherwise, and placement then searches as if there were no hint."""
    t = state.topo
    n = t.node_index.get(node)
    if n is None or not _node_fits(state, n, cpus, memory):
        return None
    if count <= 0 and fraction is None:
        return _compose(state, job_id, n, [], cpus, memory, ())
    on_node = [d for d in t.node_devices[n] if t.dev_kind[d] in kinds and not t.dev_mig[d]
               and (gpu_memory is None or t.dev_memory[d] + EPS >= gpu_memory)]
    if devices is not None:
        wanted = [t.dev_at.get((n, i)) for i in devices]
        if None in wanted or any(d not in on_node for d in wanted):
            return None
        on_node = [d for d in wanted if d is not None]
    if fraction is not None:
        for d in on_node:
            cap = gpu_memory if gpu_memory is not None else fraction * t.dev_memory[d]
            if not state.share_fits(d, fraction, cap):
                continue
            dev = t.device[d]
            share = Slice(node, dev.index, t.dev_kind[d], SliceType.FRACTION, fraction, cap,
                          dev.uuid)
            return _compose(state, job_id, n, [share], cpus, memory, [t.dev_numa[d]])
        return None
    free = [d for d in on_node if state.is_free(d)]
    if devices is not None and len(free) != len(on_node):
        return None
    by_kind: dict[str, list[int]] = {}
    for d in free:
        by_kind.setdefault(t.dev_kind[d], []).append(d)
    for kind in kinds:
        if len(by_kind.get(kind, ())) >= count:
            _, chosen = best_gpu_set(state, n, by_kind[kind], count, cpus)
            return _compose(state, job_id, n, [_whole_slice(state, d) for d in chosen], cpus,
                            memory, _numa_preference(state, chosen))
    return None
