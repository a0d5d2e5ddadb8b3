"""A stand-in for the ``pynvml`` module (nvidia-ml-py) that serves cards that are not here.

It answers the calls discovery makes with the same names, constants, return shapes and
exception class as the real binding (``tests/pool/test_fake_nvml.py`` holds it to that),
including the errors real drivers give: ``NOT_SUPPORTED`` for MIG or NVLink questions
on cards without them, ``NOT_FOUND`` for an empty MIG slot, ``UNINITIALIZED`` before
``nvmlInit``. Scenarios: :func:`dgx_h100`, :func:`a100_mig`, :func:`a100_relayout`,
:func:`l4_pair`.

MIG reconfiguration: GPU and compute instances are created and destroyed by the same calls
as on a real card (``nvmlDeviceCreateGpuInstanceWithPlacement`` …), checked by NVIDIA's
placement rules (written out here from NVIDIA's MIG user guide, not taken from Slicebox's
catalogue, so a mistake in one is not repeated in the other). Each call that changes a card
is recorded in ``FakeNvml.mig_calls``; ``FakeCard.processes`` marks MIG devices with a
process on them (destroying their instances fails with ``NVML_ERROR_IN_USE``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

# Constants, with the values pynvml gives them.
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_IN_USE = 19
NVML_ERROR_INSUFFICIENT_RESOURCES = 23
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
NVML_NVLINK_MAX_LINKS = 36
NVML_TOPOLOGY_INTERNAL = 0
NVML_TOPOLOGY_SINGLE = 10
NVML_TOPOLOGY_MULTIPLE = 20
NVML_TOPOLOGY_HOSTBRIDGE = 30
NVML_TOPOLOGY_NODE = 40
NVML_TOPOLOGY_SYSTEM = 50
NVML_P2P_CAPS_INDEX_NVLINK = 2
NVML_P2P_STATUS_OK = 0
NVML_P2P_STATUS_NOT_SUPPORTED = 5
NVML_AFFINITY_SCOPE_NODE = 0
NVML_GPU_INSTANCE_PROFILE_1_SLICE = 0x0
NVML_GPU_INSTANCE_PROFILE_2_SLICE = 0x1
NVML_GPU_INSTANCE_PROFILE_3_SLICE = 0x2
NVML_GPU_INSTANCE_PROFILE_4_SLICE = 0x3
NVML_GPU_INSTANCE_PROFILE_7_SLICE = 0x4
NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2 = 0x9
NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE = 0x0
NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE = 0x1
NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE = 0x2
NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE = 0x3
NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE = 0x4
NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED = 0x0

# GPU-instance profiles of an A100/H100/H200: constant -> (the profile id NVML's profile
# info reports, as ``nvidia-smi mig -lgip`` lists it; compute slices; memory slices;
# allowed starts). The id differs from the constant, as on real cards.
_GI_PROFILES = {
    NVML_GPU_INSTANCE_PROFILE_1_SLICE: (19, 1, 1, (0, 1, 2, 3, 4, 5, 6)),
    NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2: (15, 1, 2, (0, 2, 4, 6)),
    NVML_GPU_INSTANCE_PROFILE_2_SLICE: (14, 2, 2, (0, 2, 4)),
    NVML_GPU_INSTANCE_PROFILE_3_SLICE: (9, 3, 4, (0, 4)),
    NVML_GPU_INSTANCE_PROFILE_4_SLICE: (5, 4, 4, (0,)),
    NVML_GPU_INSTANCE_PROFILE_7_SLICE: (0, 7, 8, (0,)),
}
_CI_SLICES = {NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE: 1, NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE: 2,
              NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE: 3, NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE: 4,
              NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE: 7}
_MEMORY_SLICES = 8
_COMPUTE_SLICES = 7
_MAX_GPU_INSTANCE_ID = 14  # ids NVML gives GPU instances on these cards: 1..14

_MESSAGES = {NVML_ERROR_UNINITIALIZED: "Uninitialized",
             NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
             NVML_ERROR_NOT_SUPPORTED: "Not Supported", NVML_ERROR_NOT_FOUND: "Not Found",
             NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found"}
_MIB = 1 << 20


class NVMLError(Exception):
    """Like pynvml's: carries the NVML return code in ``value``."""

    def __init__(self, value: int):
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


