"""``slicebox run``: queue a command without writing a job file.

``slicebox run --cpus 2 --memory-gib 4 -- python train.py --lr 0.1`` builds the same
``JobSpec`` a file would give (so the same validation and messages) and queues it through
the same admission as ``submit``. The command is an argv, never a shell line.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer

from slicebox.cli import remote
from slicebox.cli.common import JSON_OPTION, console, fail, literal, print_json
from slicebox.cli.jobs_cmds import open_store, store_pool
from slicebox.cli.remote import SERVER_OPTION

_NOT_IN_NAME = re.compile(r"[^a-z0-9._-]+")


def default_name(argv: list[str]) -> str:
    """A job name from the command: the script's (or else the program's) base name,
    lowercased to what a name may hold (``python train.py`` -> ``train``)."""
    words = [w for w in argv if not w.startswith("-")]
    scripts = [w for w in words[1:] if w.endswith(".py")]
    word = Path(scripts[0] if scripts else words[0] if words else "job").stem
    name = _NOT_IN_NAME.sub("-", word.lower()).strip("-._")[:63]
    return name or "job"


def run(ctx: typer.Context,
        command: list[str] = typer.Argument(..., metavar="-- COMMAND...",
                                            help="The program and its arguments."),
        name: str | None = typer.Option(None, "--name", help="Job name (default: from the "
                                         "command, e.g. train for python train.py)."),
        cpus: int = typer.Option(1, "--cpus", help="CPU cores."),
        gpus: int = typer.Option(0, "--gpus", help="Whole GPUs."),
        memory_gib: float = typer.Option(1.0, "--memory-gib", help="Memory limit (GiB)."),
        priority: int = typer.Option(0, "--priority", help="Higher runs first."),
        workload: str | None = typer.Option(None, "--workload",
                                            help="Job class for profiles."),
        team: str | None = typer.Option(None, "--team", help="Whose job it is."),
        time_limit: float | None = typer.Option(None, "--time-limit",
                                                help="Seconds before it is stopped."),
        pool_file: Path | None = typer.Option(None, "--pool", help="Check against this "
                                              "pool file instead of the pool up recorded."),
        server: str | None = SERVER_OPTION,
        as_json: bool = JSON_OPTION) -> None:
    """Queue COMMAND as a job (as `submit` does a job file): slicebox run --cpus 2 -- python
    train.py."""
    from slicebox.controller.submit import submit_spec
    from slicebox.placement import Placer
    from slicebox.spec import SpecError, parse_spec

    data: dict[str, object] = {
        "name": name if name is not None else default_name(command),
        "command": list(command),
        "resources": {"cpus": cpus, "gpus": gpus, "memory_gib": memory_gib},
        "priority": priority,
    }
    for key, value in (("workload", workload), ("team", team),
                       ("time_limit_seconds", time_limit)):
        if value is not None:
            data[key] = value
    try:
        spec = parse_spec(data)
    except SpecError as exc:
        raise fail(str(exc)) from None
    client = remote.client_for(server)  # a configured service: through it
    if client is not None:
        if pool_file is not None:
            client.close()
            raise fail("--pool: the service checks jobs against the pool it runs; leave "
                       "--pool out (or set no server, to queue in a state directory)")
        with client, remote.refusals("slicebox run"):
            job_id = client.submit(spec, cwd=Path.cwd())["id"]
        _queued(job_id, spec.name, as_json)
        return
    store = open_store(ctx)
    the_pool = store_pool(ctx, store, pool_file)
    # Admission (exit 2 naming the field): the program must resolve, the pool must be able
    # to fit it some day; relative paths are relative to where you run this.
    job_id = submit_spec(store, the_pool, Placer(the_pool), spec, cwd=Path.cwd(),
                         source="slicebox run")
    _queued(job_id, spec.name, as_json)


def _queued(job_id: str, name: str, as_json: bool) -> None:
    if as_json:
        print_json({"submitted": [job_id]})
    else:
        console.print(f"queued [bold]{job_id}[/] ({literal(name)})")
