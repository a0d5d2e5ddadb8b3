"""A run's report: ``summary.json``, ``summary.md``, ``jobs.csv`` and PNG plots.

``write(result, folder)`` writes them; ``summary_rows(result)`` is what a CLI prints as a
table; ``comparison_table(results, baseline_of)`` puts several runs side by side with
each metric's ratio to the best baseline.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slicebox.sim.metrics import LABELS, Metrics
from slicebox.sim.result import SimResult

_HOURS = {"avg_jct", "median_jct", "p99_jct", "makespan", "avg_queue"}
_PERCENT = {"gpu_allocation", "gpu_utilisation", "fragmentation"}


@dataclass(frozen=True)
class ReportFiles:
    summary_json: pathlib.Path
    summary_md: pathlib.Path
    jobs_csv: pathlib.Path
    plots: tuple[pathlib.Path, ...]


def format_value(key: str, value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key in _HOURS:
        return f"{value / 3600:.2f} h"
    if key in _PERCENT:
        return f"{100 * value:.1f} %"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.2f}"


def summary_rows(result: SimResult) -> list[tuple[str, str]]:
    """(label, value) pairs for a CLI table: the metrics, then how the run went."""
    m = result.metrics
    rows = [(LABELS[key][0], format_value(key, getattr(m, key))) for key in LABELS]
    rows += [
        ("jobs finished", f"{m.finished:,} of {m.jobs:,}"),
        ("decisions", f"{m.decisions:,} (avg {m.avg_decision_ms:.2f} ms, "
                      f"max {m.max_decision_ms:.1f} ms)"),
        ("simulated in", f"{result.engine_seconds:.1f} s"),
    ]
    if result.skipped_lines:
        rows.append(("bad trace lines skipped", f"{result.skipped_lines:,}"))
    return rows


def summary(result: SimResult) -> dict[str, object]:
    return {
        "policy": result.policy,
        "pool": result.pool,
        "gpus": result.total_gpus,
        "trace": result.trace,
        "round_seconds": result.round_seconds,
        "metrics": {k: _json_number(v) for k, v in result.metrics.as_dict().items()},
        "run": {"decisions": result.decisions, "decision_seconds": result.decision_seconds,
                "engine_seconds": result.engine_seconds, "events": result.events,
                "skipped_lines": result.skipped_lines,
                # a job the policy chose but placement left waiting, by what was short
                "not_placed": dict(result.not_placed)},
        "notes": list(result.notes),
    }


def markdown(result: SimResult) -> str:
    lines = [f"# {result.policy} on {os.path.basename(result.trace) or 'jobs'} "
             f"({result.pool}, {result.total_gpus:g} GPUs)", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in summary_rows(result)]
    if result.round_seconds:
        lines += ["", f"Scheduled in rounds of {result.round_seconds:g} s."]
    if result.not_placed:
        short = ", ".join(f"{field} {count:,}" for field, count in
                          sorted(result.not_placed.items(), key=lambda fc: -fc[1]))
        lines += ["", f"Chosen by the policy but left waiting by placement (what was short, "
                      f"times): {short}."]
    for note in result.notes:
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def comparison_table(results: Sequence[SimResult], keys: Sequence[str] = (
        "avg_jct", "median_jct", "p99_jct", "makespan", "avg_queue", "gpu_utilisation",
        "fragmentation", "ftf_avg", "preemptions"), reference: str = "slicebox",
        extra: Sequence[tuple[str, dict[str, str]]] = ()) -> str:
    """Markdown table of several runs, one row per policy; each cell also shows the ratio
    to the best of the other policies (the best baseline) for that metric, from the
    point of view of ``reference`` (ratio < 1 is better when lower is better)."""
    header = "| policy | " + " | ".join(LABELS[k][0] for k in keys) + " |"
    lines = [header, "|---" * (len(keys) + 1) + "|"]
    best = {k: _best_baseline([r.metrics for r in results if r.policy != reference], k)
            for k in keys}
    for r in results:
        cells = []
        for k in keys:
            value = getattr(r.metrics, k)
            text = format_value(k, value)
            if best[k] and not math.isnan(float(value)) and best[k] != 0:
                text += f" ({float(value) / best[k]:.2f}x)"
            cells.append(text)
        name = f"**{r.policy}**" if r.policy == reference else r.policy
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for label, values in extra:
        lines.append(f"| {label} | " + " | ".join(values.get(k, "") for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _best_baseline(metrics: Sequence[Metrics], key: str) -> float:
    values = [float(getattr(m, key)) for m in metrics]
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return 0.0
    lower_better = LABELS.get(key, ("", "", True))[2]
    return min(values) if lower_better else max(values)


def write(result: SimResult, folder: str | os.PathLike[str], plots: bool = True
          ) -> ReportFiles:
    out = pathlib.Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    summary_json = out / "summary.json"
    summary_json.write_text(json.dumps(summary(result), indent=2) + "\n", encoding="utf-8")
    summary_md = out / "summary.md"
    summary_md.write_text(markdown(result), encoding="utf-8")
    jobs_csv = out / "jobs.csv"
    with jobs_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "workload", "arrival", "gpus", "first_start", "finish", "jct",
                         "queue_seconds", "run_seconds", "setup_seconds", "kind",
                         "preemptions", "isolated_seconds"])
        for j in result.jobs:
            writer.writerow([j.id, j.workload, j.arrival, j.gpus, j.first_start, j.finish,
                             j.jct if j.finished else "", j.queue_seconds if j.finished else "",
                             j.run_seconds, j.setup_seconds, j.kind or "", j.preemptions,
                             j.isolated_seconds])
    files = plot(result, out) if plots else ()
    return ReportFiles(summary_json, summary_md, jobs_csv, files)


def plot(result: SimResult, out: pathlib.Path) -> tuple[pathlib.Path, ...]:
    """JCT CDF, GPU allocation/utilisation over time, queue length over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    jct = np.sort([j.jct / 3600 for j in result.jobs if j.finished])
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(jct):
        ax.plot(jct, np.arange(1, len(jct) + 1) / len(jct))
        ax.set_xscale("log")
    ax.set_xlabel("job completion time (h)")
    ax.set_ylabel("fraction of jobs")
    ax.set_title(f"JCT CDF: {result.policy}")
    ax.grid(True, alpha=0.3)
    paths.append(_save(fig, out / "jct_cdf.png"))
    t = result.timeline
    hours = (t.time - (t.time[0] if len(t.time) else 0.0)) / 3600
    fig, ax = plt.subplots(figsize=(8, 4))
    total = max(result.total_gpus, 1e-9)
    ax.step(hours, 100 * t.allocated_gpus / total, where="post", label="allocated")
    ax.step(hours, 100 * t.busy_gpus / total, where="post", label="utilised", alpha=0.7)
    ax.set_xlabel("time (h)")
    ax.set_ylabel("% of GPUs")
    ax.set_title(f"GPU allocation and utilisation: {result.policy}")
    ax.legend()
    ax.grid(True, alpha=0.3)
    paths.append(_save(fig, out / "utilisation.png"))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.step(hours, t.queued_jobs, where="post")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("jobs waiting")
    ax.set_title(f"Queue length: {result.policy}")
    ax.grid(True, alpha=0.3)
    paths.append(_save(fig, out / "queue.png"))
    return tuple(paths)


def _save(fig: object, path: pathlib.Path) -> pathlib.Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path


def _json_number(value: object) -> object:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value
