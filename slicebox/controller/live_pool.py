"""A pool that follows its backend (Ray: nodes join and leave), and the record of it that
``submit`` and ``plan`` read from the store.

Two pools matter while nodes come and go:

* the **live** pool: the nodes that can run jobs now. The controller places on it.
* the **known** pool: every node the backend has reported (live or not). Admission asks
  it "could this job ever fit": a job that fits only a node that is down right now is
  accepted and waits for the node, rather than being refused; a job the controller already
  holds is never failed for capacity that left either (it waits, with a reason that says
  which nodes it waits for).

The known pool is written to the store under ``POOL_KEY`` (a JSON document; a pool file
given to ``up`` is written there as its path instead), so a ``slicebox submit`` run
anywhere validates against the pool the controller follows.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from slicebox.errors import SliceboxError
from slicebox.pool.model import Node, Pool
from slicebox.store import Store

POOL_KEY = "pool"  # a pool file's path, or the JSON record below
_RECORD_FORMAT = "slicebox-live-pool/1"
log = logging.getLogger("slicebox.controller")


@dataclass(frozen=True)
class PoolChange:
    """How the live pool changed between two rounds (node names)."""

    joined: tuple[str, ...] = ()
    left: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()  # came back, or reported again, with other resources

    def describe(self) -> list[str]:
        return ([f"node {n} joined the pool" for n in self.joined]
                + [f"node {n} left the pool" for n in self.left]
                + [f"node {n} changed (reported with other resources)" for n in self.changed])


class LivePool:
    """The live pool and the known pool, updated from what the backend reports."""

    def __init__(self, pool: Pool, known: Iterable[Node] = ()) -> None:
        self.pool = pool
        self._known: dict[str, Node] = {n.name: n for n in known}
        self._known.update({n.name: n for n in pool.nodes})

    @property
    def known(self) -> Pool:
        """Every node seen (the latest report of each), live ones first."""
        live = [n.name for n in self.pool.nodes]
        rest = [n for name, n in self._known.items() if name not in live]
        return dataclasses.replace(self.pool, nodes=(*self.pool.nodes, *rest))

    def down(self) -> tuple[str, ...]:
        """Known nodes that are not in the live pool now."""
        live = {n.name for n in self.pool.nodes}
        return tuple(name for name in self._known if name not in live)

    def update(self, nodes: Iterable[Node]) -> PoolChange | None:
        """Take the backend's nodes as the live pool; what changed (None: nothing)."""
        new = {n.name: n for n in nodes}
        old = {n.name: n for n in self.pool.nodes}
        if new == old:
            return None
        change = PoolChange(tuple(n for n in new if n not in old),
                            tuple(n for n in old if n not in new),
                            tuple(n for n in new if n in old and new[n] != old[n]))
        self.pool = dataclasses.replace(self.pool, nodes=tuple(new.values()))
        self._known.update(new)
        return change


def record(store: Store, live: LivePool, backend: str) -> None:
    """Write the known pool (and which nodes are live) under ``POOL_KEY``."""
    from slicebox.pool.files import pool_to_dict

    store.put_value(POOL_KEY, json.dumps({
        "format": _RECORD_FORMAT, "backend": backend,
        "live": [n.name for n in live.pool.nodes], "pool": pool_to_dict(live.known)}))


def recorded(store: Store) -> Pool | Path | None:
    """What ``up`` last recorded: the pool a live backend reported, a pool file's path, or
    None (nothing recorded: commands use this machine)."""
    text = store.value(POOL_KEY)
    if not text:
        return None
    if not text.startswith("{"):
        return Path(text)
    return _parse_record(text)


def known_nodes(store: Store) -> tuple[Node, ...]:
    """The nodes a changing backend reported before (its record in the store), so that a
    job needing one that is down now waits for it rather than being called impossible. A
    bad record is ignored (it costs only the memory of old nodes)."""
    try:
        if recorded_backend(store) is None:
            return ()
        known = recorded(store)
    except SliceboxError as exc:
        log.warning("ignoring the pool recorded in the store: %s", exc)
        return ()
    return known.nodes if isinstance(known, Pool) else ()


def recorded_backend(store: Store) -> str | None:
    """The backend whose pool is recorded (None: a pool file, or nothing)."""
    text = store.value(POOL_KEY)
    if not text or not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    backend = data.get("backend") if isinstance(data, dict) else None
    return backend if isinstance(backend, str) else None


def _parse_record(text: str) -> Pool:
    from slicebox.pool.files import PoolFileError, parse_pool

    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SliceboxError(f"the pool recorded in the store is not JSON ({exc}); run "
                            "`slicebox up` again to record it") from None
    if not isinstance(data, dict) or data.get("format") != _RECORD_FORMAT:
        raise SliceboxError("the pool recorded in the store has an unknown format; run "
                            "`slicebox up` again to record it")
    pool = data.get("pool")
    if isinstance(pool, dict) and isinstance(pool.get("nodes"), list):
        for node in pool["nodes"]:  # JSON made the NUMA numbers of ``cores`` strings
            cores = node.get("cores") if isinstance(node, dict) else None
            if isinstance(cores, dict):
                node["cores"] = {_numa(k): v for k, v in cores.items()}
    try:
        return parse_pool(pool, "the pool recorded in the store")
    except PoolFileError as exc:
        raise SliceboxError(str(exc)) from None


def _numa(key: object) -> object:
    return int(key) if isinstance(key, str) and key.isdigit() and len(key) <= 5 else key
