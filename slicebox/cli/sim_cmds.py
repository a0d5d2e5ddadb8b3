"""``slicebox simulate``: a trace through the same policies and placement, on a simulated
clock."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from slicebox.cli.common import JSON_OPTION, console, fail, literal, print_json, state_dir


def simulate(
        ctx: typer.Context,
        trace: Path = typer.Option(..., "--trace", help="Trace file (Philly, Pollux/Sia, "
                                   "Gavel, Alibaba 2023), e.g. data/traces/philly/philly.csv"),
        pool: str = typer.Option(..., "--pool", help="Pool file, Alibaba node list, or a "
                                 "preset: sia-64, gavel-48, philly-<N>, alibaba-gpu-2023"),
        policy: str = typer.Option("slicebox", "--policy", help="Policy name or dotted path."),
        round_seconds: float | None = typer.Option(
            None, "--round", min=1, help="Schedule in fixed rounds of S seconds (Gavel: 360)."),
        trace_format: str | None = typer.Option(None, "--format", help="Trace format if the "
                                                "file name does not tell."),
        skip_bad_lines: bool = typer.Option(False, "--skip-bad-lines",
                                            help="Skip malformed lines and report how many."),
        out: Path | None = typer.Option(None, "--out", help="Report folder (JSON, markdown, "
                                        "per-job CSV, plots); default "
                                        "<state>/reports/<policy>"),
        as_json: bool = JSON_OPTION) -> None:
    """Simulate a trace and write a report: JCT (avg, median, p99), makespan, allocation,
    utilisation, queueing delay, finish-time fairness, fragmentation, preemptions."""
    from slicebox.errors import SliceboxError
    from slicebox.sim import report
    from slicebox.sim.api import simulate as run_simulation
    from slicebox.sim.traces import TraceError

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.completed:,}/{task.total:,} jobs"),
                  TextColumn("simulated {task.fields[sim_h]:.1f} h"), TimeElapsedColumn(),
                  console=console, disable=as_json) as bar:
        task = bar.add_task(literal(f"{policy} on {trace.name}"), total=0, sim_h=0.0)

        def on_progress(done: int, total: int, simulated: float) -> None:
            bar.update(task, completed=done, total=total, sim_h=simulated / 3600)

        try:
            result = run_simulation(trace, pool, policy, round_seconds=round_seconds,
                                    progress=on_progress, trace_format=trace_format,
                                    skip_bad_lines=skip_bad_lines)
        except TraceError as exc:
            # line 0: the file as a whole (missing, too big, unknown format): no line to skip
            hint = " (--skip-bad-lines goes on past such lines)" if exc.line > 0 else ""
            raise fail(f"bad trace: {exc}{hint}") from None
        except SliceboxError as exc:
            # Only errors we raise on purpose (RegistryError: an unknown policy name);
            # anything else is a bug and shows as one.
            raise fail(str(exc), exc.exit_code) from None
    # Under the state directory, never wherever the command happened to be run from.
    files = report.write(result, out or state_dir(ctx) / "reports" / _folder_name(policy))
    if as_json:
        print_json({**report.summary(result), "report": str(files.summary_md.parent)})
        return
    table = Table(title=literal(f"{result.policy} on {trace.name} ({result.pool}, "
                                f"{result.total_gpus:g} GPUs)"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in report.summary_rows(result):
        table.add_row(label, value)
    console.print(table)
    if result.skipped_lines:
        console.print(f"[yellow]skipped {result.skipped_lines:,} bad trace lines[/]")
    console.print(f"report: {files.summary_md}, plots: "
                  + ", ".join(str(p) for p in files.plots), markup=False)


def _folder_name(policy: str) -> str:
    """A policy name or dotted path as one folder name (``my.mod:Policy`` -> ``my.mod-Policy``)."""
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in policy)[:100] or "policy"
