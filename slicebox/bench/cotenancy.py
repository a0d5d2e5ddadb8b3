"""How much CPU other processes took on a slice's cores while a benchmark ran.

A slice is only as exclusive as the host lets it be. On a shared box a 2-core slice
whose second core is busy with someone else's job runs many times slower (OpenMP
threads spin at every barrier waiting for the preempted one), and a profile built
from that run would mislead placement. The suite cannot prevent co-tenants, so it
measures them and says so next to the number.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# Fields of a /proc/stat cpu line that are work: user nice system (idle iowait) irq
# softirq steal. Steal counts: a hypervisor giving the core to another guest is a
# co-tenant too.
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def busy_seconds(cores: Iterable[int] | None = None) -> float | None:
    """CPU seconds spent working on ``cores`` (all cores when None) since boot."""
    try:
        lines = PROC_STAT.read_text().splitlines()
    except OSError:  # not Linux, or /proc not mounted: no measurement, not a guess
        return None
    wanted = {f"cpu{core}" for core in cores} if cores is not None else {"cpu"}
    ticks = 0
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            ticks += sum(int(fields[i]) for i in _BUSY_FIELDS if i < len(fields))
    return ticks / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CoTenancyMeter:
    """Start before launching a child, stop after waiting for it."""

    cores: tuple[int, ...] | None
    busy_start: float | None = None
    ours_start: float = 0.0

    def start(self) -> None:
        self.busy_start = busy_seconds(self.cores)
        self.ours_start = children_cpu_seconds() + own_cpu_seconds()

    def stop(self, wall_s: float) -> float | None:
        """Average number of cores' worth of work others did there; None if unknown."""
        busy_end = busy_seconds(self.cores)
        if self.busy_start is None or busy_end is None or wall_s <= 0:
            return None
        ours = children_cpu_seconds() + own_cpu_seconds() - self.ours_start
        # Our own CPU may have run on other cores than the slice's (the suite itself is
        # not pinned), so the difference can dip below zero; that is "none".
        return max(0.0, (busy_end - self.busy_start - ours) / wall_s)
