"""Staging: jobs whose data is being copied to a fast volume before they run.

One job makes a copy; others that need the same dataset on the same node wait for it
("waiters") and start when it lands, or wait again if it fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from slicebox.backends.base import NodeSource, Staged, StagingFailed
from slicebox.pool.composition import Composition, Staging
from slicebox.snapshot import JobState
from slicebox.store import DatasetRecord, IllegalTransition, JobRecord, Store

from .actions import JobActions, RoundReport
from .views import staging_node


class StagingFlow:
    def __init__(self, store: Store, actions: JobActions, clock: Callable[[], float]) -> None:
        self.store, self.actions = store, actions
        self._clock = clock

    def begin(self, job: JobRecord, comp: Composition,
              copying: dict[tuple[str, str], tuple[str, Staging]],
              report: RoundReport, controller_id: str) -> None:
        """Start a placed job: straight away, after its own copy, or after another's."""
        where = f"placed on {comp.describe()}"
        staging = comp.staging
        node = staging_node(comp)
        maker = None
        if staging is not None and staging.cached:
            key = (staging.dataset, node)
            maker = copying[key][0] if key in copying else None
            if maker is None and not self._copy_exists(node, staging.target):
                # Recorded, but deleted behind our back: make it again.
                self.store.drop_dataset(staging.dataset, node, staging.volume)
                staging = dataclasses.replace(staging, cached=False, evict=())
                comp = dataclasses.replace(comp, staging=staging)
        copy = staging is not None and not staging.cached
        if staging is not None and copy:
            where += f"; staging {staging.dataset} to {staging.volume}"
        elif staging is not None and maker is not None:
            where += f"; waits for the copy of {staging.dataset} job {maker} is making"
        try:
            job = self.store.start(job.id, JobState.STAGING if copy or maker else
                                   JobState.RUNNING, comp, where, controller_id)
        except IllegalTransition:
            return  # cancelled between the snapshot and now: leave it
        if staging is None:
            self.actions.launch(job, comp, report)
        elif copy:
            for path in staging.evict:  # forgotten first: a record never names a deleted copy
                for rec in self.store.datasets(node):
                    if rec.path == path:
                        self.store.drop_dataset(rec.key, rec.node, rec.volume)
            copying[(staging.dataset, node)] = (job.id, staging)
            self.actions.backend.stage(job, comp)
            report.staging.append(job.id)
        elif maker is not None:
            report.staging.append(job.id)
        else:
            self.reuse(job, comp, staging, report)

    def _copy_exists(self, node: str, path: str) -> bool:
        """Whether a recorded copy is still there. The backend says where it can look
        (``copy_exists(node, path)``: Ray asks the node's agent); the record of a backend
        of several nodes that cannot is trusted; a local one is looked at here."""
        backend = self.actions.backend
        look = getattr(backend, "copy_exists", None)
        if callable(look):
            return bool(look(node, path))
        if isinstance(backend, NodeSource):
            return True
        return Path(path).exists()

    def reuse(self, job: JobRecord, comp: Composition, staging: Staging,
              report: RoundReport) -> None:
        self.store.touch_dataset(staging.dataset, staging_node(comp), staging.volume,
                                 self._clock())
        self.store.note(job.id, "reused",
                        f"reused staged copy of {staging.dataset} on {staging.volume}",
                        path=staging.target)
        self.actions.launch(job, comp, report)

    def staged(self, event: Staged, report: RoundReport) -> None:
        job = self.store.job(event.job_id)
        st = event.staging
        if job.composition is None or job.state is not JobState.STAGING:
            return
        node = staging_node(job.composition)
        now = self._clock()
        self.store.put_dataset(DatasetRecord(st.dataset, node, st.volume, st.target,
                                             st.size_gib, now, now))
        mib = event.bytes / (1 << 20)
        self.store.note(job.id, "staged",
                        f"staged {st.dataset} to {st.volume} ({mib:.1f} MiB in "
                        f"{event.seconds:.2f} s)", bytes=event.bytes, seconds=event.seconds,
                        source=st.source, target=st.target)
        for waiter in self.waiters(st.dataset, node, job.id):
            with self.actions.contained(waiter.id, "start after staging", report):
                self.start_staged(waiter, report, maker=job.id)
        self.start_staged(job, report)

    def start_staged(self, job: JobRecord, report: RoundReport, maker: str | None = None
                     ) -> None:
        """A job whose data is now in place: run it (unless it was stopped meanwhile)."""
        if job.stop is not None or job.cancel_requested:
            to_state = job.stop.to_state if job.stop else JobState.CANCELLED
            reason = job.stop.reason if job.stop else "cancelled by user"
            self.actions.finish(job, to_state, reason, None, report)
            return
        comp = job.composition
        if comp is None:
            return
        reason = f"data staged by job {maker}" if maker else "data staged"
        try:
            job = self.store.transition(job.id, JobState.RUNNING, reason,
                                        expect=JobState.STAGING)
        except IllegalTransition:
            return
        if maker is not None and comp.staging is not None:
            self.reuse(job, comp, comp.staging, report)
        else:
            self.actions.launch(job, comp, report)

    def failed(self, event: StagingFailed, report: RoundReport) -> None:
        job = self.store.job(event.job_id)
        if job.state is not JobState.STAGING or job.composition is None:
            return
        st = event.staging
        waiters = self.waiters(st.dataset, staging_node(job.composition), job.id)
        if job.stop is not None:
            self.actions.finish(job, job.stop.to_state, job.stop.reason, None, report)
        elif job.cancel_requested:
            self.actions.finish(job, JobState.CANCELLED, "cancelled by user", None, report)
        else:
            self.actions.finish(job, JobState.FAILED,
                                f"staging {st.dataset} failed: {event.error}", None, report)
        for waiter in waiters:
            # Their data never arrived; they wait again, and the next copy may be theirs.
            with self.actions.contained(waiter.id, "requeue after a failed copy", report):
                self.actions.finish(waiter, JobState.PREEMPTED,
                                    f"the copy of {st.dataset} it waited for did not finish",
                                    None, report)

    def waiters(self, dataset: str, node: str, maker: str) -> list[JobRecord]:
        """Jobs in staging that wait for the copy another job is making."""
        return [j for j in self.store.jobs([JobState.STAGING]) if j.id != maker
                and j.composition is not None and staging_node(j.composition) == node
                and j.composition.staging is not None and j.composition.staging.cached
                and j.composition.staging.dataset == dataset]
