"""Fidelity mode: the configuration in which our simulator reproduces Gavel's own.

Gavel's published numbers (``../shared/traces/README.md``) come from its simulator
(stanford-futuredata/gavel, ``scripts/drivers/simulate_scheduler_with_trace.py``) run
with ``--cluster_spec 8:8:8 --num_gpus_per_server 1:1:1 --time_per_iteration 360
--seed 0 --throughputs_file simulation_throughputs.json --policy max_min_fairness``.
Read against its source (``scheduler/scheduler.py``), that run means:

- **Policy**: ``max_min_fairness`` is Gavel's heterogeneity-*agnostic*
  ``MaxMinFairnessPolicy`` (every throughput set to 1: each job's share of GPUs is
  equalised), not ``max_min_fairness_perf``. Our ``Gavel(heterogeneity_aware=False)``.
- **Mechanism**: 360 s rounds; time received per job and per GPU type; allocation
  recomputed on an arrival or completion at most every 1,920 s; greedy fill by type,
  the type order shuffled every round. Our ``Gavel(mechanism="gavel")``
  (``slicebox.policies.gavel_rounds``).
- **Throughputs**: a multi-GPU job runs at the *consolidated* steps/s of its type
  whatever servers its workers are on (the simulator never reads the
  ``*_unconsolidated`` tables), on any free workers of the type. Our pool below has one
  node per type holding all of its GPUs, which gives the same rate and the same "any
  free GPUs of the type" placement. (24 one-GPU nodes would make our engine credit the
  slower unconsolidated rate: about +20 % JCT.)
- **No restart or staging cost**: a simulated micro-task runs ``throughput x 360``
  steps from the round's start; nothing is charged for a move or a resume.

``compare()`` runs both traces and sets our average JCT beside Gavel's; ``python -m
slicebox.sim.fidelity`` prints that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from slicebox.policies.base import Policy
from slicebox.policies.gavel import Gavel
from slicebox.pool.files import parse_pool
from slicebox.pool.model import Pool
from slicebox.sim import traces
from slicebox.sim.api import simulate
from slicebox.sim.result import SimResult
from slicebox.sim.workloads import JobDefaults

ROUND_SECONDS = 360.0  # --time_per_iteration 360
SEED = 0  # --seed 0
# Gavel's simulator's average JCT (s) with the configuration above, policy
# max_min_fairness, on its physical-cluster traces (../shared/traces/README.md).
PUBLISHED_AVG_JCT = {"max_min_fairness.trace": 27808.0, "minimize_makespan.trace": 59944.0}
TOLERANCE = 0.10  # what "reproduces" means here: within +-10 % of each
# Nothing charged for a move or a resume; Gavel jobs keep their measured speed.
DEFAULTS = JobDefaults(restart_seconds=0.0, cpu_sensitivity=False)


def gavel_pool(v100: int = 8, p100: int = 8, k80: int = 8) -> Pool:
    """``--cluster_spec V:P:K``: one node per GPU type holding all of that type's GPUs
    (so a multi-GPU job gets the consolidated rate on any free GPUs of its type)."""
    nodes = [{"name": kind.lower(), "memory_gib": 64.0 * count, "cores": 8 * count,
              "gpus": [{"kind": kind, "count": count}]}
             for kind, count in (("V100", v100), ("P100", p100), ("K80", k80)) if count]
    if not nodes:
        raise ValueError("gavel_pool: needs at least one GPU")
    return parse_pool({"name": f"gavel-fidelity-{v100}-{p100}-{k80}", "nodes": nodes},
                      "gavel fidelity pool")


def gavel_policy(heterogeneity_aware: bool = False, seed: int = SEED) -> Gavel:
    """Gavel's ``max_min_fairness`` (or, aware, ``max_min_fairness_perf``) with its
    round mechanism. A fresh instance per run: the mechanism keeps a ledger."""
    return Gavel(heterogeneity_aware=heterogeneity_aware, mechanism="gavel", seed=seed)


def run(trace: str | os.PathLike[str], *, heterogeneity_aware: bool = False,
        seed: int = SEED, pool: Pool | None = None,
        policy: str | Policy | None = None) -> SimResult:
    """One trace in the fidelity configuration. ``trace``: a path, or the name of one
    of Gavel's traces (``max_min_fairness.trace``). ``policy``: another policy on the
    same pool and costs, in its own mode (event-driven, or 360 s rounds if periodic),
    to set beside Gavel's numbers; None: Gavel's ``max_min_fairness`` as published."""
    path = trace
    if isinstance(trace, str) and os.sep not in trace and not os.path.exists(trace):
        path = traces.trace_path(f"gavel/{trace}")
    if policy is None:
        return simulate(path, pool or gavel_pool(), gavel_policy(heterogeneity_aware, seed),
                        round_seconds=ROUND_SECONDS, staging=False, defaults=DEFAULTS)
    return simulate(path, pool or gavel_pool(), policy, staging=False, defaults=DEFAULTS)


@dataclass(frozen=True)
class FidelityRow:
    trace: str
    ours: float  # average JCT, s
    published: float

    @property
    def ratio(self) -> float:
        return self.ours / self.published

    @property
    def within(self) -> bool:
        return abs(self.ratio - 1.0) <= TOLERANCE


def compare(heterogeneity_aware: bool = False) -> list[FidelityRow]:
    """Our average JCT beside Gavel's published one, for each of its two traces."""
    return [FidelityRow(name, run(name, heterogeneity_aware=heterogeneity_aware)
                        .metrics.avg_jct, published)
            for name, published in PUBLISHED_AVG_JCT.items()]


def main() -> int:
    """``python -m slicebox.sim.fidelity``: the comparison, one line per trace."""
    rows = compare()
    for row in rows:
        print(f"{row.trace}: ours {row.ours:,.0f} s, Gavel's simulator {row.published:,.0f} s "
              f"({row.ratio:.3f}x, {'within' if row.within else 'OUTSIDE'} "
              f"±{TOLERANCE:.0%})")
    return 0 if all(row.within for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
