"""``slicebox bench``: the reference suite on this machine's slice shapes."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from slicebox.cli.common import JSON_OPTION, console, fail, print_json, state_dir


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


def bench(ctx: typer.Context,
          quick: bool = typer.Option(False, "--quick", help="Small models, capped runs."),
          slices: str | None = typer.Option(
              None, "--slices", help="Comma list: cpu:1, cpu:2, cores:0-3, gpu:0, gpu:0@0.5, "
                                     "mig:<uuid> (default: 1 core and all cores, and each GPU "
                                     "whole and half)"),
          workloads: str = typer.Option("image,lm,recsys", "--workloads",
                                        help="Comma list of image, lm, recsys, inference."),
          precisions: str = typer.Option("fp32,bf16", "--precisions",
                                         help="Comma list of fp32, bf16, fp16, sparse."),
          repeats: int = typer.Option(1, "--repeats", min=1, max=10,
                                      help=">= 3 applies MLPerf's rule (drop fastest and "
                                           "slowest, mean of the rest)."),
          mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log runs to MLflow."),
          as_json: bool = JSON_OPTION) -> None:
    """Measure samples/s and time-to-quality per workload × slice × precision; save profiles."""
    from slicebox.bench import report, suite
    from slicebox.bench.slices import SliceShape
    from slicebox.profiles.from_bench import entries_from_bench
    from slicebox.profiles.store import load_profiles, profiles_path, save_profiles

    home = state_dir(ctx)
    out_dir = home / "bench"
    try:
        shapes = [SliceShape.parse(s.strip()) for s in slices.split(",")] if slices else None
    except ValueError as exc:
        raise fail(f"--slices: {exc}") from None
    names = [w.strip() for w in workloads.split(",") if w.strip()]
    precs = [p.strip() for p in precisions.split(",") if p.strip()]
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, disable=as_json) as bar:
        task = bar.add_task("bench", total=None)

        def on_progress(event: suite.SuiteProgress) -> None:
            what = f"{event.workload} · {event.slice} · {event.precision}"
            if event.phase == "progress" and event.samples:
                what += f" · {event.samples:,} samples"
            bar.update(task, total=event.total, description=what,
                       completed=event.index + (event.phase == "done"))

        try:
            results = suite.run_suite(names, shapes, precs, quick=quick,
                                      progress_callback=on_progress, repeats=repeats)
        except (KeyError, ValueError) as exc:
            raise fail(str(exc)) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    suite.save_results(results, out_dir / "results.json")
    report.plot_results(results, out_dir / "bench.png")
    profiles = load_profiles(home)
    for entry in entries_from_bench(results, _local_gpu_kind()):
        profiles.put(entry)
    save_profiles(home, profiles)
    _record_in_store(home, profiles)
    if mlflow:
        from slicebox.bench.tracking import log_bench_results
        from slicebox.tracking import default_tracking_uri

        log_bench_results(results, default_tracking_uri(home))
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    console.print(report.results_table(results))
    console.print(f"results: {out_dir / 'results.json'}, plot: {out_dir / 'bench.png'}, "
                  f"profiles: {profiles_path(home)}")


def _record_in_store(home, profiles) -> None:
    """The measured table also goes into the store, beside the jobs it will steer."""
    import json
    from dataclasses import asdict

    from slicebox.store import Store

    store = Store.open(home)
    try:
        store.put_value("profiles", json.dumps([asdict(e) for e in profiles.entries()]))
    finally:
        store.close()
