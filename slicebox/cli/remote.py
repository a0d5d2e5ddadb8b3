"""``submit``, ``ps``, ``cancel``, ``logs`` and ``events`` through a running service.

When a server is configured (``--server``, ``SLICEBOX_SERVER``, or ``server`` in
config.toml) these commands go through ``slicebox.Client`` with the configured token
instead of opening the store: the service admits and the controller beside it runs what
it queues. Otherwise they run embedded, on the store, as before.

What a user sees is what the embedded command shows: the same lines, the same ``--json``
keys where the API has them, the same error messages (a spec refused by the service names
the file, the field and the reason as a local refusal does) and the same exit codes (2 for
a request that is wrong, 1 for one that could not be carried out).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table
from rich.text import Text

from slicebox.cli import config
from slicebox.cli.common import (
    console,
    errors,
    literal,
    print_json,
    print_json_line,
)
from slicebox.errors import InputError, SliceboxError

if TYPE_CHECKING:
    from slicebox.client import Client
    from slicebox.spec import JobSpec

SERVER_OPTION = typer.Option(
    None, "--server", metavar="URL",
    help="Go through the service at URL (default: SLICEBOX_SERVER, or server in "
         "config.toml; none: run on the store directly). The token comes from "
         "SLICEBOX_TOKEN or config.toml.")
NON_TERMINAL = ["queued", "staging", "running", "preempted"]


class RemoteError(SliceboxError):
    """The service refused or failed a request (exit 1)."""


class RemoteInputError(RemoteError, InputError):
    """The service found the request itself wrong (exit 2)."""


def client_for(server: str | None) -> Client | None:
    """A client of the configured service, or None when none is configured (embedded).
    A server without a token is refused before anything is sent."""
    setting = config.resolve("server", server)
    if setting.value is None:
        return None
    config.server(setting.value)  # an http(s) URL, or ConfigError naming it
    token = config.token().value
    if not token:
        raise config.ConfigError(
            f"server {setting.value} ({setting.source}) needs a token: set SLICEBOX_TOKEN, "
            "or token in config.toml (slicebox token create, on the service's machine)")
    from slicebox.client import Client

    return Client(setting.value, token)


@contextmanager
def refusals(source: str | None = None) -> Iterator[None]:
    """The service's problems as the CLI's errors: ``source`` (a file) in place of the
    service's "job spec", and the exit code a local refusal of the same kind has."""
    from slicebox.client import ClientError, Unreachable

    try:
        yield
    except Unreachable as exc:
        raise RemoteError(f"{exc.detail} (is `slicebox up --serve` running there?)") from None
    except ClientError as exc:
        detail = exc.detail
        if source is not None and detail.startswith("job spec: "):
            detail = f"{source}: " + detail.removeprefix("job spec: ")
        kind = RemoteInputError if isinstance(exc, InputError) else RemoteError
        raise kind(detail) from None


# ---- finding jobs ------------------------------------------------------------------------


def find(client: Client, ref: str) -> dict[str, Any]:
    """A job by id, unique id prefix, or unique name, among those the token sees (what
    the embedded commands accept)."""
    from slicebox.client import NotFound, Rejected

    try:
        return client.job(ref)
    except (NotFound, Rejected):
        pass  # not an id (or not one this token sees): a prefix or a name, then
    jobs = client.jobs()
    matches = [j for j in jobs if j["id"].startswith(ref)] or \
              [j for j in jobs if j["name"] == ref]
    if len(matches) > 1:
        ids = ", ".join(j["id"] for j in matches)
        raise RemoteError(f"{ref!r} matches several jobs ({ids}); give the id")
    if not matches:
        raise RemoteError(f"no job {ref!r}")
    return matches[0]


# ---- the commands ------------------------------------------------------------------------


