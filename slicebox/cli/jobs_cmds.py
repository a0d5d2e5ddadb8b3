"""``submit``, ``ps``, ``logs``, ``cancel``, ``events`` and ``up``: the live system."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import typer
from rich.table import Table

from slicebox.cli.common import (
    JSON_OPTION,
    POOL_OPTION,
    console,
    fail,
    load_pool_or_discover,
    print_json,
    state_dir,
)

POOL_KEY = "pool"  # the pool file `up` runs with, so `submit` validates against the same


def open_store(ctx: typer.Context):
    from slicebox.store import Store

    home = state_dir(ctx)
    home.mkdir(parents=True, exist_ok=True)
    return Store.open(home)


def store_pool(ctx: typer.Context, store, pool_file: Path | None):
    """The pool given, else the one the controller last ran with, else this machine."""
    if pool_file is None:
        recorded = store.value(POOL_KEY)
        pool_file = Path(recorded) if recorded else None
    return load_pool_or_discover(pool_file, state_dir(ctx))


def submit(ctx: typer.Context,
           job_files: list[Path] = typer.Argument(..., help="Job specs (YAML)."),
           pool_file: Path | None = POOL_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Validate job files against the pool and queue them. A bad file queues nothing."""
    from slicebox.controller import submit_file
    from slicebox.errors import SliceboxError
    from slicebox.placement import Placer

    store = open_store(ctx)
    the_pool = store_pool(ctx, store, pool_file)
    placer = Placer(the_pool)
    ids = []
    for path in job_files:
        try:
            ids.append(submit_file(store, the_pool, placer, path))
        except SliceboxError as exc:
            raise fail(f"rejected: {exc}" + (f" ({len(ids)} earlier file(s) were queued: "
                                              f"{', '.join(ids)})" if ids else ""),
                       exc.exit_code) from None
    if as_json:
        print_json({"submitted": ids})
    else:
        for path, job_id in zip(job_files, ids, strict=True):
            console.print(f"queued [bold]{job_id}[/] from {path}")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def ps(ctx: typer.Context,
       show_all: bool = typer.Option(False, "--all", "-a", help="Include finished jobs."),
       as_json: bool = JSON_OPTION) -> None:
    """List jobs: state, composition, progress, why waiting."""
    from slicebox.snapshot import JobState

    store = open_store(ctx)
    states = None if show_all else [s for s in JobState if not s.terminal]
    jobs = store.jobs(states)
    now = time.time()
    if as_json:
        print_json([{"id": j.id, "name": j.name, "state": j.state.value, "reason": j.reason,
                     "composition": j.composition, "samples": j.samples,
                     "quality": j.quality, "samples_per_s": j.samples_per_s,
                     "wait_seconds": j.wait_seconds, "run_seconds": j.ran_for(now),
                     "exit_code": j.exit_code, "attempt": j.attempt,
                     "mlflow_run_id": j.mlflow_run_id} for j in jobs])
        return
    table = Table()
    for column in ("id", "name", "state", "composition", "waited", "ran", "samples/s",
                   "quality", "reason"):
        table.add_column(column)
    for j in jobs:
        table.add_row(j.id, j.name, j.state.value,
                      j.composition.describe() if j.composition else "-",
                      _age(j.wait_seconds if j.wait_seconds is not None
                           else now - j.submitted_at),
                      _age(j.ran_for(now)),
                      f"{j.samples_per_s:,.0f}" if j.samples_per_s else "-",
                      f"{j.quality:.4g}" if j.quality is not None else "-", j.reason)
    console.print(table)


def logs(ctx: typer.Context, job: str = typer.Argument(..., help="Job id, id prefix or name."),
         lines: int = typer.Option(50, "--lines", "-n", min=1),
         follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines."),
         as_json: bool = JSON_OPTION) -> None:
    """Print a job's log (stdout and stderr)."""
    from slicebox.backends.logs import tail

    store = open_store(ctx)
    record = store.find(job)  # UnknownJob: a one-line error (exit 2)
    if record.log_path is None:
        raise fail(f"job {record.id} has not started yet ({record.state.value}: {record.reason})")
    path = Path(record.log_path)
    if as_json:
        print_json({"id": record.id, "log_path": str(path), "lines": tail(path, lines)})
        return
    for line in tail(path, lines):
        typer.echo(line)
    if follow:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            while not store.job(record.id).state.terminal:
                chunk = handle.read()
                if chunk:
                    typer.echo(chunk.decode(errors="replace"), nl=False)
                else:
                    time.sleep(0.5)
            typer.echo(handle.read().decode(errors="replace"), nl=False)


def cancel(ctx: typer.Context, jobs: list[str] = typer.Argument(..., help="Job ids or names."),
           as_json: bool = JSON_OPTION) -> None:
    """Cancel jobs: a waiting one at once, a running one gracefully (checkpoint signal)."""
    store = open_store(ctx)
    done = []
    for ref in jobs:
        record = store.request_cancel(store.find(ref).id)
        done.append({"id": record.id, "state": record.state.value})
    if as_json:
        print_json(done)
    else:
        for item in done:
            console.print(f"{item['id']}: {item['state']}"
                          + (" (stop requested)" if item["state"] != "cancelled" else ""))


