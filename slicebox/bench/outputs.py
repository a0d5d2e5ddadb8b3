"""Where ``slicebox bench`` keeps what it measured, without losing what it measured before.

Each invocation gets its own folder, ``<state>/bench/<run>/``: the cells' output (see
`suite.cell_dir`), and that run's ``results.json`` and ``bench.png``. The top-level
``<state>/bench/results.json`` and ``bench.png`` are the latest *good* result of every cell
ever measured: a new measurement replaces an old one, but a cell that was not measured
this time (not supported here, failed, skipped) never replaces one that was.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slicebox.bench.report import plot_results
from slicebox.bench.results import STATUS_OK, BenchResult

log = logging.getLogger(__name__)

RESULTS = "results.json"
PLOT = "bench.png"


def new_run_dir(bench_dir: Path, now: float | None = None) -> Path:
    """A fresh ``<bench_dir>/<UTC time>[-N]`` folder for one invocation."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    for n in range(1, 1000):
        candidate = bench_dir / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir(parents=True)
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"could not make a new run folder under {bench_dir}")


def _key(result: BenchResult) -> tuple[str, str, str]:
    return (result.workload, result.slice, result.precision)


def merge(previous: Sequence[BenchResult], new: Sequence[BenchResult]) -> list[BenchResult]:
    """Every cell's latest measurement; unmeasured new cells only where none was measured."""
    merged = {_key(r): r for r in previous}
    for result in new:
        old = merged.get(_key(result))
        if result.status == STATUS_OK or old is None or old.status != STATUS_OK:
            merged[_key(result)] = result
    return list(merged.values())


def load_results(path: Path) -> list[BenchResult]:
    """The results in ``path``; none when it is missing or unreadable (said in the log)."""
    try:
        data = json.loads(path.read_text())
        return [BenchResult.from_dict(item) for item in data]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return []


def save_results(results: Sequence[BenchResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    temporary.replace(path)  # a reader never sees half a file


@dataclass(frozen=True)
class Published:
    run_results: Path  # this invocation's results.json
    run_plot: Path
    results: Path  # the latest good result of every cell
    plot: Path
    updated: bool  # False: nothing was measured, the top-level files were left alone


def publish(bench_dir: Path, run_dir: Path, results: Sequence[BenchResult]) -> Published:
    """Write the run's own results and plot, and merge its measured cells into the
    top-level ones (left untouched when it measured nothing)."""
    run_results, run_plot = run_dir / RESULTS, run_dir / PLOT
    save_results(results, run_results)
    plot_results(results, run_plot)
    top_results, top_plot = bench_dir / RESULTS, bench_dir / PLOT
    measured = any(r.status == STATUS_OK for r in results)
    if measured:
        merged = merge(load_results(top_results), results)
        save_results(merged, top_results)
        plot_results(merged, top_plot)
    return Published(run_results, run_plot, top_results, top_plot, measured)
