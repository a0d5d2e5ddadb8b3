"""``submit``, ``ps``, ``logs``, ``cancel``, ``events`` and ``up``: the live system."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from slicebox.cli import config, remote
from slicebox.cli.common import (
    EXIT_RUNTIME,
    JSON_OPTION,
    POOL_OPTION,
    console,
    errors,
    fail,
    literal,
    load_pool_or_discover,
    print_json,
    print_json_line,
    state_dir,
    store_url,
)
from slicebox.cli.remote import SERVER_OPTION

if TYPE_CHECKING:
    from slicebox.hours import Window

# What `up` runs with (a pool file's path, or the pool a Ray cluster reports, recorded by
# the controller as it changes), so `submit` run anywhere validates against the same. The
# same key as slicebox.controller.live_pool.POOL_KEY (not imported: the CLI starts light).
POOL_KEY = "pool"


def open_store(ctx: typer.Context):
    from slicebox.store import Store

    home = state_dir(ctx)
    home.mkdir(parents=True, exist_ok=True)
    return Store.open(home, url=store_url(ctx))


def store_pool(ctx: typer.Context, store, pool_file: Path | None):
    """The pool given, else the one the controller last ran with (a pool file, or every
    node a Ray cluster has reported: a job that fits only a node that is down now is
    accepted and waits for it), else this machine."""
    from slicebox.controller.live_pool import recorded

    if pool_file is None:
        last = recorded(store)
        if last is not None and not isinstance(last, Path):
            return last
        pool_file = last
    return load_pool_or_discover(pool_file, state_dir(ctx))


def submit(ctx: typer.Context,
           job_files: list[Path] = typer.Argument(..., help="Job specs (YAML)."),
           pool_file: Path | None = POOL_OPTION,
           array: str | None = typer.Option(
               None, "--array", metavar="INDICES", help="Queue each file as a job array, one "
               "job per index (e.g. 0-9 or 0,4,8-11); the job reads SLICEBOX_ARRAY_INDEX."),
           after: list[str] = typer.Option(
               [], "--after", metavar="JOB", help="Start only after JOB has ended, whatever "
               "its result (an id, id prefix or name; repeatable)."),
           afterok: list[str] = typer.Option(
               [], "--afterok", metavar="JOB", help="Start only after JOB has succeeded; "
               "cancelled if it fails or is cancelled (repeatable)."),
           server: str | None = SERVER_OPTION,
           as_json: bool = JSON_OPTION) -> None:
    """Validate job files against the pool and queue them, all or none: every file is
    checked first, then one transaction queues them all. A bad file queues nothing."""
    from slicebox.controller.submit import submit_files
    from slicebox.placement import Placer

    indices = _array_indices(array) if array is not None else ()
    client = remote.client_for(server)
    if client is not None:
        if pool_file is not None:
            client.close()
            raise fail("--pool: the service checks jobs against the pool it runs; leave "
                       "--pool out (or set no server, to submit to a state directory)")
        with client:
            remote.submit(client, job_files, indices, after, afterok, as_json)
        return
    store = open_store(ctx)
    the_pool = store_pool(ctx, store, pool_file)
    # A SpecError (exit 2) names the file and field; the app prints it, nothing queued.
    ids = submit_files(store, the_pool, Placer(the_pool), job_files, array=indices,
                       after=_job_ids(store, after, "--after"),
                       afterok=_job_ids(store, afterok, "--afterok"))
    if as_json:
        print_json({"submitted": ids})
        return
    per_file = len(indices) or 1
    for n, path in enumerate(job_files):
        mine = ids[n * per_file:(n + 1) * per_file]
        what = f"[bold]{mine[0]}[/]" if len(mine) == 1 else \
            f"{len(mine)} jobs ([bold]{mine[0]}[/] … [bold]{mine[-1]}[/])"
        console.print(f"queued {what} from {literal(path)}")


def _job_ids(store, refs: list[str], option: str) -> list[str]:
    """The ids of the jobs ``refs`` name (id, id prefix or name), for ``--after``."""
    from slicebox.store import UnknownJob

    try:
        return [store.find(ref).id for ref in refs]
    except UnknownJob as exc:
        raise fail(f"{option}: {exc}") from None


MAX_ARRAY_JOBS = 10_000  # one submission; more is a typo that would fill the queue


def _array_indices(text: str) -> tuple[int, ...]:
    """``--array`` as indices, in the order given, each once."""
    from slicebox.pool.cpulist import cpulist_ranges, cpulist_size
    from slicebox.spec.job import MAX_ARRAY_INDEX

    usage = f"--array: {text!r} is not a list of indices such as 0-9 or 0,4,8-11"
    try:
        ranges = cpulist_ranges(text, bounded=False)
        count = cpulist_size(text)
    except ValueError:
        raise fail(usage) from None
    if not ranges:
        raise fail(usage)
    if count > MAX_ARRAY_JOBS:
        raise fail(f"--array: {count:,} jobs; at most {MAX_ARRAY_JOBS:,} in one submission")
    if max(high for _, high in ranges) > MAX_ARRAY_INDEX:
        raise fail(f"--array: indices go up to {MAX_ARRAY_INDEX:,}")
    return tuple(dict.fromkeys(i for low, high in ranges for i in range(low, high + 1)))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def ps(ctx: typer.Context,
       show_all: bool = typer.Option(False, "--all", "-a", help="Include finished jobs."),
       server: str | None = SERVER_OPTION,
       as_json: bool = JSON_OPTION) -> None:
    """List jobs: state, composition, progress, why waiting."""
    from slicebox.snapshot import JobState

    client = remote.client_for(server)
    if client is not None:
        with client:
            remote.ps(client, show_all, as_json)
        return
    store = open_store(ctx)
    states = None if show_all else [s for s in JobState if not s.terminal]
    jobs = store.jobs(states)
    # Jobs stopped and requeued (preempted, resized): their checkpoints and lost work.
    checkpoints = store.checkpoint_summaries([j.id for j in jobs]) if jobs else {}
    now = time.time()
    if as_json:
        print_json([{"id": j.id, "name": j.name, "state": j.state.value, "reason": j.reason,
                     "composition": j.composition, "samples": j.samples,
                     "quality": j.quality, "samples_per_s": j.samples_per_s,
                     "wait_seconds": j.wait_seconds, "run_seconds": j.ran_for(now),
                     "exit_code": j.exit_code, "attempt": j.attempt,
                     "mlflow_run_id": j.mlflow_run_id,
                     "checkpoint": checkpoints.get(j.id)} for j in jobs])
        return
    table = Table()
    # The id is what every other command takes: never cut, at any terminal width (the
    # other columns fold instead).
    table.add_column("id", no_wrap=True, min_width=max((len(j.id) for j in jobs), default=2))
    columns = ["name", "state", "composition", "waited", "ran", "samples/s", "quality"]
    if checkpoints:
        columns += ["lost samples", "checkpoint"]
    for column in (*columns, "reason"):
        table.add_column(column, overflow="fold")
    for j in jobs:
        waited = j.wait_seconds if j.wait_seconds is not None else now - j.submitted_at
        cells: list[str | Text] = [
            Text(j.name), j.state.value,
            Text(j.composition.describe()) if j.composition else "-",
            _age(waited), _age(j.ran_for(now)),
            f"{j.samples_per_s:,.0f}" if j.samples_per_s else "-",
            f"{j.quality:.4g}" if j.quality is not None else "-"]
        if checkpoints:
            cells += _checkpoint_cells(checkpoints.get(j.id))
        table.add_row(j.id, *cells, Text(j.reason))  # Text: names and reasons print as is
    console.print(table)


def _checkpoint_cells(summary) -> list[str]:
    """``lost samples``: work redone after requeues; ``checkpoint``: the latest one's step,
    and how long saving and restoring it took."""
    if summary is None:
        return ["-", "-"]
    where = "-" if summary.last_step is None else f"step {summary.last_step:,}"
    timings = [f"{label} {seconds:.2f}s" for label, seconds in
               (("saved in", summary.last_save_seconds),
                ("restored in", summary.last_restore_seconds)) if seconds is not None]
    return [f"{summary.lost_samples:,}", ", ".join([where, *timings])]


def cancel(ctx: typer.Context, jobs: list[str] = typer.Argument(..., help="Job ids or names."),
           server: str | None = SERVER_OPTION,
           as_json: bool = JSON_OPTION) -> None:
    """Cancel jobs: a waiting one at once, a running one gracefully (checkpoint signal)."""
    client = remote.client_for(server)
    if client is not None:
        with client:
            remote.cancel(client, jobs, as_json)
        return
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
           server: str | None = SERVER_OPTION,
           as_json: bool = JSON_OPTION) -> None:
    """Every state change and note, with its reason."""
    from dataclasses import asdict

    client = remote.client_for(server)
    if client is not None:
        with client:
            remote.events(client, job, as_json)
        return
    store = open_store(ctx)
    job_id = store.find(job).id if job else None
    remote.show_events([asdict(e) for e in store.events(job_id)], as_json)


def build_controller(ctx: typer.Context, store, pool_file: Path | None, policy_name: str,
                     interval: float, track: bool = True, reserve: str | None = None,
                     backend_name: str = "local", address: str | None = None,
                     connect_timeout: float = 5.0, allow_mig_reconfigure: bool = False,
                     service_hours: tuple[Window, ...] | None = None):
    """A controller: the store, the pool, a policy, placement, MLflow, and a backend.

    ``local``: this machine (or ``pool_file``); ``reserve``: cores (a count or a cpulist)
    taken from the jobs' pool for the controller, which is pinned to them. ``ray``: the
    cluster at ``address`` (``auto`` or HOST:PORT); the pool is what its agents report,
    and follows nodes joining and leaving. ``service_hours``: the hours in which services
    keep a share of the pool, instead of the pool file's (None: the pool file's)."""
    from slicebox import policies
    from slicebox.controller import Controller
    from slicebox.controller.backend_choice import check_backend
    from slicebox.controller.reserve import choose_reserved, pin_controller, without_cores
    from slicebox.placement import Placer
    from slicebox.profiles.store import load_profiles
    from slicebox.registry import RegistryError
    from slicebox.tracking import JobTracker, default_tracking_uri

    home = state_dir(ctx)
    backend_name = check_backend(backend_name)
    try:
        policy = policies.get(policy_name)
    except RegistryError as exc:
        raise fail(str(exc)) from None
    if backend_name == "ray":
        if pool_file is not None:
            raise fail("--pool: with --backend ray the pool is what the cluster's nodes "
                       "report; leave --pool out")
        if reserve is not None:
            raise fail("--reserve-cores applies only to --backend local")
        if allow_mig_reconfigure:  # NVML reaches this machine's cards only
            raise fail("--allow-mig-reconfigure applies only to --backend local")
        return _ray_controller(store, home, policy, address or "auto", connect_timeout,
                               interval, track, service_hours or ())
    if address is not None:
        raise fail("--address applies only to --backend ray")
    if allow_mig_reconfigure:
        from slicebox.controller.mig import local_nvml

        if local_nvml() is None:
            raise fail("--allow-mig-reconfigure: NVML is not installed here "
                       "(pip install nvidia-ml-py)")
    from slicebox.backends.local import LocalBackend
    from slicebox.controller.live_pool import recorded_backend

    if pool_file is not None:
        store.put_value(POOL_KEY, str(pool_file.resolve()))
    elif recorded_backend(store) is not None:
        store.put_value(POOL_KEY, "")  # a cluster's pool no longer applies: this machine
    the_pool = store_pool(ctx, store, pool_file)
    # The quota policy takes its teams' quotas from the pool file (`quotas:`): the one
    # given now, or the one recorded by an earlier `up --pool`.
    from slicebox.controller.live_pool import recorded
    from slicebox.policies.quota import configure

    source = pool_file if pool_file is not None else recorded(store)
    policy = configure(policy, source if isinstance(source, Path) else None)
    controller_cores = None
    if reserve is not None:
        node = the_pool.nodes[0]
        reserved = choose_reserved(node, reserve)
        the_pool = without_cores(the_pool, node.name, reserved)
        controller_cores = pin_controller(reserved)
    if service_hours is not None:  # --service-hours: instead of the pool file's
        import dataclasses

        the_pool = dataclasses.replace(the_pool, service_hours=service_hours)
    profiles = load_profiles(home)
    tracker = JobTracker(default_tracking_uri(home)) if track else None
    backend = LocalBackend(home, node=the_pool.nodes[0].name)
    controller = Controller(store, the_pool, policy, Placer(the_pool, profiles), backend, home,
                            profiles=profiles, tracker=tracker, interval=interval)
    controller.cores = controller_cores
    if allow_mig_reconfigure:  # the controller re-lays out idle MIG cards (docs/mig.md)
        from slicebox.controller.mig import local_nvml

        controller.mig.allow(the_pool.nodes[0].name, local_nvml)
    return controller


def _ray_controller(store, home: Path, policy, address: str, connect_timeout: float,
                    interval: float, track: bool, service_hours: tuple[Window, ...]):
    """The controller over a Ray cluster: its pool starts as the nodes the agents report
    now, and the controller follows it (and records it for `submit`) from then on."""
    from slicebox.controller import Controller
    from slicebox.controller.backend_choice import ray_backend
    from slicebox.placement import Placer
    from slicebox.pool.model import Pool
    from slicebox.profiles.store import load_profiles
    from slicebox.tracking import JobTracker, default_tracking_uri

    backend = ray_backend(home, address, connect_timeout)
    try:
        the_pool = Pool(tuple(backend.nodes()), "ray", service_hours=service_hours)
        profiles = load_profiles(home)
        tracker = JobTracker(default_tracking_uri(home)) if track else None
        return Controller(store, the_pool, policy, Placer(the_pool, profiles), backend, home,
                          profiles=profiles, tracker=tracker, interval=interval)
    except BaseException:
        backend.close()
        raise


def up(ctx: typer.Context, pool_file: Path | None = POOL_OPTION,
       policy: str = typer.Option("fifo", "--policy", help="Scheduling policy."),
       interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between rounds."),
       until_idle: bool = typer.Option(False, "--until-idle",
                                       help="Return once nothing runs or can start."),
       no_mlflow: bool = typer.Option(False, "--no-mlflow", help="Do not track jobs in MLflow."),
       reserve_cores: str | None = typer.Option(
           None, "--reserve-cores", help="Cores for the controller alone, taken from the "
           "jobs' pool: a count (the highest-numbered) or a list such as 2-3 (local only)."),
       backend: str = typer.Option("local", "--backend",
                                   help="local (this machine) or ray (a Ray cluster)."),
       address: str | None = typer.Option(
           None, "--address", help="With --backend ray: the cluster's head, HOST:PORT, or "
           "auto (the cluster this machine is a node of). Default: auto."),
       connect_timeout: float = typer.Option(
           5.0, "--connect-timeout", min=0.1, max=300.0,
           help="Seconds to wait for the Ray head to answer."),
       serve: bool = typer.Option(False, "--serve", help="Also serve the REST API (and "
                                  "/metrics) beside the controller; `slicebox down` stops it."),
       host: str = typer.Option("127.0.0.1", "--host", help="With --serve: the address to "
                                "listen on (default: this machine only)."),
       port: int = typer.Option(8765, "--port", min=1, max=65535,
                                help="With --serve: the port to listen on."),
       mlflow_ui: str | None = typer.Option(
           None, "--mlflow-ui", help="With --serve: the MLflow UI's address (such as "
           "http://127.0.0.1:5000), so that the dashboard links each job to its run. "
           "Default: SLICEBOX_MLFLOW_UI, or mlflow_ui in config.toml."),
       allow_mig_reconfigure: bool = typer.Option(
           False, "--allow-mig-reconfigure", help="Re-lay out idle MIG cards (through NVML) "
           "when MIG jobs wait for a layout they fit (docs/mig.md); local backend only."),
       service_hours: list[str] | None = typer.Option(
           None, "--service-hours", metavar="HH:MM-HH:MM=SHARE",
           help="Hours in which the services together keep at least SHARE of the pool, "
           "training getting the rest, e.g. 08:00-20:00=0.5 (repeatable; instead of the "
           "pool file's service_hours)."),
       detach: bool = typer.Option(False, "--detach", help="Run in the background (implies "
                                   "--serve; output to <state>/up.log); returns once the "
                                   "service answers. `slicebox down` stops it."),
       as_json: bool = JSON_OPTION) -> None:
    """Run the controller in the foreground (Ctrl-C stops it; running jobs carry on and the
    next `slicebox up` adopts them), or with --detach in the background."""
    from slicebox.controller.backend_choice import check_backend
    from slicebox.profiles.store import save_profiles

    backend = check_backend(backend)  # before the store is opened: a typo changes nothing
    hours = _service_hours(service_hours)
    if mlflow_ui is not None and not (serve or detach):
        raise fail("--mlflow-ui applies only with --serve (the dashboard's links)")
    # Checked now (http or https only: the page links to it), naming where it came from.
    ui = config.mlflow_ui(mlflow_ui).value if (serve or detach) else None
    if detach:
        args = ["--serve", "--host", host, "--port", str(port), "--policy", policy,
                "--interval", str(interval), "--backend", backend,
                "--connect-timeout", str(connect_timeout)]
        if ui is not None:
            args += ["--mlflow-ui", ui]
        if pool_file is not None:  # the child runs in the state directory
            args += ["--pool", str(pool_file.expanduser().resolve())]
        if reserve_cores is not None:
            args += ["--reserve-cores", reserve_cores]
        if address is not None:
            args += ["--address", address]
        for window in service_hours or ():
            args += ["--service-hours", window]
        args += [flag for flag, on in (("--until-idle", until_idle),
                                       ("--no-mlflow", no_mlflow), ("--json", as_json),
                                       ("--allow-mig-reconfigure", allow_mig_reconfigure)) if on]
        _up_detached(ctx, args, as_json)
        return
    store = open_store(ctx)
    controller = build_controller(ctx, store, pool_file, policy, interval, not no_mlflow,
                                  reserve_cores, backend, address, connect_timeout,
                                  allow_mig_reconfigure, hours)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    rounds = None  # with --serve: each round's duration, for /metrics

    def on_round(report) -> None:
        if rounds is not None:
            rounds.observe(getattr(controller, "last_round_seconds", None))
        if as_json:  # JSON Lines: one object per round in which a job started or ended
            if report.started or report.finished or report.pool_changes:
                print_json_line({"time": report.time, "started": report.started,
                                 "finished": [_outcome(store.job(j)) for j in report.finished],
                                 "pool": report.pool_changes,
                                 "waiting": report.waiting, "active": report.active})
            return
        for line in report.pool_changes:
            console.print(literal(line), highlight=False)
        for job_id in report.started:
            console.print(f"started {job_id}")
        for job_id in report.finished:
            record = store.job(job_id)
            console.print(f"{job_id}: {record.state.value} ({literal(record.reason)})")

    pinned = (f", controller on core(s) {','.join(map(str, controller.cores))}"
              if controller.cores else "")
    # With --json the stream owns stdout; this human line goes to stderr.
    (errors if as_json else console).print(
        f"controller up: backend {backend}, pool {literal(controller.pool.name)} "
        f"({len(controller.pool.nodes)} node{'' if len(controller.pool.nodes) == 1 else 's'}), "
        f"policy {literal(policy)}, "
        f"state {literal(state_dir(ctx))}{pinned}", highlight=False)
    service = None
    try:
        # The lease before the service: a second `up` for this store stops here (LeaseHeld,
        # store trouble: SliceboxErrors, one line each; the app prints them), serving nothing.
        try:
            controller.start()
            if serve:
                from slicebox.service.metrics import RoundLatency
                from slicebox.service.server import start

                rounds = RoundLatency()
                # Functions, not values: Ray changes the pool while the service runs, and
                # admission checks against every node the cluster has shown.
                service = start(store, lambda: controller.admission_pool,
                                lambda: controller.admission_placer,
                                state_dir=state_dir(ctx), host=host, port=port,
                                rounds=rounds, mlflow_ui=ui)
                (errors if as_json else console).print(f"service on {literal(service.url)}",
                                                       highlight=False)
        except BaseException:
            controller.close()  # run() has not begun, so it will not close it
            raise
        controller.run(until_idle=until_idle, stop_event=stop, on_round=on_round)
    finally:
        if service is not None:
            service.stop()
        save_profiles(state_dir(ctx), controller.profiles)


def _service_hours(given: list[str] | None) -> tuple[Window, ...] | None:
    """``--service-hours`` values as windows (None: none given), or a failure naming the
    one that is wrong."""
    from slicebox.errors import InputError
    from slicebox.hours import MAX_WINDOWS, parse_window

    if not given:
        return None
    if len(given) > MAX_WINDOWS:
        raise fail(f"--service-hours: at most {MAX_WINDOWS} windows, got {len(given)}")
    try:
        return tuple(parse_window(text) for text in given)
    except InputError as exc:
        raise fail(f"--service-hours {exc}") from None


def _up_detached(ctx: typer.Context, up_args: list[str], as_json: bool) -> None:
    """Start ``up`` in the background (see slicebox.cli.detach) and say where it serves."""
    from slicebox.cli.detach import DetachError, start_detached

    try:
        started = start_detached(state_dir(ctx), up_args, store_url=store_url(ctx))
    except DetachError as exc:
        errors.print(f"[bold red]error:[/] {literal(exc)}", highlight=False, soft_wrap=True)
        for line in exc.log_tail:
            errors.print(f"  {literal(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_RUNTIME) from None
    if as_json:
        print_json({"url": started.url, "pid": started.pid, "log": str(started.log)})
    else:
        console.print(f"slicebox up running in the background: {literal(started.url)} "
                      f"(pid {started.pid}, log {literal(started.log)}); "
                      "`slicebox down` stops it", highlight=False, soft_wrap=True)


def down(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Stop the `slicebox up --serve` serving this state directory (its controller stops
    too; running jobs carry on, and the next `slicebox up` adopts them)."""
    from slicebox.service.server import stop_running

    info = stop_running(state_dir(ctx))
    if as_json:
        print_json({"stopped": info.pid if info is not None else None})
    elif info is None:
        console.print("nothing running for this state directory")
    else:
        console.print(f"stopped pid {info.pid}")


