"""The throughput table: measured samples/s per (workload, kind, size, precision).

Answers in order of trust:
1. a measurement of exactly this shape;
2. a measurement of the same workload and kind at another size, scaled linearly
   (optimistic for multi-GPU, but ranks kinds correctly, which is what placement needs);
3. a measurement of the same workload on another kind, scaled by the two kinds' peak
   rates at the job's precision;
4. the peak-rate estimate.
Anything but (1) is marked as an estimate.

Measurements come from ``slicebox bench``, from profile files, and from running jobs'
reported progress (``refine``), which moves an entry towards what jobs really achieve.
A bench entry is never moved by a job: bench times training alone, on a quiet slice, the
same way for every size, while a job's rate also holds its evaluations and start-up.
Mixing the two would make a size a job ran at look slower than a size only bench measured,
and an elastic policy would then resize for a gain nobody measured.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from slicebox.pool.kinds import get_kind
from slicebox.profiles.base import Estimate, PeakRateEstimator

# Weight of one job's observation when refining a measured entry: small enough that one
# slow run on a busy node does not undo a benchmark, large enough to converge in a few runs.
REFINE_WEIGHT = 0.3


@dataclass(frozen=True)
class ProfileEntry:
    workload: str
    kind: str  # device kind name; "cpu" for cores
    size: float  # GPUs (a fraction or MIG share below 1) or cores for "cpu"
    precision: str
    samples_per_s: float
    source: str  # "bench", "file", "job"
    updated_at: float = 0.0
    observations: int = 1

    @property
    def key(self) -> tuple[str, str, float, str]:
        return (self.workload, self.kind, round(self.size, 4), self.precision)


def _peak(kind: str, precision: str) -> float:
    device = get_kind(kind)
    return device.peak(precision) or device.peak("fp32") or 0.0


class ProfileTable:
    """A ThroughputModel backed by measurements, falling back to peak-rate estimates."""

    def __init__(self, entries: list[ProfileEntry] | None = None) -> None:
        self._entries: dict[tuple[str, str, float, str], ProfileEntry] = {}
        self._fallback = PeakRateEstimator()
        for entry in entries or []:
            self.put(entry)

    def put(self, entry: ProfileEntry) -> None:
        canonical = replace(entry, kind=get_kind(entry.kind).name)
        self._entries[canonical.key] = canonical

    def entries(self) -> list[ProfileEntry]:
        return sorted(self._entries.values(), key=lambda e: e.key)

    def rate(self, workload: str, kind: str, gpus: float, precision: str = "fp32") -> Estimate:
        kind = get_kind(kind).name
        exact = self._entries.get((workload, kind, round(gpus, 4), precision))
        if exact is not None:
            return Estimate(exact.samples_per_s, True, f"measured ({exact.source})")
        same_workload = [e for e in self._entries.values()
                         if e.workload == workload and e.precision == precision]
        same_kind = [e for e in same_workload if e.kind == kind]
        if same_kind:
            ref = min(same_kind, key=lambda e: abs(e.size - gpus))
            return Estimate(ref.samples_per_s * gpus / ref.size, False,
                            f"scaled from {ref.size:g} measured")
        if same_workload:
            ref = max(same_workload, key=lambda e: e.observations)
            ref_peak = _peak(ref.kind, precision) * ref.size
            if ref_peak > 0:
                factor = _peak(kind, precision) * gpus / ref_peak
                return Estimate(ref.samples_per_s * factor, False,
                                f"scaled by peak rate from {ref.kind}")
        return self._fallback.rate(workload, kind, gpus, precision)

    def refine(self, workload: str, kind: str, size: float, precision: str,
               observed_samples_per_s: float, now: float | None = None) -> ProfileEntry:
        """Fold a running job's observed throughput into the table."""
        now = time.time() if now is None else now
        kind = get_kind(kind).name
        key = (workload, kind, round(size, 4), precision)
        old = self._entries.get(key)
        if old is not None and old.source == "bench":
            return old  # comparable with the other bench sizes only as measured (see above)
        if old is None:
            entry = ProfileEntry(workload, kind, size, precision, observed_samples_per_s,
                                 "job", now)
        else:
            rate = (1 - REFINE_WEIGHT) * old.samples_per_s + REFINE_WEIGHT * observed_samples_per_s
            entry = replace(old, samples_per_s=rate, updated_at=now,
                            observations=old.observations + 1)
        self._entries[key] = entry
        return entry

    def to_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(e) for e in self.entries()], indent=1))
        tmp.replace(path)

    @classmethod
    def from_json(cls, path: Path) -> ProfileTable:
        """Load a profile file; every entry is validated and a bad one is named."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read profiles: {exc}") from None
        if not isinstance(raw, list):
            raise ValueError(f"{path}: expected a list of profile entries")
        entries = []
        for i, item in enumerate(raw):
            try:
                entry = ProfileEntry(**item)
                get_kind(entry.kind)
                if entry.samples_per_s < 0 or entry.size <= 0:
                    raise ValueError("samples_per_s must be >= 0 and size > 0")
            except (TypeError, KeyError, ValueError) as exc:
                raise ValueError(f"{path}: entry {i}: {exc}") from None
            entries.append(entry)
        return cls(entries)
