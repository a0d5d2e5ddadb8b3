"""Pool files: YAML descriptions of boxes that are not this machine (validated, then frozen).

A pool file is untrusted input: every field is checked by pydantic, unknown fields are
errors (a misspelt ``memroy_gib`` must not silently become a default) and each error
names the field. The compact forms keep real machines short to write::

    name: dgx-h100
    nodes:
      - name: dgx
        memory_gib: 2048
        cores: {0: "0-55", 1: "56-111"}     # NUMA node -> cpulist (or a plain count: 16)
        gpus:
          - {kind: H100, count: 4, numa: 0}
          - {kind: H100, count: 4, numa: 1}
        links: nvlink                        # all-to-all NVLink (NVSwitch)
        volumes:
          - {name: nvme, path: /raid, tier: nvme, capacity_gib: 30000,
             read_mbps: 25000, write_mbps: 12000}
    shared_volumes:
      - {name: home, path: /home, tier: network, capacity_gib: 100000,
         read_mbps: 1200, write_mbps: 800}

``links`` is ``nvlink`` (all-to-all), ``pcie`` (the default: GPUs of one NUMA node meet at
the host bridge, others across sockets), ``pix`` (one PCIe switch per NUMA node), ``sys``,
or a full matrix as ``nvidia-smi topo -m`` prints it; ``nvlink_groups`` adds NVLink inside
groups of GPUs on top of that. ``replicas: N`` repeats a node as ``name-0`` … ``name-N-1``.
MIG-enabled cards say ``mig: true``; instances that already exist are listed under the
node's ``mig_instances`` (``{gpu: 0, profile: 3g.40gb, start: 4}``).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slicebox.pool.cpulist import format_cpulist, parse_cpulist
from slicebox.pool.kinds import get_kind
from slicebox.pool.model import Device, Link, MigInstance, Node, Pool, Tier, Volume
from slicebox.untrusted import describe, read_yaml

MAX_POOL_BYTES = 4 * 1024 * 1024  # a pool of thousands of nodes written out in full fits easily
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_UUID_NAMESPACE = uuid.UUID("6b1f3c52-2f4e-4c1e-9a8e-5d2c7a1b9e01")  # fixed: stable UUIDs
_LINK_WORDS = {"x": Link.SELF, "nv": Link.NVLINK, "pix": Link.PIX, "pxb": Link.PXB,
               "phb": Link.NODE, "node": Link.NODE, "sys": Link.SYS}


class PoolFileError(ValueError):
    """A pool file was rejected; the message names the field and the reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VolumeModel(_Strict):
    name: str = Field(pattern=NAME)
    path: str
    tier: Tier
    capacity_gib: float = Field(gt=0)
    read_mbps: float = Field(gt=0)
    write_mbps: float = Field(gt=0)
    shared: bool = False

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value.rstrip("/") or "/"

    def build(self, shared: bool = False) -> Volume:
        return Volume(self.name, self.path, self.tier, self.capacity_gib, self.read_mbps,
                      self.write_mbps, shared or self.shared)


class GpuGroupModel(_Strict):
    kind: str
    count: int = Field(1, ge=1, le=64)
    numa: int | None = Field(None, ge=0, le=1024)
    mig: bool = Field(False, description="MIG mode enabled on these cards")
    memory_gib: float | None = Field(None, gt=0, description="default: the kind's memory")
    uuids: tuple[str, ...] | None = None

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        try:
            kind = get_kind(value)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        if not kind.is_gpu:
            raise ValueError(f"{kind.name!r} is not a GPU kind; CPU cores go under 'cores'")
        return kind.name

    @model_validator(mode="after")
    def _consistent(self) -> GpuGroupModel:
        if self.mig and not get_kind(self.kind).supports_mig:
            raise ValueError(f"mig: {self.kind} cards have no MIG mode")
        if self.uuids is not None and len(self.uuids) != self.count:
            raise ValueError(f"uuids: {len(self.uuids)} given for {self.count} GPUs")
        return self


