"""Throughput profiles: measured samples/s per workload class and slice shape, or estimates."""

from slicebox.profiles.base import Estimate, PeakRateEstimator, ThroughputModel

__all__ = ["Estimate", "PeakRateEstimator", "ThroughputModel"]
