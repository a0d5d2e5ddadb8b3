"""Turn `slicebox bench` results into profile entries placement can use."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from slicebox.profiles.table import ProfileEntry

COTENANT_LIMIT = 0.25  # cores' worth of others' work above which a measurement is skipped

if TYPE_CHECKING:
    from slicebox.bench.results import BenchResult


def entries_from_bench(results: Sequence[BenchResult], gpu_kind: str | None = None,
                       now: float | None = None) -> list[ProfileEntry]:
    """One entry per measured cell. A CPU slice's size is its core count; a GPU slice's
    is its share of the card (1 whole, the memory fraction for a share)."""
    now = time.time() if now is None else now
    entries = []
    for r in results:
        if r.status != "ok" or not r.samples_per_s:
            continue  # "not supported here" and failures are not speeds
        if (r.cotenant_cores or 0) >= COTENANT_LIMIT:
            continue  # measured while other processes used the slice's cores: not its speed
        if r.device == "cpu":
            kind, size = "cpu", float(r.cores or 1)
        elif gpu_kind is not None:
            kind = gpu_kind
            size = _share(r.slice)
        else:
            continue  # a GPU we could not name: no kind to file it under
        entries.append(ProfileEntry(r.workload, kind, size, r.precision, r.samples_per_s,
                                    "bench", now))
    return entries


def _share(slice_name: str) -> float:
    _, _, fraction = slice_name.partition("@")
    return float(fraction) if fraction else 1.0