class MigInstanceModel(_Strict):
    gpu: int = Field(ge=0, description="index of the card on its node")
    profile: str
    start: int = Field(ge=0, le=7)
    uuid: str | None = None


LinkMatrix = tuple[tuple[str, ...], ...]
LINK_PRESETS = ("nvlink", "pcie", "pix", "sys")


class NodeModel(_Strict):
    name: str = Field(pattern=NAME)
    replicas: int = Field(1, ge=1, le=100_000)
    memory_gib: float = Field(gt=0)
    cores: dict[int, tuple[int, ...]] = Field(
        description="NUMA node -> cpulist (\"0-55\") or list of core ids; or a count on NUMA 0")
    gpus: tuple[GpuGroupModel, ...] = ()
    links: str | LinkMatrix = "pcie"
    nvlink_groups: tuple[tuple[int, ...], ...] = ()
    mig_instances: tuple[MigInstanceModel, ...] = ()
    volumes: tuple[VolumeModel, ...] = ()

    @field_validator("cores", mode="before")
    @classmethod
    def _cores(cls, value: object) -> dict[int, tuple[int, ...]]:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= 65536:
                raise ValueError(f"a core count must be between 1 and 65536, got {value}")
            return {0: tuple(range(value))}
        if not isinstance(value, dict) or not value:
            raise ValueError("give a core count, or a mapping of NUMA node -> cpulist "
                             "(e.g. {0: \"0-55\", 1: \"56-111\"})")
        out: dict[int, tuple[int, ...]] = {}
        seen: set[int] = set()
        for numa, cores in value.items():
            if isinstance(numa, bool) or not isinstance(numa, int) or numa < 0:
                raise ValueError(f"NUMA node {numa!r} is not a non-negative integer")
            if isinstance(cores, str):
                ids = parse_cpulist(cores)
            elif isinstance(cores, list | tuple) and all(
                    isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cores):
                ids = tuple(sorted(cores))
            else:
                raise ValueError(f"NUMA node {numa}: give a cpulist like \"0-7\" or a list of "
                                 f"core ids, got {cores!r}")
            if not ids:
                raise ValueError(f"NUMA node {numa} lists no cores")
            twice = seen.intersection(ids)
            if twice or len(set(ids)) != len(ids):
                raise ValueError(f"NUMA node {numa}: core {min(twice or ids)} is listed twice")
            seen.update(ids)
            out[numa] = ids
        return out

    @field_validator("links", mode="before")
    @classmethod
    def _links(cls, value: object) -> object:
        if isinstance(value, str):
            if value not in LINK_PRESETS:
                raise ValueError(f"{value!r} is not one of {', '.join(LINK_PRESETS)} "
                                 "or a matrix")
            return value
        if isinstance(value, list | tuple) and all(
                isinstance(r, list | tuple) and all(isinstance(w, str) for w in r) for r in value):
            return tuple(tuple(r) for r in value)
        raise ValueError(f"give one of {', '.join(LINK_PRESETS)} or a matrix of link names")

    def cores_by_numa(self) -> tuple[tuple[int, tuple[int, ...]], ...]:
        return tuple(sorted(self.cores.items()))

    @property
    def gpu_count(self) -> int:
        return sum(g.count for g in self.gpus)

    @model_validator(mode="after")
    def _consistent(self) -> NodeModel:
        numa_nodes = {numa for numa, _ in self.cores_by_numa()}
        for i, group in enumerate(self.gpus):
            if group.numa is not None and group.numa not in numa_nodes:
                raise ValueError(f"gpus.{i}.numa: NUMA node {group.numa} has no cores on this "
                                 f"node (NUMA nodes: {sorted(numa_nodes)})")
        n = self.gpu_count
        if not isinstance(self.links, str):
            _matrix(self.links, n)  # raises with the position of a bad entry
        for g, group in enumerate(self.nvlink_groups):
            bad = [i for i in group if not 0 <= i < n]
            if bad:
                raise ValueError(f"nvlink_groups.{g}: GPU {bad[0]} does not exist "
                                 f"(this node has {n} GPUs)")
        names = [v.name for v in self.volumes]
        if len(set(names)) != len(names):
            raise ValueError("volumes: two volumes share a name")
        _check_mig_instances(self)
        return self


