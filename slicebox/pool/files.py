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

``env_allow: [LD_LIBRARY_PATH, ...]`` (top level) names environment variables a job may
set although admission refuses them by default (``LD_*``, ``PYTHON*``, ``PATH``: they
change how programs load). Exact, case-sensitive names; absent means none.

``quotas:`` (top level) gives teams a guaranteed share and lets them borrow idle capacity
(Kueue's nominal quota and borrowing limit; the ``quota`` policy enforces it; semantics and
limits in ``slicebox.pool.quotas``)::

    quotas:
      vision: {cpus: 16, gpus: {H100: 4}, memory_gib: 256, borrowing_limit: {gpus: 2}}
      nlp: {cpus: 8, gpus: 2}

``service_hours:`` (top level) says in which hours of the day the services (``kind:
service``) together keep at least a share of the pool, and training gets the rest
(``slicebox.hours``; ``slicebox up --service-hours`` overrides it)::

    service_hours:
      - {hours: "08:00-20:00", at_least: 0.5}

Limits (checked before anything is built, so a hostile file cannot make us allocate
without bound): every number finite; at most ``MAX_NODE_GPUS`` GPUs and ``MAX_CPU_ID``+1
cores a node, ``MAX_POOL_NODES`` nodes, ``MAX_POOL_GPUS`` GPUs and ``MAX_POOL_CORES``
cores in all (replicas counted); sizes below the bounds in the fields' declarations.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slicebox.errors import InputError
from slicebox.hours import MAX_WINDOWS, Window
from slicebox.pool.cpulist import MAX_CPU_ID, cpulist_size, format_cpulist, parse_cpulist
from slicebox.pool.kinds import get_kind
from slicebox.pool.model import Device, Link, MigInstance, Node, Pool, Tier, Volume
from slicebox.pool.quotas import (
    CPUS,
    GPUS,
    MAX_TEAMS,
    MEMORY,
    Quotas,
    TeamQuotaModel,
    check_team_names,
    gpu_kind_key,
)
from slicebox.pool.quotas import build as build_quotas
from slicebox.untrusted import describe, read_yaml

MAX_POOL_BYTES = 4 * 1024 * 1024  # a pool of thousands of nodes written out in full fits easily
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
# Sane maxima, far above any real machine or cluster we simulate (philly-2000 is 2,000
# GPUs; Alibaba's node list with cores in tenths about 1.1 million cores).
MAX_NODE_GPUS = 64
MAX_POOL_NODES = 100_000
MAX_POOL_GPUS = 131_072
MAX_POOL_CORES = 1 << 22
MAX_MEMORY_GIB = float(1 << 20)  # 1 PiB of host memory on one node
MAX_GPU_MEMORY_GIB = 65_536.0
MAX_CAPACITY_GIB = 1e9  # a volume (a network share may be huge; presets use 1e6)
MAX_MBPS = 1e7
MAX_LIST = 64  # GPU groups, volumes, NVLink groups of one node; shared volumes
MAX_TEXT = 4096  # any string: paths, uuids, link names
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
MAX_ENV_ALLOW = 256
# YAML values (aliases counted as what they repeat). Alibaba's 1,213-node pool written out
# in full holds about 250,000; a 4 MB file cannot hold more than 2 million without aliases.
MAX_POOL_VALUES = 2_000_000
_UUID_NAMESPACE = uuid.UUID("6b1f3c52-2f4e-4c1e-9a8e-5d2c7a1b9e01")  # fixed: stable UUIDs
_LINK_WORDS = {"x": Link.SELF, "nv": Link.NVLINK, "pix": Link.PIX, "pxb": Link.PXB,
               "phb": Link.NODE, "node": Link.NODE, "sys": Link.SYS}


class PoolFileError(InputError):
    """A pool file was rejected; the message names the file, the field and the reason."""


class _Strict(BaseModel):
    # allow_inf_nan=False: an infinite or NaN size is refused, never simulated.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False,
                              str_max_length=MAX_TEXT)


class VolumeModel(_Strict):
    name: str = Field(pattern=NAME)
    path: str
    tier: Tier
    capacity_gib: float = Field(gt=0, le=MAX_CAPACITY_GIB)
    read_mbps: float = Field(gt=0, le=MAX_MBPS)
    write_mbps: float = Field(gt=0, le=MAX_MBPS)
    shared: bool = False

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if "\0" in value:
            raise ValueError("a path may not hold a NUL character")
        if not value.startswith("/"):
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value.rstrip("/") or "/"

    def build(self, shared: bool = False) -> Volume:
        return Volume(self.name, self.path, self.tier, self.capacity_gib, self.read_mbps,
                      self.write_mbps, shared or self.shared)


