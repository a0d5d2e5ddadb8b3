"""Who holds what in a pool right now, with free capacity indexed for cheap placement.

``PoolState`` is the one place usage is counted, for the live system, a dry-run ``plan``
and the simulator alike. What it guarantees:

* a core is never held by two jobs; a whole GPU by one job only;
* fractional shares of a card add up to at most compute 1.0 and the card's memory;
* MIG instances occupy the card's 8 memory slices by NVIDIA's placement rules, at most
  7 compute slices, only on cards with MIG enabled (which then serve nothing else);
* an ``allocate`` that would break any of that raises ``AllocationError`` and changes
  nothing;
* a node's free memory also leaves out the RAM its staged tmpfs copies hold
  (``staged_memory``, set by placement from its ``DataCache``; see ``staging.py``).

Free capacity is indexed so a placement looks at a handful of candidates, not the pool:
nodes by (kind, number of free whole GPUs), shared cards by (kind, compute left), MIG
cards by (kind, free memory slices), nodes by free cores. Each index entry is an integer
bitmask over node or device numbers, so the lowest-numbered candidate is one machine
operation away, a copy costs a few list copies, and the state after ``allocate`` then
``release`` is exactly the state before (no insertion order to disturb).
"""

from __future__ import annotations

from collections.abc import Iterator, KeysView, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NoReturn

from slicebox.placement.topology import MIG_COMPUTE, MIG_SLICES, Topology, bits
from slicebox.pool.composition import Composition, Part, Plan
from slicebox.pool.model import Pool
from slicebox.pool.slices import Slice, SliceType
from slicebox.snapshot import Capacity, NodeView

HeldShape = tuple[int, str | None, bool, int, float]  # see PoolState.held_shapes
EPS = 1e-6  # float slack: 0.3 + 0.7 must fit in 1.0
PCT = 100  # shared cards are bucketed by whole percent of compute left


class AllocationError(ValueError):
    """A composition conflicts with what is already held (or with the hardware)."""


@dataclass
class _Usage:
    """The mutable counters; lists indexed by device (d) or node (n) number."""

    whole_job: list[str | None]
    frac_compute: list[float]
    frac_memory: list[float]
    frac_jobs: list[int]
    mig_mask: list[int]  # occupied memory slices (existing instances are always occupied)
    mig_compute: list[int]
    mig_jobs: list[int]
    mig_existing_used: list[int]  # bitmask over the card's existing instances in use
    free_cores: list[list[int]]  # [n][numa position] bitmask of free cores
    free_core_count: list[int]
    free_memory: list[float]
    node_jobs: list[int]
    whole_free: list[dict[str, int]]  # [n] kind -> fully free non-MIG devices

    def copy(self) -> _Usage:
        return _Usage(self.whole_job.copy(), self.frac_compute.copy(), self.frac_memory.copy(),
                      self.frac_jobs.copy(), self.mig_mask.copy(), self.mig_compute.copy(),
                      self.mig_jobs.copy(), self.mig_existing_used.copy(),
                      [m.copy() for m in self.free_cores], self.free_core_count.copy(),
                      self.free_memory.copy(), self.node_jobs.copy(),
                      [c.copy() for c in self.whole_free])


@dataclass
class _Index:
    whole: dict[str, list[int]]  # kind -> [free count] -> node mask
    shared: dict[str, dict[int, int]]  # kind -> percent of compute left -> device mask
    mig: dict[str, list[int]]  # kind -> [free memory slices] -> device mask
    mig_existing: dict[tuple[str, str], int]  # (kind, profile) -> cards with one unused
    cores: tuple[dict[int, int], dict[int, int]]  # [has GPUs] free cores -> node mask
    free_by_kind: dict[str, int]  # devices with nothing on them, MIG cards included

    def copy(self) -> _Index:
        return _Index({k: v.copy() for k, v in self.whole.items()},
                      {k: v.copy() for k, v in self.shared.items()},
                      {k: v.copy() for k, v in self.mig.items()}, self.mig_existing.copy(),
                      (self.cores[0].copy(), self.cores[1].copy()), self.free_by_kind.copy())


