"""Is this process our job? A pid alone is not enough after a crash: pids are reused.

A job's process is recognised by three things together: its pid, its start time, and the
``SLICEBOX_JOB_ID`` in its environment.
"""

from __future__ import annotations

import contextlib
import os
import signal

import psutil

_START_TOLERANCE_S = 0.05  # create_time is derived from jiffies; allow rounding


def start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _job_env(proc: psutil.Process) -> tuple[str | None, str | None]:
    try:
        env = proc.environ()
    except psutil.Error:
        return None, None
    return env.get("SLICEBOX_JOB_ID"), env.get("SLICEBOX_ATTEMPT")


def alive(pid: int, started: float | None) -> bool:
    """The process with this pid and start time still runs (a zombie has finished)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < _START_TOLERANCE_S
    except psutil.Error:
        return False


def is_job_process(pid: int, started: float | None, job_id: str) -> bool:
    if started is None or not alive(pid, started):
        return False
    with contextlib.suppress(psutil.Error):
        return _job_env(psutil.Process(pid))[0] == job_id
    return False


def job_processes(job_id: str) -> list[psutil.Process]:
    """Every live process that carries this job's id, whatever started it."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE and _job_env(proc)[0] == job_id:
                found.append(proc)
    return found


def find_launcher(job_id: str, attempt: int) -> psutil.Process | None:
    """The launcher of this attempt (the group leader carrying the job id), if it runs."""
    for proc in job_processes(job_id):
        with contextlib.suppress(psutil.Error, OSError):
            if _job_env(proc)[1] == str(attempt) and os.getpgid(proc.pid) == proc.pid:
                return proc
    return None


def kill_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def kill_job_processes(job_id: str) -> int:
    """SIGKILL whatever still runs under this job's id; how many there were."""
    procs = job_processes(job_id)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
    return len(procs)