def _outcome(record) -> dict:
    return {"id": record.id, "state": record.state.value, "reason": record.reason,
            "exit_code": record.exit_code}


def demo(ctx: typer.Context,
         jobs_dir: Path = typer.Option(Path("examples/jobs"), "--jobs",
                                       help="Folder of job specs to run."),
         reserve_cores: str | None = typer.Option(
             None, "--reserve-cores", help="Cores for the controller alone (a count or a "
             "list such as 3-3); the report says where the controller ran."),
         as_json: bool = JSON_OPTION) -> None:
    """Run the example jobs on this machine and report (state under <state>/demo)."""
    import json

    from slicebox.demo.run import run_demo

    if not jobs_dir.is_dir():
        raise fail(f"--jobs: {jobs_dir} is not a folder of job specs (run from the "
                   "repository root, or pass --jobs)")
    out = errors if as_json else console  # --json: the document alone on stdout
    result = run_demo(state_dir(ctx), jobs_dir.resolve(), out, reserve=reserve_cores)
    if as_json:
        print_json({"ok": result.ok, "tracking_uri": result.tracking_uri,
                    **json.loads((result.report_dir / "report.json").read_text())})
    if not result.ok:
        raise fail("the demo did not go as designed: see the checks above", code=EXIT_RUNTIME)
