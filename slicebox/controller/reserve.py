"""Cores reserved for the controller: taken out of the pool jobs get, and the controller
pinned to them, so its rounds never take time from a job's cores.

``--reserve-cores 1`` (a count) reserves the highest-numbered core of the local node; a
cpulist names them: ``--reserve-cores 2-3``, ``0,5``, or ``3-3`` for core 3 alone.
"""

from __future__ import annotations

import dataclasses
import os

from slicebox.errors import InputError
from slicebox.pool.cpulist import format_cpulist, parse_cpulist
from slicebox.pool.model import Node, Pool


def choose_reserved(node: Node, text: str) -> tuple[int, ...]:
    """The cores ``text`` names on ``node``: a count (the highest-numbered ones) or a list."""
    text = text.strip()
    available = sorted(node.cores)
    if text.isdigit():
        count = int(text)
        if count < 1:
            raise InputError("--reserve-cores: give at least 1 core (or leave it out)")
        if count >= len(available):
            raise InputError(f"--reserve-cores: {count} would leave no core for jobs on node "
                             f"{node.name} ({len(available)} cores)")
        return tuple(available[-count:])
    try:
        cores = parse_cpulist(text)
    except ValueError as exc:
        raise InputError(f"--reserve-cores: {exc}") from None
    missing = [c for c in cores if c not in available]
    if missing:
        raise InputError(f"--reserve-cores: core(s) {format_cpulist(missing)} are not on node "
                         f"{node.name} (it has {format_cpulist(available)})")
    if len(cores) >= len(available):
        raise InputError(f"--reserve-cores: {format_cpulist(cores)} would leave no core for "
                         f"jobs on node {node.name} ({len(available)} cores)")
    return cores


def without_cores(pool: Pool, node_name: str, cores: tuple[int, ...]) -> Pool:
    """The pool with ``cores`` of ``node_name`` removed (jobs are never placed on them)."""
    taken = set(cores)
    nodes = []
    for node in pool.nodes:
        if node.name == node_name:
            by_numa = tuple((numa, tuple(c for c in group if c not in taken))
                            for numa, group in node.cores_by_numa)
            node = dataclasses.replace(node, cores_by_numa=tuple(
                (numa, group) for numa, group in by_numa if group))
        nodes.append(node)
    return dataclasses.replace(pool, nodes=tuple(nodes))


def pin_controller(cores: tuple[int, ...]) -> tuple[int, ...]:
    """Pin this process (and the threads it starts from now on) to ``cores``."""
    os.sched_setaffinity(0, cores)
    return tuple(sorted(os.sched_getaffinity(0)))
