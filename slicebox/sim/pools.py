"""The clusters the published results were measured on, as pools.

``resolve("sia-64")`` / ``resolve("pool.yaml")`` / ``resolve("openb_node_list_gpu_node.csv")``
turn what a user names into a ``Pool``: a preset below, a pool file, or a trace's
node list.

- ``sia-64``: Sia's default cluster, 6x aws (4x T4) + 2x dgx-ext (8x A100-40GB) + 3x rtx
  (8x RTX 2080Ti) = 64 GPUs (siasosp23/artifacts ``simulator_config.py``).
- ``gavel-48``: Gavel's physical cluster, 8 V100 + 16 P100 + 24 K80.
- ``philly-<N>``: N GPUs as 8-GPU servers with Synergy's per-server CPU and memory
  (24 cores, 500 GB), so the Synergy sensitivity data applies at its own baseline
  (3 cores and 62.5 GB per GPU).

Node CPU/memory/volume sizes are the vendors' instance sizes where the paper names an
instance (g4dn.12xlarge, DGX A100), and round numbers elsewhere; they only matter for
multi-resource policies and data staging.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Callable
from typing import Any

from slicebox.errors import InputError
from slicebox.pool.files import (
    MAX_POOL_GPUS,
    MAX_POOL_NODES,
    PoolFileError,
    load_pool,
    parse_pool,
)
from slicebox.pool.model import Pool

NETWORK = {"name": "datasets", "path": "/datasets", "tier": "network", "capacity_gib": 1e6,
           "read_mbps": 1200, "write_mbps": 800}


def _nvme(capacity_gib: float, write_mbps: float = 2000) -> dict[str, Any]:
    return {"name": "nvme", "path": "/scratch", "tier": "nvme", "capacity_gib": capacity_gib,
            "read_mbps": 3000, "write_mbps": write_mbps}


def _node(name: str, replicas: int, kind: str, gpus: int, cores: int, memory_gib: float,
          scratch_gib: float, links: str = "pcie") -> dict[str, Any]:
    return {"name": name, "replicas": replicas, "memory_gib": memory_gib, "cores": cores,
            "gpus": [{"kind": kind, "count": gpus}], "links": links,
            "volumes": [_nvme(scratch_gib)]}


def sia_cluster(aws: int = 6, dgx: int = 2, rtx: int = 3) -> Pool:
    nodes = []
    if aws:
        nodes.append(_node("aws", aws, "T4", 4, 48, 192, 900))
    if dgx:
        nodes.append(_node("dgx", dgx, "A100-40GB", 8, 128, 1024, 15000, "nvlink"))
    if rtx:
        nodes.append(_node("rtx", rtx, "RTX-2080Ti", 8, 48, 384, 2000))
    return parse_pool({"name": f"sia-{4 * aws + 8 * dgx + 8 * rtx}", "nodes": nodes,
                       "shared_volumes": [NETWORK]}, "sia preset")


def gavel_cluster(v100: int = 8, p100: int = 16, k80: int = 24) -> Pool:
    nodes = []
    if v100:
        nodes.append(_node("v100", max(1, v100 // 4), "V100", 4, 32, 244, 1000))
    if p100:
        nodes.append(_node("p100", max(1, p100 // 4), "P100", 4, 32, 244, 1000))
    if k80:
        nodes.append(_node("k80", max(1, k80 // 8), "K80", 8, 32, 488, 1000))
    return parse_pool({"name": f"gavel-{v100 + p100 + k80}", "nodes": nodes,
                       "shared_volumes": [NETWORK]}, "gavel preset")


def philly_pool(gpus: int = 2000, kind: str = "P100") -> Pool:
    if gpus % 8 or not 8 <= gpus <= MAX_POOL_GPUS:
        raise InputError(f"philly-<N>: N must be a multiple of 8 GPUs in 8..{MAX_POOL_GPUS}, "
                         f"got {gpus}")
    node = _node("server", gpus // 8, kind, 8, 24, 500, 2000)
    return parse_pool({"name": f"philly-{gpus}", "nodes": [node],
                       "shared_volumes": [NETWORK]}, "philly preset")


def alibaba_pool(path: str | os.PathLike[str] | None = None, gpu_only: bool = True,
                 cpu_scale: int = 1) -> Pool:
    """The Alibaba 2023 node list as a pool (GPU nodes only, as FGD's experiments use).

    ``cpu_scale`` counts cores in 1/scale units: the trace gives milli-cores and most
    pods ask for a fraction (3.152 cores), which whole cores would round up."""
    from slicebox.sim import traces

    source = path or traces.trace_path("alibaba-gpu-2023/openb_node_list_gpu_node.csv")
    nodes = traces.read_alibaba_nodes(source).nodes
    if len(nodes) > MAX_POOL_NODES:  # refused before a model is built for each
        raise PoolFileError(f"{source}: {len(nodes):,} nodes; a pool may have at most "
                            f"{MAX_POOL_NODES:,}")
    models = []
    for node in nodes:
        if gpu_only and not node.gpus:
            continue
        entry: dict[str, Any] = {"name": node.name, "memory_gib": max(node.memory_gib, 1.0),
                                 "cores": max(1, int(round(node.cpus * cpu_scale)))}
        if node.gpus:
            entry["gpus"] = [{"kind": node.gpu_model, "count": node.gpus}]
        models.append(entry)
    return parse_pool({"name": "alibaba-gpu-2023", "nodes": models}, str(source))


PRESETS: dict[str, Callable[[], Pool]] = {
    "sia-64": sia_cluster,
    "gavel-48": gavel_cluster,
    "philly-2000": philly_pool,
    "alibaba-gpu-2023": alibaba_pool,
}


def resolve(spec: Pool | str | os.PathLike[str]) -> Pool:
    """A pool from a Pool, a preset name, ``philly-<N>``, a pool file or a node list."""
    if isinstance(spec, Pool):
        return spec
    text = os.fspath(spec)
    if text in PRESETS:
        return PRESETS[text]()
    philly = re.fullmatch(r"philly-([0-9]{1,9})", text)
    if philly:
        return philly_pool(int(philly.group(1)))
    path = pathlib.Path(text)
    if path.suffix == ".csv":
        return alibaba_pool(path)
    try:
        is_file = path.exists()
    except OSError:  # a name too long for a path: load_pool says so in one line
        is_file = True
    if is_file:
        return load_pool(path)
    raise InputError(f"unknown pool {text[:200]!r}: give a pool file, a node list (.csv) or "
                     f"one of {', '.join(sorted(PRESETS))}, philly-<N>")
