"""Placement: turns a policy's decision into exact slices, cores, memory and data staging."""

from slicebox.placement.placer import Placer, dry_run
from slicebox.placement.round import PlacementRound
from slicebox.placement.staging import CacheEntry, DataCache
from slicebox.placement.state import AllocationError, PoolState
from slicebox.pool.composition import Composition, NoFit, Part, Plan, Staging

__all__ = ["AllocationError", "CacheEntry", "Composition", "DataCache", "NoFit", "Part",
           "PlacementRound", "Placer", "Plan", "PoolState", "Staging", "dry_run"]
