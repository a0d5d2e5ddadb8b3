"""Slice shapes the suite measures on: CPU core sets, whole GPUs, GPU shares, MIG instances.

Spelled on the command line as:

- ``cpu:N``         the first N cores this process may use (``cpu:1``, ``cpu:2``)
- ``cores:0,2-3``   exactly these cores
- ``gpu:I``         the whole GPU I
- ``gpu:I@F``       a fractional share of GPU I: memory capped at fraction F (``gpu:0@0.5``)
- ``mig:UUID``      one MIG instance (``CUDA_VISIBLE_DEVICES=UUID``)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from slicebox.pool.cpulist import parse_cpulist


@dataclass(frozen=True)
class SliceShape:
    name: str
    device: str = "cpu"  # as the child sees it: "cpu" or "cuda:N"
    cores: tuple[int, ...] | None = None  # None: whatever affinity the suite has
    memory_fraction: float | None = None
    visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES for the child (MIG)

    @property
    def is_gpu(self) -> bool:
        return self.device.startswith("cuda")

    @classmethod
    def cpu(cls, count: int) -> SliceShape:
        allowed = sorted(os.sched_getaffinity(0))
        if not 1 <= count <= len(allowed):
            raise ValueError(f"cpu:{count} asks for {count} cores; this process has {len(allowed)}")
        return cls(name=f"cpu-{count}c", cores=tuple(allowed[:count]))

    @classmethod
    def parse(cls, text: str) -> SliceShape:
        kind, _, rest = text.partition(":")
        try:
            if kind == "cpu":
                return cls.cpu(int(rest))
            if kind == "cores":
                cores = parse_cpulist(rest)  # sorted
                return cls(name=f"cores-{'_'.join(map(str, cores))}", cores=cores)
            if kind == "gpu":
                index, _, fraction = rest.partition("@")
                if not fraction:
                    return cls(name=f"gpu{int(index)}", device=f"cuda:{int(index)}")
                share = float(fraction)
                if not 0 < share <= 1:
                    raise ValueError(f"memory fraction must be in (0, 1], got {share}")
                return cls(
                    name=f"gpu{int(index)}@{share:g}",
                    device=f"cuda:{int(index)}",
                    memory_fraction=share,
                )
            if kind == "mig" and rest:
                # The child sees only the instance, as its device 0.
                return cls(name=f"mig-{rest[-12:]}", device="cuda:0", visible_devices=rest)
        except ValueError as exc:
            raise ValueError(f"bad slice {text!r}: {exc}") from None
        raise ValueError(
            f"bad slice {text!r}; use cpu:N, cores:0,1, gpu:I, gpu:I@FRACTION or mig:UUID"
        )


def default_cpu_slices() -> list[SliceShape]:
    """One core and every core this process has (just one slice on a 1-core box)."""
    count = len(os.sched_getaffinity(0))
    return [SliceShape.cpu(1)] + ([SliceShape.cpu(count)] if count > 1 else [])