class GpuGroupModel(_Strict):
    kind: str = Field(max_length=64)
    count: int = Field(1, ge=1, le=MAX_NODE_GPUS)
    numa: int | None = Field(None, ge=0, le=1024)
    mig: bool = Field(False, description="MIG mode enabled on these cards")
    memory_gib: float | None = Field(None, gt=0, le=MAX_GPU_MEMORY_GIB,
                                     description="default: the kind's memory")
    uuids: tuple[str, ...] | None = Field(None, max_length=MAX_NODE_GPUS)

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
    gpu: int = Field(ge=0, lt=MAX_NODE_GPUS, description="index of the card on its node")
    profile: str = Field(max_length=64)
    start: int = Field(ge=0, le=7)
    uuid: str | None = Field(None, max_length=256)


LinkMatrix = tuple[tuple[str, ...], ...]
LINK_PRESETS = ("nvlink", "pcie", "pix", "sys")


class NodeModel(_Strict):
    name: str = Field(pattern=NAME)
    replicas: int = Field(1, ge=1, le=MAX_POOL_NODES)
    memory_gib: float = Field(gt=0, le=MAX_MEMORY_GIB)
    cores: dict[int, tuple[int, ...]] = Field(
        description="NUMA node -> cpulist (\"0-55\") or list of core ids; or a count on NUMA 0")
    gpus: tuple[GpuGroupModel, ...] = Field((), max_length=MAX_LIST)
    links: str | LinkMatrix = "pcie"
    nvlink_groups: tuple[tuple[int, ...], ...] = Field((), max_length=MAX_LIST)
    mig_instances: tuple[MigInstanceModel, ...] = Field((), max_length=MAX_NODE_GPUS * 7)
    volumes: tuple[VolumeModel, ...] = Field((), max_length=MAX_LIST)

    @field_validator("cores", mode="before")
    @classmethod
    def _cores(cls, value: object) -> dict[int, tuple[int, ...]]:
        limit = MAX_CPU_ID + 1
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= limit:
                raise ValueError(f"a core count must be between 1 and {limit}, got {value}")
            return {0: tuple(range(value))}
        if not isinstance(value, dict) or not value:
            raise ValueError("give a core count, or a mapping of NUMA node -> cpulist "
                             "(e.g. {0: \"0-55\", 1: \"56-111\"})")
        if len(value) > 1024:
            raise ValueError(f"{len(value)} NUMA nodes; a node may have at most 1024")
        out: dict[int, tuple[int, ...]] = {}
        seen: set[int] = set()
        for numa, cores in value.items():
            if isinstance(numa, bool) or not isinstance(numa, int) or not 0 <= numa <= 1024:
                raise ValueError(f"NUMA node {str(numa)[:40]!r} is not an integer in 0..1024")
            if isinstance(cores, str):
                # Counted before parse_cpulist expands it: "0-65536" repeated through a
                # 4 MB file would otherwise become billions of core ids.
                _check_cpulist_size(numa, cores, limit - len(seen))
                ids = parse_cpulist(cores)
            elif isinstance(cores, list | tuple) and all(
                    isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= MAX_CPU_ID
                    for c in cores):
                ids = tuple(sorted(cores))
            else:
                raise ValueError(f"NUMA node {numa}: give a cpulist like \"0-7\" or a list of "
                                 f"core ids 0..{MAX_CPU_ID}, got {str(cores)[:60]}")
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
        if self.gpu_count > MAX_NODE_GPUS:
            raise ValueError(f"gpus: {self.gpu_count} GPUs on one node; at most "
                             f"{MAX_NODE_GPUS}")
        numa_nodes = {numa for numa, _ in self.cores_by_numa()}
        for i, group in enumerate(self.gpus):
            if group.numa is not None and group.numa not in numa_nodes:
                raise ValueError(f"gpus.{i}.numa: NUMA node {group.numa} has no cores on this "
                                 f"node (NUMA nodes: {sorted(numa_nodes)})")
        n = self.gpu_count
        if not isinstance(self.links, str):
            _matrix(self.links, n)  # raises with the position of a bad entry
        for g, members in enumerate(self.nvlink_groups):
            if len(set(members)) != len(members):
                raise ValueError(f"nvlink_groups.{g}: a GPU is listed twice")
            bad = [i for i in members if not 0 <= i < n]
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
    nodes: tuple[NodeModel, ...] = Field(max_length=MAX_POOL_NODES)
    shared_volumes: tuple[VolumeModel, ...] = Field((), max_length=MAX_LIST)
    env_allow: tuple[str, ...] = Field((), max_length=MAX_ENV_ALLOW)
    # Team -> guaranteed share and borrowing limit (slicebox.pool.quotas; the quota policy).
    quotas: dict[str, TeamQuotaModel] = Field(default_factory=dict, max_length=MAX_TEAMS)
    # Hours in which the services together keep at least a share of the pool (training
    # gets the rest); slicebox.hours.
    service_hours: tuple[Window, ...] = Field((), max_length=MAX_WINDOWS)

    @field_validator("quotas")
    @classmethod
    def _teams(cls, value: dict[str, TeamQuotaModel]) -> dict[str, TeamQuotaModel]:
        check_team_names(value)
        return value

    @field_validator("env_allow")
    @classmethod
    def _env_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, name in enumerate(value):
            if not re.fullmatch(ENV_NAME, name):
                raise ValueError(f"{i}: {name[:60]!r} is not an environment variable name "
                                 "(letters, digits and _, not starting with a digit)")
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(f"{twice[0]!r} is listed twice")
        return value

    @field_validator("nodes")
    @classmethod
    def _some(cls, value: tuple[NodeModel, ...]) -> tuple[NodeModel, ...]:
        if not value:
            raise ValueError("a pool needs at least one node")
        return value

    @model_validator(mode="after")
    def _unique(self) -> PoolModel:
        _check_totals(self.nodes)  # before the loop below walks every replica
        seen: set[str] = set()
        for i, node in enumerate(self.nodes):
            for name in _replica_names(node):
                if name in seen:
                    raise ValueError(f"nodes.{i}.name: node {name!r} is defined twice")
                seen.add(name)
        try:
            self.built_quotas()
        except ValueError as exc:
            raise ValueError(f"quotas: {exc}") from None
        return self

    def built_quotas(self) -> Quotas:
        """The teams' quotas, checked against what the pool's nodes hold."""
        totals: dict[str, float] = {CPUS: 0.0, GPUS: 0.0, MEMORY: 0.0}
        for node in self.nodes:
            totals[CPUS] += node.replicas * sum(len(c) for c in node.cores.values())
            totals[MEMORY] += node.replicas * node.memory_gib
            for group in node.gpus:
                totals[GPUS] += node.replicas * group.count
                key = gpu_kind_key(group.kind)
                totals[key] = totals.get(key, 0.0) + node.replicas * group.count
        return build_quotas(self.quotas, totals)


