"""The control loop: reconcile store and processes, ask the policy, place, act, record.

One round (``Controller.run_once``)::

    events   = backend.poll()                       # exits, progress, finished copies
    ...record them...                               # durable before anything else happens
    snapshot = from the store (+ a PoolState of what active jobs hold)
    decision = policy.decide(snapshot)
    plan     = placer.place(state, snapshot, decision, data)
    record each start/stop, then backend acts on it # durable before acting

The store is the truth. A controller may be killed at any instant; the next one takes the
lease, adopts the jobs whose processes still run, finishes those that ended meanwhile,
and requeues the rest, so no accepted job is lost and none runs twice at once.
"""

from __future__ import annotations

import dataclasses
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from slicebox.backends.base import (
    Backend,
    BackendEvent,
    Exited,
    LaunchError,
    Progress,
    Staged,
    StagingFailed,
)
from slicebox.backends.stager import remove_partial_copies
from slicebox.placement.staging import CacheEntry, DataCache
from slicebox.placement.state import AllocationError, PoolState
from slicebox.pool.composition import Composition, Plan, Staging
from slicebox.pool.slices import SliceShape
from slicebox.profiles.base import PeakRateEstimator, ThroughputModel
from slicebox.profiles.table import ProfileTable
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobState, JobView
from slicebox.spec import DatasetRef, Demand, JobSpec
from slicebox.store import DatasetRecord, IllegalTransition, JobRecord, Store, admission

if TYPE_CHECKING:
    from slicebox.placement.placer import Placer
    from slicebox.policies.base import Policy
    from slicebox.pool.model import Pool
    from slicebox.tracking import JobTracker


ACTIVE = (JobState.STAGING, JobState.RUNNING)
WAITING = (JobState.QUEUED, JobState.PREEMPTED)
MAX_LOST_ATTEMPTS = 3  # a job whose processes vanish this often is failed, not retried


@dataclass
class RoundReport:
    """What one round did (for ``on_round`` callbacks: live progress, the demo)."""

    time: float
    started: list[str] = field(default_factory=list)
    staging: list[str] = field(default_factory=list)
    stopping: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    waiting: int = 0
    active: int = 0


def controller_id() -> str:
    """host:pid:start-time, so a later controller can tell a dead holder from a live one."""
    me = psutil.Process()
    return f"{socket.gethostname()}:{me.pid}:{me.create_time():.2f}"


