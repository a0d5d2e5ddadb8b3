"""How fast a workload class runs on a slice shape: the question placement and policies ask.

A measured profile answers; an unmeasured pair is estimated from the device kind's peak
rate for the job's precision and marked as an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from slicebox.pool.kinds import get_kind


@dataclass(frozen=True)
class Estimate:
    samples_per_s: float
    measured: bool
    source: str  # "measured", "estimated from peak rates", ...


class ThroughputModel(Protocol):
    def rate(self, workload: str, kind: str, gpus: float, precision: str = "fp32") -> Estimate:
        """Samples/s of ``workload`` on ``gpus`` devices (or cores, for ``cpu``) of ``kind``."""
        ...


class PeakRateEstimator:
    """Speed proportional to the kind's peak rate at the job's precision.

    The unit is arbitrary (TFLOPS, as samples/s of a 1-TFLOP-per-sample workload): only
    ratios between kinds mean anything, which is all a policy needs to rank them.
    """

    def rate(self, workload: str, kind: str, gpus: float, precision: str = "fp32") -> Estimate:
        device = get_kind(kind)
        peak = device.peak(precision) or device.peak("fp32") or 0.0
        return Estimate(peak * max(gpus, 0.0), False, "estimated from peak rates")
