"""The end-of-run report: each job's composition, wait, run time, throughput and quality,
the pool's utilisation over time (PNG + a chart in the terminal), and the checks that
say the run went as designed."""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from slicebox.pool.cpulist import format_cpulist
from slicebox.pool.model import Pool
from slicebox.store import JobRecord, Store
from slicebox.store.records import UtilisationPoint

RESULT_KIND = "slicebox.bench.result"  # the summary line the reference workloads print last


@dataclass(frozen=True)
class JobSummary:
    id: str
    name: str
    state: str
    composition: str
    cores: str
    data: str
    wait_s: float | None
    run_s: float
    samples_per_s: float | None
    quality: float | None
    quality_metric: str | None
    reached_target: bool | None
    staging: str
    mlflow_run_id: str | None


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _bench_result(job: JobRecord) -> dict | None:
    """The workload's own summary line (throughput over the whole run, target reached)."""
    if job.log_path is None or not Path(job.log_path).exists():
        return None
    for line in reversed(Path(job.log_path).read_text(errors="replace").splitlines()):
        if RESULT_KIND in line:
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def summarise(store: Store, job: JobRecord, now: float) -> JobSummary:
    comp = job.composition
    result = _bench_result(job) or {}
    staging = [e.reason for e in store.events(job.id) if e.kind in ("staged", "reused")]
    rate = result.get("samples_per_s")
    if rate is None and job.samples and job.ran_for(now) > 0:
        rate = job.samples / job.ran_for(now)
    return JobSummary(
        id=job.id, name=job.name, state=job.state.value,
        composition=comp.describe() if comp else "-",
        cores=format_cpulist(comp.cores) if comp else "-",
        data=(comp.data_path or "-") if comp else "-",
        wait_s=job.wait_seconds, run_s=job.ran_for(now), samples_per_s=rate,
        quality=result.get("quality", job.quality),
        quality_metric=result.get("quality_metric"),
        reached_target=result.get("reached_target"),
        staging="; ".join(staging) or "-", mlflow_run_id=job.mlflow_run_id)


def checks(store: Store, summaries: list[JobSummary], pool: Pool) -> list[Check]:
    """What 'every example job ends as designed' means, each check stated and measured."""
    history = store.composition_history()
    conflicts = store.core_conflicts()
    out = [
        Check("every job succeeded", all(s.state == "succeeded" for s in summaries),
              ", ".join(f"{s.name}: {s.state}" for s in summaries)),
        Check("every job reached its quality target",
              all(s.reached_target for s in summaries),
              ", ".join(f"{s.name}: {s.quality_metric} {s.quality:.4g}" if s.quality is not None
                        else f"{s.name}: no quality" for s in summaries)),
        Check("jobs running at the same time never shared a core", not conflicts,
              f"{len(history)} attempts compared pairwise; overlaps: {conflicts or 'none'}"),
    ]
    total = pool.total_cores
    big = [s for s in summaries if s.cores != "-" and _count(s.cores) >= total]
    for s in big:
        out.append(Check(f"{s.name} (all {total} cores) waited, then ran",
                         (s.wait_s or 0) > 0 and s.state == "succeeded",
                         f"waited {s.wait_s or 0:.1f} s for the cores others held"))
    staged = [s.staging for s in summaries if s.staging != "-"]
    if len(staged) >= 2:
        out.append(Check("a dataset was staged once and then reused",
                         any(t.startswith("staged") for t in staged)
                         and any(t.startswith("reused") for t in staged), " | ".join(staged)))
    return out


def _count(cpulist: str) -> int:
    from slicebox.pool.cpulist import parse_cpulist

    return len(parse_cpulist(cpulist))


def summary_table(summaries: list[JobSummary]) -> Table:
    table = Table(title="Jobs")
    for column in ("job", "state", "cores", "waited", "ran", "samples/s", "quality",
                   "data (SLICEBOX_DATA)"):
        table.add_column(column, overflow="fold")
    for s in summaries:
        quality = "-" if s.quality is None else f"{s.quality_metric or ''} {s.quality:.4g}" + (
            " ✓" if s.reached_target else " ✗" if s.reached_target is False else "")
        table.add_row(s.name, s.state, s.cores,
                      "-" if s.wait_s is None else f"{s.wait_s:.1f}s", f"{s.run_s:.1f}s",
                      "-" if s.samples_per_s is None else f"{s.samples_per_s:,.0f}",
                      quality, s.data)
    return table


def checks_table(results: list[Check]) -> Table:
    table = Table(title="Checks")
    table.add_column("")
    table.add_column("check")
    table.add_column("measured", overflow="fold")
    for c in results:
        table.add_row("[green]✓[/]" if c.ok else "[red]✗[/]", c.name, c.detail)
    return table


def plot_utilisation(points: list[UtilisationPoint], pool: Pool, start: float,
                     png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [p.time - start for p in points]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.step(times, [p.cores for p in points], where="post", label="cores held")
    ax.step(times, [p.jobs for p in points], where="post", label="jobs running",
            linestyle="--")
    if pool.total_gpus:
        ax.step(times, [p.gpus for p in points], where="post", label="GPUs held")
    ax.axhline(pool.total_cores, color="grey", linewidth=0.8, label="cores in pool")
    ax.set_xlabel("seconds since the first job started")
    ax.set_ylabel("count")
    ax.set_title(f"Pool utilisation ({pool.name})")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def terminal_chart(points: list[UtilisationPoint], pool: Pool, start: float) -> str:
    """The same curve as the PNG, drawn in the terminal with plotext."""
    import plotext as plt

    plt.clf()
    xs, ys = [], []
    for a, b in zip(points, points[1:] + points[-1:], strict=True):
        xs += [a.time - start, b.time - start]
        ys += [a.cores, a.cores]
    plt.plot(xs, ys, label="cores held")
    plt.ylim(0, pool.total_cores + 0.5)
    plt.title("cores held over time (s)")
    plt.plotsize(70, 12)
    plt.theme("clear")
    return plt.build()


def controller_line(controller: dict[str, Any]) -> str:
    """Where the controller ran, in words (the report's first line)."""
    cores = ",".join(map(str, controller["cores"]))
    where = (f"reserved core(s) {cores}, not given to jobs" if controller["reserved"]
             else f"core(s) {cores}, shared with the jobs (not reserved: --reserve-cores)")
    return (f"controller ran on {where}; it used {controller['cpu_seconds']:.1f} s of CPU "
            f"in {controller['wall_seconds']:.0f} s")


def write_report(directory: Path, summaries: list[JobSummary], results: list[Check],
                 points: list[UtilisationPoint], pool: Pool, start: float,
                 controller: dict[str, Any] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    plot_utilisation(points, pool, start, directory / "utilisation.png")
    data = {"pool": pool.name, "controller": controller, "jobs": [asdict(s) for s in summaries],
            "checks": [asdict(c) for c in results],
            "utilisation": [{**asdict(p), "time": p.time - start} for p in points]}
    (directory / "report.json").write_text(json.dumps(data, indent=2))
    console = Console(record=True, width=120, file=io.StringIO())
    if controller is not None:
        console.print(controller_line(controller), highlight=False)
    console.print(summary_table(summaries))
    console.print(checks_table(results))
    (directory / "report.txt").write_text(console.export_text())
    return directory