def _check_totals(nodes: tuple[NodeModel, ...]) -> None:
    totals = {"nodes": 0, "GPUs": 0, "cores": 0}
    for node in nodes:
        totals["nodes"] += node.replicas
        totals["GPUs"] += node.replicas * node.gpu_count
        totals["cores"] += node.replicas * sum(len(c) for c in node.cores.values())
    maxima = {"nodes": MAX_POOL_NODES, "GPUs": MAX_POOL_GPUS, "cores": MAX_POOL_CORES}
    for what, total in totals.items():
        if total > maxima[what]:
            raise ValueError(f"nodes: the pool has {total:,} {what} (replicas counted); "
                             f"at most {maxima[what]:,}")


def _check_cpulist_size(numa: int, text: str, room: int) -> None:
    """Refuse a cpulist naming more than ``room`` cores, counting ranges without
    expanding them."""
    if len(text) > MAX_TEXT:
        raise ValueError(f"NUMA node {numa}: cpulist is {len(text):,} characters; "
                         f"at most {MAX_TEXT}")
    if cpulist_size(text) > room:  # a syntax error: cpulist_size names the bad part
        raise ValueError(f"NUMA node {numa}: cpulist names more than {room} cores; a node "
                         f"has at most {MAX_CPU_ID + 1}")


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
    for members in model.nvlink_groups:
        for i in members:
            for j in members:
                if i != j:
                    links[i][j] = Link.NVLINK
    return Node(name, model.cores_by_numa(), model.memory_gib, tuple(devices),
                tuple(v.build() for v in model.volumes),
                tuple(tuple(r) for r in links) if devices else ())


def parse_pool(data: object, source: str = "pool file") -> Pool:
    """Validate already-loaded data; raise PoolFileError naming every bad field."""
    return parse_pool_and_quotas(data, source)[0]


def parse_pool_and_quotas(data: object, source: str = "pool file") -> tuple[Pool, Quotas]:
    """The pool and its ``quotas:`` section (empty quotas when it has none)."""
    if not isinstance(data, dict):
        raise PoolFileError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    try:
        model = PoolModel.model_validate(data)
    except ValidationError as exc:
        raise PoolFileError(f"{source}: {describe(exc)}") from None
    nodes = tuple(_build_node(model.name, node, name)
                  for node in model.nodes for name in _replica_names(node))
    shared = tuple(v.build(shared=True) for v in model.shared_volumes)
    quotas = model.built_quotas() if model.quotas else Quotas()
    return Pool(nodes, model.name, shared, frozenset(model.env_allow),
                model.service_hours), quotas


def load_pool(path: str | Path) -> Pool:
    """Read a pool YAML file, refusing unreadable, huge or non-YAML files with a clear reason."""
    return load_pool_and_quotas(path)[0]


def load_pool_and_quotas(path: str | Path) -> tuple[Pool, Quotas]:
    """``load_pool``, and the file's team quotas (empty when it has none)."""
    path = Path(path)
    data = read_yaml(path, MAX_POOL_BYTES, "a pool file", PoolFileError,
                     max_nodes=MAX_POOL_VALUES)
    return parse_pool_and_quotas(data, str(path))


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
    out: dict[str, Any] = {"name": pool.name, "nodes": nodes,
                           "shared_volumes": [volume(v) for v in pool.shared_volumes]}
    if pool.env_allow:
        out["env_allow"] = sorted(pool.env_allow)
    if pool.service_hours:
        out["service_hours"] = [w.model_dump() for w in pool.service_hours]
    return out
