"""NVIDIA GPUs of this machine through NVML (the ``pynvml`` module of ``nvidia-ml-py``).

The NVML module is a parameter so that a fake serving the same calls can stand in for
cards that are not here. Every call past ``nvmlInit`` may be unsupported on some card or
driver (``NVMLError``); each such gap falls back to the next source of the same fact
instead of failing discovery.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slicebox.pool.kinds import DeviceKind, kind_from_nvml_name
from slicebox.pool.model import Device, Link, MigInstance

log = logging.getLogger(__name__)

GIB = 1 << 30
_MIG_NAME = re.compile(r"(\d+)g\.(\d+)gb")


@dataclass(frozen=True)
class GpuInventory:
    devices: tuple[Device, ...]
    # links[i][j] by NVML index, covering every card NVML listed (even one we skipped).
    links: tuple[tuple[Link, ...], ...]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bus_key(bus_id: str) -> tuple[int, int, int, int] | None:
    """``00000000:3B:00.0`` and ``0000:3b:00.0`` name the same device: compare as numbers."""
    match = re.fullmatch(r"([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-7])",
                         bus_id.strip())
    if not match:
        return None
    domain, bus, dev, fn = match.groups()
    return int(domain, 16), int(bus, 16), int(dev, 16), int(fn)


def load_nvml() -> Any | None:
    """The real ``pynvml`` module, or None when nvidia-ml-py is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def discover_gpus(nvml: Any, sysfs: str | Path = "/sys",
                  numa_nodes: Collection[int] = ()) -> GpuInventory:
    """Every NVIDIA GPU NVML reports; no GPUs (not an error) when NVML cannot start.

    ``numa_nodes`` are the NUMA nodes that have cores; a GPU whose NVML NUMA node is not
    one of them (Grace Hopper reports its memory's own node) falls back to its PCI node.
    """
    try:
        nvml.nvmlInit()
    except (nvml.NVMLError, OSError, AttributeError) as exc:
        log.info("NVML unavailable (%s): no GPUs discovered", exc)
        return GpuInventory((), ())
    try:
        return _Discovery(nvml, Path(sysfs), set(numa_nodes)).run()
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


