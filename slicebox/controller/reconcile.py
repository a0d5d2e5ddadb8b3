"""After a restart: every job the store says is active is adopted, finished or requeued.

The store is the truth; a controller may have died at any instant. A job whose process
still runs is adopted; one that ended while nobody watched is finished from the exit
record its launcher left; one whose process is gone goes back to the queue (a cancel
asked for meanwhile wins). A half copy of a dataset is discarded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from slicebox.backends.base import Backend, Exited
from slicebox.backends.stager import remove_partial_copies
from slicebox.snapshot import JobState
from slicebox.store import JobRecord, Store

from .actions import JobActions, RoundReport
from .outcome import outcome


def reconcile(job: JobRecord, store: Store, backend: Backend, actions: JobActions,
              clock: Callable[[], float]) -> None:
    scratch = RoundReport(clock())
    if job.state is JobState.STAGING:
        # The copy ran on a thread of the dead controller; a half copy sits under a
        # temporary name, never where a job would read it.
        comp = job.composition
        if comp is not None and comp.staging is not None:
            remove_partial_copies(Path(comp.staging.target).parent)
        actions.finish(job, JobState.PREEMPTED,
                       "controller restarted while staging; partial copy discarded", None,
                       scratch, queued_reason="requeued")
        return
    started = backend.adopt(job)
    if started is not None:
        reason = f"adopted process {started.pid} after controller restart"
        if started.pid != job.pid:
            store.set_process(job.id, started.pid, started.start_time,
                              started.log_path, started.log_offset, reason)
        else:
            store.note(job.id, "adopted", reason, pid=started.pid)
        return
    ended = backend.exit_record(job)
    if ended is not None:  # it finished while no controller watched; the launcher saw
        event = Exited(job.id, job.attempt, ended.exit_code, ended.error,
                       stopped=job.stop is not None)
        to_state, reason = outcome(job, event)
        actions.finish(job, to_state, f"{reason} (ended while no controller ran)",
                       ended.exit_code, scratch)
    elif job.stop is not None:  # it was being stopped anyway; now it is
        actions.finish(job, job.stop.to_state,
                       f"{job.stop.reason} (process gone after controller restart)", None,
                       scratch)
    else:
        actions.finish(job, JobState.PREEMPTED, "controller restarted; process gone", None,
                       scratch, queued_reason="requeued")