def submit(client: Client, job_files: Sequence[Path], indices: Sequence[int],
           after: Sequence[str], afterok: Sequence[str], as_json: bool) -> None:
    """Every file is read and checked here first (a bad one sends nothing); then each job
    is sent. Should the service refuse one, the ones it queued before are cancelled, so
    the submission is all or none, as the embedded one is."""
    from slicebox.controller.dependencies import adding
    from slicebox.controller.submit import array_member
    from slicebox.spec import load_spec

    with refusals():
        after_ids = [_dependency(client, ref, "--after") for ref in after]
        afterok_ids = [_dependency(client, ref, "--afterok") for ref in afterok]
    batches: list[tuple[Path, list[JobSpec]]] = []
    for path in job_files:
        spec = load_spec(path)
        if after_ids or afterok_ids:
            spec = adding(spec, after_ids, afterok_ids)
        members = [array_member(spec, i) for i in indices] if indices else [spec]
        batches.append((path, members))
    queued: list[str] = []
    cwd = os.getcwd()
    try:
        for path, specs in batches:
            with refusals(str(path)):
                for spec in specs:
                    queued.append(client.submit(spec, cwd=cwd)["id"])
    except SliceboxError:
        _withdraw(client, queued)
        raise
    if as_json:
        print_json({"submitted": queued})
        return
    per_file = len(indices) or 1
    for n, (path, _) in enumerate(batches):
        mine = queued[n * per_file:(n + 1) * per_file]
        what = f"[bold]{mine[0]}[/]" if len(mine) == 1 else \
            f"{len(mine)} jobs ([bold]{mine[0]}[/] … [bold]{mine[-1]}[/])"
        console.print(f"queued {what} from {literal(path)}")


def _dependency(client: Client, ref: str, option: str) -> str:
    try:
        return find(client, ref)["id"]
    except RemoteError as exc:
        raise RemoteInputError(f"{option}: {exc}") from None


def _withdraw(client: Client, queued: Sequence[str]) -> None:
    """Cancel what a refused submission had queued (all or none)."""
    for job_id in queued:
        try:
            client.cancel(job_id)
        except SliceboxError as exc:  # noqa: PERF203 - tell the user, and go on
            errors.print(f"could not withdraw {job_id}: {literal(exc)}", highlight=False)
    if queued:
        errors.print(f"withdrew (cancelled) {len(queued)} job(s) queued before the refusal: "
                     f"{', '.join(queued)}", highlight=False)


def ps(client: Client, show_all: bool, as_json: bool) -> None:
    with refusals():
        jobs = client.jobs(None if show_all else NON_TERMINAL)
    now = time.time()
    if as_json:
        print_json([{"id": j["id"], "name": j["name"], "state": j["state"],
                     "reason": j["reason"], "composition": j["composition"],
                     "parts": j["parts"], "team": j["team"], "samples": j["samples"],
                     "quality": j["quality"], "samples_per_s": j["samples_per_s"],
                     "wait_seconds": j["wait_seconds"], "run_seconds": j["run_seconds"],
                     "exit_code": j["exit_code"], "attempt": j["attempt"],
                     "mlflow_run_id": j["mlflow_run_id"]} for j in jobs])
        return
    table = Table()
    table.add_column("id", no_wrap=True, min_width=max((len(j["id"]) for j in jobs), default=2))
    for column in ("name", "state", "composition", "waited", "ran", "samples/s", "quality",
                   "reason"):
        table.add_column(column, overflow="fold")
    for j in jobs:
        waited = j["wait_seconds"] if j["wait_seconds"] is not None \
            else now - j["submitted_at"]
        table.add_row(j["id"], Text(j["name"]), j["state"], Text(j["composition"] or "-"),
                      _age(waited), _age(j["run_seconds"]),
                      f"{j['samples_per_s']:,.0f}" if j["samples_per_s"] else "-",
                      f"{j['quality']:.4g}" if j["quality"] is not None else "-",
                      Text(j["reason"]))
    console.print(table)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def cancel(client: Client, refs: Sequence[str], as_json: bool) -> None:
    done = []
    with refusals():
        for ref in refs:
            answer = client.cancel(find(client, ref)["id"])
            done.append({"id": answer["id"], "state": answer["state"]})
    if as_json:
        print_json(done)
    else:
        for item in done:
            console.print(f"{item['id']}: {item['state']}"
                          + (" (stop requested)" if item["state"] != "cancelled" else ""))


