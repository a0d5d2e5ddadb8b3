"""Jobs that wait for other jobs: ``after`` (start once they have ended, whatever their
result) and ``afterok`` (start once they have succeeded), as Slurm's
``--dependency=afterany`` and ``afterok``.

Admission (``check``) takes only ids of jobs already in the store, so no cycle can ever be
made. Each round the controller passes its waiting and active jobs through
``DependencyGate.hold_back`` before the policy sees them: a waiting job whose dependencies
have not all ended is held back (it is never offered to the policy, and waits with the
reason ``after <id>``); a job one of whose ``afterok`` jobs failed or was
cancelled can never start, and is cancelled with a reason naming that job.

A job that has started once (it was preempted and requeued) had its dependencies met
then; an ended job never runs again, so that stays true and it is not looked at again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from slicebox.snapshot import JobState
from slicebox.spec import JobSpec, SpecError, parse_spec
from slicebox.store import IllegalTransition, JobRecord, Store, UnknownJob

from .actions import RoundReport
from .views import WAITING

log = logging.getLogger("slicebox.controller")
NEVER_OK = (JobState.FAILED, JobState.CANCELLED)


def check(store: Store, spec: JobSpec, source: str = "job spec",
          team: str | None = None) -> None:
    """Admission: every job ``spec`` depends on is in ``store`` (and, with ``team``, is
    that team's: another team's job is as good as missing), and no ``afterok`` job has
    already failed or been cancelled. ``SpecError`` names the field and the id."""
    for field, ids in (("after", spec.after), ("afterok", spec.afterok)):
        for job_id in ids:
            try:
                other = store.job(job_id)
            except UnknownJob:
                other = None
            if other is None or (team is not None and other.team != team):
                raise SpecError(f"{source}: {field}: no job {job_id!r} (give the id of a "
                                "job already submitted)")
            if field == "afterok" and other.state in NEVER_OK:
                raise SpecError(f"{source}: afterok: job {job_id} has already "
                                f"{other.state.value}, so it can never succeed (use after "
                                "to start whatever its result)")


def adding(spec: JobSpec, after: Sequence[str] = (), afterok: Sequence[str] = ()) -> JobSpec:
    """``spec`` also waiting for ``after`` and ``afterok`` (``submit --after``), checked as
    a spec's own lists are (an id given twice is refused, naming it)."""
    data = spec.model_dump(mode="json")
    data["after"] = list(dict.fromkeys([*spec.after, *after]))
    data["afterok"] = list(dict.fromkeys([*spec.afterok, *afterok]))
    return parse_spec(data, f"job {spec.name!r}")


class DependencyGate:
    """What the controller holds back each round, and the dependency results it knows.

    An ended job's state never changes again, so each dependency that has ended is read
    from the store once and remembered; one that is waiting or active is in the round's
    own list of jobs, so a round costs no query for it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ended: dict[str, JobState | None] = {}  # id -> final state (None: not found)

    def hold_back(self, jobs: list[JobRecord], report: RoundReport) -> list[JobRecord]:
        """``jobs`` less the waiting ones whose dependencies are not met. Those wait with
        the reason naming a dependency; those that can never start are cancelled (and
        listed in ``report.finished``)."""
        unfinished = {j.id: j.state for j in jobs}  # waiting or active: not ended yet
        kept: list[JobRecord] = []
        reasons: dict[str, str] = {}
        for job in jobs:
            if job.state not in WAITING or job.attempt > 0 \
                    or not (job.spec.after or job.spec.afterok):
                kept.append(job)
                continue
            blocked, never = self._unmet(job.spec, unfinished)
            if never is not None:
                self._cancel(job, never, report)
            elif blocked is not None:
                if job.reason != blocked:
                    reasons[job.id] = blocked
            else:
                kept.append(job)
        if reasons:
            self.store.set_reasons(reasons)
        return kept

    def _unmet(self, spec: JobSpec, unfinished: Mapping[str, JobState]
               ) -> tuple[str | None, str | None]:
        """(why it still waits, why it can never start); (None, None) when it may start."""
        waiting_on: list[str] = []
        for field, ids in (("afterok", spec.afterok), ("after", spec.after)):
            for dep in ids:
                if dep in unfinished:
                    waiting_on.append(f"{field} {dep}")
                    continue
                final = self._final_state(dep)
                if final is not None and not final.terminal:
                    waiting_on.append(f"{field} {dep}")
                elif field == "afterok" and final is not JobState.SUCCEEDED:
                    what = "is not in the store" if final is None else final.value
                    return None, f"cancelled: afterok job {dep} {what}"
        if not waiting_on:
            return None, None
        more = len(waiting_on) - 1
        return waiting_on[0] + (f" and {more} more" if more else ""), None

    def _final_state(self, job_id: str) -> JobState | None:
        """The state a job not among the waiting and active ones ended in (None: the
        store no longer has it: counts as ended, never as succeeded)."""
        if job_id not in self._ended:
            try:
                state: JobState | None = self.store.job(job_id).state
            except UnknownJob:
                state = None
            if state is not None and not state.terminal:
                return state  # not ended after all (read after the round's list): not kept
            self._ended[job_id] = state
        return self._ended[job_id]

    def _cancel(self, job: JobRecord, reason: str, report: RoundReport) -> None:
        try:
            self.store.transition(job.id, JobState.CANCELLED, reason, expect=job.state)
        except (IllegalTransition, UnknownJob):
            return  # changed meanwhile (cancelled by its user): nothing to do
        log.info("job %s: %s", job.id, reason)
        report.finished.append(job.id)
