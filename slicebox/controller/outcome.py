"""The state and reason a finished process leaves its job in."""

from __future__ import annotations

import signal

from slicebox.backends.base import Exited
from slicebox.snapshot import JobState
from slicebox.store import JobRecord

MAX_LOST_ATTEMPTS = 3  # a job whose processes vanish this often is failed, not retried


def outcome(job: JobRecord, event: Exited) -> tuple[JobState, str]:
    if job.stop is not None:
        suffix = " (killed after its grace period)" if event.killed else ""
        return job.stop.to_state, job.stop.reason + suffix
    if event.error:
        return JobState.FAILED, event.error
    code = event.exit_code
    if code == 0:
        return JobState.SUCCEEDED, "exit code 0"
    if code is None:
        if job.attempt >= MAX_LOST_ATTEMPTS:  # a job that keeps vanishing is not retried
            return JobState.FAILED, f"process gone without an exit code {job.attempt} times"
        return JobState.PREEMPTED, "process gone without an exit code (killed from outside?)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return JobState.FAILED, f"killed by {name}{hint}"
    return JobState.FAILED, f"exit code {code}"
