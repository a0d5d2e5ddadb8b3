"""``simulate(...)``: one call from a trace, a pool and a policy name to a ``SimResult``.

This is what ``slicebox simulate`` calls::

    result = simulate("data/traces/pollux-workloads/philly-workload-1.csv", "sia-64",
                      "slicebox", progress=lambda done, total, t: bar.update(done))
    result.metrics.avg_jct          # seconds
    report.write(result, "reports/run-1")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

from slicebox import policies
from slicebox.policies.base import Policy
from slicebox.pool.model import Pool
from slicebox.sim import pools
from slicebox.sim.engine import DEFAULT_ROUND_SECONDS, Engine, EngineOptions, ProgressCallback
from slicebox.sim.job import SimJob
from slicebox.sim.result import SimResult
from slicebox.sim.speed import SpeedBook
from slicebox.sim.traces import read_trace
from slicebox.sim.traces.model import TraceJob
from slicebox.sim.workloads import JobDefaults, build_jobs

TraceInput = str | os.PathLike[str] | Sequence[TraceJob] | Sequence[SimJob]


def make_speeds(pool: Pool, cpu_sensitivity: bool = True) -> SpeedBook:
    """A speed book whose reference kind is the pool's most numerous GPU kind."""
    counts = pool.gpu_counts()
    kinds = sorted(counts, key=lambda k: (-counts[k], k))
    return SpeedBook(kinds, cpu_sensitivity=cpu_sensitivity)


def load_jobs(trace: TraceInput, pool: Pool, speeds: SpeedBook, *,
              trace_format: str | None = None, skip_bad_lines: bool = False,
              defaults: JobDefaults | None = None, elastic: bool = False
              ) -> tuple[list[SimJob], str, int]:
    """Simulated jobs from a trace file or records: (jobs, trace name, skipped lines).
    ``elastic``: Pollux/Sia jobs elastic (unless ``defaults.elastic`` says otherwise)."""
    defaults = defaults or JobDefaults()
    if isinstance(trace, str | os.PathLike):
        read = read_trace(trace, trace_format, skip_bad_lines=skip_bad_lines)
        return (build_jobs(read.jobs, pool, speeds, defaults, elastic), os.fspath(trace),
                read.skipped)
    records = list(trace)
    if records and isinstance(records[0], SimJob):
        return [r for r in records if isinstance(r, SimJob)], "jobs", 0
    trace_jobs = [r for r in records if isinstance(r, TraceJob)]
    return build_jobs(trace_jobs, pool, speeds, defaults, elastic), "jobs", 0


def simulate(trace: TraceInput, pool: Pool | str | os.PathLike[str],
             policy: str | Policy, *, round_seconds: float | None = None,
             progress: ProgressCallback | None = None, trace_format: str | None = None,
             skip_bad_lines: bool = False, staging: bool = True,
             defaults: JobDefaults | None = None,
             speeds: SpeedBook | None = None, options: EngineOptions | None = None
             ) -> SimResult:
    """Run ``policy`` on ``trace`` over ``pool`` and return what happened.

    ``trace``: a trace file (format guessed or ``trace_format``), ``TraceJob`` records
    or ready ``SimJob``s. ``pool``: a ``Pool``, a preset (``sia-64``, ``gavel-48``,
    ``philly-<N>``, ``alibaba-gpu-2023``), a pool file or a node list. ``policy``: a
    registered name, a dotted path, or an instance. ``round_seconds``: schedule in fixed
    rounds (Gavel-style); a periodic policy (``policy.periodic``) gets 360 s rounds when
    none is given. ``progress(finished, total, simulated_seconds)`` is called about 200
    times. Bad trace lines raise ``TraceError`` unless ``skip_bad_lines``; the count of
    skipped lines is in ``result.skipped_lines``. Jobs are placed by the live system's
    placement (``slicebox.placement``), the only placement there is.
    """
    defaults = defaults or JobDefaults()
    the_pool = pools.resolve(pool)
    the_policy = policies.get(policy) if isinstance(policy, str) else policy
    book = speeds or make_speeds(the_pool, defaults.cpu_sensitivity)
    jobs, name, skipped = load_jobs(trace, the_pool, book, trace_format=trace_format,
                                    skip_bad_lines=skip_bad_lines, defaults=defaults,
                                    elastic=the_policy.resizes_jobs)
    if round_seconds is None and the_policy.periodic:
        round_seconds = the_policy.default_round_seconds or DEFAULT_ROUND_SECONDS
    opts = options or EngineOptions()
    opts = replace(opts, round_seconds=round_seconds, staging=staging and opts.staging)
    engine = Engine(jobs, the_pool, the_policy, book, opts, progress, name)
    result = engine.run()
    return replace(result, skipped_lines=skipped) if skipped else result
