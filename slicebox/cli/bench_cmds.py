"""``slicebox bench``: the reference suite on this machine's slice shapes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from slicebox.cli.common import (
    EXIT_RUNTIME,
    JSON_OPTION,
    console,
    errors,
    fail,
    literal,
    print_json,
    state_dir,
    store_url,
)

if TYPE_CHECKING:
    from slicebox.bench.results import BenchResult
    from slicebox.profiles.table import ProfileTable


def _local_gpu_kind() -> str | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        from slicebox.pool.kinds import kind_from_nvml_name

        props = torch.cuda.get_device_properties(0)
        kind = kind_from_nvml_name(props.name, props.total_memory / 2**30)
        return kind.name if kind else None
    except Exception:  # noqa: BLE001 - no GPU profile is better than no bench
        return None


DEFAULT_WORKLOADS = "image,lm,recsys,inference"


def bench(ctx: typer.Context,
          quick: bool = typer.Option(False, "--quick", help="Small models, capped runs."),
          slices: str | None = typer.Option(
              None, "--slices", help="Comma list: cpu:1, cpu:2, cores:0-3, gpu:0, gpu:0@0.5, "
                                     "mig:<uuid> (default: 1 core and all cores, and each GPU "
                                     "whole and half)"),
          workloads: str = typer.Option(DEFAULT_WORKLOADS, "--workloads",
                                        help="Comma list of image, lm, recsys, inference."),
          precisions: str = typer.Option("fp32,bf16", "--precisions",
                                         help="Comma list of fp32, bf16, fp16, sparse."),
          repeats: int = typer.Option(1, "--repeats", min=1, max=10,
                                      help=">= 3 applies MLPerf's rule (drop fastest and "
                                           "slowest, mean of the rest)."),
          mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log runs to MLflow."),
          as_json: bool = JSON_OPTION) -> None:
    """Measure samples/s and time-to-quality per workload × slice × precision; save profiles.

    Output (MLLOG files, LoadGen logs) stays in <state>/bench/<run>/. Exit 1 when a cell
    failed or nothing was measured; the last good results are then kept."""
    from slicebox.bench import outputs, report, suite
    from slicebox.bench.results import STATUS_FAILED
    from slicebox.bench.slices import SliceShape

    home = state_dir(ctx)
    bench_dir = home / "bench"
    try:
        shapes = [SliceShape.parse(s.strip()) for s in slices.split(",")] if slices else None
    except ValueError as exc:
        raise fail(f"--slices: {exc}") from None
    names = [w.strip() for w in workloads.split(",") if w.strip()]
    precs = [p.strip() for p in precisions.split(",") if p.strip()]
    _check_names(names, precs)
    run_dir = outputs.new_run_dir(bench_dir)
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=errors, disable=as_json) as bar:
        task = bar.add_task("bench", total=None)

        def on_progress(event: suite.SuiteProgress) -> None:
            what = f"{event.workload} · {event.slice} · {event.precision}"
            if event.phase == "progress" and event.samples:
                what += f" · {event.samples:,} samples"
            bar.update(task, total=event.total, description=what,
                       completed=event.index + (event.phase == "done"))

        try:
            results = suite.run_suite(names, shapes, precs, quick=quick,
                                      progress_callback=on_progress, repeats=repeats,
                                      out_dir=run_dir)
        except (KeyError, ValueError) as exc:
            raise fail(str(exc)) from None
    published = outputs.publish(bench_dir, run_dir, results)
    _save_profiles(home, results, store_url(ctx))
    if mlflow:
        from slicebox.bench.tracking import log_bench_suite
        from slicebox.tracking import default_tracking_uri

        try:
            log_bench_suite(results, default_tracking_uri(home),
                            run_name=f"bench {run_dir.name}",
                            artifacts=[published.run_results, published.run_plot],
                            params={"quick": str(quick), "workloads": ",".join(names),
                                    "slices": slices or "default",
                                    "precisions": ",".join(precs), "repeats": str(repeats),
                                    "run_dir": str(run_dir)})
        except Exception as exc:  # noqa: BLE001 - the results are saved; MLflow is a mirror
            errors.print(f"[yellow]warning:[/] MLflow logging failed: {literal(exc)}",
                         highlight=False)
    if as_json:
        print_json([r.to_dict() for r in results])
    else:
        console.print(report.results_table(results))
        console.print(f"this run: {run_dir}")
        if published.updated:
            console.print(f"results: {published.results}, plot: {published.plot}, "
                          f"profiles: {home / 'profiles.json'}")
    if not published.updated:
        why = "; ".join(sorted({f"{r.slice} {r.precision}: {r.reason or r.status}"
                                for r in results}))[:2000]
        raise fail(f"no cell was measured ({why}); the last good results in "
                   f"{published.results} were kept", code=EXIT_RUNTIME)
    failed = [r for r in results if r.status == STATUS_FAILED]
    if failed:
        raise fail(f"{len(failed)} of {len(results)} cells failed: " + "; ".join(
            f"{r.workload} {r.slice} {r.precision}: {r.reason}" for r in failed)[:2000],
            code=EXIT_RUNTIME)


def _check_names(workloads: list[str], precisions: list[str]) -> None:
    """Usage errors before anything runs: unknown workload or precision names."""
    from slicebox.bench import registry
    from slicebox.bench.results import parse_precision

    if not workloads:
        raise fail("--workloads: give at least one of " + ", ".join(registry.WORKLOADS))
    try:
        for name in workloads:
            registry.get(name)
        for precision in precisions:
            parse_precision(precision)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _save_profiles(home: Path, results: list[BenchResult], url: str | None) -> None:
    """Measured cells refine the profiles; a run that measured nothing leaves them alone."""
    from slicebox.profiles.from_bench import entries_from_bench
    from slicebox.profiles.store import load_profiles, save_profiles

    entries = entries_from_bench(results, _local_gpu_kind())
    if not entries:
        return
    profiles = load_profiles(home)
    for entry in entries:
        profiles.put(entry)
    save_profiles(home, profiles)
    _record_in_store(home, profiles, url)


def _record_in_store(home: Path, profiles: ProfileTable, url: str | None) -> None:
    """The measured table also goes into the store, beside the jobs it will steer."""
    import json
    from dataclasses import asdict

    from slicebox.store import Store

    store = Store.open(home, url=url)
    try:
        store.put_value("profiles", json.dumps([asdict(e) for e in profiles.entries()]))
    finally:
        store.close()