class PoolModel(_Strict):
    name: str = Field("pool", pattern=NAME)
    nodes: tuple[NodeModel, ...]
    shared_volumes: tuple[VolumeModel, ...] = ()

    @field_validator("nodes")
    @classmethod
    def _some(cls, value: tuple[NodeModel, ...]) -> tuple[NodeModel, ...]:
        if not value:
            raise ValueError("a pool needs at least one node")
        return value

    @model_validator(mode="after")
    def _unique(self) -> PoolModel:
        seen: set[str] = set()
        for i, node in enumerate(self.nodes):
            for name in _replica_names(node):
                if name in seen:
                    raise ValueError(f"nodes.{i}.name: node {name!r} is defined twice")
                seen.add(name)
        return self


def _replica_names(node: NodeModel) -> list[str]:
    if node.replicas == 1:
        return [node.name]
    return [f"{node.name}-{i}" for i in range(node.replicas)]


def _matrix(rows: LinkMatrix, n: int) -> tuple[tuple[Link, ...], ...]:
    if len(rows) != n or any(len(r) != n for r in rows):
        raise ValueError(f"links: a matrix must be {n}x{n} for {n} GPUs")
    out: list[tuple[Link, ...]] = []
    for i, row in enumerate(rows):
        links = []
        for j, word in enumerate(row):
            key = word.strip().lower()
            key = "nv" if re.fullmatch(r"nv\d*", key) else key
            if key not in _LINK_WORDS:
                raise ValueError(f"links.{i}.{j}: {word!r} is not one of X, NV, PIX, PXB, "
                                 "PHB, NODE, SYS")
            link = _LINK_WORDS[key]
            if (i == j) != (link is Link.SELF):
                raise ValueError(f"links.{i}.{j}: X belongs on the diagonal and only there")
            links.append(link)
        out.append(tuple(links))
    for i in range(n):
        for j in range(n):
            if out[i][j] is not out[j][i]:
                raise ValueError(f"links.{i}.{j}: {out[i][j]} but links.{j}.{i}: {out[j][i]}")
    return tuple(out)


def _check_mig_instances(node: NodeModel) -> None:
    cards: list[GpuGroupModel] = [g for g in node.gpus for _ in range(g.count)]
    used: dict[int, int] = {}  # card -> memory-slice mask
    compute: dict[int, int] = {}
    for i, inst in enumerate(node.mig_instances):
        where = f"mig_instances.{i}"
        if inst.gpu >= len(cards):
            raise ValueError(f"{where}.gpu: GPU {inst.gpu} does not exist "
                             f"(this node has {len(cards)} GPUs)")
        card = cards[inst.gpu]
        if not card.mig:
            raise ValueError(f"{where}.gpu: GPU {inst.gpu} does not have mig: true")
        try:
            profile = get_kind(card.kind).mig_profile(inst.profile)
        except KeyError as exc:
            raise ValueError(f"{where}.profile: {exc.args[0]}") from None
        if inst.start not in profile.starts:
            raise ValueError(f"{where}.start: {profile.name} may start at "
                             f"{list(profile.starts)}, not {inst.start}")
        mask = ((1 << profile.size) - 1) << inst.start
        if used.get(inst.gpu, 0) & mask:
            raise ValueError(f"{where}: overlaps another instance on GPU {inst.gpu}")
        used[inst.gpu] = used.get(inst.gpu, 0) | mask
        compute[inst.gpu] = compute.get(inst.gpu, 0) + profile.compute
        if compute[inst.gpu] > 7:
            raise ValueError(f"{where}: GPU {inst.gpu} would need more than 7 compute slices")