def holder_alive(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # cannot look from here: wait for its lease to expire
    try:
        proc = psutil.Process(int(pid))
        return (proc.status() != psutil.STATUS_ZOMBIE
                and f"{proc.create_time():.2f}" == started)
    except psutil.Error:
        return False


class Controller:
    """Drives one store: ``run()`` (the loop ``slicebox up`` runs) or ``run_once()``.

    ``pool``/``placer``: what may be handed out and how (the placer must be the pool's);
    ``backend``: what makes it so (``LocalBackend`` for this machine). Only one controller
    drives a store at a time (a lease in the store; ``LeaseHeld`` otherwise). ``interval``
    is the pause between rounds; ``lease_ttl`` how long a silent holder keeps the lease.
    """

    def __init__(self, store: Store, pool: Pool, policy: Policy, placer: Placer,
                 backend: Backend, state_dir: str | Path | None = None, *,
                 profiles: ThroughputModel | None = None, tracker: JobTracker | None = None,
                 interval: float = 0.5,
                 lease_ttl: float = 15.0, ident: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store, self.pool, self.policy = store, pool, policy
        self.placer, self.backend = placer, backend
        self.state_dir = Path(state_dir) if state_dir else store.state_dir
        self.profiles = profiles or PeakRateEstimator()
        self.tracker = tracker
        self.interval, self.lease_ttl = interval, lease_ttl
        self.id = ident or controller_id()
        self._clock = clock
        self._started = False

    # ---- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Take the lease (``LeaseHeld`` if another controller runs) and reconcile."""
        if self._started:
            return
        self.store.acquire_lease(self.id, self.lease_ttl, holder_alive)
        self._started = True
        for job in self.store.jobs(ACTIVE):
            self._reconcile(job)

    def close(self) -> None:
        """Stop driving; running jobs go on and the next controller adopts them."""
        self.backend.close()
        if self.tracker is not None:
            self.tracker.close()
            self._record_run_ids()
        if self._started:
            self.store.release_lease(self.id)
            self._started = False

    def run(self, until_idle: bool = False, stop_event: threading.Event | None = None,
            on_round: Callable[[RoundReport], None] | None = None,
            max_rounds: int | None = None) -> None:
        """Rounds every ``interval`` seconds until ``stop_event`` is set, ``max_rounds``
        have run, or (``until_idle``) nothing is active and no waiting job can start."""
        self.start()
        rounds = 0
        try:
            while stop_event is None or not stop_event.is_set():
                report = self.run_once()
                rounds += 1
                if on_round is not None:
                    on_round(report)
                if until_idle and report.active == 0 and not report.started:
                    return  # nothing runs, and what waits did not fit an empty pool either
                if max_rounds is not None and rounds >= max_rounds:
                    return
                if stop_event is not None:
                    stop_event.wait(self.interval)
                else:
                    time.sleep(self.interval)
        finally:
            self.close()

    # ---- one round ----------------------------------------------------------------------

    def run_once(self) -> RoundReport:
        self.start()
        self.store.heartbeat(self.id)  # LeaseLost: another controller took over; stop here
        report = RoundReport(self._clock())
        for event in self.backend.poll():
            self._record(event, report)
        self._enforce_stops(report)
        for job in self.store.jobs([JobState.PREEMPTED]):
            self._requeue(job, "requeued after preemption")
        self._schedule(report)
        jobs = self.store.jobs([*WAITING, *ACTIVE])
        self._record_run_ids()
        report.waiting = sum(1 for j in jobs if j.state in WAITING)
        report.active = sum(1 for j in jobs if j.state in ACTIVE)
        return report

    def _schedule(self, report: RoundReport) -> None:
        now = self._clock()
        jobs = self.store.jobs([*WAITING, *ACTIVE])
        if not self.policy.periodic and not any(j.state in WAITING for j in jobs):
            return  # nothing to start, and this policy only acts on arrivals and exits
        state = PoolState(self.pool)
        for job in jobs:
            if job.state in ACTIVE and job.composition is not None:
                try:
                    state.allocate(job.composition)
                except AllocationError as exc:
                    # The pool changed under a running job (a node or card gone from the
                    # pool file). It keeps running; the user should know why.
                    self.store.set_reason(job.id, f"composition outside the pool: {exc}",
                                          kind="warning")
        attained = self.store.attained_gpu_seconds(now)
        views = {j.id: _view(j, attained.get(j.id, 0.0)) for j in jobs}
        # A job being stopped holds its slices until its process is gone. The policy does
        # not see it; placement keeps it where it is, so nothing starts on what it holds.
        stopping = [j.id for j in jobs if j.stop is not None]
        snapshot = ClusterSnapshot(now, tuple(v for k, v in views.items() if k not in stopping),
                                   state.capacity(), self.profiles, nodes=state.node_views())
        decision = self.policy.decide(snapshot)
        if stopping:
            held = tuple(a for a in (views[k].current for k in stopping) if a is not None)
            decision = dataclasses.replace(decision, run=held + tuple(
                a for a in decision.run if a.job_id not in stopping))
            snapshot = dataclasses.replace(snapshot, jobs=tuple(views.values()))
        copying = _copies_in_progress(jobs)
        data = DataCache([*(_entry(d) for d in self.store.datasets()),
                          *(CacheEntry(k, n, st.volume, st.target, st.size_gib, now)
                            for (k, n), (_, st) in copying.items())])
        plan = self.placer.place(state, snapshot, decision, data=data)
        self._apply(plan, state, {j.id: j for j in jobs}, decision, set(stopping), copying,
                    report)

    def _apply(self, plan: Plan, state: PoolState, jobs: Mapping[str, JobRecord],
               decision: Decision, stopping: set[str],
               copying: dict[tuple[str, str], tuple[str, Staging]], report: RoundReport) -> None:
        reasons = dict(decision.reasons)
        for job_id in plan.stop:
            job = jobs.get(job_id)
            if job is None or job_id in stopping or job.state not in ACTIVE:
                continue
            reason = reasons.get(job_id) or f"preempted by the {self.policy.name} policy"
            self._stop(job, JobState.PREEMPTED, reason, report)
        for comp in plan.start:
            # ``state`` still holds what every active job holds, the ones just told to stop
            # included: they keep it until their process is gone. A start that would share
            # any of it waits for a later round.
            try:
                state.allocate(comp)
            except AllocationError as exc:
                reasons[comp.job_id] = f"waits for jobs being stopped ({exc})"
                continue
            self._start(jobs[comp.job_id], comp, copying, report)
        chosen = {a.job_id for a in decision.run}
        for job in jobs.values():
            if job.state in WAITING and job.id not in chosen and job.id not in reasons:
                reasons[job.id] = f"not chosen by the {self.policy.name} policy"
        for job_id, reason in {**reasons, **plan.waiting}.items():
            job = jobs.get(job_id)
            if job is not None and job.state in WAITING:
                self.store.set_reason(job_id, reason)

    def _start(self, job: JobRecord, comp: Composition,
               copying: dict[tuple[str, str], tuple[str, Staging]], report: RoundReport) -> None:
        where = f"placed on {comp.describe()}"
        staging = comp.staging
        maker = None
        if staging is not None and staging.cached:
            key = (staging.dataset, comp.node)
            maker = copying[key][0] if key in copying else None
            if maker is None and not Path(staging.target).exists():
                # Recorded, but deleted behind our back: make it again.
                self.store.drop_dataset(staging.dataset, comp.node, staging.volume)
                staging = dataclasses.replace(staging, cached=False, evict=())
                comp = dataclasses.replace(comp, staging=staging)
        copy = staging is not None and not staging.cached
        if staging is not None and copy:
            where += f"; staging {staging.dataset} to {staging.volume}"
        elif staging is not None and maker is not None:
            where += f"; waits for the copy of {staging.dataset} job {maker} is making"
        try:
            job = self.store.start(job.id, JobState.STAGING if copy or maker else
                                   JobState.RUNNING, comp, where, self.id)
        except IllegalTransition:
            return  # cancelled between the snapshot and now: leave it
        if staging is None:
            self._launch(job, comp, report)
        elif copy:
            for path in staging.evict:  # forgotten first: a record never names a deleted copy
                for rec in self.store.datasets(comp.node):
                    if rec.path == path:
                        self.store.drop_dataset(rec.key, rec.node, rec.volume)
            copying[(staging.dataset, comp.node)] = (job.id, staging)
            self.backend.stage(job, comp)
            report.staging.append(job.id)
        elif maker is not None:
            report.staging.append(job.id)
        else:
            self._reuse(job, comp, staging, report)

    def _reuse(self, job: JobRecord, comp: Composition, staging: Staging,
               report: RoundReport) -> None:
        self.store.touch_dataset(staging.dataset, comp.node, staging.volume, self._clock())
        self.store.note(job.id, "reused",
                        f"reused staged copy of {staging.dataset} on {staging.volume}",
                        path=staging.target)
        self._launch(job, comp, report)

    def _launch(self, job: JobRecord, comp: Composition, report: RoundReport) -> None:
        try:
            started = self.backend.launch(job, comp)
        except LaunchError as exc:
            self.store.transition(job.id, JobState.FAILED, str(exc))
            report.finished.append(job.id)
            return
        self.store.set_process(job.id, started.pid, started.start_time, started.log_path,
                               started.log_offset)
        report.started.append(job.id)
        if self.tracker is not None:
            wait = self._clock() - job.submitted_at
            self.tracker.job_started(job.id, job.name, tracking_params(job, comp), wait)

    def _stop(self, job: JobRecord, to_state: JobState, reason: str,
              report: RoundReport) -> None:
        job = self.store.request_stop(job.id, to_state, reason,
                                      grace_seconds=job.spec.checkpoint.grace_seconds)
        comp = job.composition
        if job.state is JobState.STAGING and comp is not None and comp.staging is not None \
                and comp.staging.cached:
            # It only waits for another job's copy: nothing of its own runs yet.
            self._finish(job, to_state, reason, None, report)
            return
        self.backend.stop(job)
        report.stopping.append(job.id)

    def _enforce_stops(self, report: RoundReport) -> None:
        """Cancels asked for from elsewhere (the CLI), and time limits."""
        now = self._clock()
        for job in self.store.jobs(ACTIVE):
            if job.stop is not None:
                continue
            limit = job.spec.time_limit_seconds
            if job.cancel_requested:
                self._stop(job, JobState.CANCELLED, "cancelled by user", report)
            elif limit is not None and job.ran_for(now) > limit:
                self._stop(job, JobState.FAILED, f"time limit of {limit:g}s exceeded", report)

    # ---- what the backend reports -------------------------------------------------------

    def _record(self, event: BackendEvent, report: RoundReport) -> None:
        if isinstance(event, Progress):
            if event.samples is None and event.quality is None:
                self.store.set_log_offset(event.job_id, event.log_offset)
            else:
                self.store.record_progress(event.job_id, event.time, event.samples,
                                           event.quality, event.log_offset)
                self._observe(self.store.job(event.job_id), event)
        elif isinstance(event, Staged):
            self._staged(event, report)
        elif isinstance(event, StagingFailed):
            self._staging_failed(event, report)
        elif isinstance(event, Exited):
            job = self.store.job(event.job_id)
            if job.attempt == event.attempt and job.state in ACTIVE:
                to_state, reason = _outcome(job, event)
                self._finish(job, to_state, reason, event.exit_code, report)

    def _observe(self, job: JobRecord, event: Progress) -> None:
        """Progress feeds MLflow and refines the measured profile of this slice shape."""
        if self.tracker is not None:
            # A repeated report (same sample count) is no evidence of zero throughput.
            self.tracker.job_progress(job.id, {"samples": event.samples,
                                               "samples_per_s": job.samples_per_s or None,
                                               "quality": event.quality},
                                      step=event.samples or 0, timestamp_s=event.time)
        comp = job.composition
        if isinstance(self.profiles, ProfileTable) and comp and job.samples_per_s:
            size = comp.gpu_share if comp.slices else float(len(comp.cores))
            self.profiles.refine(job.spec.workload_class, comp.kind, size,
                                 job.spec.precision, job.samples_per_s, event.time)

    def _record_run_ids(self) -> None:
        if self.tracker is not None:
            for job_id, run_id in self.tracker.new_run_ids().items():
                self.store.set_mlflow_run(job_id, run_id)

    def _staged(self, event: Staged, report: RoundReport) -> None:
        job = self.store.job(event.job_id)
        st = event.staging
        if job.composition is None or job.state is not JobState.STAGING:
            return
        node = job.composition.node
        now = self._clock()
        self.store.put_dataset(DatasetRecord(st.dataset, node, st.volume, st.target,
                                             st.size_gib, now, now))
        mib = event.bytes / (1 << 20)
        self.store.note(job.id, "staged",
                        f"staged {st.dataset} to {st.volume} ({mib:.1f} MiB in "
                        f"{event.seconds:.2f} s)", bytes=event.bytes, seconds=event.seconds,
                        source=st.source, target=st.target)
        for waiter in self._waiters(st.dataset, node, job.id):
            self._start_staged(waiter, report, maker=job.id)
        self._start_staged(job, report)

    def _start_staged(self, job: JobRecord, report: RoundReport, maker: str | None = None
                      ) -> None:
        """A job whose data is now in place: run it (unless it was stopped meanwhile)."""
        if job.stop is not None or job.cancel_requested:
            to_state = job.stop.to_state if job.stop else JobState.CANCELLED
            reason = job.stop.reason if job.stop else "cancelled by user"
            self._finish(job, to_state, reason, None, report)
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
            self._reuse(job, comp, comp.staging, report)
        else:
            self._launch(job, comp, report)

    def _staging_failed(self, event: StagingFailed, report: RoundReport) -> None:
        job = self.store.job(event.job_id)
        if job.state is not JobState.STAGING or job.composition is None:
            return
        st = event.staging
        waiters = self._waiters(st.dataset, job.composition.node, job.id)
        if job.stop is not None:
            self._finish(job, job.stop.to_state, job.stop.reason, None, report)
        else:
            self._finish(job, JobState.FAILED, f"staging {st.dataset} failed: {event.error}",
                         None, report)
        for waiter in waiters:
            # Their data never arrived; they wait again, and the next copy may be theirs.
            self._finish(waiter, JobState.PREEMPTED,
                         f"the copy of {st.dataset} it waited for did not finish", None, report)

    def _waiters(self, dataset: str, node: str, maker: str) -> list[JobRecord]:
        """Jobs in staging that wait for the copy another job is making."""
        return [j for j in self.store.jobs([JobState.STAGING]) if j.id != maker
                and j.composition is not None and j.composition.node == node
                and j.composition.staging is not None and j.composition.staging.cached
                and j.composition.staging.dataset == dataset]

    def _finish(self, job: JobRecord, to_state: JobState, reason: str,
                exit_code: int | None, report: RoundReport) -> None:
        self.store.transition(job.id, to_state, reason, exit_code=exit_code)
        report.finished.append(job.id)
        if self.tracker is not None:
            ran = self.store.job(job.id).ran_for(self._clock())
            average = job.samples / ran if job.samples and ran > 0 else None
            self.tracker.job_progress(job.id, {"run_time_s": ran, "avg_samples_per_s": average},
                                      step=job.samples or 0, timestamp_s=self._clock())
            self.tracker.job_finished(job.id, to_state.value)
        if to_state is JobState.PREEMPTED:
            self._requeue(self.store.job(job.id), "requeued after preemption")

    def _requeue(self, job: JobRecord, reason: str) -> None:
        self.store.transition(job.id, JobState.QUEUED, reason)

    # ---- after a restart ----------------------------------------------------------------

    def _reconcile(self, job: JobRecord) -> None:
        if job.state is JobState.STAGING:
            # The copy ran on a thread of the dead controller; a half copy sits under a
            # temporary name, never where a job would read it.
            comp = job.composition
            if comp is not None and comp.staging is not None:
                remove_partial_copies(Path(comp.staging.target).parent)
            self.store.transition(job.id, JobState.PREEMPTED,
                                  "controller restarted while staging; partial copy discarded")
            self.store.transition(job.id, JobState.QUEUED, "requeued")
            return
        started = self.backend.adopt(job)
        if started is not None:
            reason = f"adopted process {started.pid} after controller restart"
            if started.pid != job.pid:
                self.store.set_process(job.id, started.pid, started.start_time,
                                       started.log_path, started.log_offset, reason)
            else:
                self.store.note(job.id, "adopted", reason, pid=started.pid)
            return
        ended = self.backend.exit_record(job)
        scratch = RoundReport(self._clock())
        if ended is not None:  # it finished while no controller watched; the launcher saw
            event = Exited(job.id, job.attempt, ended.exit_code, ended.error,
                           stopped=job.stop is not None)
            to_state, reason = _outcome(job, event)
            self._finish(job, to_state, f"{reason} (ended while no controller ran)",
                         ended.exit_code, scratch)
        elif job.stop is not None:  # it was being stopped anyway; now it is
            self._finish(job, job.stop.to_state,
                         f"{job.stop.reason} (process gone after controller restart)", None,
                         scratch)
        else:
            self.store.transition(job.id, JobState.PREEMPTED,
                                  "controller restarted; process gone")
            self.store.transition(job.id, JobState.QUEUED, "requeued")


def _outcome(job: JobRecord, event: Exited) -> tuple[JobState, str]:
    """The state and reason a finished process leaves its job in."""
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


def _copies_in_progress(jobs: list[JobRecord]) -> dict[tuple[str, str], tuple[str, Staging]]:
    """(dataset, node) -> (job, staging) for the copies being made now."""
    found = {}
    for job in jobs:
        comp = job.composition
        if job.state is JobState.STAGING and comp is not None and comp.staging is not None \
                and not comp.staging.cached:
            found[(comp.staging.dataset, comp.node)] = (job.id, comp.staging)
    return found


def _entry(rec: DatasetRecord) -> CacheEntry:
    return CacheEntry(rec.key, rec.node, rec.volume, rec.path, rec.size_gib, rec.last_used)


def _view(job: JobRecord, attained: float) -> JobView:
    spec = job.spec
    current = None
    comp = job.composition
    if job.state in ACTIVE and comp is not None:
        shared = next((s.compute for s in comp.slices if s.shape is SliceShape.FRACTION), None)
        current = Assignment(job.id, len(comp.slices), comp.kind if comp.slices else None,
                             cpus=len(comp.cores), memory_gib=comp.memory_gib, node=comp.node,
                             devices=tuple(s.device for s in comp.slices), fraction=shared)
    dataset = None
    if spec.dataset is not None:
        size = job.dataset_size_gib if job.dataset_size_gib is not None else (
            spec.dataset.size_gib or 0.0)
        dataset = DatasetRef(spec.dataset.key, spec.dataset.path, size)
    return JobView(id=job.id, demand=Demand.from_spec(spec), submitted_at=job.submitted_at,
                   workload=spec.workload_class, precision=spec.precision,
                   priority=spec.priority, state=job.state, current=current,
                   attained_gpu_seconds=attained, dataset=dataset, preemptions=job.preemptions)


def tracking_params(job: JobRecord, comp: Composition) -> dict[str, object]:
    """The composition as MLflow params: what a run was given, next to how it did."""
    return {"job_id": job.id, "node": comp.node, "device_kind": comp.kind,
            "slices": "; ".join(s.describe() for s in comp.slices) or "none",
            "gpu_share": comp.gpu_share, "cores": ",".join(map(str, comp.cores)),
            "num_cores": len(comp.cores), "memory_gib": comp.memory_gib,
            "precision": job.spec.precision, "workload": job.spec.workload_class,
            "data_path": comp.data_path or "", "attempt": job.attempt}


# ---- submitting ---------------------------------------------------------------------------


def submit_file(store: Store, pool: Pool, placer: Placer, path: str | Path,
                cwd: str | Path | None = None) -> str:
    """Validate a job file against the pool and queue it; the job id.

    Raises ``SpecError`` naming the field and the reason (a misspelt field, a bad value,
    a request ``pool`` can never satisfy, a dataset or workdir that is not there, a
    program that cannot be found); nothing is written then. ``placer`` must be the
    pool's (it answers the "could this ever fit" question).
    """
    return admission.submit_file(store, path, placer.feasible, cwd=cwd)


def submit_spec(store: Store, pool: Pool, placer: Placer, spec: JobSpec,
                cwd: str | Path | None = None, source: str = "job spec") -> str:
    """``submit_file`` for a spec already in hand (the API, tests)."""
    return admission.submit_spec(store, spec, placer.feasible, cwd=cwd, source=source)
