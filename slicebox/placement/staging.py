"""Which datasets are staged where, and where the next job's data should go.

A job reads its data fastest from the fastest volume next to its compute. ``DataCache``
remembers the copies Slicebox made (dataset key, node, volume, path, size, last use) and
``choose`` decides, for a job placed on a node:

* a copy of the dataset already on that node -> reuse it (``cached=True``);
* the data already sits on the node's fastest volume that has room -> no staging;
* else copy it to the fastest node-local volume (tier, then read bandwidth) with room,
  counting the room that evicting least-recently-used copies would free; those copies
  are listed in ``Staging.evict``. Copies in use by running jobs are never evicted.

A copy on a TMPFS-tier volume (``/dev/shm``) is RAM: RAM is RAM whether a job or a file
in tmpfs holds it. So it is counted against its node's memory, in one place:
``PoolState.staged_memory``, which a placement round keeps equal to what this cache holds
on the node's tmpfs volumes (``tmpfs_gib``). Every search then sees that memory as taken,
and ``PoolState.capacity`` and the node views show it. It is the node's memory, not the
job's: the copy outlives the job (it is a cache; other jobs may reuse it), the job's own
memory limit stays what it asked for, and the copy's pages are charged to whoever wrote
them (the stager), not to the job. Hence:

* a new tmpfs copy must fit the node's RAM left once the job has its memory
  (``memory_free``), evicting tmpfs copies no running job reads (least recently used
  first) if that makes room; else the next-fastest volume with room gets it;
* when a job's own memory does not fit a node only because of tmpfs copies no running
  job reads, ``memory_free`` is negative and those copies are evicted (again LRU) in the
  evict list of the job's new copy. A job that makes no copy carries no evict list, so
  for it such copies stay (and count) until another job's copy evicts them.

Network shares are sources only: staging exists to get data off them. The cache is
plain data (``to_records`` / ``from_records``) so the store can persist it; copying and
deleting files is the backend's job, and ``commit`` records that it happened.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from slicebox.pool.composition import CACHE_DIR, Staging
from slicebox.pool.model import Node, Tier, Volume
from slicebox.spec.demand import DatasetRef

DEFAULT_MAX_FILL = 0.9  # leave a tenth of a volume to everyone else (and to tmpfs's RAM)
EPS = 1e-6  # float slack when sizes are compared


@dataclass(frozen=True)
class CacheEntry:
    key: str
    node: str
    volume: str
    path: str
    size_gib: float
    last_used: float


def cache_dir_name(key: str) -> str:
    """A file-name-safe folder for a dataset key (a key may be an absolute path)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._-")
    if safe == key and len(key) <= 64:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"{safe[-48:].lstrip('._-') or 'data'}-{digest}"


def _speed(volume: Volume) -> tuple[int, float]:
    return volume.tier.rank, -volume.read_mbps  # smaller is faster


def _holds(volume: Volume, path: str) -> bool:
    base = volume.path.rstrip("/")
    return path == volume.path or path.startswith(base + "/")


def _lru(entry: CacheEntry) -> tuple[float, str]:
    return entry.last_used, entry.key


def tmpfs_volumes(node: Node) -> list[Volume]:
    """``node``'s own volumes in RAM (a network share never is)."""
    return [v for v in node.volumes if v.tier is Tier.TMPFS and not v.shared]


def volume_of(path: str, volumes: Iterable[Volume]) -> Volume | None:
    """The volume a path lies on: the one with the longest matching mount point."""
    found = [v for v in volumes if _holds(v, path)]
    return max(found, key=lambda v: len(v.path)) if found else None


