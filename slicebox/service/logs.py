"""A job's log as a stream of lines, as ``slicebox logs`` shows it.

``:::SLICEBOX`` progress lines are the controller's and are left out unless ``raw``.
Following waits for the job to start and ends when it has ended and its log is read to
the end. The follower is asynchronous (it waits on the event loop, and asks the store from
a worker thread), so a client following a long job holds no thread of the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from anyio import to_thread

from slicebox.sdk import SLICEBOX_PREFIX
from slicebox.store import JobRecord, Store

TAIL_BYTES = 1 << 20  # how far back from the end the first lines are looked for
CHUNK_BYTES = 1 << 16


def _shown(line: str, raw: bool) -> bool:
    return raw or SLICEBOX_PREFIX not in line


def _tail(path: Path, lines: int, raw: bool) -> tuple[list[str], int]:
    """The last ``lines`` complete lines of ``path`` and the offset after them."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            start = handle.seek(max(size - TAIL_BYTES, 0))
            data = handle.read(size - start)
    except FileNotFoundError:
        return [], 0
    *complete, pending = data.split(b"\n")
    if start > 0 and complete:
        complete = complete[1:]  # a line cut by the seek
    shown = [c.decode(errors="replace") for c in complete]
    shown = [line for line in shown if _shown(line, raw)]
    return shown[-lines:], start + len(data) - len(pending)


async def log_lines(store: Store, job: JobRecord, *, lines: int, raw: bool, follow: bool,
                    poll_seconds: float) -> AsyncIterator[bytes]:
    """Each line of the job's log (with its newline), as bytes."""

    async def current() -> JobRecord:
        return await to_thread.run_sync(store.job, job.id)

    while follow and job.log_path is None and not job.state.terminal:
        await asyncio.sleep(poll_seconds)
        job = await current()
    if job.log_path is None:
        return
    path = Path(job.log_path)
    first, offset = await to_thread.run_sync(_tail, path, lines, raw)
    if first:
        yield ("\n".join(first) + "\n").encode()
    if not follow:
        rest = (await to_thread.run_sync(_read, path, offset)).rstrip(b"\n")
        if rest and _shown(rest.decode(errors="replace"), raw):
            yield rest + b"\n"  # a last line still being written
        return
    pending = b""
    while True:
        ended = (await current()).state.terminal  # before reading: its last words are on disk
        chunk = await to_thread.run_sync(_read, path, offset)
        offset += len(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        out = [c.decode(errors="replace") for c in complete]
        out = [line for line in out if _shown(line, raw)]
        if out:
            yield ("\n".join(out) + "\n").encode()
        if ended and not chunk:
            break
        if not chunk:
            await asyncio.sleep(poll_seconds)
    if pending and _shown(pending.decode(errors="replace"), raw):
        yield pending + b"\n"


def _read(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(CHUNK_BYTES)
    except FileNotFoundError:
        return b""
