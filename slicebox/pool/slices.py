"""A slice: the share of one device a job gets (whole card, MIG instance, or a fraction)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SliceType(StrEnum):
    """How a slice uses its device. (Not ``bench.slices.SliceShape``, a benchmark's
    resource spelling; and not ``Slice.kind``, the device model.)"""

    WHOLE = "whole"
    MIG = "mig"
    FRACTION = "fraction"


@dataclass(frozen=True)
class Slice:
    node: str
    device: int  # index of the device on its node
    kind: str
    shape: SliceType
    compute: float  # share of the card's compute: 1.0 whole, 3/7 for 3g.*, the fraction
    memory_gib: float  # memory the job may use on the card (a cap for a fraction)
    uuid: str  # what goes in CUDA_VISIBLE_DEVICES: GPU-… or MIG-… (planned MIG: placeholder)
    mig_profile: str | None = None
    mig_start: int | None = None

    def describe(self) -> str:
        if self.shape is SliceType.WHOLE:
            return f"{self.node}/gpu{self.device} ({self.kind})"
        if self.shape is SliceType.MIG:
            return f"{self.node}/gpu{self.device} MIG {self.mig_profile}@{self.mig_start}"
        return (f"{self.node}/gpu{self.device} {self.compute:.0%} share, "
                f"{self.memory_gib:g} GiB cap ({self.kind})")
