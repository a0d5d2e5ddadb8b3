"""The end-of-run report: each job's composition, attempts, waits, run time, throughput
and quality, a timeline of who held which core when (PNG + the same in the terminal), and
the checks that say the run went as designed."""

from __future__ import annotations

import io
import json
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from slicebox.demo.timeline import Timeline, job_colours
from slicebox.demo.timeline import plot as plot_timeline
from slicebox.pool.cpulist import format_cpulist
from slicebox.pool.model import Pool
from slicebox.store import JobRecord, Store
from slicebox.store.records import ProgressSample, UtilisationPoint

RESULT_KIND = "slicebox.bench.result"  # the summary line the reference workloads print last
TIMELINE_PNG = "timeline.png"


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
    wants = {j.id: j.spec.resources.min_cpus for j in store.jobs()}
    big = [s for s in summaries if wants.get(s.id, 0) >= total]  # not elastic ones
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


def attempts_table(timeline: Timeline,
                   details: Mapping[tuple[str, int], dict[str, Any]]) -> Table | None:
    """Jobs that ran more than once (preempted or resized), one line per attempt: where,
    when, what it trained, and what its checkpoint saved, cost and lost. None if none did."""
    restarted = {a.job_id for a in timeline.attempts if a.attempt > 1}
    if not restarted:
        return None
    table = Table(title="Attempts of restarted jobs")
    for column in ("job", "#", "cores", "from–to (s)", "trained", "samples/s", "ended",
                   "redone", "save", "restore"):
        table.add_column(column, overflow="fold")
    for a in timeline.attempts:
        if a.job_id not in restarted:
            continue
        d = details.get((a.job_id, a.attempt), {})
        ckpt = d.get("checkpoint") or {}
        table.add_row(
            a.job, str(a.attempt), format_cpulist(a.cores),
            f"{a.start_s:.0f}–{'…' if a.end_s is None else f'{a.end_s:.0f}'}",
            _number(d.get("samples_trained")), _number(d.get("samples_per_s")),
            ckpt.get("outcome", "-"), _number(ckpt.get("lost_samples")),
            _seconds(ckpt.get("save_seconds")), _seconds(ckpt.get("restore_seconds")))
    return table


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def terminal_timeline(timeline: Timeline, width: int = 64) -> Text:
    """The PNG's top half in the terminal: one line per core (or GPU), one letter and
    colour per job (the letter reads without colour too), each character ``span / width``
    seconds; ``·`` where the row was idle."""
    span = timeline.end_s or 1.0
    letter = {name: chr(ord("A") + i % 26) for i, name in enumerate(timeline.jobs)}
    style = job_colours(timeline)
    label = max((len(r) for r in timeline.rows), default=0)
    out = Text(f"{'':{label}}  0 s{f'{span:.0f} s':>{width - 3}}\n")
    for row in timeline.rows:
        mine = [b for b in timeline.bars if b.row == row]
        out.append(f"{row:>{label}}  ")
        for i in range(width):
            t = (i + 0.5) * span / width
            held = next((b for b in mine if b.start_s <= t < b.end_s), None)
            if held is None:
                out.append("·", style="dim")
            else:
                out.append(letter[held.job], style=f"bold white on {style[held.job]}")
        out.append("\n")
    for m in timeline.markers:
        out.append(f"{'':{label}}  at {m.time_s:.0f} s: {m.label}\n")
    out.append("  ".join(f"{letter[name]} {name}" for name in timeline.jobs))
    return out


def controller_line(controller: dict[str, Any]) -> str:
    """Where the controller ran, in words (the report's first line)."""
    cores = ",".join(map(str, controller["cores"]))
    where = (f"reserved core(s) {cores}, not given to jobs" if controller["reserved"]
             else f"core(s) {cores}, shared with the jobs (not reserved: --reserve-cores)")
    return (f"controller ran on {where}; it used {controller['cpu_seconds']:.1f} s of CPU "
            f"in {controller['wall_seconds']:.0f} s")


def attempt_details(store: Store) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (job, attempt): samples trained in it (beyond the checkpoint it resumed from),
    its median samples/s, and how it ended with respect to checkpoints (what it saved, what
    the next attempt redid, how long its own restore took)."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    checkpoints = {(r.job_id, r.attempt): r for r in store.checkpoints()}
    for job in store.jobs():
        by_attempt: dict[int, list[ProgressSample]] = {}
        for p in store.progress(job.id):
            by_attempt.setdefault(p.attempt, []).append(p)
        for attempt, points in by_attempt.items():
            counts = [p.samples for p in points if p.samples is not None]
            rates = [p.samples_per_s for p in points if p.samples_per_s]
            record = checkpoints.get((job.id, attempt))
            resumed_from = record.restored_samples if record is not None else None
            if resumed_from is None:  # a fresh start, or a resume the store did not record
                resumed_from = 0 if attempt == 1 else min(counts, default=0)
            out[(job.id, attempt)] = {
                "samples_trained": max(counts) - resumed_from if counts else None,
                "samples_per_s": statistics.median(rates) if rates else None}
    for (job_id, attempt), record in checkpoints.items():
        out.setdefault((job_id, attempt), {})["checkpoint"] = {k: getattr(record, k) for k in (
            "outcome", "reason", "step", "samples", "lost_samples", "save_seconds",
            "restored_samples", "restore_seconds")}
    return out


def job_entry(summary: JobSummary, timeline: Timeline,
              details: Mapping[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """A job in report.json: its summary, every attempt (start and end, relative to the
    timeline's origin and as the store's Unix times, with ``attempt_details``) and every
    wait."""
    return {**asdict(summary),
            "attempts": [{**asdict(a), **details.get((a.job_id, a.attempt), {})}
                         for a in timeline.attempts_of(summary.id)],
            "waits": [{**asdict(w), "seconds": w.seconds} for w in timeline.waits_of(summary.id)]}


def write_report(directory: Path, summaries: list[JobSummary], results: list[Check],
                 points: list[UtilisationPoint], pool: Pool, timeline: Timeline,
                 controller: dict[str, Any] | None = None,
                 details: Mapping[tuple[str, int], dict[str, Any]] | None = None) -> Path:
    """report.json, report.txt and timeline.png; times are seconds since ``timeline.origin``
    (the first submission)."""
    directory.mkdir(parents=True, exist_ok=True)
    plot_timeline(timeline, f"Who held which core when ({pool.name})", directory / TIMELINE_PNG)
    data = {"pool": pool.name, "controller": controller, "origin": timeline.origin,
            "jobs": [job_entry(s, timeline, details or {}) for s in summaries],
            "checks": [asdict(c) for c in results],
            "timeline": {"rows": list(timeline.rows), "end_s": timeline.end_s,
                         "markers": [{**asdict(m), "label": m.label}
                                     for m in timeline.markers]},
            "utilisation": [{**asdict(p), "time": p.time - timeline.origin} for p in points]}
    (directory / "report.json").write_text(json.dumps(data, indent=2))
    console = Console(record=True, width=120, file=io.StringIO())
    if controller is not None:
        console.print(controller_line(controller), highlight=False)
    console.print(summary_table(summaries))
    restarts = attempts_table(timeline, details or {})
    if restarts is not None:
        console.print(restarts)
    console.print(terminal_timeline(timeline))
    console.print(checks_table(results))
    (directory / "report.txt").write_text(console.export_text())
    return directory
