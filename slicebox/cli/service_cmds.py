"""``slicebox services`` (list them) and ``slicebox cancel`` (a service or jobs).

A service is submitted like a job (``slicebox submit service.yaml`` with ``kind:
service``); the controller that ``slicebox up`` runs starts its replicas and balancer.
``cancel`` takes service names next to job ids and names: a name that is a live service's
cancels that service (its replicas, then its balancer); everything else is a job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from slicebox.cli import jobs_cmds, remote
from slicebox.cli.common import JSON_OPTION, console, print_json
from slicebox.cli.remote import SERVER_OPTION

if TYPE_CHECKING:
    from slicebox.client import Client


def services(ctx: typer.Context,
             show_all: bool = typer.Option(False, "--all", "-a",
                                           help="Include cancelled services."),
             server: str | None = SERVER_OPTION,
             as_json: bool = JSON_OPTION) -> None:
    """List services: replicas running / wanted, the balancer's URL, rate and p99."""
    client = remote.client_for(server)
    if client is not None:
        with client:
            show(remote.service_rows(client, show_all), as_json)
        return
    from slicebox.snapshot import JobState

    store = jobs_cmds.open_store(ctx)
    records = store.services(include_ended=show_all)
    running: dict[str, int] = {}
    for job in store.jobs([JobState.RUNNING]):
        if job.spec.replica_of is not None and not job.cancel_requested:
            running[job.spec.replica_of.service] = running.get(job.spec.replica_of.service,
                                                               0) + 1
    rows = [{"id": s.id, "name": s.name, "team": s.team, "state": s.state,
             "running": running.get(s.id, 0), "desired": s.desired, "url": s.url,
             "rate_rps": s.stats.get("rate_rps"), "p99_ms": s.stats.get("p99_ms"),
             "objective_p99_ms": s.spec.service.objective.p99_ms if s.spec.service else None,
             "shape": s.stats.get("shape"), "capacity_rps": s.stats.get("capacity_rps"),
             "reason": s.reason} for s in records]
    show(rows, as_json)


def show(rows: list[dict[str, Any]], as_json: bool) -> None:
    """The services table (or JSON), the same from the store or from the service."""
    if as_json:
        print_json(rows)
        return
    table = Table()
    for column in ("id", "name", "state", "replicas", "url", "rate", "p99 / objective",
                   "reason"):
        table.add_column(column, no_wrap=column == "id")
    for row in rows:
        p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.1f}"
        rate = "-" if row["rate_rps"] is None else f"{row['rate_rps']:.1f}/s"
        objective = "-" if row["objective_p99_ms"] is None else f"{row['objective_p99_ms']:g}"
        table.add_row(row["id"], Text(str(row["name"])), row["state"],
                      f"{row['running']}/{row['desired']}"
                      + (f" x {row['shape']}" if row.get("shape") else ""),  # live sizing's
                      Text(str(row["url"] or "-")),
                      rate, f"{p99} / {objective} ms", Text(str(row["reason"])))
    console.print(table)


def cancel(ctx: typer.Context,
           refs: list[str] = typer.Argument(..., help="Service names, job ids or job names."),
           server: str | None = SERVER_OPTION,
           as_json: bool = JSON_OPTION) -> None:
    """Cancel services (their replicas, then their balancer) and jobs (a waiting one at
    once, a running one gracefully, with its checkpoint signal)."""
    from slicebox.store import UnknownService

    client = remote.client_for(server)
    if client is not None:
        with client:
            _cancel_remote(client, refs, as_json)
        return
    store = jobs_cmds.open_store(ctx)
    done, jobs = [], []
    for ref in refs:
        try:
            svc = store.find_service(ref)
        except UnknownService:
            jobs.append(ref)
            continue
        if svc.ended:  # a name reused by a job after its service ended: the job
            jobs.append(ref)
            continue
        record = store.request_service_cancel(svc.id)
        done.append({"id": record.id, "service": record.name, "state": record.state})
    if as_json and done and jobs:
        # One JSON document: cancel the jobs here too, in the job command's shape.
        for ref in jobs:
            job = store.request_cancel(store.find(ref).id)
            done.append({"id": job.id, "state": job.state.value})
        print_json(done)
        return
    _show_cancelled(done, as_json)
    if jobs:
        jobs_cmds.cancel(ctx, jobs, server=None, as_json=as_json)


def _cancel_remote(client: Client, refs: list[str], as_json: bool) -> None:
    """``cancel`` through the service: services first (by id or name), then jobs, shown
    as the embedded command shows them."""
    done, jobs = remote.cancel_services(client, refs)
    if as_json and done and jobs:  # one JSON document, as embedded
        print_json(done + remote.cancel_jobs(client, jobs))
        return
    _show_cancelled(done, as_json)
    if jobs:
        remote.cancel(client, jobs, as_json)


def _show_cancelled(done: list[dict[str, Any]], as_json: bool) -> None:
    """The services a cancel reached, as embedded and remote ``cancel`` both show them."""
    if as_json and done:
        print_json(done)
    else:
        for item in done:
            console.print(f"service {item['service']} ({item['id']}): {item['state']} "
                          "(its replicas are being stopped)")