def _base_links(node: NodeModel, numas: list[int | None]) -> list[list[Link]]:
    n = len(numas)
    if not isinstance(node.links, str):
        return [list(r) for r in _matrix(node.links, n)]
    links = [[Link.SYS] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            same_numa = numas[i] is not None and numas[i] == numas[j]
            if i == j:
                links[i][j] = Link.SELF
            elif node.links == "nvlink":
                links[i][j] = Link.NVLINK
            elif node.links == "pix" and same_numa:
                links[i][j] = Link.PIX
            elif node.links == "pcie" and same_numa:
                links[i][j] = Link.NODE
    return links


def _stable_uuid(prefix: str, *parts: object) -> str:
    return f"{prefix}-{uuid.uuid5(_UUID_NAMESPACE, '/'.join(str(p) for p in parts))}"


def _build_node(pool_name: str, model: NodeModel, name: str) -> Node:
    numas: list[int | None] = []
    devices: list[Device] = []
    for group in model.gpus:
        for k in range(group.count):
            index = len(devices)
            uuid_text = (group.uuids[k] if group.uuids
                         else _stable_uuid("GPU", pool_name, name, index))
            instances = tuple(
                MigInstance(inst.profile, inst.start,
                            inst.uuid or _stable_uuid("MIG", pool_name, name, index, inst.start))
                for inst in model.mig_instances if inst.gpu == index)
            devices.append(Device(index, group.kind, uuid_text, group.numa, group.mig,
                                  group.memory_gib, instances))
            numas.append(group.numa)
    links = _base_links(model, numas)
    for group in model.nvlink_groups:
        for i in group:
            for j in group:
                if i != j:
                    links[i][j] = Link.NVLINK
    return Node(name, model.cores_by_numa(), model.memory_gib, tuple(devices),
                tuple(v.build() for v in model.volumes),
                tuple(tuple(r) for r in links) if devices else ())


def parse_pool(data: object, source: str = "pool file") -> Pool:
    """Validate already-loaded data; raise PoolFileError naming every bad field."""
    if not isinstance(data, dict):
        raise PoolFileError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    try:
        model = PoolModel.model_validate(data)
    except ValidationError as exc:
        raise PoolFileError(f"{source}: {describe(exc)}") from None
    nodes = tuple(_build_node(model.name, node, name)
                  for node in model.nodes for name in _replica_names(node))
    shared = tuple(v.build(shared=True) for v in model.shared_volumes)
    return Pool(nodes, model.name, shared)


def load_pool(path: str | Path) -> Pool:
    """Read a pool YAML file, refusing unreadable, huge or non-YAML files with a clear reason."""
    path = Path(path)
    data = read_yaml(path, MAX_POOL_BYTES, "a pool file", PoolFileError)
    return parse_pool(data, str(path))


def pool_to_dict(pool: Pool) -> dict[str, Any]:
    """The explicit pool-file form of a pool (a discovered one, say); ``parse_pool`` reads it."""

    def volume(v: Volume) -> dict[str, Any]:
        return {"name": v.name, "path": v.path, "tier": v.tier.value,
                "capacity_gib": v.capacity_gib, "read_mbps": v.read_mbps,
                "write_mbps": v.write_mbps, "shared": v.shared}

    nodes = []
    for node in pool.nodes:
        # Pool files number GPUs 0..n-1; a discovered node may skip an unknown card.
        position = {dev.index: i for i, dev in enumerate(node.devices)}
        entry: dict[str, Any] = {
            "name": node.name, "memory_gib": node.memory_gib,
            "cores": {numa: format_cpulist(cores) for numa, cores in node.cores_by_numa},
            "gpus": [{"kind": d.kind_name, "numa": d.numa_node, "mig": d.mig_enabled,
                      "memory_gib": d.memory_gib, "uuids": [d.uuid]} for d in node.devices],
            "mig_instances": [{"gpu": position[d.index], "profile": m.profile,
                               "start": m.start, "uuid": m.uuid}
                              for d in node.devices for m in d.mig_instances],
            "volumes": [volume(v) for v in node.volumes],
        }
        if node.devices:
            entry["links"] = [[node.link(a.index, b.index).value for b in node.devices]
                              for a in node.devices]
        nodes.append(entry)
    return {"name": pool.name, "nodes": nodes,
            "shared_volumes": [volume(v) for v in pool.shared_volumes]}