def service_rows(client: Client, show_all: bool) -> list[dict[str, Any]]:
    """The services the token sees, in the rows ``slicebox services`` shows embedded."""
    with refusals():
        found = client.services(include_cancelled=show_all)
    return [{key: s[key] for key in ("id", "name", "team", "state", "running", "desired",
                                     "url", "rate_rps", "p99_ms", "objective_p99_ms",
                                     "reason", "shape", "capacity_rps")} for s in found]


def cancel_services(client: Client, refs: Sequence[str]
                    ) -> tuple[list[dict[str, Any]], list[str]]:
    """Cancel the refs that name a service the token sees and that is not cancelled (by
    id, or by name), as the embedded ``cancel`` does; the cancelled services, and the refs
    left over (jobs)."""
    with refusals():
        live = [s for s in client.services() if s["state"] != "cancelled"]
        done, jobs = [], []
        for ref in refs:
            match = [s for s in live if s["id"] == ref] or [s for s in live if s["name"] == ref]
            if not match:
                jobs.append(ref)
                continue
            answer = client.cancel_service(match[0]["id"])
            done.append({"id": answer["id"], "service": answer["name"],
                         "state": answer["state"]})
    return done, jobs


def cancel_jobs(client: Client, refs: Sequence[str]) -> list[dict[str, Any]]:
    """Cancel jobs, quietly: ``{"id", "state"}`` of each."""
    with refusals():
        return [{"id": answer["id"], "state": answer["state"]}
                for answer in (client.cancel(find(client, ref)["id"]) for ref in refs)]


def logs(client: Client, ref: str, lines: int, follow: bool, raw: bool,
         as_json: bool) -> None:
    with refusals():
        job = find(client, ref)
        if follow and job["attempt"] == 0 and job["state"] not in _terminal():
            errors.print(f"waiting for job {job['id']} to start ({job['state']}: "
                         f"{literal(job['reason'])})", highlight=False)
        got = []
        for line in client.logs(job["id"], follow=follow, lines=lines, raw=raw):
            if follow:
                if as_json:
                    print_json_line({"id": job["id"], "line": line})
                else:
                    typer.echo(line)
            else:
                got.append(line)
        if not got and not follow:
            job = client.job(job["id"])
    if not follow and not got and job["attempt"] == 0:
        errors.print(f"job {job['id']} has no log: it has not run ({job['state']}: "
                     f"{literal(job['reason'])})", highlight=False)
    if follow:
        return
    if as_json:
        print_json({"id": job["id"], "lines": got})
    else:
        for line in got:
            typer.echo(line)


def events(client: Client, ref: str | None, as_json: bool) -> None:
    """A job's events, or (no job) those of every job the token sees, oldest first."""
    with refusals():
        ids = [find(client, ref)["id"]] if ref else [j["id"] for j in client.jobs()]
        found = [e for job_id in ids for e in client.events(job_id)]
    show_events(sorted(found, key=lambda e: e["id"]), as_json)


def show_events(records: Sequence[Mapping[str, Any]], as_json: bool) -> None:
    """The events table (or JSON), the same from the store or from the service."""
    if as_json:
        print_json(records)
        return
    table = Table()
    for column in ("time", "job", "event", "reason"):
        table.add_column(column)
    for e in records:
        table.add_row(time.strftime("%H:%M:%S", time.localtime(e["time"])), e["job_id"],
                      f"{e['from_state'] or ''}→{e['kind']}" if e["from_state"] else e["kind"],
                      Text(e["reason"]))  # Text: a reason prints as is
    console.print(table)


def _terminal() -> frozenset[str]:
    from slicebox.client import TERMINAL

    return TERMINAL