@dataclass
class FakeMig:
    profile: str  # "3g.40gb"
    start: int
    size: int  # memory slices
    compute: int  # GPU-instance slice count, what nvmlDeviceGetAttributes reports
    memory_mb: int
    uuid: str
    gi_id: int
    label: str | None = None  # name of a compute instance inside the GI: "1c.2g.20gb"
    ci_id: int = 0  # the compute instance's id inside its GPU instance
    ci_compute: int | None = None  # the compute instance's slices; None: the whole GI


@dataclass
class FakeCard:
    name: str  # what nvmlDeviceGetName says, e.g. "NVIDIA H100 80GB HBM3"
    memory_mb: int
    uuid: str
    bus_id: str  # "00000000:18:00.0"
    numa: int | None  # what nvmlDeviceGetNumaNodeId says; None: NOT_SUPPORTED
    switch: int  # PCIe switch id: equal ids meet at one switch (NVML_TOPOLOGY_SINGLE)
    socket: int
    mig_capable: bool = False
    mig_enabled: bool = False
    migs: list[FakeMig] = field(default_factory=list)
    nvlinks: list[str] = field(default_factory=list)  # bus id at the far end of each link
    empty_gis: list[FakeMig] = field(default_factory=list)  # GPU instances without a CI
    processes: dict[str, list[int]] = field(default_factory=dict)  # MIG uuid -> pids on it


@dataclass(frozen=True)
class _Handle:
    card: int
    mig: int | None = None


@dataclass(frozen=True)
class _GpuInstance:
    card: int
    gi_id: int


@dataclass(frozen=True)
class _ComputeInstance:
    card: int
    gi_id: int
    ci_id: int


class c_nvmlGpuInstancePlacement_t:
    """pynvml's placement structure: ``start`` and ``size`` in memory slices."""

    def __init__(self, start: int = 0, size: int = 0):
        self.start = start
        self.size = size


_STRUCTS = {"c_nvmlGpuInstancePlacement_t": c_nvmlGpuInstancePlacement_t}


