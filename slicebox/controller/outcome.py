"""The state and reason a finished process leaves its job in."""

from __future__ import annotations

import signal
from collections.abc import Sequence

from slicebox.backends.base import Exited
from slicebox.sdk import CHECKPOINTED
from slicebox.snapshot import JobState
from slicebox.store import JobRecord, Store

MAX_LOST_ATTEMPTS = 3  # a job whose processes vanish this often is failed, not retried
# A job may ask to be requeued (exit 85 unasked), but not forever: a program that always
# does would be restarted at every round and never end.
MAX_ATTEMPTS_ASKING_REQUEUE = 50
# How the reason of a requeue after a node loss starts (kept with the checkpoint record, so
# attempts a node loss ended are told apart from the job's own doing: see node_losses).
NODE_LOST = "node lost"


def outcome(job: JobRecord, event: Exited, lost_nodes: Sequence[str] = (),
            node_losses: int = 0) -> tuple[JobState, str]:
    """``lost_nodes``: the nodes of the job's composition that have left the pool (named
    in the reason of a node loss); ``node_losses``: earlier attempts of the job a node loss
    ended, which the retry limits do not count (the job did nothing wrong)."""
    if job.stop is not None:
        suffix = " (killed after its grace period)" if event.killed else ""
        if event.exit_code == CHECKPOINTED and not event.killed:
            suffix = " (checkpointed)"
        if event.node_lost:
            suffix = f" ({_lost(lost_nodes)} left the pool)"
        return job.stop.to_state, job.stop.reason + suffix
    if event.node_lost:
        # Not a failure and not counted against any limit: the job resumes from its last
        # checkpoint (every rank of a gang: the backend ends the whole attempt).
        return JobState.PREEMPTED, (f"{NODE_LOST}: {_lost(lost_nodes)} left the pool; "
                                    "requeued to resume from its last checkpoint")
    attempts = max(job.attempt - node_losses, 0)  # the attempts the job itself is behind
    if event.error:
        return JobState.FAILED, event.error
    code = event.exit_code
    if code == 0:
        return JobState.SUCCEEDED, "exit code 0"
    if code == CHECKPOINTED:
        # It saved and asked to be requeued (a signal from outside Slicebox, say): it
        # resumes from its checkpoint, like a preempted job.
        if attempts >= MAX_ATTEMPTS_ASKING_REQUEUE:
            return JobState.FAILED, (f"asked to be requeued (exit code {CHECKPOINTED}) at "
                                     f"attempt {job.attempt}; the limit is "
                                     f"{MAX_ATTEMPTS_ASKING_REQUEUE} attempts")
        return JobState.PREEMPTED, f"checkpointed on its own (exit code {CHECKPOINTED})"
    if code is None:
        if attempts >= MAX_LOST_ATTEMPTS:  # a job that keeps vanishing is not retried
            return JobState.FAILED, f"process gone without an exit code {attempts} times"
        return JobState.PREEMPTED, "process gone without an exit code (killed from outside?)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return JobState.FAILED, f"killed by {name}{hint}"
    return JobState.FAILED, f"exit code {code}"


def node_losses(store: Store, job_id: str) -> int:
    """How many of the job's attempts ended because a node of theirs left the pool."""
    return sum(1 for r in store.checkpoints(job_id)
               if r.outcome == "gone" and r.reason.startswith(NODE_LOST))


def _lost(nodes: Sequence[str]) -> str:
    if not nodes:
        return "a node of its composition"
    return ("node " if len(nodes) == 1 else "nodes ") + ", ".join(nodes)
