"""Which datasets are staged where, and where the next job's data should go.

A job reads its data fastest from the fastest volume next to its compute. ``DataCache``
remembers the copies Slicebox made (dataset key, node, volume, path, size, last use) and
``choose`` decides, for a job placed on a node:

* a copy of the dataset already on that node -> reuse it (``cached=True``);
* the data already sits on the node's fastest volume that has room -> no staging;
* else copy it to the fastest node-local volume (tier, then read bandwidth) with room,
  counting the room that evicting least-recently-used copies would free; those copies
  are listed in ``Staging.evict``. Copies in use by running jobs are never evicted.

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
from slicebox.pool.model import Node, Volume
from slicebox.spec.demand import DatasetRef

DEFAULT_MAX_FILL = 0.9  # leave a tenth of a volume to everyone else (and to tmpfs's RAM)


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


def volume_of(path: str, volumes: Iterable[Volume]) -> Volume | None:
    """The volume a path lies on: the one with the longest matching mount point."""
    found = [v for v in volumes if _holds(v, path)]
    return max(found, key=lambda v: len(v.path)) if found else None


class DataCache:
    def __init__(self, entries: Iterable[CacheEntry] = (), max_fill: float = DEFAULT_MAX_FILL):
        if not 0 < max_fill <= 1:
            raise ValueError(f"max_fill must be in (0, 1], got {max_fill}")
        self.max_fill = max_fill
        self._entries: dict[tuple[str, str], CacheEntry] = {(e.key, e.node): e for e in entries}

    def copy(self) -> DataCache:
        return DataCache(self._entries.values(), self.max_fill)

    def entries(self) -> list[CacheEntry]:
        return list(self._entries.values())

    def get(self, key: str, node: str) -> CacheEntry | None:
        return self._entries.get((key, node))

    def used_gib(self, node: str, volume: str) -> float:
        return sum(e.size_gib for e in self._entries.values()
                   if e.node == node and e.volume == volume)

    # -- the decision ---------------------------------------------------------------------
    def choose(self, node: Node, dataset: DatasetRef, *, now: float = 0.0,
               shared: Sequence[Volume] = (), in_use: Collection[tuple[str, str]] = ()
               ) -> Staging | None:
        """How ``dataset`` reaches a job on ``node``; None: read it where it is.

        ``shared``: the pool's network volumes (where a dataset may live). ``in_use``:
        (key, node) of copies running jobs read, which must not be evicted. ``now`` is
        only used to order candidates for eviction, not recorded (see ``commit``).
        """
        entry = self._entries.get((dataset.key, node.name))
        if entry is not None:
            return Staging(dataset.key, dataset.path or entry.path, entry.volume, entry.path,
                           entry.size_gib, cached=True)
        if dataset.path is None:
            return None  # known only by name and not staged here: nothing to copy from
        source = volume_of(dataset.path, (*node.volumes, *shared))
        targets = sorted((v for v in node.volumes if not v.shared), key=_speed)
        for volume in targets:
            if source is not None and _speed(source) <= _speed(volume):
                return None  # already on the fastest volume that could take it
            evict = self._room(node.name, volume, dataset.size_gib, in_use)
            if evict is None:
                continue
            target = f"{volume.path.rstrip('/')}/{CACHE_DIR}/{cache_dir_name(dataset.key)}"
            return Staging(dataset.key, dataset.path, volume.name, target, dataset.size_gib,
                           cached=False, evict=tuple(e.path for e in evict))
        return None

    def _room(self, node: str, volume: Volume, size: float,
              in_use: Collection[tuple[str, str]]) -> list[CacheEntry] | None:
        """Copies to evict so ``size`` GiB fit on ``volume``; None if even that is not enough."""
        budget = volume.capacity_gib * self.max_fill
        if size > budget:
            return None
        here = [e for e in self._entries.values() if e.node == node and e.volume == volume.name]
        free = budget - sum(e.size_gib for e in here)
        evict: list[CacheEntry] = []
        for e in sorted(here, key=lambda e: (e.last_used, e.key)):
            if free >= size:
                break
            if (e.key, e.node) in in_use:
                continue
            evict.append(e)
            free += e.size_gib
        return evict if free >= size else None

    # -- what happened --------------------------------------------------------------------
    def commit(self, node: str, staging: Staging, now: float) -> None:
        """Record a staging that was carried out (or planned, on a scratch copy)."""
        if staging.evict:
            gone = set(staging.evict)
            self._entries = {k: e for k, e in self._entries.items()
                             if not (e.node == node and e.path in gone)}
        self._entries[(staging.dataset, node)] = CacheEntry(
            staging.dataset, node, staging.volume, staging.target, staging.size_gib, now)

    def touch(self, key: str, node: str, now: float) -> None:
        entry = self._entries.get((key, node))
        if entry is not None:
            self._entries[(key, node)] = replace(entry, last_used=max(entry.last_used, now))

    def forget(self, key: str, node: str) -> None:
        self._entries.pop((key, node), None)

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