def events(ctx: typer.Context, job: str | None = typer.Argument(None, help="Job (default: all)."),
           as_json: bool = JSON_OPTION) -> None:
    """Every state change and note, with its reason."""
    store = open_store(ctx)
    job_id = store.find(job).id if job else None
    records = store.events(job_id)
    if as_json:
        print_json(records)
        return
    table = Table()
    for column in ("time", "job", "event", "reason"):
        table.add_column(column)
    for e in records:
        table.add_row(time.strftime("%H:%M:%S", time.localtime(e.time)), e.job_id,
                      f"{e.from_state or ''}→{e.kind}" if e.from_state else e.kind, e.reason)
    console.print(table)


def build_controller(ctx: typer.Context, store, pool_file: Path | None, policy_name: str,
                     interval: float, track: bool = True, reserve: str | None = None):
    """A controller for this machine: the store, the pool, a policy, placement, MLflow.
    ``reserve``: cores (a count or a cpulist) taken from the jobs' pool for the controller,
    which is pinned to them."""
    from slicebox import policies
    from slicebox.backends.local import LocalBackend
    from slicebox.controller import Controller
    from slicebox.controller.reserve import choose_reserved, pin_controller, without_cores
    from slicebox.placement import Placer
    from slicebox.profiles.store import load_profiles
    from slicebox.registry import RegistryError
    from slicebox.tracking import JobTracker, default_tracking_uri

    home = state_dir(ctx)
    if pool_file is not None:
        store.put_value(POOL_KEY, str(pool_file.resolve()))
    the_pool = store_pool(ctx, store, pool_file)
    controller_cores = None
    if reserve is not None:
        node = the_pool.nodes[0]
        reserved = choose_reserved(node, reserve)
        the_pool = without_cores(the_pool, node.name, reserved)
        controller_cores = pin_controller(reserved)
    try:
        policy = policies.get(policy_name)
    except RegistryError as exc:
        raise fail(str(exc)) from None
    profiles = load_profiles(home)
    tracker = JobTracker(default_tracking_uri(home)) if track else None
    backend = LocalBackend(home, node=the_pool.nodes[0].name)
    controller = Controller(store, the_pool, policy, Placer(the_pool, profiles), backend, home,
                            profiles=profiles, tracker=tracker, interval=interval)
    controller.cores = controller_cores
    return controller


def up(ctx: typer.Context, pool_file: Path | None = POOL_OPTION,
       policy: str = typer.Option("fifo", "--policy", help="Scheduling policy."),
       interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between rounds."),
       until_idle: bool = typer.Option(False, "--until-idle",
                                       help="Return once nothing runs or can start."),
       no_mlflow: bool = typer.Option(False, "--no-mlflow", help="Do not track jobs in MLflow."),
       reserve_cores: str | None = typer.Option(
           None, "--reserve-cores", help="Cores for the controller alone, taken from the "
           "jobs' pool: a count (the highest-numbered) or a list such as 2-3."),
       as_json: bool = JSON_OPTION) -> None:
    """Run the controller in the foreground (Ctrl-C stops it; running jobs carry on and the
    next `slicebox up` adopts them)."""
    from slicebox.profiles.store import save_profiles

    store = open_store(ctx)
    controller = build_controller(ctx, store, pool_file, policy, interval, not no_mlflow,
                                  reserve_cores)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def on_round(report) -> None:
        if as_json:
            print_json({"time": report.time, "started": report.started,
                        "finished": report.finished, "waiting": report.waiting,
                        "active": report.active})
        else:
            for job_id in report.started:
                console.print(f"started {job_id}")
            for job_id in report.finished:
                record = store.job(job_id)
                console.print(f"{job_id}: {record.state.value} ({record.reason})")

    if not as_json:
        pinned = (f", controller on core(s) {','.join(map(str, controller.cores))}"
                  if controller.cores else "")
        console.print(f"controller up: pool {controller.pool.name}, policy {policy}, "
                      f"state {state_dir(ctx)}{pinned}")
    try:
        # LeaseHeld, store trouble: SliceboxErrors, one line each (the app prints them)
        controller.run(until_idle=until_idle, stop_event=stop, on_round=on_round)
    finally:
        save_profiles(state_dir(ctx), controller.profiles)


def demo(ctx: typer.Context,
         jobs_dir: Path = typer.Option(Path("examples/jobs"), "--jobs",
                                       help="Folder of job specs to run."),
         reserve_cores: str | None = typer.Option(
             None, "--reserve-cores", help="Cores for the controller alone (a count or a "
             "list such as 3-3); the report says where the controller ran."),
         as_json: bool = JSON_OPTION) -> None:
    """Run the example jobs on this machine and report (state under <state>/demo)."""
    import io
    import json

    from rich.console import Console

    from slicebox.demo.run import run_demo

    if not jobs_dir.is_dir():
        raise fail(f"--jobs: {jobs_dir} is not a folder of job specs (run from the "
                   "repository root, or pass --jobs)")
    out = Console(file=io.StringIO()) if as_json else console
    result = run_demo(state_dir(ctx), jobs_dir.resolve(), out, reserve=reserve_cores)
    if as_json:
        print_json({"ok": result.ok, "tracking_uri": result.tracking_uri,
                    **json.loads((result.report_dir / "report.json").read_text())})
    if not result.ok:
        raise fail("the demo did not go as designed: see the checks above", code=1)
