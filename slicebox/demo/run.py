"""Discover this machine, start the embedded controller, run the example jobs, report.

Everything goes through the same pieces a user drives by hand: ``submit_file`` validates
each job, the controller (FIFO with backfill) composes slices, the local backend runs real
PyTorch training processes, MLflow records every run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from slicebox import policies
from slicebox.backends.local import LocalBackend
from slicebox.controller import Controller, RoundReport, submit_file
from slicebox.controller.reserve import choose_reserved, pin_controller, without_cores
from slicebox.demo import report
from slicebox.demo.scene import POLICY as SCENE_POLICY
from slicebox.demo.scene import ElasticScene, scene_checks, stage
from slicebox.demo.timeline import build as build_timeline
from slicebox.placement import Placer
from slicebox.pool.discovery import discover_local
from slicebox.pool.model import Pool
from slicebox.profiles import ThroughputModel
from slicebox.profiles.store import load_profiles, save_profiles
from slicebox.snapshot import JobState
from slicebox.store import Store
from slicebox.tracking import JobTracker, default_tracking_uri

CLICKLOG_ROWS = 400_000  # ~20 MB: big enough that staging it is visible, small to make


@dataclass(frozen=True)
class DemoResult:
    ok: bool
    report_dir: Path
    tracking_uri: str


def ensure_clicklog(path: Path, console: Console) -> None:
    """The recommender's dataset: made once, by the same module a user would run."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"making the synthetic click log {path} ({CLICKLOG_ROWS:,} rows)",
                  markup=False)
    # The child's own progress goes through ``console`` too: `demo --json` sends that to
    # stderr, and its stdout must hold the JSON document alone.
    made = subprocess.run([sys.executable, "-m", "slicebox.bench.make_clicklog", str(path),
                           "--rows", str(CLICKLOG_ROWS)], capture_output=True, text=True)
    for line in (made.stdout + made.stderr).splitlines():
        console.print(line, markup=False, highlight=False)
    made.check_returncode()  # after its output is shown: that says why


def live_table(store: Store, started: float) -> Table:
    table = Table(title=f"slicebox demo — {time.time() - started:.0f}s")
    for column in ("job", "state", "cores", "samples", "samples/s", "quality", "reason"):
        table.add_column(column, overflow="fold")
    for job in store.jobs():
        comp = job.composition
        table.add_row(job.name, job.state.value,
                      ",".join(map(str, comp.cores)) if comp and job.state.active else "-",
                      f"{job.samples:,}" if job.samples else "-",
                      f"{job.samples_per_s:,.0f}" if job.samples_per_s else "-",
                      f"{job.quality:.4g}" if job.quality is not None else "-",
                      job.reason)
    return table


def _run_until_idle(store: Store, pool: Pool, policy: str, node: str, state: Path,
                    profiles: ThroughputModel, tracking_uri: str,
                    on_round: Callable[[RoundReport], None]) -> ThroughputModel:
    """One controller, as ``slicebox up --until-idle`` runs it; the profiles it refined."""
    controller = Controller(store, pool, policies.get(policy), Placer(pool, profiles),
                            LocalBackend(state, node=node), state, profiles=profiles,
                            tracker=JobTracker(tracking_uri), interval=0.5)
    controller.run(until_idle=True, on_round=on_round)
    return controller.profiles


