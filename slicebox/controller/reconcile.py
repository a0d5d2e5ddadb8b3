"""After a restart: every job the store says is active is adopted, finished or requeued.

The store is the truth; a controller may have died at any instant. A job whose process
still runs is adopted; one that ended while nobody watched is finished from the exit
record its launcher left; one whose process is gone goes back to the queue (a cancel
asked for meanwhile wins). A half copy of a dataset is discarded.

Backend-neutral: whether a job still runs is the backend's answer (``adopt``: the local
launcher's pid and start time, or, on Ray, the agent of the job's node), never a pid
looked up here. ``live``: the names of the nodes a changing backend (``NodeSource``)
reports now; a job on a node that left while no controller ran is requeued as a node
loss (to resume from its checkpoint), not counted against it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Set
from pathlib import Path

from slicebox.backends.base import Backend, Exited, NodeSource
from slicebox.backends.stager import remove_partial_copies
from slicebox.snapshot import JobState
from slicebox.store import JobRecord, Store

from .actions import JobActions, RoundReport
from .outcome import node_losses, outcome

log = logging.getLogger("slicebox.controller")


def reconcile(job: JobRecord, store: Store, backend: Backend, actions: JobActions,
              clock: Callable[[], float], live: Set[str] | None = None) -> None:
    scratch = RoundReport(clock())
    comp = job.composition
    lost = tuple(n for n in comp.nodes if n not in live) \
        if comp is not None and live is not None else ()
    if job.state is JobState.STAGING:
        if isinstance(backend, NodeSource):
            # The copy runs on the node's agent, which outlived the controller: stop it
            # there (its partial copy is the agent's to discard; a late StagingFailed for
            # a job no longer staging is ignored).
            if not lost:
                try:
                    backend.stop(job)
                except Exception:  # noqa: BLE001 - requeued either way; the agent's poll says
                    log.exception("job %s: could not stop its copy after a restart", job.id)
        elif comp is not None and comp.staging is not None:
            # The copy ran on a thread of the dead controller; a half copy sits under a
            # temporary name, never where a job would read it.
            remove_partial_copies(Path(comp.staging.target).parent)
        actions.finish(job, JobState.PREEMPTED,
                       "controller restarted while staging; partial copy discarded", None,
                       scratch, queued_reason="requeued")
        return
    # The backend is asked first even where a node seems gone: a node whose agent is not
    # listed yet may still run the job, and only the backend can say it does not.
    started = backend.adopt(job)
    if started is not None:
        where = f" on {'+'.join(comp.nodes)}" \
            if comp is not None and isinstance(backend, NodeSource) else ""
        reason = f"adopted process {started.pid}{where} after controller restart"
        if started.pid != job.pid:
            store.set_process(job.id, started.pid, started.start_time,
                              started.log_path, started.log_offset, reason)
        else:
            store.note(job.id, "adopted", reason, pid=started.pid)
        return
    ended = backend.exit_record(job)
    if ended is not None:  # it finished while no controller watched; the launcher saw
        # A fenced attempt (its node's agent lost touch, its launcher killed it) is a node
        # loss: requeued to resume from its checkpoint, with no exit code ("gone").
        lost_node = ended.node_lost
        event = Exited(job.id, job.attempt, ended.exit_code, ended.error,
                       stopped=job.stop is not None, node_lost=lost_node)
        to_state, reason = outcome(job, event, lost or (comp.nodes if comp and lost_node
                                                        else ()),
                                   node_losses=0 if lost_node else node_losses(store, job.id))
        actions.finish(job, to_state, f"{reason} (ended while no controller ran)",
                       None if lost_node else ended.exit_code, scratch,
                       queued_reason="requeued after its node left the pool" if lost_node
                       else "requeued after preemption")
    elif lost:
        # Its node left while no controller ran; the backend fences whatever of it was
        # there. Not the job's doing: it resumes from its checkpoint elsewhere.
        to_state, reason = outcome(job, Exited(job.id, job.attempt, None, node_lost=True),
                                   lost)
        actions.finish(job, to_state, f"{reason} (while no controller ran)", None, scratch,
                       queued_reason="requeued")
    elif job.stop is not None:  # it was being stopped anyway; now it is
        actions.finish(job, job.stop.to_state,
                       f"{job.stop.reason} (process gone after controller restart)", None,
                       scratch)
    else:
        actions.finish(job, JobState.PREEMPTED, "controller restarted; process gone", None,
                       scratch, queued_reason="requeued")