class PoolState:
    """Usage of one pool: ``allocate`` / ``release`` compositions; indexed queries for placement."""

    def __init__(self, pool: Pool, topology: Topology | None = None):
        self.pool = pool
        self.topo = topology or Topology.of(pool)
        t = self.topo
        n_dev, n_node = len(t.device), len(pool.nodes)
        self._jobs: dict[str, Composition] = {}
        self._staged: dict[tuple[str, str], int] = {}  # (dataset, node) -> running readers
        self._shapes: dict[str, HeldShape] = {}
        self._staged_memory = [0.0] * n_node  # GiB of staged copies held in a node's RAM
        # The Slice of each whole device, made when first asked for (immutable, so shared
        # by every copy of this state and every composition that holds the device).
        self._whole_slices: list[Slice | None] = [None] * n_dev
        self._u = _Usage(
            whole_job=[None] * n_dev, frac_compute=[0.0] * n_dev, frac_memory=[0.0] * n_dev,
            frac_jobs=[0] * n_dev, mig_mask=[0] * n_dev, mig_compute=[0] * n_dev,
            mig_jobs=[0] * n_dev, mig_existing_used=[0] * n_dev,
            free_cores=[list(m) for m in t.node_numa_cores],
            free_core_count=[len(node.cores) for node in pool.nodes],
            free_memory=[node.memory_gib for node in pool.nodes], node_jobs=[0] * n_node,
            whole_free=[{} for _ in range(n_node)])
        self._x = _Index(
            whole={k: [0] * (t.max_whole_per_node.get(k, 0) + 1) for k in t.kinds},
            shared={k: {} for k in t.kinds}, mig={k: [0] * (MIG_SLICES + 1) for k in t.kinds},
            mig_existing={}, cores=({}, {}), free_by_kind=dict.fromkeys(t.kinds, 0))
        for d in range(n_dev):
            for inst in t.device[d].mig_instances:  # existing instances carve the card
                p = t.mig_profile(d, inst.profile)
                self._u.mig_mask[d] |= _slice_mask(inst.start, p.size)
                self._u.mig_compute[d] += p.compute
            self._index_device(d)
        for n in range(n_node):
            self._index_node(n)

    # -- copies -------------------------------------------------------------------------
    def copy(self) -> PoolState:
        """An independent state with the same usage (the topology is shared, it never changes)."""
        other = object.__new__(PoolState)
        other.pool, other.topo = self.pool, self.topo
        other._jobs = self._jobs.copy()
        other._staged = self._staged.copy()
        other._shapes = self._shapes.copy()
        other._staged_memory = self._staged_memory.copy()
        other._whole_slices = self._whole_slices
        other._u = self._u.copy()
        other._x = self._x.copy()
        return other

    def held_shapes(self) -> Mapping[str, HeldShape]:
        """Job -> (GPU slices, their kind or None, any of them shared, cores, memory GiB),
        for every job that holds something: what a round compares a kept job's assignment
        with, in O(1).
        Read only (it is the state's own dict, not a copy)."""
        return self._shapes

    def staged_in_use(self) -> set[tuple[str, str]]:
        """(dataset, node) of staged copies that jobs holding resources read (never evict)."""
        return set(self._staged)

    def compositions(self) -> dict[str, Composition]:
        return dict(self._jobs)

    def composition(self, job_id: str) -> Composition | None:
        return self._jobs.get(job_id)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)

    # -- the two mutations ----------------------------------------------------------------
    def allocate(self, comp: Composition) -> None:
        """Hand ``comp``'s slices, cores and memory to its job, every part or none;
        AllocationError on conflict (and nothing changes)."""
        checked = self._check(comp)
        for part, (n, devices) in zip(comp.parts, checked, strict=True):
            self._take(comp.job_id, part, n, devices)
        self._jobs[comp.job_id] = comp
        slices = comp.slices
        whole = SliceType.WHOLE
        self._shapes[comp.job_id] = (
            len(slices), slices[0].kind if slices else None,
            any(s.shape is not whole for s in slices), comp.core_count,
            comp.memory_gib)
        if comp.staging is not None:
            key = (comp.staging.dataset, comp.parts[0].node)
            self._staged[key] = self._staged.get(key, 0) + 1

    def _take(self, job_id: str, part: Part, n: int, devices: list[int]) -> None:
        self._unindex_node(n)
        for d in devices:
            self._unindex_device(d)
        u = self._u
        for s, d in zip(part.slices, devices, strict=True):
            if s.shape is SliceType.WHOLE:
                u.whole_job[d] = job_id
            elif s.shape is SliceType.FRACTION:
                u.frac_compute[d] += s.compute
                u.frac_memory[d] += s.memory_gib
                u.frac_jobs[d] += 1
            else:
                u.mig_jobs[d] += 1
                existing = self._existing_instance(d, s)
                if existing is not None:
                    u.mig_existing_used[d] |= 1 << existing
                else:
                    p = self.topo.mig_profile(d, s.mig_profile or "")
                    u.mig_mask[d] |= _slice_mask(s.mig_start or 0, p.size)
                    u.mig_compute[d] += p.compute
        free_cores = u.free_cores[n]
        for k, mask in self._cores_by_numa(n, part.cores):
            free_cores[k] &= ~mask
        u.free_core_count[n] -= len(part.cores)
        u.free_memory[n] -= part.memory_gib
        u.node_jobs[n] += 1
        for d in devices:
            self._index_device(d)
        self._index_node(n)

    def apply(self, plan: Plan) -> None:
        """Carry out a plan: release its stops, then allocate its starts."""
        for job_id in plan.stop:
            if job_id in self._jobs:
                self.release(job_id)
        for comp in plan.start:
            self.allocate(comp)

    def release(self, job_id: str) -> Composition:
        """Give back everything ``job_id`` holds; KeyError when it holds nothing."""
        comp = self._jobs.pop(job_id, None)
        if comp is None:
            raise KeyError(f"job {job_id!r} holds nothing in pool {self.pool.name}")
        del self._shapes[job_id]
        for part in comp.parts:
            self._give_back(part)
        if comp.staging is not None:
            key = (comp.staging.dataset, comp.parts[0].node)
            if self._staged[key] > 1:
                self._staged[key] -= 1
            else:
                del self._staged[key]
        return comp

    def _give_back(self, part: Part) -> None:
        t, u = self.topo, self._u
        n = t.node_index[part.node]
        dev_at = t.dev_at
        devices = [dev_at[(n, s.device)] for s in part.slices]
        self._unindex_node(n)
        for d in devices:
            self._unindex_device(d)
        for s, d in zip(part.slices, devices, strict=True):
            if s.shape is SliceType.WHOLE:
                u.whole_job[d] = None
            elif s.shape is SliceType.FRACTION:
                u.frac_jobs[d] -= 1
                # Reset rather than subtract when the card empties: no float dust left over.
                u.frac_compute[d] = u.frac_compute[d] - s.compute if u.frac_jobs[d] else 0.0
                u.frac_memory[d] = u.frac_memory[d] - s.memory_gib if u.frac_jobs[d] else 0.0
            else:
                u.mig_jobs[d] -= 1
                existing = self._existing_instance(d, s, in_use=True)
                if existing is not None:
                    u.mig_existing_used[d] &= ~(1 << existing)
                else:
                    p = t.mig_profile(d, s.mig_profile or "")
                    u.mig_mask[d] &= ~_slice_mask(s.mig_start or 0, p.size)
                    u.mig_compute[d] -= p.compute
        free_cores = u.free_cores[n]
        for k, mask in self._cores_by_numa(n, part.cores):
            free_cores[k] |= mask
        u.free_core_count[n] += len(part.cores)
        u.node_jobs[n] -= 1
        # An idle node gets its exact memory back: no float dust after many jobs.
        u.free_memory[n] = (u.free_memory[n] + part.memory_gib if u.node_jobs[n]
                            else self.pool.nodes[n].memory_gib - self._staged_memory[n])
        for d in devices:
            self._index_device(d)
        self._index_node(n)

    # -- validation -----------------------------------------------------------------------
    def _check(self, comp: Composition) -> list[tuple[int, list[int]]]:
        if comp.job_id in self._jobs:
            raise AllocationError(f"job {comp.job_id} already holds "
                                  f"{self._jobs[comp.job_id].describe()}")
        slices = comp.slices
        if len(slices) > 1:
            kinds = {s.kind for s in slices}
            if len(kinds) > 1:
                raise AllocationError(f"job {comp.job_id}: a gang is one kind of GPU, not "
                                      f"{sorted(kinds)}")
        return [self._check_part(comp, part) for part in comp.parts]

    def _check_part(self, comp: Composition, part: Part) -> tuple[int, list[int]]:
        t, u = self.topo, self._u
        who = f"job {comp.job_id}"  # an f-string of one name: cheap next to the checks
        n = t.node_index.get(part.node)
        if n is None:
            raise AllocationError(f"{who}: no node {part.node!r} in pool {self.pool.name}")
        if part.memory_gib < 0:
            raise AllocationError(f"{who}: memory_gib is negative ({part.memory_gib})")
        if part.memory_gib > u.free_memory[n] + EPS:
            raise AllocationError(f"{who}: node {part.node} has {u.free_memory[n]:g} GiB memory "
                                  f"free, {part.memory_gib:g} GiB asked")
        if len(set(part.cores)) != len(part.cores):
            raise AllocationError(f"{who}: a core is listed twice in {list(part.cores)}")
        if not self._cores_free(n, part.cores):
            self._core_error(who, part, n)
        devices: list[int] = []
        for s in part.slices:
            d = self._check_slice(comp, part, n, s, devices)
            devices.append(d)
        return n, devices

    def _core_error(self, who: str, part: Part, n: int) -> NoReturn:
        """Raise the error for the first of ``part``'s cores that is not free on node
        ``n`` (``_cores_free`` found one)."""
        u = self._u
        for core in part.cores:
            k = self._numa_pos_of_core(n, core)
            if k is None:
                raise AllocationError(f"{who}: core {core} is not on node {part.node}")
            if not u.free_cores[n][k] >> core & 1:
                raise AllocationError(f"{who}: core {core} on node {part.node} is held by "
                                      f"job {self._core_holder(part.node, core)}")
        raise AssertionError(f"{who}: _cores_free found a core taken, yet none is")

    def _cores_free(self, n: int, cores: tuple[int, ...]) -> bool:
        """Every core in ``cores`` is on node ``n`` and free (the common case, checked with
        one mask per NUMA node instead of per core)."""
        want = 0
        for core in cores:
            want |= 1 << core
        free = self._u.free_cores[n]
        for k, numa_mask in enumerate(self.topo.node_numa_cores[n]):
            hit = want & numa_mask
            if hit & ~free[k]:
                return False
            want &= ~hit
        return not want

    def _check_slice(self, comp: Composition, part: Part, n: int, s: Slice,
                     earlier: list[int]) -> int:
        t, u = self.topo, self._u
        where = f"job {comp.job_id}: {part.node}/gpu{s.device}"
        if s.node != part.node:
            raise AllocationError(f"job {comp.job_id}: slice on node {s.node} in a part "
                                  f"for node {part.node}")
        d = t.dev_at.get((n, s.device))
        if d is None:
            raise AllocationError(f"{where} does not exist")
        if d in earlier:
            raise AllocationError(f"{where} appears twice in one composition")
        if s.kind != t.dev_kind[d]:
            raise AllocationError(f"{where} is a {t.dev_kind[d]}, not a {s.kind}")
        if s.shape is not SliceType.MIG and t.dev_mig[d]:
            raise AllocationError(f"{where} has MIG enabled: it can only be used as MIG "
                                  "instances")
        if s.shape is SliceType.WHOLE:
            if not self._fully_free(d):
                raise AllocationError(f"{where} is in use ({self._device_holders(d)})")
        elif s.shape is SliceType.FRACTION:
            if u.whole_job[d] is not None:
                raise AllocationError(f"{where} is held whole by job {u.whole_job[d]}")
            if not 0 < s.compute <= 1 or u.frac_compute[d] + s.compute > 1 + EPS:
                raise AllocationError(f"{where} has {1 - u.frac_compute[d]:.2f} compute left, "
                                      f"{s.compute:.2f} asked")
            if u.frac_memory[d] + s.memory_gib > t.dev_memory[d] + EPS:
                raise AllocationError(f"{where} has {t.dev_memory[d] - u.frac_memory[d]:g} GiB "
                                      f"left, {s.memory_gib:g} GiB asked")
        else:
            self._check_mig(where, d, s)
        return d

    def _check_mig(self, where: str, d: int, s: Slice) -> None:
        t, u = self.topo, self._u
        if not t.dev_mig[d]:
            raise AllocationError(f"{where} does not have MIG enabled")
        try:
            p = t.mig_profile(d, s.mig_profile or "")
        except KeyError as exc:
            raise AllocationError(f"{where}: {exc.args[0]}") from None
        existing = self._existing_instance(d, s)
        if existing is not None:
            return
        if any(m.uuid == s.uuid for m in t.device[d].mig_instances):
            raise AllocationError(f"{where}: MIG instance {s.uuid} is already in use")
        start = s.mig_start
        if start is None or start not in p.starts:
            raise AllocationError(f"{where}: {p.name} may start at {list(p.starts)}, "
                                  f"not {start}")
        if u.mig_mask[d] & _slice_mask(start, p.size):
            raise AllocationError(f"{where}: memory slices {start}-{start + p.size - 1} are "
                                  "taken by another MIG instance")
        if u.mig_compute[d] + p.compute > MIG_COMPUTE:
            raise AllocationError(f"{where}: only {MIG_COMPUTE - u.mig_compute[d]} compute "
                                  f"slices left, {p.name} needs {p.compute}")

    def _existing_instance(self, d: int, s: Slice, in_use: bool = False) -> int | None:
        """Position of the existing instance ``s`` names (by UUID), if free (or, on release,
        held)."""
        used = self._u.mig_existing_used[d]
        for i, inst in enumerate(self.topo.device[d].mig_instances):
            if inst.uuid == s.uuid and inst.profile == s.mig_profile:
                return i if bool(used >> i & 1) == in_use else None
        return None

    def _cores_by_numa(self, n: int, cores: tuple[int, ...]) -> list[tuple[int, int]]:
        """(NUMA position, bitmask) covering ``cores`` of node ``n``: each core at the
        first position whose mask has it, else at 0 (as ``_numa_pos_of_core(..) or 0``),
        so a part's cores are taken or given back with a mask per NUMA node."""
        rest = 0
        for core in cores:
            rest |= 1 << core
        out: list[tuple[int, int]] = []
        for k, numa_mask in enumerate(self.topo.node_numa_cores[n]):
            hit = rest & numa_mask
            if hit:
                out.append((k, hit))
                rest ^= hit
        if rest:
            out.append((0, rest))
        return out

    def _numa_pos_of_core(self, n: int, core: int) -> int | None:
        for k, mask in enumerate(self.topo.node_numa_cores[n]):
            if mask >> core & 1:
                return k
        return None

    def _core_holder(self, node: str, core: int) -> str:
        for job, c in self._jobs.items():
            if any(p.node == node and core in p.cores for p in c.parts):
                return job
        return "?"

    def _device_holders(self, d: int) -> str:
        name = self.pool.nodes[self.topo.dev_node[d]].name
        index = self.topo.device[d].index
        jobs = [j for j, c in self._jobs.items()
                if any(s.node == name and s.device == index for s in c.slices)]
        return "held by " + ", ".join(jobs) if jobs else "busy"

    # -- the indexes ----------------------------------------------------------------------
    def _fully_free(self, d: int) -> bool:
        u = self._u
        return u.whole_job[d] is None and not u.frac_jobs[d] and not u.mig_jobs[d]

    def _index_device(self, d: int, on: bool = True) -> None:
        """Add (``on``) or remove device ``d`` from every index its current usage puts it in.

        Removal must run before a change and addition after it, so both see the usage they
        describe; the node-level whole-GPU buckets are redone by ``_index_node``.
        """
        t, u, x = self.topo, self._u, self._x
        kind = t.dev_kind[d]
        bit = 1 << d
        step = 1 if on else -1
        if self._fully_free(d):
            x.free_by_kind[kind] += step
            if not t.dev_mig[d]:
                counts = u.whole_free[t.dev_node[d]]
                counts[kind] = counts.get(kind, 0) + step
        if t.dev_mig[d]:
            free = MIG_SLICES - u.mig_mask[d].bit_count()
            x.mig[kind][free] = x.mig[kind][free] | bit if on else x.mig[kind][free] & ~bit
            used = u.mig_existing_used[d]
            for i, inst in enumerate(t.device[d].mig_instances):
                if not used >> i & 1:
                    key = (kind, inst.profile)
                    mask = x.mig_existing.get(key, 0)
                    x.mig_existing[key] = mask | bit if on else mask & ~bit
        elif u.frac_jobs[d]:
            pct = int((1.0 - u.frac_compute[d]) * PCT + EPS)
            if pct > 0:
                _toggle(x.shared[kind], pct, bit, on)

    def _unindex_device(self, d: int) -> None:
        self._index_device(d, on=False)

    def _index_node(self, n: int, on: bool = True) -> None:
        u, x = self._u, self._x
        bit = 1 << n
        for kind, count in u.whole_free[n].items():
            if count > 0:
                bucket = x.whole[kind]
                bucket[count] = bucket[count] | bit if on else bucket[count] & ~bit
        if u.free_core_count[n] > 0:
            _toggle(x.cores[self.topo.node_has_gpu[n]], u.free_core_count[n], bit, on)

    def _unindex_node(self, n: int) -> None:
        self._index_node(n, on=False)

    # -- queries for placement ------------------------------------------------------------
    def nodes_with_free_gpus(self, kind: str, count: int, cores: int = 0) -> Iterator[int]:
        """Nodes with at least ``count`` free whole GPUs of ``kind`` (and, when given, at
        least ``cores`` free cores): tightest first (best fit), then by node number."""
        buckets = self._x.whole.get(kind, ())
        mask = self._nodes_with_cores(cores)
        for free in range(max(count, 1), len(buckets)):
            yield from bits(buckets[free] & mask)

    def _nodes_with_cores(self, cores: int) -> int:
        """Bitmask of GPU nodes with at least ``cores`` free cores (-1: all, when 0)."""
        if cores <= 0:
            return -1
        mask = 0
        for free, nodes in self._x.cores[True].items():
            if free >= cores:
                mask |= nodes
        return mask

    def held_ids(self) -> KeysView[str]:
        """The jobs that hold something (a live view: set operations run in C)."""
        return self._jobs.keys()

    def nodes_by_most_free_gpus(self, kind: str, cores: int = 0) -> Iterator[tuple[int, int]]:
        """(free whole GPUs of ``kind``, node) for nodes with any (and, when given, at least
        ``cores`` free cores), most free first, then by node number."""
        buckets = self._x.whole.get(kind, ())
        mask = self._nodes_with_cores(cores)
        for free in range(len(buckets) - 1, 0, -1):
            for n in bits(buckets[free] & mask):
                yield free, n

    def whole_nodes(self, kind: str, count: int) -> Iterator[int]:
        """Nodes whose ``count`` free GPUs of ``kind`` are all the node has of it (a whole
        node), lowest number first."""
        buckets = self._x.whole.get(kind, ())
        if 0 < count < len(buckets):
            for n in bits(buckets[count]):
                if self.topo.node_whole_count[n].get(kind, 0) == count:
                    yield n

    def largest_free_set(self, kind: str) -> int:
        buckets = self._x.whole.get(kind, ())
        for free in range(len(buckets) - 1, 0, -1):
            if buckets[free]:
                return free
        return 0

    def free_gpus_on(self, n: int, kind: str) -> list[int]:
        """Devices of ``kind`` on node ``n`` that nobody uses (not MIG-enabled)."""
        t, u = self.topo, self._u
        kinds, mig = t.dev_kind, t.dev_mig
        whole_job, frac_jobs, mig_jobs = u.whole_job, u.frac_jobs, u.mig_jobs
        # _fully_free inlined: placement asks this for every candidate node.
        return [d for d in t.node_devices[n]
                if kinds[d] == kind and not mig[d] and whole_job[d] is None
                and not frac_jobs[d] and not mig_jobs[d]]

    def whole_slice(self, d: int) -> Slice:
        """The ``Slice`` that is all of device ``d``."""
        found = self._whole_slices[d]
        if found is None:
            t = self.topo
            dev = t.device[d]
            found = Slice(self.pool.nodes[t.dev_node[d]].name, dev.index, t.dev_kind[d],
                          SliceType.WHOLE, 1.0, t.dev_memory[d], dev.uuid)
            self._whole_slices[d] = found
        return found

    def shared_cards(self, kind: str, compute: float) -> Iterator[int]:
        """Partly shared cards of ``kind`` that may have ``compute`` left, least left first."""
        buckets = self._x.shared.get(kind, {})
        if not buckets:
            return
        for pct in range(int(compute * PCT - EPS), PCT + 1):
            mask = buckets.get(pct)
            if mask:
                yield from bits(mask)

    def is_free(self, d: int) -> bool:
        """Nobody uses device ``d`` at all."""
        return self._fully_free(d)

    def share_fits(self, d: int, fraction: float, memory_gib: float) -> bool:
        """A ``fraction`` share with ``memory_gib`` fits on non-MIG device ``d`` now."""
        u = self._u
        return (not self.topo.dev_mig[d] and u.whole_job[d] is None
                and u.frac_compute[d] + fraction <= 1 + EPS
                and u.frac_memory[d] + memory_gib <= self.topo.dev_memory[d] + EPS)

    def shared_room(self, d: int) -> tuple[float, float]:
        """(compute, memory GiB) left on a shared card."""
        u = self._u
        return 1.0 - u.frac_compute[d], self.topo.dev_memory[d] - u.frac_memory[d]

    def mig_cards(self, kind: str, size: int) -> Iterator[int]:
        """MIG cards of ``kind`` with at least ``size`` free memory slices, fullest first."""
        buckets = self._x.mig.get(kind, ())
        for free in range(size, len(buckets)):
            yield from bits(buckets[free])

    def mig_usage(self, d: int) -> tuple[int, int]:
        """(occupied memory-slice mask, compute slices used) of a MIG card."""
        return self._u.mig_mask[d], self._u.mig_compute[d]

    def cards_with_unused_instance(self, kind: str, profile: str) -> Iterator[int]:
        yield from bits(self._x.mig_existing.get((kind, profile), 0))

    def unused_instances(self, d: int, profile: str) -> list[int]:
        used = self._u.mig_existing_used[d]
        return [i for i, m in enumerate(self.topo.device[d].mig_instances)
                if m.profile == profile and not used >> i & 1]

    def nodes_with_free_cores(self, cores: int, gpu_nodes: bool) -> Iterator[int]:
        """Nodes (with GPUs or without) with at least ``cores`` free cores, fewest first."""
        buckets = self._x.cores[gpu_nodes]
        for free in sorted(k for k in buckets if k >= cores):
            yield from bits(buckets[free])

    def most_free_cores(self) -> int:
        return max((k for buckets in self._x.cores for k in buckets), default=0)

    def free_core_count(self, n: int) -> int:
        return self._u.free_core_count[n]

    def free_cores(self, n: int) -> list[tuple[int, int]]:
        """(NUMA node id, free-core bitmask) for each NUMA node of node ``n``."""
        return list(zip(self.topo.node_numa[n], self._u.free_cores[n], strict=True))

    def free_memory(self, n: int) -> float:
        """Node ``n``'s memory that no job and no staged tmpfs copy holds (may be
        negative when copies were counted after jobs took the rest)."""
        return self._u.free_memory[n]

    def staged_memory(self, n: int) -> float:
        """GiB of node ``n``'s RAM held by staged copies on tmpfs volumes."""
        return self._staged_memory[n]

    def set_staged_memory(self, n: int, gib: float) -> float:
        """Count ``gib`` of node ``n``'s RAM as held by staged tmpfs copies (a file in
        tmpfs is RAM no job may take); returns the amount counted before. Placement keeps
        this in line with its ``DataCache`` (see ``slicebox.placement.staging``)."""
        if gib < 0:
            raise ValueError(f"node {self.pool.nodes[n].name}: staged memory is negative "
                             f"({gib})")
        old = self._staged_memory[n]
        self._staged_memory[n] = gib
        u = self._u
        # As in ``_give_back``: an idle node's figure is exact, no float dust.
        u.free_memory[n] = (u.free_memory[n] - (gib - old) if u.node_jobs[n]
                            else self.pool.nodes[n].memory_gib - gib)
        return old

    def capacity(self) -> Capacity:
        t, u = self.topo, self._u
        return Capacity(
            total_gpus=MappingProxyType(dict(t.total_by_kind)),
            free_gpus=MappingProxyType(dict(self._x.free_by_kind)),
            total_cpus=t.total_cores, free_cpus=sum(u.free_core_count),
            total_memory_gib=t.total_memory_gib, free_memory_gib=sum(u.free_memory))

    def node_view(self, n: int) -> NodeView:
        """Node ``n``'s free resources (see ``node_views``)."""
        t, u = self.topo, self._u
        free = []
        for d in t.node_devices[n]:
            if t.dev_mig[d]:
                free.append((MIG_COMPUTE - u.mig_compute[d]) / MIG_COMPUTE)
            elif u.whole_job[d] is not None:
                free.append(0.0)
            else:
                free.append(max(0.0, 1.0 - u.frac_compute[d]))
        kind = t.dev_kind[t.node_devices[n][0]] if t.node_devices[n] else None
        return NodeView(self.pool.nodes[n].name, kind, tuple(free),
                        float(u.free_core_count[n]), u.free_memory[n])

    def node_views(self) -> tuple[NodeView, ...]:
        """Per-node free resources for policies that score placements themselves (FGD).

        ``free_gpu[i]`` is the free compute share of the node's i-th device: 1.0 for an
        unused card, what shares leave, or the free compute slices of a MIG card over 7.
        """
        return tuple(self.node_view(n) for n in range(len(self.pool.nodes)))

    def free_whole_gpus(self, kind: str) -> int:
        """Free whole (non-MIG) GPUs of ``kind`` across the pool."""
        return sum(count * mask.bit_count()
                   for count, mask in enumerate(self._x.whole.get(kind, ())))

    def fingerprint(self) -> tuple[object, ...]:
        """Everything that defines this usage, comparable with ``==`` (tests, assertions)."""
        u = self._u
        return (tuple(sorted(self._jobs)), tuple(u.whole_job), tuple(u.frac_jobs),
                tuple(u.mig_mask), tuple(u.mig_existing_used), tuple(map(tuple, u.free_cores)),
                tuple(round(m, 6) for m in u.free_memory))


def _slice_mask(start: int, size: int) -> int:
    return ((1 << size) - 1) << start


def _toggle(buckets: dict[int, int], key: int, bit: int, on: bool) -> None:
    mask = buckets.get(key, 0)
    mask = mask | bit if on else mask & ~bit
    if mask:
        buckets[key] = mask
    else:
        buckets.pop(key, None)