def run_demo(home: Path, jobs_dir: Path, console: Console, fresh: bool = True,
             reserve: str | None = None, elastic: bool = True,
             examples: bool = True) -> DemoResult:
    """``reserve``: cores for the controller alone (a count or a cpulist), taken from the
    pool the jobs get; the report says where the controller ran either way. ``examples``:
    run the specs in ``jobs_dir``; ``elastic``: then play the elastic scene (``scene.py``)."""
    state = home / "demo"
    if fresh and state.exists():
        shutil.rmtree(state)  # only the demo's own state: ~/.slicebox/demo
    state.mkdir(parents=True, exist_ok=True)

    pool = discover_local(home=home)
    node = pool.nodes[0]
    console.print(f"[bold]pool[/]: node {node.name}: {len(node.cores)} cores "
                  f"({', '.join(f'NUMA {n}: {len(c)}' for n, c in node.cores_by_numa)}), "
                  f"{node.memory_gib:.1f} GiB, {len(node.devices)} GPUs, volumes "
                  + ", ".join(f"{v.name} ({v.tier.value}, {v.read_mbps:,.0f} MB/s)"
                              for v in node.volumes))
    reserved: tuple[int, ...] = ()
    if reserve is not None:
        reserved = choose_reserved(node, reserve)
        pool = without_cores(pool, node.name, reserved)
        node = pool.nodes[0]
        console.print(f"[bold]controller[/]: reserved core(s) "
                      f"{','.join(map(str, reserved))}; jobs get the other {len(node.cores)}")
    root = jobs_dir.parent.parent  # the specs' relative paths are from the repository root
    if examples:
        ensure_clicklog(root / "examples" / "data" / "clicks.npz", console)

    store = Store.open(state)
    placer = Placer(pool, load_profiles(state))
    for path in sorted(jobs_dir.glob("*.yaml")) if examples else []:
        job_id = submit_file(store, pool, placer, path, cwd=root)
        console.print(f"submitted {path.name} as job {job_id}")

    tracking_uri = default_tracking_uri(state)
    profiles: ThroughputModel = load_profiles(state)
    scene_pool = stage(pool) if elastic else None
    if elastic and scene_pool is None:
        console.print("elastic scene skipped: it needs 2 cores on one node")
    scene = (ElasticScene(store, scene_pool, Placer(scene_pool, profiles), root)
             if scene_pool is not None else None)
    started = time.time()
    affinity = os.sched_getaffinity(0)
    cpu_before = time.process_time()
    try:
        where = pin_controller(reserved) if reserved else tuple(sorted(affinity))
        with Live(live_table(store, started), console=console, refresh_per_second=2) as live:
            def show(_: RoundReport) -> None:
                live.update(live_table(store, started))

            # The example jobs, FIFO with backfill; then, on the idle pool, the elastic scene.
            profiles = _run_until_idle(store, pool, "fifo", node.name, state, profiles,
                                       tracking_uri, show)
            if scene is not None:
                live.console.print(scene.begin())

                def step(report: RoundReport) -> None:
                    line = scene.on_round()
                    if line:
                        live.console.print(line)
                    show(report)

                profiles = _run_until_idle(store, scene.pool, SCENE_POLICY, node.name, state,
                                           profiles, tracking_uri, step)
    finally:
        os.sched_setaffinity(0, affinity)  # the caller's process as it was
    ran_on = {"cores": list(where), "reserved": bool(reserved),
              "cpu_seconds": time.process_time() - cpu_before,
              "wall_seconds": time.time() - started}
    save_profiles(state, profiles)

    now = time.time()
    jobs = store.jobs()
    summaries = [report.summarise(store, job, now) for job in jobs]
    results = report.checks(store, summaries, pool)
    points = store.utilisation(now)
    timeline = build_timeline(pool, jobs, store.composition_history(), store.events(), now)
    if scene is not None:
        results += scene_checks(store, timeline, scene.elastic_id, scene.urgent_id)
    details = report.attempt_details(store)
    out = report.write_report(state / "report", summaries, results, points, pool, timeline,
                              controller=ran_on, details=details)
    console.print(report.controller_line(ran_on), highlight=False)
    console.print(report.summary_table(summaries))
    for s in summaries:
        console.print(f"  {s.name}: {s.composition}; staging: {s.staging}; "
                      f"MLflow run {s.mlflow_run_id or '-'}", highlight=False)
    restarts = report.attempts_table(timeline, details)
    if restarts is not None:
        console.print(restarts)
    console.print(report.terminal_timeline(timeline))
    console.print(report.checks_table(results))
    console.print(f"report: {out}/report.txt, {out}/{report.TIMELINE_PNG}, {out}/report.json")
    console.print(f"MLflow runs: {tracking_uri} (experiment slicebox-jobs); "
                  f"state: {state}")
    ok = all(c.ok for c in results) and all(
        j.state is JobState.SUCCEEDED for j in store.jobs())
    store.close()
    return DemoResult(ok, out, tracking_uri)