class FakeNvml:
    """Behaves like ``import pynvml`` for the cards given."""

    def __init__(self, cards: list[FakeCard], *, nvswitch: bool = False,
                 p2p_status: bool = True, library: bool = True):
        self.cards = cards
        self.nvswitch = nvswitch  # all pairs talk NVLink through switches
        self.p2p_status = p2p_status  # False: driver answers NOT_SUPPORTED to P2P queries
        self.library = library  # False: as on a machine without the driver
        self.initialised = 0
        self._serial = 0  # numbers the uuids of created MIG devices
        self.calls: list[str] = []
        # (call, card index, "profile@start") for every call that changed a MIG layout
        self.mig_calls: list[tuple[str, int, str]] = []

    def __getattr__(self, name: str) -> Any:
        # Constants, structures and the exception class are module attributes in pynvml.
        if name in _STRUCTS:
            return _STRUCTS[name]
        value = globals().get(name)
        if value is None or not (name.startswith("NVML_") or name == "NVMLError"):
            raise AttributeError(name)
        return value

    # -- life cycle ----------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if not self.library:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._ready()
        self.initialised -= 1

    def _ready(self) -> None:
        if not self.initialised:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _card(self, handle: _Handle) -> FakeCard:
        self._ready()
        return self.cards[handle.card]

    def _mig(self, handle: _Handle) -> FakeMig:
        card = self._card(handle)
        if handle.mig is None:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return card.migs[handle.mig]

    # -- devices -------------------------------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:
        self._ready()
        return len(self.cards)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._ready()
        if not 0 <= index < len(self.cards):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(index)

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        card = self._card(handle)
        if handle.mig is not None:
            mig = card.migs[handle.mig]
            return f"{card.name} MIG {mig.label or mig.profile}"
        return card.name

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        card = self._card(handle)
        return card.uuid if handle.mig is None else card.migs[handle.mig].uuid

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle, version: Any = None) -> SimpleNamespace:
        card = self._card(handle)
        total = (card.memory_mb if handle.mig is None else card.migs[handle.mig].memory_mb) * _MIB
        return SimpleNamespace(total=total, free=total, used=0)

    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> SimpleNamespace:
        card = self._card(handle)
        return SimpleNamespace(busId=card.bus_id, busIdLegacy=card.bus_id[4:])

    def nvmlDeviceGetNumaNodeId(self, handle: _Handle) -> int:
        card = self._card(handle)
        if card.numa is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return card.numa

    def nvmlDeviceGetMemoryAffinity(self, handle: _Handle, node_set_size: int,
                                    scope: int) -> list[int]:
        card = self._card(handle)
        words = [0] * node_set_size
        if card.numa is not None:
            words[card.numa // 64] |= 1 << (card.numa % 64)
        return words

    # -- MIG -----------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, handle: _Handle) -> list[int]:
        card = self._card(handle)
        if not card.mig_capable:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        mode = NVML_DEVICE_MIG_ENABLE if card.mig_enabled else NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: _Handle) -> int:
        card = self._card(handle)
        if not card.mig_capable:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: _Handle, index: int) -> _Handle:
        card = self._card(handle)
        if not card.mig_enabled:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if not 0 <= index < len(card.migs):
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return _Handle(handle.card, index)

    def nvmlDeviceGetGpuInstanceId(self, handle: _Handle) -> int:
        return self._mig(handle).gi_id

    def nvmlDeviceGetGpuInstanceById(self, handle: _Handle, gi_id: int) -> _GpuInstance:
        card = self._card(handle)
        if not card.mig_enabled:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= gi_id <= _MAX_GPU_INSTANCE_ID:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if _gpu_instance(card, gi_id) is None:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return _GpuInstance(handle.card, gi_id)

    def _gi(self, gpu_instance: _GpuInstance) -> tuple[FakeCard, FakeMig]:
        self._ready()
        if not isinstance(gpu_instance, _GpuInstance):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        card = self.cards[gpu_instance.card]
        gi = _gpu_instance(card, gpu_instance.gi_id)
        if gi is None:  # a handle to an instance destroyed since
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return card, gi

    def nvmlGpuInstanceGetInfo(self, gpuInstance: _GpuInstance) -> SimpleNamespace:
        _, gi = self._gi(gpuInstance)
        profile_id = next(pid for pid, c, size, _ in _GI_PROFILES.values()
                          if (c, size) == (gi.compute, gi.size))
        return SimpleNamespace(device=_Handle(gpuInstance.card), id=gi.gi_id,
                               profileId=profile_id,
                               placement=SimpleNamespace(start=gi.start, size=gi.size))

    def nvmlDeviceGetGpuInstanceProfileInfo(self, device: _Handle, profile: int,
                                            version: int = 2) -> SimpleNamespace:
        card = self._card(device)
        if not card.mig_capable or profile not in _GI_PROFILES:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        pid, compute, size, starts = _GI_PROFILES[profile]
        return SimpleNamespace(id=pid, isP2pSupported=0, sliceCount=compute,
                               instanceCount=len(starts), multiprocessorCount=14 * compute,
                               memorySizeMB=card.memory_mb * size // _MEMORY_SLICES,
                               name=_profile_name(card, compute, size))

    def nvmlDeviceCreateGpuInstanceWithPlacement(self, device: _Handle, profileId: int,
                                                 placement: Any) -> _GpuInstance:
        card = self._card(device)
        if not card.mig_enabled:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        known = {pid: (c, size, starts) for pid, c, size, starts in _GI_PROFILES.values()}
        if profileId not in known:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        compute, size, starts = known[profileId]
        start = int(placement.start)
        if int(placement.size) != size or start not in starts:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gis = _gpu_instances(card)
        mask = ((1 << size) - 1) << start
        taken = 0
        for gi in gis:
            taken |= ((1 << gi.size) - 1) << gi.start
        if taken & mask or sum(g.compute for g in gis) + compute > _COMPUTE_SLICES:
            raise NVMLError(NVML_ERROR_INSUFFICIENT_RESOURCES)
        gi_id = min(set(range(1, _MAX_GPU_INSTANCE_ID + 1)) - {g.gi_id for g in gis})
        memory = card.memory_mb * size // _MEMORY_SLICES
        new = FakeMig(_profile_name(card, compute, size), start, size, compute, memory,
                      uuid="", gi_id=gi_id)
        card.empty_gis.append(new)
        self.mig_calls.append(("nvmlDeviceCreateGpuInstanceWithPlacement", device.card,
                               f"{new.profile}@{start}"))
        return _GpuInstance(device.card, gi_id)

    def nvmlGpuInstanceDestroy(self, gpuInstance: _GpuInstance) -> int:
        card, gi = self._gi(gpuInstance)
        if any(m.gi_id == gi.gi_id for m in card.migs):
            raise NVMLError(NVML_ERROR_IN_USE)  # compute instances are left in it
        card.empty_gis.remove(gi)
        self.mig_calls.append(("nvmlGpuInstanceDestroy", gpuInstance.card,
                               f"{gi.profile}@{gi.start}"))
        return NVML_SUCCESS

    def nvmlGpuInstanceGetComputeInstanceProfileInfo(self, device: _GpuInstance, profile: int,
                                                     engProfile: int,
                                                     version: int = 2) -> SimpleNamespace:
        _, gi = self._gi(device)
        slices = _CI_SLICES.get(profile)
        if slices is None or slices > gi.compute or \
                engProfile != NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(id=profile, sliceCount=slices,
                               instanceCount=gi.compute // slices,
                               multiprocessorCount=14 * slices)

    def nvmlGpuInstanceCreateComputeInstance(self, gpuInstance: _GpuInstance,
                                             profileId: int) -> _ComputeInstance:
        card, gi = self._gi(gpuInstance)
        slices = _CI_SLICES.get(profileId)
        if slices is None or slices > gi.compute:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        inside = [m for m in card.migs if m.gi_id == gi.gi_id]
        if sum(m.ci_compute or m.compute for m in inside) + slices > gi.compute:
            raise NVMLError(NVML_ERROR_INSUFFICIENT_RESOURCES)
        ci_id = min(set(range(8)) - {m.ci_id for m in inside})
        label = None if slices == gi.compute else f"{slices}c.{gi.profile}"
        self._serial += 1
        card.migs.append(FakeMig(gi.profile, gi.start, gi.size, gi.compute, gi.memory_mb,
                                 _uuid("MIG", 0xFA00 + self._serial), gi.gi_id, label, ci_id,
                                 None if slices == gi.compute else slices))
        if gi in card.empty_gis:
            card.empty_gis.remove(gi)
        self.mig_calls.append(("nvmlGpuInstanceCreateComputeInstance", gpuInstance.card,
                               f"{gi.profile}@{gi.start}"))
        return _ComputeInstance(gpuInstance.card, gi.gi_id, ci_id)

    def nvmlGpuInstanceGetComputeInstanceById(self, gpuInstance: _GpuInstance,
                                              computeInstanceId: int) -> _ComputeInstance:
        card, gi = self._gi(gpuInstance)
        if not any(m.gi_id == gi.gi_id and m.ci_id == computeInstanceId for m in card.migs):
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        return _ComputeInstance(gpuInstance.card, gi.gi_id, computeInstanceId)

    def nvmlComputeInstanceDestroy(self, computeInstance: _ComputeInstance) -> int:
        self._ready()
        card = self.cards[computeInstance.card]
        found = [m for m in card.migs if (m.gi_id, m.ci_id) ==
                 (computeInstance.gi_id, computeInstance.ci_id)]
        if not found:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        mig = found[0]
        if card.processes.get(mig.uuid):
            raise NVMLError(NVML_ERROR_IN_USE)
        card.migs.remove(mig)
        if not any(m.gi_id == mig.gi_id for m in card.migs):  # the GI stays, empty
            card.empty_gis.append(FakeMig(mig.profile, mig.start, mig.size, mig.compute,
                                          mig.memory_mb, "", mig.gi_id))
        self.mig_calls.append(("nvmlComputeInstanceDestroy", computeInstance.card,
                               f"{mig.profile}@{mig.start}"))
        return NVML_SUCCESS

    def nvmlDeviceGetComputeInstanceId(self, device: _Handle) -> int:
        return self._mig(device).ci_id

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[SimpleNamespace]:
        card = self._card(handle)
        migs = card.migs if handle.mig is None else [card.migs[handle.mig]]
        return [SimpleNamespace(pid=pid, usedGpuMemory=1 << 30, gpuInstanceId=m.gi_id,
                                computeInstanceId=m.ci_id)
                for m in migs for pid in card.processes.get(m.uuid, ())]

    def nvmlDeviceGetAttributes(self, handle: _Handle) -> SimpleNamespace:
        mig = self._mig(handle)
        return SimpleNamespace(gpuInstanceSliceCount=mig.compute,
                               computeInstanceSliceCount=mig.compute,
                               memorySizeMB=mig.memory_mb, multiprocessorCount=14 * mig.compute)

    # -- topology ------------------------------------------------------------------------
    def nvmlDeviceGetTopologyCommonAncestor(self, a: _Handle, b: _Handle) -> int:
        x, y = self._card(a), self._card(b)
        if a.card == b.card:
            return NVML_TOPOLOGY_INTERNAL
        if x.switch == y.switch:
            return NVML_TOPOLOGY_SINGLE
        if x.socket == y.socket:
            return NVML_TOPOLOGY_HOSTBRIDGE
        return NVML_TOPOLOGY_SYSTEM

    def nvmlDeviceGetP2PStatus(self, a: _Handle, b: _Handle, index: int) -> int:
        x, y = self._card(a), self._card(b)
        if not self.p2p_status:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if index != NVML_P2P_CAPS_INDEX_NVLINK:
            return NVML_P2P_STATUS_OK
        direct = y.bus_id in x.nvlinks
        return NVML_P2P_STATUS_OK if (self.nvswitch and x.nvlinks) or direct \
            else NVML_P2P_STATUS_NOT_SUPPORTED

    def nvmlDeviceGetNvLinkState(self, handle: _Handle, link: int) -> int:
        card = self._card(handle)
        if not card.nvlinks:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= link < NVML_NVLINK_MAX_LINKS or link >= len(card.nvlinks):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return NVML_FEATURE_ENABLED

    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle: _Handle, link: int) -> SimpleNamespace:
        card = self._card(handle)
        if not 0 <= link < len(card.nvlinks):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return SimpleNamespace(busId=card.nvlinks[link])