class _Discovery:
    def __init__(self, nvml: Any, sysfs: Path, numa_nodes: set[int]):
        self.nvml = nvml
        self.sysfs = sysfs
        self.numa_nodes = numa_nodes

    def call(self, name: str, *args: Any) -> Any:
        """An optional NVML call: None when this card, driver or binding does not have it."""
        fn: Callable[..., Any] | None = getattr(self.nvml, name, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except self.nvml.NVMLError:
            return None

    def run(self) -> GpuInventory:
        nvml = self.nvml
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        buses = [self.bus_id(h) for h in handles]
        devices = []
        for index, handle in enumerate(handles):
            device = self.device(index, handle, buses[index])
            if device is not None:
                devices.append(device)
        return GpuInventory(tuple(devices), self.links(handles, buses))

    def bus_id(self, handle: Any) -> str | None:
        info = self.call("nvmlDeviceGetPciInfo", handle)
        return None if info is None else _text(info.busId)

    def device(self, index: int, handle: Any, bus_id: str | None) -> Device | None:
        nvml = self.nvml
        name = _text(nvml.nvmlDeviceGetName(handle))
        memory_gib = nvml.nvmlDeviceGetMemoryInfo(handle).total / GIB
        kind = kind_from_nvml_name(name, memory_gib)
        if kind is None:
            log.warning("GPU %d (%s) is not in the device catalogue; leaving it out", index, name)
            return None
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        mode = self.call("nvmlDeviceGetMigMode", handle)
        mig_enabled = bool(mode) and mode[0] == nvml.NVML_DEVICE_MIG_ENABLE
        instances = self.mig_instances(handle, kind) if mig_enabled else ()
        # The catalogue's memory is the nominal size; NVML's total is a little less (the
        # driver reserves some). Keep NVML's only when it differs by more than that.
        memory = None if abs(memory_gib - kind.memory_gib) < 0.1 * kind.memory_gib else memory_gib
        return Device(index, kind.name, uuid, self.numa(handle, bus_id), mig_enabled, memory,
                      instances)

    def numa(self, handle: Any, bus_id: str | None) -> int | None:
        # The PCI device's node is where its DMA lands: the cores that should feed it.
        key = _bus_key(bus_id) if bus_id else None
        if key is not None:
            path = self.sysfs / "bus" / "pci" / "devices" / (
                f"{key[0]:04x}:{key[1]:02x}:{key[2]:02x}.{key[3]}") / "numa_node"
            try:
                node = int(path.read_text().strip())
                if node >= 0:
                    return node
            except (OSError, ValueError):
                pass
        candidates: list[int] = []
        node = self.call("nvmlDeviceGetNumaNodeId", handle)
        if isinstance(node, int):
            candidates.append(node)
        words = self.call("nvmlDeviceGetMemoryAffinity", handle, 4,
                          getattr(self.nvml, "NVML_AFFINITY_SCOPE_NODE", 0))
        candidates += [w * 64 + bit for w, word in enumerate(words or ())
                       for bit in range(64) if int(word) >> bit & 1]
        for node in candidates:
            if node >= 0 and (not self.numa_nodes or node in self.numa_nodes):
                return node
        return None

    def mig_instances(self, handle: Any, kind: DeviceKind) -> tuple[MigInstance, ...]:
        found: dict[int, MigInstance] = {}  # GPU instance id -> instance (one per GI)
        taken = 0
        slots = self.call("nvmlDeviceGetMaxMigDeviceCount", handle) or 0
        for slot in range(slots):
            mig = self.call("nvmlDeviceGetMigDeviceHandleByIndex", handle, slot)
            if mig is None:
                continue  # an empty slot answers NOT_FOUND
            profile = self.mig_profile(mig, kind)
            if profile is None:
                continue
            gi_id = self.call("nvmlDeviceGetGpuInstanceId", mig)
            if gi_id is not None and gi_id in found:
                continue  # another compute instance of the same GPU instance
            start = self.mig_start(handle, gi_id)
            p = kind.mig_profile(profile)
            if start is None or start not in p.starts:
                # Placement unknown: assume the first start that is still free, which is
                # where NVIDIA puts an instance created without an explicit placement.
                start = next((s for s in p.starts
                              if not taken & (((1 << p.size) - 1) << s)), p.starts[0])
            taken |= ((1 << p.size) - 1) << start
            key = gi_id if gi_id is not None else -1 - slot
            found[key] = MigInstance(p.name, start, _text(self.nvml.nvmlDeviceGetUUID(mig)))
        return tuple(sorted(found.values(), key=lambda m: m.start))

    def mig_profile(self, mig: Any, kind: DeviceKind) -> str | None:
        name = self.call("nvmlDeviceGetName", mig)
        match = _MIG_NAME.search(_text(name)) if name is not None else None
        if match:
            label = f"{match.group(1)}g.{match.group(2)}gb"
            if any(p.name == label for p in kind.mig_profiles):
                return label
        attrs = self.call("nvmlDeviceGetAttributes", mig)
        if attrs is not None:
            memory = attrs.memorySizeMB / 1024
            fits = [p for p in kind.mig_profiles if p.compute == attrs.gpuInstanceSliceCount]
            if fits:
                return min(fits, key=lambda p: abs(p.memory_gib - memory)).name
        log.warning("a MIG instance of a %s has an unknown profile (%s); leaving it out",
                    kind.name, name)
        return None

    def mig_start(self, handle: Any, gi_id: int | None) -> int | None:
        if gi_id is None:
            return None
        gi = self.call("nvmlDeviceGetGpuInstanceById", handle, gi_id)
        info = self.call("nvmlGpuInstanceGetInfo", gi) if gi is not None else None
        return None if info is None else int(info.placement.start)

    def links(self, handles: list[Any], buses: list[str | None]
              ) -> tuple[tuple[Link, ...], ...]:
        nvml = self.nvml
        n = len(handles)
        remote = [self.nvlink_peers(h) for h in handles]
        keys = [_bus_key(b) if b else None for b in buses]
        nvlink_index = getattr(nvml, "NVML_P2P_CAPS_INDEX_NVLINK", 2)
        ok = getattr(nvml, "NVML_P2P_STATUS_OK", 0)
        matrix = [[Link.SELF if i == j else Link.SYS for j in range(n)] for i in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                # NVSwitch systems: an NVLink's far end is the switch, not the peer, so ask
                # NVML whether P2P goes over NVLink first; direct links are the fallback.
                p2p = self.call("nvmlDeviceGetP2PStatus", handles[i], handles[j], nvlink_index)
                if p2p == ok or (keys[j] is not None and keys[j] in remote[i]):
                    link = Link.NVLINK
                else:
                    level = self.call("nvmlDeviceGetTopologyCommonAncestor", handles[i],
                                      handles[j])
                    link = self.pcie_link(level)
                matrix[i][j] = matrix[j][i] = link
        return tuple(tuple(row) for row in matrix)

    def nvlink_peers(self, handle: Any) -> set[tuple[int, int, int, int]]:
        peers: set[tuple[int, int, int, int]] = set()
        for link in range(getattr(self.nvml, "NVML_NVLINK_MAX_LINKS", 18)):
            state = self.call("nvmlDeviceGetNvLinkState", handle, link)
            if state is None and link == 0:
                break  # no NVLink on this card at all
            if state != getattr(self.nvml, "NVML_FEATURE_ENABLED", 1):
                continue
            info = self.call("nvmlDeviceGetNvLinkRemotePciInfo", handle, link)
            key = _bus_key(_text(info.busId)) if info is not None else None
            if key is not None:
                peers.add(key)
        return peers

    def pcie_link(self, level: int | None) -> Link:
        nvml = self.nvml
        if level is None:
            return Link.SYS
        table = (
            (getattr(nvml, "NVML_TOPOLOGY_SINGLE", 10), Link.PIX),  # INTERNAL (0) too
            (getattr(nvml, "NVML_TOPOLOGY_MULTIPLE", 20), Link.PXB),
            (getattr(nvml, "NVML_TOPOLOGY_HOSTBRIDGE", 30), Link.NODE),
            (getattr(nvml, "NVML_TOPOLOGY_NODE", 40), Link.NODE),
        )
        for limit, link in table:
            if level <= limit:
                return link
        return Link.SYS
