"""``slicebox up --detach``: the same ``up`` (with the service) as a background process.

The child runs in a session of its own (no terminal: closing the shell or Ctrl-C in it
does not reach it), reads nothing (stdin is /dev/null) and writes to ``<state>/up.log``.
The parent returns once the child's service answers ``/v1/health``; if the child dies
first, the parent shows the end of its log. ``slicebox down`` stops it (SIGTERM through
the service's pid file). Never a shell: the child's argv is built from the options given.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from slicebox.errors import SliceboxError

LOG_FILE = "up.log"
# The CLI itself, run by this interpreter (the `slicebox` script may not be on PATH).
_CLI = [sys.executable, "-c", "from slicebox.cli import app; app(prog_name='slicebox')"]
_TAIL_LINES = 20


class DetachError(SliceboxError):
    """The detached ``up`` did not come up; ``log_tail`` holds the end of its log."""

    def __init__(self, message: str, log_tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.log_tail = log_tail or []


@dataclass(frozen=True)
class Detached:
    pid: int
    url: str
    log: Path


def already_running(state: Path) -> str | None:
    """Why a detached ``up`` must not start for ``state`` (a service serves it), or None."""
    from slicebox.service.server import running

    info = running(state)
    if info is None:
        return None
    return (f"slicebox up already runs for {state} (pid {info.pid}, {info.url}); "
            "`slicebox down` stops it")


def start_detached(state: Path, up_args: list[str], *, store_url: str | None = None,
                   timeout: float = 120.0) -> Detached:
    """Run ``slicebox --state STATE up *up_args`` in the background and wait until its
    service answers. ``store_url`` goes to the child in its environment, not its argv
    (argv is public in ``ps``; the URL may hold a password)."""
    reason = already_running(state)
    if reason is not None:
        raise SliceboxError(reason)
    state.mkdir(parents=True, exist_ok=True)
    log = state / LOG_FILE
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the log shows what happened, as it did
    env.pop("SLICEBOX_STORE_URL", None)
    if store_url:
        env["SLICEBOX_STORE_URL"] = store_url
    # Appended to (the previous runs' lines stay); 0600: the log may name paths and jobs.
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        start_offset = os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, f"--- slicebox up --detach, {time.strftime('%Y-%m-%d %H:%M:%S %z')} "
                     "---\n".encode())
        child = subprocess.Popen([*_CLI, "--state", str(state), "up", *up_args],
                                 stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True, cwd=state, env=env)
    finally:
        os.close(fd)
    url = _wait_answering(child, state, log, start_offset, timeout)
    return Detached(child.pid, url, log)


def _wait_answering(child: subprocess.Popen, state: Path, log: Path, offset: int,
                    timeout: float) -> str:
    """The child's service URL once ``/v1/health`` answers 200 there."""
    import httpx

    from slicebox.service.server import running

    deadline = time.monotonic() + timeout
    while True:
        code = child.poll()
        if code is not None:
            raise DetachError(f"slicebox up exited (code {code}) before it served; the end "
                              f"of {log}:", _tail(log, offset))
        info = running(state)
        if info is not None and info.pid == child.pid:
            try:
                if httpx.get(f"{info.url}/v1/health", timeout=5).status_code == 200:
                    return info.url
            except httpx.TransportError:
                pass  # not answering yet
        if time.monotonic() > deadline:
            child.terminate()  # half-started: do not leave it behind
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
            raise DetachError(f"slicebox up did not answer within {timeout:.0f} s (stopped "
                              f"it); the end of {log}:", _tail(log, offset))
        time.sleep(0.2)


def _tail(log: Path, offset: int) -> list[str]:
    """The last lines this run wrote to ``log`` (from ``offset``)."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-_TAIL_LINES:]