def _gpu_instances(card: FakeCard) -> list[FakeMig]:
    """One record per GPU instance: its first compute instance, or the empty GI."""
    seen: dict[int, FakeMig] = {}
    for mig in [*card.migs, *card.empty_gis]:
        seen.setdefault(mig.gi_id, mig)
    return list(seen.values())


def _gpu_instance(card: FakeCard, gi_id: int) -> FakeMig | None:
    return next((g for g in _gpu_instances(card) if g.gi_id == gi_id), None)


def _profile_name(card: FakeCard, compute: int, size: int) -> str:
    return f"{compute}g.{round(card.memory_mb / 1024 * size / _MEMORY_SLICES)}gb"


def _uuid(prefix: str, n: int) -> str:
    return f"{prefix}-{n:08x}-1111-2222-3333-{n:012x}"


def dgx_h100() -> FakeNvml:
    """8x H100 SXM on NVSwitch; GPUs 0-3 on NUMA 0, 4-7 on NUMA 1; NVLinks end at switches."""
    buses = ["18", "2A", "3A", "5D", "9A", "AB", "BA", "DB"]
    switches = [f"00000000:{0xC0 + s:02X}:00.0" for s in range(4)]
    cards = [FakeCard("NVIDIA H100 80GB HBM3", 81559, _uuid("GPU", i),
                      f"00000000:{bus}:00.0", numa=i // 4, switch=i // 2, socket=i // 4,
                      mig_capable=True, nvlinks=[switches[k % 4] for k in range(18)])
             for i, bus in enumerate(buses)]
    return FakeNvml(cards, nvswitch=True)


