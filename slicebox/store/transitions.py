"""The job life cycle: which state changes are legal. Everything else is a bug, and raises."""

from __future__ import annotations

from slicebox.errors import SliceboxError
from slicebox.snapshot import JobState

Q, ST, R = JobState.QUEUED, JobState.STAGING, JobState.RUNNING
OK, FAIL, CAN, PRE = JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PREEMPTED

LEGAL: dict[JobState, frozenset[JobState]] = {
    Q: frozenset({ST, R, CAN, FAIL}),
    ST: frozenset({R, PRE, CAN, FAIL}),
    R: frozenset({OK, FAIL, CAN, PRE}),
    # A preempted job waits like a queued one; the controller requeues it at once, and a
    # policy may also restart it straight away.
    PRE: frozenset({Q, ST, R, CAN, FAIL}),
    OK: frozenset(),
    FAIL: frozenset(),
    CAN: frozenset(),
}


class StoreError(SliceboxError):
    """Base of the store's own errors."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or written now (locked, disk full, I/O error)."""


class StoreCorrupt(StoreError):
    """The database is damaged, missing where jobs existed, or not a database at all."""


class UnknownJob(StoreError, KeyError):
    # Exit 1, a runtime failure: the request was well-formed, the store has no such job
    # (it may be a typo, or a job in another state directory).

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown job"


class IllegalTransition(StoreError, ValueError):
    def __init__(self, job_id: str, current: JobState, wanted: JobState, why: str = "") -> None:
        allowed = ", ".join(sorted(LEGAL[current])) or "none: it is finished"
        message = f"job {job_id}: cannot go from {current} to {wanted} (allowed: {allowed})"
        super().__init__(message + (f"; {why}" if why else ""))
        self.job_id = job_id
        self.current = current
        self.wanted = wanted


def check(job_id: str, current: JobState, wanted: JobState) -> None:
    if wanted not in LEGAL[current]:
        raise IllegalTransition(job_id, current, wanted)
