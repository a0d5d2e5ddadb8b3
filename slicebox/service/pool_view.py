"""The pool as the API shows it: nodes, their devices and cores, and who holds what now."""

from __future__ import annotations

from collections.abc import Iterable

from slicebox.pool.model import Pool
from slicebox.service.auth import Caller
from slicebox.service.models import Device, HeldSlice, Holder, Node, Volume
from slicebox.service.models import Pool as PoolOut
from slicebox.store import JobRecord


def pool_view(pool: Pool, active: Iterable[JobRecord], caller: Caller) -> PoolOut:
    """``active``: the jobs holding resources (staging or running)."""
    slices: dict[tuple[str, int], list[HeldSlice]] = {}
    cores: dict[str, dict[str, Holder]] = {}
    memory: dict[str, float] = {}
    for job in active:
        if job.composition is None:
            continue
        holder = (Holder(team=job.team, job_id=job.id, job_name=job.name)
                  if caller.sees(job.team) else Holder(team=job.team))
        for part in job.composition.parts:
            memory[part.node] = memory.get(part.node, 0.0) + part.memory_gib
            for core in part.cores:
                cores.setdefault(part.node, {})[str(core)] = holder
            for s in part.slices:
                slices.setdefault((s.node, s.device), []).append(HeldSlice(
                    shape=str(s.shape), compute=s.compute, memory_gib=s.memory_gib,
                    mig_profile=s.mig_profile, holder=holder))
    nodes = []
    for node in pool.nodes:
        devices = [Device(index=d.index, kind=d.kind_name, uuid=d.uuid, memory_gib=d.memory,
                          numa_node=d.numa_node, mig_enabled=d.mig_enabled,
                          slices=slices.get((node.name, d.index), [])) for d in node.devices]
        volumes = [Volume(name=v.name, path=v.path, tier=str(v.tier),
                          capacity_gib=v.capacity_gib) for v in node.volumes]
        nodes.append(Node(name=node.name, memory_gib=node.memory_gib,
                          memory_held_gib=memory.get(node.name, 0.0),
                          cores_by_numa={str(numa): list(ids) for numa, ids in
                                         node.cores_by_numa},
                          cores_held=cores.get(node.name, {}), devices=devices,
                          volumes=volumes))
    return PoolOut(name=pool.name, nodes=nodes)