def a100_mig() -> FakeNvml:
    """2x A100-80GB SXM with MIG on; direct NVLinks between them; the driver does not
    answer P2P queries, so NVLink must be read from the links' far ends.

    Card 0 holds 2g.20gb@0 (split into two compute instances, so two MIG devices),
    1g.10gb@2 and 3g.40gb@4; card 1 holds 4g.40gb@0.
    """
    a = "00000000:07:00.0"
    b = "00000000:0F:00.0"
    card0 = FakeCard("NVIDIA A100-SXM4-80GB", 81920, _uuid("GPU", 100), a, numa=0, switch=0,
                     socket=0, mig_capable=True, mig_enabled=True, nvlinks=[b] * 12)
    card0.migs = [FakeMig("3g.40gb", 4, 4, 3, 40192, _uuid("MIG", 1), gi_id=1),
                  FakeMig("2g.20gb", 0, 2, 2, 19968, _uuid("MIG", 2), gi_id=9,
                          label="1c.2g.20gb", ci_compute=1),
                  FakeMig("2g.20gb", 0, 2, 2, 19968, _uuid("MIG", 3), gi_id=9,
                          label="1c.2g.20gb", ci_id=1, ci_compute=1),
                  FakeMig("1g.10gb", 2, 1, 1, 9856, _uuid("MIG", 4), gi_id=10)]
    card1 = FakeCard("NVIDIA A100-SXM4-80GB", 81920, _uuid("GPU", 101), b, numa=0, switch=0,
                     socket=0, mig_capable=True, mig_enabled=True, nvlinks=[a] * 12)
    card1.migs = [FakeMig("4g.40gb", 0, 4, 4, 40192, _uuid("MIG", 5), gi_id=2)]
    return FakeNvml([card0, card1], p2p_status=False)


def a100_relayout() -> FakeNvml:
    """One A100-80GB with MIG on, laid out as 4g.40gb@0 + 3g.40gb@4 (one compute instance
    each): the card of ``examples/pools/a100-mig.yaml``."""
    card = FakeCard("NVIDIA A100-SXM4-80GB", 81920, _uuid("GPU", 300), "00000000:07:00.0",
                    numa=0, switch=0, socket=0, mig_capable=True, mig_enabled=True)
    card.migs = [FakeMig("4g.40gb", 0, 4, 4, 40192, _uuid("MIG", 30), gi_id=1),
                 FakeMig("3g.40gb", 4, 4, 3, 40192, _uuid("MIG", 31), gi_id=2)]
    return FakeNvml([card])


def l4_pair() -> FakeNvml:
    """2x L4 on one PCIe switch, no NVLink, no MIG; NVML knows no NUMA node (sysfs does)."""
    cards = [FakeCard("NVIDIA L4", 23034, _uuid("GPU", 200 + i), f"00000000:{0x41 + i:02X}:00.0",
                      numa=None, switch=0, socket=1) for i in range(2)]
    return FakeNvml(cards)