class DataCache:
    def __init__(self, entries: Iterable[CacheEntry] = (), max_fill: float = DEFAULT_MAX_FILL):
        if not 0 < max_fill <= 1:
            raise ValueError(f"max_fill must be in (0, 1], got {max_fill}")
        self.max_fill = max_fill
        self._entries: dict[tuple[str, str], CacheEntry] = {}
        self._used: dict[tuple[str, str], float] = {}  # (node, volume) -> GiB of copies
        self._count: dict[tuple[str, str], int] = {}  # (node, volume) -> number of copies
        for e in entries:
            self._put(e)

    def copy(self) -> DataCache:
        return DataCache(self._entries.values(), self.max_fill)

    def entries(self) -> list[CacheEntry]:
        return list(self._entries.values())

    def get(self, key: str, node: str) -> CacheEntry | None:
        return self._entries.get((key, node))

    def used_gib(self, node: str, volume: str) -> float:
        return self._used.get((node, volume), 0.0)

    def tmpfs_gib(self, node: Node) -> float:
        """GiB of copies on ``node``'s tmpfs volumes: RAM they hold (see the module doc)."""
        return sum(self._used.get((node.name, v.name), 0.0) for v in tmpfs_volumes(node))

    def unused_tmpfs(self, node: Node, in_use: Collection[tuple[str, str]]
                     ) -> list[CacheEntry]:
        """Copies on ``node``'s tmpfs volumes no running job reads, least recently used
        first: the RAM that evicting them would give back."""
        names = {v.name for v in tmpfs_volumes(node)}
        if not names or not any(self._used.get((node.name, v)) for v in names):
            return []
        return sorted((e for e in self._entries.values() if e.node == node.name
                       and e.volume in names and (e.key, e.node) not in in_use),
                      key=_lru)

    def _put(self, entry: CacheEntry) -> None:
        self._drop(entry.key, entry.node)
        self._entries[(entry.key, entry.node)] = entry
        place = (entry.node, entry.volume)
        self._used[place] = self._used.get(place, 0.0) + entry.size_gib
        self._count[place] = self._count.get(place, 0) + 1

    def _drop(self, key: str, node: str) -> None:
        entry = self._entries.pop((key, node), None)
        if entry is None:
            return
        place = (entry.node, entry.volume)
        if self._count[place] > 1:
            self._count[place] -= 1
            self._used[place] -= entry.size_gib
        else:  # the last copy there: exactly 0, no float dust
            del self._count[place], self._used[place]

    # -- the decision ---------------------------------------------------------------------
    def choose(self, node: Node, dataset: DatasetRef, *, now: float = 0.0,
               shared: Sequence[Volume] = (), in_use: Collection[tuple[str, str]] = (),
               memory_free: float | None = None) -> Staging | None:
        """How ``dataset`` reaches a job on ``node``; None: read it where it is.

        ``shared``: the pool's network volumes (where a dataset may live). ``in_use``:
        (key, node) of copies running jobs read, which must not be evicted. ``now`` is
        only used to order candidates for eviction, not recorded (see ``commit``).
        ``memory_free``: the node's RAM left once the job has its memory, tmpfs copies
        already counted; a tmpfs copy must fit it too. Negative: the job itself needs that
        much back from unused tmpfs copies; then only a new copy (whose evict list frees
        it) will do, and None means it cannot be had. None (the default): RAM not checked.
        """
        entry = self._entries.get((dataset.key, node.name))
        if entry is not None:
            return Staging(dataset.key, dataset.path or entry.path, entry.volume, entry.path,
                           entry.size_gib, cached=True)
        if dataset.path is None:
            return None  # known only by name and not staged here: nothing to copy from
        reclaim: list[CacheEntry] = []
        if memory_free is not None and memory_free < -EPS:
            reclaim = self._reclaim(node, -memory_free, in_use)
            if not reclaim:
                return None
            memory_free += sum(e.size_gib for e in reclaim)
        source = volume_of(dataset.path, (*node.volumes, *shared))
        targets = sorted((v for v in node.volumes if not v.shared), key=_speed)
        for volume in targets:
            if source is not None and _speed(source) <= _speed(volume):
                break  # already on the fastest volume that could take it
            memory = memory_free if volume.tier is Tier.TMPFS else None
            evict = self._room(node.name, volume, dataset.size_gib, in_use, reclaim, memory)
            if evict is None:
                continue
            target = f"{volume.path.rstrip('/')}/{CACHE_DIR}/{cache_dir_name(dataset.key)}"
            return Staging(dataset.key, dataset.path, volume.name, target, dataset.size_gib,
                           cached=False, evict=tuple(e.path for e in (*reclaim, *evict)))
        return None

    def _reclaim(self, node: Node, need: float, in_use: Collection[tuple[str, str]]
                 ) -> list[CacheEntry]:
        """Unused tmpfs copies to evict, LRU first, so ``need`` GiB of RAM come back;
        empty if even all of them are not enough."""
        chosen: list[CacheEntry] = []
        freed = 0.0
        for e in self.unused_tmpfs(node, in_use):
            chosen.append(e)
            freed += e.size_gib
            if freed >= need - EPS:
                return chosen
        return []

    def _room(self, node: str, volume: Volume, size: float,
              in_use: Collection[tuple[str, str]], gone: Sequence[CacheEntry] = (),
              memory: float | None = None) -> list[CacheEntry] | None:
        """Copies to evict so ``size`` GiB fit on ``volume`` (and, when given, in
        ``memory`` GiB of RAM, which each evicted copy adds to: a tmpfs volume), besides
        the copies ``gone`` already; None if even that is not enough."""
        budget = volume.capacity_gib * self.max_fill
        if size > budget:
            return None
        skip = {(e.key, e.node) for e in gone}
        here = [e for e in self._entries.values() if e.node == node
                and e.volume == volume.name and (e.key, e.node) not in skip]
        free = budget - sum(e.size_gib for e in here)
        room = memory if memory is not None else size
        evict: list[CacheEntry] = []
        for e in sorted(here, key=_lru):
            if free >= size - EPS and room >= size - EPS:
                break
            if (e.key, e.node) in in_use:
                continue
            evict.append(e)
            free += e.size_gib
            room += e.size_gib
        return evict if free >= size - EPS and room >= size - EPS else None

    # -- what happened --------------------------------------------------------------------
    def commit(self, node: str, staging: Staging, now: float) -> None:
        """Record a staging that was carried out (or planned, on a scratch copy)."""
        if staging.evict:
            gone = set(staging.evict)
            for k, e in list(self._entries.items()):
                if e.node == node and e.path in gone:
                    self._drop(*k)
        self._put(CacheEntry(staging.dataset, node, staging.volume, staging.target,
                             staging.size_gib, now))

    def touch(self, key: str, node: str, now: float) -> None:
        entry = self._entries.get((key, node))
        if entry is not None:
            self._entries[(key, node)] = replace(entry, last_used=max(entry.last_used, now))

    def forget(self, key: str, node: str) -> None:
        self._drop(key, node)

    # -- persistence ----------------------------------------------------------------------
    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self._entries.values()]

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]],
                     max_fill: float = DEFAULT_MAX_FILL) -> DataCache:
        entries = []
        for i, r in enumerate(records):
            try:
                entries.append(CacheEntry(str(r["key"]), str(r["node"]), str(r["volume"]),
                                          str(r["path"]), float(r["size_gib"]),
                                          float(r["last_used"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"data cache record {i}: {exc!r} in {dict(r)!r}") from None
        return cls(entries, max_fill)
