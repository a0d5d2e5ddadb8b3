"""Tiny pools and jobs for engine tests, with times that can be worked out by hand."""

from __future__ import annotations

from typing import Any

from slicebox.pool.files import parse_pool
from slicebox.pool.model import Pool
from slicebox.sim.job import Family, SimJob
from slicebox.sim.speed import SpeedBook
from slicebox.spec.demand import DatasetRef, Demand


def pool(nodes: int = 1, gpus: int = 4, kind: str = "V100", cores: int = 16,
         memory: float = 128.0, volumes: bool = False, extra: list[dict[str, Any]] | None = None
         ) -> Pool:
    node: dict[str, Any] = {"name": "n", "replicas": nodes, "memory_gib": memory,
                            "cores": cores, "gpus": [{"kind": kind, "count": gpus}]}
    data: dict[str, Any] = {"name": "test", "nodes": [node] + list(extra or [])}
    if volumes:
        node["volumes"] = [{"name": "nvme", "path": "/scratch", "tier": "nvme",
                            "capacity_gib": 1000, "read_mbps": 2048, "write_mbps": 2048}]
        data["shared_volumes"] = [{"name": "data", "path": "/data", "tier": "network",
                                   "capacity_gib": 1e6, "read_mbps": 1024, "write_mbps": 512}]
    return parse_pool(data, "test pool")


def duration_job(job_id: str, arrival: float, duration: float, gpus: int = 1, *,
                 restart: float = 0.0, cpus: int = 1, memory: float = 1.0,
                 dataset: DatasetRef | None = None, fraction: float | None = None) -> SimJob:
    share = fraction if fraction is not None else float(gpus)
    return SimJob(id=job_id, arrival=arrival,
                  demand=Demand(gpus=gpus, max_gpus=gpus, fraction=fraction, cpus=cpus,
                                memory_gib=memory),
                  family=Family.DURATION, workload="test", work=duration * share, model="test",
                  restart_seconds=restart, dataset=dataset, duration=duration)


def speeds(the_pool: Pool) -> SpeedBook:
    return SpeedBook(sorted(the_pool.gpu_counts()), cpu_sensitivity=False)
