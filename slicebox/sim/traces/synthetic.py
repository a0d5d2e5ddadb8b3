"""A synthetic trace: Poisson arrivals, with the job mix drawn from a real trace.

Gavel and Tiresias evaluate on generated traces like this one; drawing the jobs from
a real trace keeps its mix of sizes, lengths and classes while the arrival rate sets
the load.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from slicebox.sim.traces import model


def synthesize(
    template: Sequence[model.TraceJob],
    *,
    rate: float,
    num_jobs: int,
    seed: int,
    id_prefix: str = "synth",
) -> list[model.TraceJob]:
    """`num_jobs` jobs arriving as a Poisson process of `rate` jobs per second.

    Each job is a copy of one drawn uniformly (with replacement) from `template`,
    with a new id (`<id_prefix>-<n>`) and arrival time; the first arrival comes one
    exponential gap after 0, as in a Poisson process. The same seed gives the same
    trace (numpy's PCG64 Generator).
    """
    if not template:
        raise ValueError("synthesize: the template trace has no jobs to draw from")
    if not (rate > 0 and np.isfinite(rate)):
        raise ValueError(f"synthesize: rate must be a positive number of jobs/s, got {rate!r}")
    if num_jobs < 0:
        raise ValueError(f"synthesize: num_jobs must be >= 0, got {num_jobs!r}")
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=num_jobs))
    picks = rng.integers(0, len(template), size=num_jobs)
    width = len(str(max(num_jobs - 1, 0)))
    return [
        dataclasses.replace(
            template[int(pick)], id=f"{id_prefix}-{index:0{width}d}", arrival=float(arrival)
        )
        for index, (pick, arrival) in enumerate(zip(picks, arrivals, strict=True))
    ]
