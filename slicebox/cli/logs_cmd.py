"""``slicebox logs``: a job's output, as the job printed it.

A job's ``:::SLICEBOX`` progress lines are for the controller, so they are hidden unless
``--raw`` asks for them (MLPerf's ``:::MLLOG`` lines are the job's own output, and shown).
``--follow`` waits for a job that has not started yet and ends when the job has finished
(the log read to its end); with ``--json`` it prints JSON Lines, one per log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import typer

from slicebox.cli.common import JSON_OPTION, errors, literal, print_json, print_json_line
from slicebox.cli.remote import SERVER_OPTION
from slicebox.sdk import SLICEBOX_PREFIX

POLL_SECONDS = 0.5  # how often a follower looks for a start, new lines, or the end
TAIL_BYTES = 256 * 1024  # how far back --follow looks for its first --lines lines


def shown_lines(lines: Iterable[str], raw: bool) -> list[str]:
    """The lines ``logs`` prints: all of them with ``raw``, else without progress reports."""
    return [line for line in lines if raw or SLICEBOX_PREFIX not in line]


def logs(ctx: typer.Context, job: str = typer.Argument(..., help="Job id, id prefix or name."),
         lines: int = typer.Option(50, "--lines", "-n", min=1),
         follow: bool = typer.Option(False, "--follow", "-f",
                                     help="Wait for the job to start, print new lines until "
                                          "it ends."),
         raw: bool = typer.Option(False, "--raw", help="Show the :::SLICEBOX progress lines "
                                                       "too."),
         server: str | None = SERVER_OPTION,
         as_json: bool = JSON_OPTION) -> None:
    """Print a job's log (stdout and stderr)."""
    from slicebox.backends.logs import tail
    from slicebox.cli import remote
    from slicebox.cli.jobs_cmds import open_store

    client = remote.client_for(server)  # a configured service: through it
    if client is not None:
        with client:
            remote.logs(client, job, lines, follow, raw, as_json)
        return
    store = open_store(ctx)
    record = store.find(job)  # UnknownJob: a one-line error (exit 1)
    if record.log_path is None and follow and not record.state.terminal:
        errors.print(f"waiting for job {record.id} to start ({record.state.value}: "
                     f"{literal(record.reason)})", highlight=False)
        record = _wait_for_start(lambda: store.job(record.id))
    if record.log_path is None:  # not started (or ended before it ever ran)
        errors.print(f"job {record.id} has no log: it has not run ({record.state.value}: "
                     f"{literal(record.reason)})", highlight=False)
        if as_json and not follow:
            print_json({"id": record.id, "log_path": None, "lines": []})
        return
    path = Path(record.log_path)
    if not follow:
        # tail reads a bounded end of the file; the last lines are counted after filtering.
        last = shown_lines(tail(path, TAIL_BYTES), raw)[-lines:]
        if as_json:
            print_json({"id": record.id, "log_path": str(path), "lines": last})
        else:
            for line in last:
                typer.echo(line)
        return

    def emit(line: str) -> None:
        if as_json:
            print_json_line({"id": record.id, "line": line})
        else:
            typer.echo(line)

    _follow(path, lines, lambda: store.job(record.id).state.terminal, raw, emit)


def _wait_for_start(current: Callable):
    """Poll the store until the job has a log, or has ended without one."""
    while True:
        record = current()
        if record.log_path is not None or record.state.terminal:
            return record
        time.sleep(POLL_SECONDS)


def _follow(path: Path, lines: int, ended: Callable[[], bool], raw: bool,
            emit: Callable[[str], None]) -> None:
    """The last ``lines`` lines of ``path``, then each complete line appended to it, until
    ``ended()`` and the file is read to its end. One open handle reads both, so no line
    written in between is lost; a partial last line waits for its newline (or the end)."""
    while not path.exists():  # the backend creates it as it launches the job
        if ended():
            return
        time.sleep(POLL_SECONDS)
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        start = handle.seek(max(size - TAIL_BYTES, 0))
        first = handle.read(size - start)
        *complete, pending = first.split(b"\n")
        if start > 0 and complete:
            complete = complete[1:]  # a line cut by the seek
        for line in shown_lines((c.decode(errors="replace") for c in complete), raw)[-lines:]:
            emit(line)
        while True:
            finished = ended()  # before reading: whatever the job wrote is then on disk
            chunk = handle.read()
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in shown_lines((c.decode(errors="replace") for c in complete), raw):
                emit(line)
            if finished and not chunk:
                break
            if not chunk:
                time.sleep(POLL_SECONDS)
        if pending:
            for line in shown_lines([pending.decode(errors="replace")], raw):
                emit(line)
