"""The pool node a Ray node stands for: what discovery finds there, cut to what Ray declares.

An agent runs the same discovery as the local backend (``discover_local``) and then keeps
only what its Ray node was started with (``ray start --num-cpus/--memory/--num-gpus``): the
first N cores where Ray declares N CPUs, Ray's ``memory``, at most Ray's GPU count. Several
Ray nodes on one machine thus stand in for machines of different sizes, and an operator
who gives Ray part of a machine gives Slicebox the same part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from slicebox.pool.model import Node

GIB = 1 << 30
NAME_LABEL = "slicebox/name"  # ray start --labels '{"slicebox/name": "gpu-1"}'
# A node name reaches compositions, the store, logs and the CLI: keep it plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def node_name(node_id: str, labels: Mapping[str, str]) -> str:
    """The ``slicebox/name`` label where it is a plain name, else ``ray-<node id[:8]>``."""
    label = labels.get(NAME_LABEL)
    if isinstance(label, str) and _NAME.fullmatch(label):
        return label
    return f"ray-{node_id[:8]}"


def limit_to_declared(found: Node, name: str, resources: Mapping[str, float]) -> Node:
    """``found`` (this machine, as discovery sees it) cut to the Ray node's resources."""
    cpus = int(resources.get("CPU", 0))
    kept: list[tuple[int, tuple[int, ...]]] = []
    left = cpus
    for numa, cores in found.cores_by_numa:
        if left <= 0:
            break
        kept.append((numa, cores[:left]))
        left -= len(cores[:left])
    memory = resources.get("memory")
    memory_gib = found.memory_gib if memory is None else min(memory / GIB, found.memory_gib)
    gpus = int(resources.get("GPU", 0))
    devices = found.devices[:gpus]
    links = tuple(row[:gpus] for row in found.links[:gpus]) if devices else ()
    return replace(found, name=name, cores_by_numa=tuple(kept), memory_gib=memory_gib,
                   devices=devices, links=links)


def ray_node_entry(node_id: str) -> dict[str, Any]:
    """Ray's record of one node (``ray.nodes()``): resources, labels, address, liveness."""
    import ray

    for entry in ray.nodes():
        if entry.get("NodeID") == node_id:
            return dict(entry)
    raise LookupError(f"Ray knows no node {node_id}")


def describe_this_node(node_id: str) -> tuple[Node, str]:
    """This Ray node as a pool node, and its IP address (run inside its agent)."""
    from slicebox.pool.discovery import discover_local

    entry = ray_node_entry(node_id)
    name = node_name(node_id, entry.get("Labels") or {})
    found = discover_local(node_name=name, measure=False).nodes[0]
    node = limit_to_declared(found, name, entry.get("Resources") or {})
    return node, str(entry.get("NodeManagerAddress", ""))
