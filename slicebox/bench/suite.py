"""The suite: every workload x slice shape x precision, each run in its own process.

A run is a child ``python -m slicebox.bench.run`` pinned to its slice (``--cores``,
``--device``, ``--memory-fraction``, ``CUDA_VISIBLE_DEVICES``): exactly what a Slicebox
job on that slice would get, with fresh thread pools and allocator, and nothing left
over from the run before. Runs go one at a time, so they never share the machine with
each other; other processes may, and `cotenancy` measures them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slicebox.bench import registry
from slicebox.bench.child import child_argv, child_env, run_child
from slicebox.bench.cotenancy import CoTenancyMeter
from slicebox.bench.precision import unsupported_reason
from slicebox.bench.report import plot_results, results_table
from slicebox.bench.results import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_SKIPPED,
    STATUS_UNSUPPORTED,
    BenchResult,
    Precision,
    RunResult,
    mlperf_result,
    parse_precision,
)
from slicebox.bench.slices import SliceShape, default_cpu_slices

__all__ = [
    "BenchResult",
    "SliceShape",
    "SuiteProgress",
    "child_argv",
    "plot_results",
    "results_from_json",
    "results_table",
    "results_to_json",
    "run_suite",
    "save_results",
]

QUICK_MAX_SECONDS = 30.0  # a quick run that has not converged by then is reported aborted
HANG_GRACE_S = 120.0  # beyond the run's own limit, before a silent child is killed
COTENANT_WARN_CORES = 0.25  # co-tenant CPU on the slice worth a warning next to its numbers


@dataclass(frozen=True)
class SuiteProgress:
    """What the progress callback hears: a run started, progressed, or finished."""

    index: int  # 0-based position of this cell in the suite
    total: int
    workload: str
    slice: str
    precision: str
    phase: Literal["start", "progress", "done"]
    samples: int | None = None
    quality: float | None = None
    result: BenchResult | None = None


ProgressCallback = Callable[[SuiteProgress], None]


def results_to_json(results: Sequence[BenchResult]) -> str:
    return json.dumps([r.to_dict() for r in results], indent=2)


def results_from_json(text: str) -> list[BenchResult]:
    return [BenchResult.from_dict(item) for item in json.loads(text)]


def save_results(results: Sequence[BenchResult], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(results_to_json(results) + "\n")


def _combine(
    workload: str,
    shape: SliceShape,
    precision: str,
    runs: list[RunResult],
    wall_s: float,
    cotenant: float | None,
) -> BenchResult:
    ok = [r for r in runs if r.status == STATUS_OK]
    first = runs[0]
    if not ok:
        return BenchResult(
            workload=workload,
            slice=shape.name,
            precision=precision,
            status=first.status,
            reason=first.reason,
            device=shape.device,
            cores=len(shape.cores) if shape.cores else None,
            runs=len(runs),
            wall_s=wall_s,
        )
    times = [r.time_to_quality_s for r in ok]
    notes = sorted({r.note for r in ok if r.note})
    if cotenant is not None and cotenant >= COTENANT_WARN_CORES:
        where = f"the slice's {len(shape.cores)} cores" if shape.cores else "this host"
        notes.append(
            f"other processes used {cotenant:.1f} cores of {where} during the run: "
            "the numbers understate an exclusive slice"
        )
    note = "; ".join(notes)
    ttq: float | None
    if len(ok) >= 3:
        try:
            ttq = mlperf_result(times)
        except ValueError as exc:
            ttq, note = None, f"{note}; {exc}".strip("; ")
    else:
        reached = [t for t in times if t is not None]
        ttq = sum(reached) / len(reached) if len(reached) == len(times) else None

    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return sum(present) / len(present) if present else None

    last = ok[-1]
    return BenchResult(
        workload=workload,
        slice=shape.name,
        precision=precision,
        status=STATUS_OK,
        samples_per_s=mean([r.samples_per_s for r in ok]),
        time_to_quality_s=ttq,
        quality=mean([r.quality for r in ok]),
        quality_target=last.quality_target,
        reached_target=all(r.reached_target for r in ok),
        quality_metric=last.quality_metric,
        higher_is_better=last.higher_is_better,
        device=shape.device,
        cores=len(shape.cores) if shape.cores else None,
        runs=len(ok),
        server_target_qps=last.server_target_qps,
        server_p99_latency_ms=mean([r.server_p99_latency_ms for r in ok]),
        dense_quality=mean([r.dense_quality for r in ok]),
        sparse_speedup=mean([r.sparse_speedup for r in ok]),
        note=note,
        wall_s=wall_s,
        cotenant_cores=cotenant,
    )


def run_suite(
    workloads: Sequence[str],
    slices: Sequence[SliceShape | str] | None = None,
    precisions: Sequence[str] = ("fp32", "bf16"),
    quick: bool = False,
    progress_callback: ProgressCallback | None = None,
    *,
    repeats: int = 1,
    seed: int = 0,
    max_seconds: float | None = None,
    time_budget_s: float | None = None,
    out_dir: str | Path | None = None,
) -> list[BenchResult]:
    """Run every workload on every slice shape in every precision; one result per cell.

    ``slices`` are `SliceShape`s or their spelling (``"cpu:1"``, ``"gpu:0@0.5"``); None
    means one core and all cores. ``repeats`` >= 3 applies MLPerf's rule (seeds
    ``seed``..``seed+repeats-1``). ``max_seconds`` caps each run (quick default 30 s);
    once ``time_budget_s`` is spent, the remaining cells are "skipped". With ``out_dir``,
    each run keeps its output in ``out_dir/<workload>_<slice>_<precision>/seed<N>/``
    (see `cell_dir`).
    """
    for name in workloads:
        registry.get(name)  # fail on a typo before running anything
    checked = [parse_precision(p) for p in precisions]
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    shapes = [
        s if isinstance(s, SliceShape) else SliceShape.parse(s)
        for s in (default_cpu_slices() if slices is None else slices)
    ]
    plan = _Plan(
        quick=quick,
        repeats=repeats,
        seed=seed,
        limit=max_seconds if max_seconds is not None else (QUICK_MAX_SECONDS if quick else None),
        time_budget_s=time_budget_s,
        started=time.monotonic(),
        out_dir=Path(out_dir) if out_dir is not None else None,
    )
    cells = [(w, s, p) for w in workloads for s in shapes for p in checked]
    results: list[BenchResult] = []
    notify: ProgressCallback = progress_callback or _ignore
    for index, (workload, shape, precision) in enumerate(cells):
        base = SuiteProgress(index, len(cells), workload, shape.name, precision, "start")
        notify(base)
        result = _run_cell(plan, workload, shape, precision, _ProgressRelay(notify, base))
        results.append(result)
        notify(dataclasses.replace(base, phase="done", result=result))
    return results


def _ignore(event: SuiteProgress) -> None:
    pass


@dataclass(frozen=True)
class _ProgressRelay:
    """Turns a child's :::SLICEBOX report into a "progress" event for its cell."""

    notify: ProgressCallback
    base: SuiteProgress

    def __call__(self, report: dict[str, Any]) -> None:
        self.notify(
            dataclasses.replace(
                self.base,
                phase="progress",
                samples=report.get("samples"),
                quality=report.get("quality"),
            )
        )


