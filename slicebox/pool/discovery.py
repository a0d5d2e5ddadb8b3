"""This machine as a one-node pool: cores by NUMA node, memory, volumes and NVIDIA GPUs.

Only cores this process may run on count (a container or ``taskset`` may give us fewer
than the machine has), so a composition never names a core the backend cannot pin.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from slicebox.pool.cpulist import parse_cpulist
from slicebox.pool.gpus import GpuInventory, discover_gpus, load_nvml
from slicebox.pool.model import Node, Pool, Tier
from slicebox.pool.volumes import VolumesConfig, discover_volumes

GIB = 1 << 30


def discover_cores(sysfs: str | Path = "/sys") -> tuple[tuple[int, tuple[int, ...]], ...]:
    """Usable cores grouped by NUMA node; all of them on node 0 when /sys says nothing."""
    allowed = set(os.sched_getaffinity(0))
    groups: list[tuple[int, tuple[int, ...]]] = []
    for path in sorted(Path(sysfs, "devices/system/node").glob("node[0-9]*/cpulist")):
        try:
            numa = int(path.parent.name.removeprefix("node"))
            cores = tuple(c for c in parse_cpulist(path.read_text()) if c in allowed)
        except (OSError, ValueError):
            continue
        if cores:
            groups.append((numa, cores))
    if not groups:
        return ((0, tuple(sorted(allowed))),)
    return tuple(sorted(groups))


def discover_local(nvml: Any = None, sysfs: str | Path = "/sys",
                   volumes_config: VolumesConfig | Mapping[str, Any] | str | Path | None = None,
                   home: str | Path | None = None, *, node_name: str | None = None,
                   measure: bool = True) -> Pool:
    """This machine as one node.

    ``nvml``: an NVML module (default: ``pynvml`` when installed); no GPUs when it cannot
    start. ``volumes_config``: declared tiers/bandwidths per mount point. ``home``: the
    Slicebox home, where measured volume bandwidths are cached (without it nothing is
    measured and tiers' nominal bandwidths are used). ``measure=False`` never measures.
    """
    cores = discover_cores(sysfs)
    if nvml is None:
        nvml = load_nvml()
    gpus = (discover_gpus(nvml, sysfs, {numa for numa, _ in cores}) if nvml is not None
            else GpuInventory((), ()))
    volumes = discover_volumes(sysfs, volumes_config, home, measure)
    local = tuple(v for v in volumes if v.tier is not Tier.NETWORK)
    shared = tuple(v for v in volumes if v.tier is Tier.NETWORK)
    node = Node(node_name or socket.gethostname() or "local", cores,
                psutil.virtual_memory().total / GIB, gpus.devices, local,
                gpus.links if gpus.devices else ())
    return Pool((node,), "local", shared)
