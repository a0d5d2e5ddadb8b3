"""A stand-in for the ``pynvml`` module (nvidia-ml-py) that serves cards that are not here.

It answers the calls discovery makes with the same names, constants, return shapes and
exception class as the real binding (``tests/pool/test_fake_nvml.py`` holds it to that),
including the errors real drivers give: ``NOT_SUPPORTED`` for MIG or NVLink questions
on cards without them, ``NOT_FOUND`` for an empty MIG slot, ``UNINITIALIZED`` before
``nvmlInit``. Scenarios: :func:`dgx_h100`, :func:`a100_mig`, :func:`l4_pair`.
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


@dataclass(frozen=True)
class _Handle:
    card: int
    mig: int | None = None


class FakeNvml:
    """Behaves like ``import pynvml`` for the cards given."""

    def __init__(self, cards: list[FakeCard], *, nvswitch: bool = False,
                 p2p_status: bool = True, library: bool = True):
        self.cards = cards
        self.nvswitch = nvswitch  # all pairs talk NVLink through switches
        self.p2p_status = p2p_status  # False: driver answers NOT_SUPPORTED to P2P queries
        self.library = library  # False: as on a machine without the driver
        self.initialised = 0
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        # Constants and the exception class are module attributes in pynvml.
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

    def nvmlDeviceGetGpuInstanceById(self, handle: _Handle, gi_id: int) -> SimpleNamespace:
        card = self._card(handle)
        for mig in card.migs:
            if mig.gi_id == gi_id:
                return SimpleNamespace(mig=mig)
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlGpuInstanceGetInfo(self, gpu_instance: SimpleNamespace) -> SimpleNamespace:
        self._ready()
        mig: FakeMig = gpu_instance.mig
        return SimpleNamespace(id=mig.gi_id, profileId=0,
                               placement=SimpleNamespace(start=mig.start, size=mig.size))

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
                          label="1c.2g.20gb"),
                  FakeMig("2g.20gb", 0, 2, 2, 19968, _uuid("MIG", 3), gi_id=9,
                          label="1c.2g.20gb"),
                  FakeMig("1g.10gb", 2, 1, 1, 9856, _uuid("MIG", 4), gi_id=10)]
    card1 = FakeCard("NVIDIA A100-SXM4-80GB", 81920, _uuid("GPU", 101), b, numa=0, switch=0,
                     socket=0, mig_capable=True, mig_enabled=True, nvlinks=[a] * 12)
    card1.migs = [FakeMig("4g.40gb", 0, 4, 4, 40192, _uuid("MIG", 5), gi_id=2)]
    return FakeNvml([card0, card1], p2p_status=False)


def l4_pair() -> FakeNvml:
    """2x L4 on one PCIe switch, no NVLink, no MIG; NVML knows no NUMA node (sysfs does)."""
    cards = [FakeCard("NVIDIA L4", 23034, _uuid("GPU", 200 + i), f"00000000:{0x41 + i:02X}:00.0",
                      numa=None, switch=0, socket=1) for i in range(2)]
    return FakeNvml(cards)