@dataclass(frozen=True)
class _Plan:
    quick: bool
    repeats: int
    seed: int
    limit: float | None  # each run's --max-seconds
    time_budget_s: float | None
    started: float
    out_dir: Path | None = None


def cell_dir(out_dir: Path, workload: str, shape: SliceShape, precision: str) -> Path:
    """The folder of one cell's runs: ``seed<N>/`` in it holds ``stdout.log``,
    ``stderr.log``, ``mllog.txt`` and (inference) ``loadgen/{offline,server}/``."""
    return out_dir / f"{workload}_{shape.name}_{precision}"


def _run_cell(
    plan: _Plan,
    workload: str,
    shape: SliceShape,
    precision: Precision,
    on_report: Callable[[dict[str, Any]], None],
) -> BenchResult:
    cores = len(shape.cores) if shape.cores else None
    budget = plan.time_budget_s
    if budget is not None and time.monotonic() - plan.started > budget:
        return BenchResult(
            workload=workload,
            slice=shape.name,
            precision=precision,
            status=STATUS_SKIPPED,
            device=shape.device,
            cores=cores,
            reason=f"suite time budget of {budget:.0f} s spent",
        )
    if not shape.is_gpu:
        # Answered here for CPU slices; a GPU's abilities are the child's to find out,
        # so the suite never opens a CUDA context of its own on the GPU it measures.
        reason = unsupported_reason(precision, shape.device)
        if reason is not None:
            return BenchResult(
                workload=workload,
                slice=shape.name,
                precision=precision,
                status=STATUS_UNSUPPORTED,
                reason=reason,
                device=shape.device,
                cores=cores,
            )
    runs: list[RunResult] = []
    cotenants: list[float] = []
    cell_start = time.monotonic()
    folder = cell_dir(plan.out_dir, workload, shape, precision) if plan.out_dir else None
    for repeat in range(plan.repeats):
        seed = plan.seed + repeat
        keep = folder / f"seed{seed}" if folder is not None else None
        argv = child_argv(
            workload,
            shape,
            precision,
            quick=plan.quick,
            seed=seed,
            max_seconds=plan.limit,
            output_dir=keep,
        )
        timeout = (plan.limit or 3600.0) + HANG_GRACE_S
        meter = CoTenancyMeter(shape.cores)
        meter.start()
        run_start = time.monotonic()
        outcome = run_child(argv, child_env(shape), timeout, on_report, keep_dir=keep)
        others = meter.stop(time.monotonic() - run_start)
        if others is not None:
            cotenants.append(others)
        if isinstance(outcome, str):
            outcome = RunResult(
                workload=workload,
                precision=precision,
                device=shape.device,
                status=STATUS_FAILED,
                reason=outcome,
                seed=seed,
            )
        runs.append(outcome)
        if outcome.status != STATUS_OK:
            break  # unsupported or broken: repeating would say the same thing
    cotenant = max(cotenants) if cotenants else None
    result = _combine(workload, shape, precision, runs, time.monotonic() - cell_start, cotenant)
    return dataclasses.replace(result, log_dir=str(folder)) if folder is not None else result
