"""The catalogue of device kinds Slicebox knows: memory, peak rates, sparsity, MIG geometry.

Peak rates are dense tensor/vector TFLOPS from the vendors' data sheets. They are only
used to *estimate* a workload's speed on a kind it has never been measured on; a
measured profile always wins (see ``slicebox.profiles``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8")


@dataclass(frozen=True)
class MigProfile:
    """One MIG GPU-instance profile and where it may start on the card.

    A card has ``memory_slices`` (8 on A100/H100/H200) memory slices and 7 compute
    slices. An instance occupies ``size`` consecutive memory slices starting at one of
    ``starts`` (NVIDIA's placement rules, as ``nvmlDeviceGetGpuInstancePossiblePlacements``
    reports them) and ``compute`` compute slices.
    """

    name: str
    compute: int
    memory_gib: float
    size: int
    starts: tuple[int, ...]

    @property
    def max_instances(self) -> int:
        return len(self.starts)


@dataclass(frozen=True)
class DeviceKind:
    name: str
    memory_gib: float
    peak_tflops: dict[str, float]
    sparsity_speedup: float = 1.0
    mig_profiles: tuple[MigProfile, ...] = ()
    is_gpu: bool = True
    aliases: tuple[str, ...] = field(default=())

    def peak(self, precision: str) -> float | None:
        """Peak TFLOPS for a precision, falling back the way frameworks do (tf32 -> fp32)."""
        if precision in self.peak_tflops:
            return self.peak_tflops[precision]
        if precision == "tf32":
            return self.peak_tflops.get("fp32")
        return None

    def mig_profile(self, name: str) -> MigProfile:
        for profile in self.mig_profiles:
            if profile.name == name:
                return profile
        valid = ", ".join(p.name for p in self.mig_profiles) or "none (this kind has no MIG)"
        raise KeyError(f"MIG profile {name!r} does not exist on {self.name}; valid: {valid}")

    @property
    def supports_mig(self) -> bool:
        return bool(self.mig_profiles)


def _mig(gib_per_slice: float, big: float) -> tuple[MigProfile, ...]:
    """The A100/H100/H200 MIG geometry, scaled by the memory of one memory slice."""
    one, two, four = gib_per_slice, gib_per_slice * 2, gib_per_slice * 4

    def label(compute: int, mem: float) -> str:
        return f"{compute}g.{math.floor(mem + 0.5)}gb"  # NVIDIA rounds half up: 3g.71gb

    return (
        MigProfile(label(1, one), 1, one, 1, (0, 1, 2, 3, 4, 5, 6)),
        MigProfile(label(1, two), 1, two, 2, (0, 2, 4, 6)),
        MigProfile(label(2, two), 2, two, 2, (0, 2, 4)),
        MigProfile(label(3, four), 3, four, 4, (0, 4)),
        MigProfile(label(4, four), 4, four, 4, (0,)),
        MigProfile(label(7, big), 7, big, 8, (0,)),
    )


_AMPERE_PLUS = 2.0  # 2:4 structured sparsity doubles tensor-core math on Ampere and later

CATALOGUE: tuple[DeviceKind, ...] = (
    DeviceKind("H100", 80, {"fp32": 67, "tf32": 494, "bf16": 989, "fp16": 989, "fp8": 1979,
                            "int8": 1979}, _AMPERE_PLUS, _mig(10, 80),
               aliases=("H100-SXM", "H100-80GB")),
    DeviceKind("H200", 141, {"fp32": 67, "tf32": 494, "bf16": 989, "fp16": 989, "fp8": 1979,
                             "int8": 1979}, _AMPERE_PLUS, _mig(17.625, 141)),
    DeviceKind("A100-80GB", 80, {"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312,
                                 "int8": 624}, _AMPERE_PLUS, _mig(10, 80)),
    DeviceKind("A100-40GB", 40, {"fp32": 19.5, "tf32": 156, "bf16": 312, "fp16": 312,
                                 "int8": 624}, _AMPERE_PLUS, _mig(5, 40), aliases=("A100", "dgx")),
    DeviceKind("L4", 24, {"fp32": 30.3, "tf32": 60, "bf16": 121, "fp16": 121, "fp8": 242,
                          "int8": 242}, _AMPERE_PLUS),
    DeviceKind("A10", 24, {"fp32": 31.2, "tf32": 62.5, "bf16": 125, "fp16": 125, "int8": 250},
               _AMPERE_PLUS),
    DeviceKind("T4", 16, {"fp32": 8.1, "fp16": 65, "int8": 130}, aliases=("aws",)),
    DeviceKind("V100-32GB", 32, {"fp32": 15.7, "fp16": 125}, aliases=("V100M32", "azure")),
    DeviceKind("V100", 16, {"fp32": 15.7, "fp16": 125}, aliases=("V100-16GB", "V100M16")),
    DeviceKind("P100", 16, {"fp32": 9.3, "fp16": 18.7}),
    DeviceKind("K80", 12, {"fp32": 2.9}),
    DeviceKind("RTX-2080Ti", 11, {"fp32": 13.4, "fp16": 53.8}, aliases=("rtx",)),
    DeviceKind("Quadro-RTX-6000", 24, {"fp32": 16.3, "fp16": 130.5}, aliases=("quad",)),
    # Alibaba's 2023 trace names two GPU models only by code; their rates are unpublished,
    # so they get mid-range Volta/Turing-class numbers and are never used for estimates
    # that a measurement could answer.
    DeviceKind("G2", 16, {"fp32": 10.0, "fp16": 60.0}),
    DeviceKind("G3", 32, {"fp32": 15.0, "fp16": 120.0}),
    # One CPU core. bf16 autocast on a core without AMX runs at about fp32 speed.
    DeviceKind("cpu", 0, {"fp32": 0.05, "bf16": 0.05}, is_gpu=False),
)

_BY_NAME: dict[str, DeviceKind] = {}
for _kind in CATALOGUE:
    for _name in (_kind.name, *_kind.aliases):
        _BY_NAME[_name.lower()] = _kind


def known_kinds() -> list[str]:
    return [k.name for k in CATALOGUE]


def get_kind(name: str) -> DeviceKind:
    """Look a kind up by name or alias, case-insensitively; unknown names list valid ones."""
    kind = _BY_NAME.get(name.strip().lower())
    if kind is None:
        raise KeyError(f"unknown device kind {name!r}; valid kinds: {', '.join(known_kinds())}")
    return kind


def kind_from_nvml_name(product_name: str, memory_gib: float) -> DeviceKind | None:
    """Map NVML's product name ("NVIDIA H100 80GB HBM3") onto a catalogue kind."""
    text = product_name.upper().replace("NVIDIA", "").replace("TESLA", "").strip()
    for token, name in (("H200", "H200"), ("H100", "H100"), ("L4", "L4"), ("A10", "A10"),
                        ("T4", "T4"), ("P100", "P100"), ("K80", "K80"),
                        ("2080 TI", "RTX-2080Ti"), ("RTX 6000", "Quadro-RTX-6000")):
        if token in text and not (token == "A10" and "A100" in text):
            return get_kind(name)
    if "A100" in text:
        return get_kind("A100-80GB" if memory_gib > 45 else "A100-40GB")
    if "V100" in text:
        return get_kind("V100-32GB" if memory_gib > 20 else "V100")
    return None
