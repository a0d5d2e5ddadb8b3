"""The control loop: reconcile store and processes, ask the policy, place, act, record.

One round (``Controller.run_once``)::

    events   = backend.poll()                       # exits, progress, finished copies
    ...record them...                               # durable before anything else happens
    snapshot = from the store (+ the long-lived PoolState of what active jobs hold)
    decision = policy.decide(snapshot)
    plan     = placer.place(state, snapshot, decision, data)
    record each start/stop, then backend acts on it # durable before acting

The store is the truth. A controller may be killed at any instant; the next one takes the
lease, adopts the jobs whose processes still run, finishes those that ended meanwhile,
and requeues the rest (``reconcile``), so no accepted job is lost and none runs twice.
Nothing one job does (or fails to do) stops the loop: see ``JobActions.contained``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from slicebox.backends.base import (
    Backend,
    BackendEvent,
    Exited,
    NodeSource,
    Progress,
    Staged,
    StagingFailed,
)
from slicebox.placement.placer import Placer
from slicebox.placement.staging import CacheEntry, DataCache
from slicebox.placement.state import AllocationError, PoolState
from slicebox.pool.composition import NoFit, Plan, Staging
from slicebox.pool.model import Node
from slicebox.profiles.base import PeakRateEstimator, ThroughputModel
from slicebox.profiles.table import ProfileTable
from slicebox.sdk import CHECKPOINTED
from slicebox.snapshot import ClusterSnapshot, Decision, JobState
from slicebox.spec import Demand
from slicebox.store import JobRecord, Store

from . import live_pool
from . import progress as progress_values
from .actions import CONTROLLER_FATAL, JobActions, RoundReport
from .dependencies import DependencyGate
from .elastic import ElasticWatch, resize_reason
from .identity import controller_id, holder_alive
from .mig import MigRelayouts
from .outcome import node_losses, outcome
from .reconcile import reconcile
from .services import ServiceManager
from .staging import StagingFlow
from .views import ACTIVE, WAITING, ViewCache, cache_entry, copies_in_progress, staging_node

if TYPE_CHECKING:
    from slicebox.policies.base import Policy
    from slicebox.pool.model import Pool
    from slicebox.tracking import JobTracker

_KIND_MAX = 32  # the event table's kind column
_QUEUED_AFTER_LOSS = "requeued after its node left the pool"
log = logging.getLogger("slicebox.controller")


class Controller:
    """Drives one store: ``run()`` (the loop ``slicebox up`` runs) or ``run_once()``.

    ``pool``/``placer``: what may be handed out and how (the placer must be the pool's);
    ``backend``: what makes it so (``LocalBackend`` for this machine). A backend that is a
    ``NodeSource`` (Ray) is asked for its nodes each round: ``pool`` is then only where it
    starts, and the pool, the placer and the kept state follow the nodes it reports (see
    ``live_pool``; the store's ``POOL_KEY`` record follows too). Only one controller
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
        placer.mig_free_room = False  # live: MIG jobs only on instances that exist (.mig)
        self.state_dir = Path(state_dir) if state_dir else store.state_dir
        self.profiles = profiles or PeakRateEstimator()
        self.tracker = tracker
        self.interval, self.lease_ttl = interval, lease_ttl
        self.id = ident or controller_id()
        self._clock = clock
        self._started = False
        self.actions = JobActions(store, backend, clock, tracker, self._release)
        self.staging = StagingFlow(store, self.actions, clock)
        self.services = ServiceManager(store, clock, pool=lambda: self.pool)  # kind: service
        self.dependencies = DependencyGate(store)  # jobs waiting for other jobs (after:)
        self.mig = MigRelayouts(store, clock, self.use_pool)  # MIG re-layout (see .mig)
        self._state: PoolState | None = None  # what active jobs hold; kept, not rebuilt
        self._views = ViewCache()
        self._noted_bad_progress: set[tuple[str, int]] = set()
        self._attempt_rates = AttemptRates()
        self.cores: tuple[int, ...] | None = None  # reserved for it (``--reserve-cores``)
        self._live_names: frozenset[str] | None = None  # the backend's nodes this round
        self._decided_at = -1  # the store's last event id when the policy last decided
        self._counts = (0, 0)  # (waiting, active) then
        self._elastic = ElasticWatch()  # asks again while an elastic job could grow
        # A backend whose nodes come and go: the live pool, and every node it has shown.
        self.live: live_pool.LivePool | None = None
        self._known_placer: Placer | None = None  # the known pool's (see _waiting_reason)
        if isinstance(backend, NodeSource):
            self.live = live_pool.LivePool(pool, live_pool.known_nodes(store))

    # ---- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Take the lease (``LeaseHeld`` if another controller runs) and reconcile."""
        if self._started:
            return
        self.store.acquire_lease(self.id, self.lease_ttl, holder_alive)
        self._started = True
        scratch = RoundReport(self._clock())
        live = self._live_nodes()
        if self.live is not None:
            self._follow_pool(live, scratch)
            self._record_pool()
        for job in self.store.jobs(ACTIVE):
            with self.actions.contained(job.id, "take the job over after a restart", scratch):
                reconcile(job, self.store, self.backend, self.actions, self._clock,
                          live=None if live is None else {n.name for n in live})

    def close(self) -> None:
        """Stop driving; running jobs go on and the next controller adopts them."""
        self.services.close()
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
                began = time.perf_counter()
                report = self.run_once()
                self.last_round_seconds = time.perf_counter() - began  # for /metrics
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
        events = self.backend.poll()
        # Asked after poll: a node whose jobs poll reported lost is no longer among them.
        live = self._live_nodes()
        self._live_names = None if live is None else frozenset(n.name for n in live)
        for event in events:
            job_id = getattr(event, "job_id", None)
            with self.actions.contained(job_id, f"record {type(event).__name__}", report):
                self._record(event, report)
        self._follow_pool(live, report)
        self._enforce_stops(report)
        self.services.run_round()  # replicas queued or cancelled here are acted on below
        for job in self.store.jobs([JobState.PREEMPTED]):
            with self.actions.contained(job.id, "requeue the job", report):
                self.actions.requeue(job, "requeued after preemption")
        report.waiting, report.active = self._schedule(report)
        if self.mig.carry_out(self.pool, report):  # MIG cards re-laid out: place again
            report.waiting, report.active = self._schedule(report)
        self._record_run_ids()
        return report

    def _schedule(self, report: RoundReport) -> tuple[int, int]:
        """Decide and act; how many jobs wait and how many are active afterwards.

        A policy that acts only on arrivals and exits (not ``periodic``) would decide the
        same again when nothing has changed since its last decision: no job arrived, ended,
        was cancelled or got a new reason (each writes an event). Then the round stops
        here, and costs the same with 10 jobs queued as with 2,000."""
        marker = self.store.last_event_id()  # before reading: a later change is seen next
        now = self._clock()
        if not self.policy.periodic and marker == self._decided_at \
                and not self._elastic.due(now):
            return self._counts
        jobs = self.store.jobs([*WAITING, *ACTIVE])
        state = self._pool_state(jobs)
        self._decided_at = marker
        self._counts = _counts(jobs)
        jobs = self.dependencies.hold_back(jobs, report)  # not offered until deps are met
        could_grow = self._elastic.note(jobs, state, now)
        if not self.policy.periodic and not could_grow \
                and not any(j.state in WAITING for j in jobs):
            return self._counts  # nothing to start; this policy acts on arrivals and exits
        started_before = [j.id for j in jobs if j.attempt > 0]
        attained = self.store.attained_gpu_seconds(now, started_before)
        views = self._views.views(jobs, attained)
        # A job being stopped holds its slices until its process is gone. The policy does
        # not see it; placement keeps it where it is, so nothing starts on what it holds.
        stopping = [j.id for j in jobs if j.stop is not None]
        copying = copies_in_progress(jobs)
        data = DataCache([*(cache_entry(d) for d in self.store.datasets()),
                          *(CacheEntry(k, n, st.volume, st.target, st.size_gib, now)
                            for (k, n), (_, st) in copying.items())])
        self.placer.count_staged_memory(state, data)  # a copy in /dev/shm is RAM taken
        snapshot = ClusterSnapshot(now, tuple(v for k, v in views.items() if k not in stopping),
                                   state.capacity(), self.profiles, nodes=state.node_views())
        try:
            decision = self.policy.decide(snapshot)
            decision = self._elastic.restart_resized(snapshot, decision)
        except Exception:  # noqa: BLE001 - no one job to blame: keep running, retry
            log.exception("the %s policy failed; nothing starts this round", self.policy.name)
            self._decided_at = -1
            return self._counts
        if stopping:
            held = tuple(a for a in (views[k].current for k in stopping) if a is not None)
            decision = dataclasses.replace(decision, run=held + tuple(
                a for a in decision.run if a.job_id not in stopping))
            snapshot = dataclasses.replace(snapshot, jobs=tuple(views.values()))
        try:
            plan = self.placer.place(state, snapshot, decision, data=data)
        except Exception:  # noqa: BLE001 - as for the policy
            log.exception("placement failed; nothing starts this round")
            self._decided_at = -1
            return self._counts
        by_id = {j.id: j for j in jobs}
        self._apply(plan, state, by_id, decision, set(stopping), copying, report)
        if report.started or report.finished or report.staging or report.stopping:
            counts = self.store.count_by_state()
            self._counts = (sum(counts.get(s, 0) for s in WAITING),
                            sum(counts.get(s, 0) for s in ACTIVE))
        return self._counts

    # ---- a pool that changes (NodeSource backends) ---------------------------------------

    def _live_nodes(self) -> tuple[Node, ...] | None:
        """The backend's nodes now (None: its pool does not change, or it could not say;
        then the pool stays as it is this round)."""
        if self.live is None:
            return None
        try:
            return tuple(self.backend.nodes())  # type: ignore[attr-defined]
        except CONTROLLER_FATAL:
            raise
        except Exception:  # noqa: BLE001 - no job to blame; the next round asks again
            log.exception("the backend could not list its nodes; the pool stays as it is")
            return None

    def _follow_pool(self, live: tuple[Node, ...] | None, report: RoundReport) -> None:
        """On a change of nodes: a new pool, its placer (same profiles), and the kept state
        rebuilt from what active jobs hold on nodes that still exist. Jobs on a node that
        left are ended by the backend (``Exited(node_lost=True)``); a job waiting for
        capacity that left waits on (see ``_waiting_reason``)."""
        if self.live is None or live is None:
            return
        change = self.live.update(live)
        if change is None:
            return
        self.use_pool(self.live.pool)
        for line in change.describe():
            log.warning("%s", line)
            report.pool_changes.append(line)
        if change.left:
            self._requeue_copy_waiters(set(change.left), report)
        self._record_pool()

    def use_pool(self, pool: Pool) -> None:
        """Place on ``pool`` from now on (a live pool's change, a MIG re-layout): its
        placer (same profiles), and the kept state rebuilt by ``_pool_state`` from the
        store's active jobs; the policy decides again, since what fits has changed."""
        self.pool = pool
        self.placer = Placer(pool, self.placer.profiles, mig_free_room=False)
        self._known_placer = None
        self._state = None
        self._decided_at = -1

    @property
    def admission_pool(self) -> Pool:
        """The pool a submission is checked against ("could this ever fit"): every node
        the backend has shown, down ones included, so a job is not refused because the
        node it needs is down right now (it waits for it). The pool itself otherwise."""
        return self.live.known if self.live is not None else self.pool

    @property
    def admission_placer(self) -> Placer:
        """``admission_pool``'s placer (for ``submit_*`` and the service's admission)."""
        if self.live is None:
            return self.placer
        if self._known_placer is None:
            self._known_placer = Placer(self.live.known, self.placer.profiles)
        return self._known_placer

    def _record_pool(self) -> None:
        """The known pool, for ``submit``/``plan`` run elsewhere (``live_pool.recorded``)."""
        if self.live is not None:
            live_pool.record(self.store, self.live, getattr(self.backend, "name", "live"))

    def _requeue_copy_waiters(self, left: set[str], report: RoundReport) -> None:
        """Jobs that waited for another job's copy on a node that left: nothing of theirs
        runs in the backend, so no exit will come for them; they wait again."""
        for job in self.store.jobs([JobState.STAGING]):
            comp = job.composition
            if comp is None or comp.staging is None or not comp.staging.cached \
                    or staging_node(comp) not in left:
                continue
            with self.actions.contained(job.id, "requeue after a node loss", report):
                self._finish_node_lost(job, report)

    def _finish_node_lost(self, job: JobRecord, report: RoundReport) -> None:
        lost = self._lost_nodes(job)
        to_state, reason = outcome(job, Exited(job.id, job.attempt, None, node_lost=True),
                                   lost)
        self.actions.finish(job, to_state, reason, None, report,
                            queued_reason=_QUEUED_AFTER_LOSS)

    def _lost_nodes(self, job: JobRecord) -> tuple[str, ...]:
        live = self._live_names
        if job.composition is None or live is None:
            return ()
        return tuple(n for n in job.composition.nodes if n not in live)

    def _on_missing_node(self, job: JobRecord) -> bool:
        """An active job that holds part of a node not in the pool now (it is about to be
        reported lost)."""
        if self.live is None or job.composition is None:
            return False
        names = {n.name for n in self.pool.nodes}
        return any(n not in names for n in job.composition.nodes)

    def _waiting_reason(self, why: NoFit, job: JobRecord | None) -> str:
        """Why a job waits. Where the live pool can never fit it but the known pool could
        (a node it needs is down), it waits for that node rather than being called
        impossible: it is never failed for it, and starts when the node is back."""
        if self.live is None or not why.never or job is None or not self.live.down():
            return str(why)
        if self.admission_placer.feasible(Demand.from_spec(job.spec)) is not None:
            return str(why)  # no node ever seen could run it either
        return (f"waits for capacity that left the pool (down: "
                f"{', '.join(self.live.down())}): {why}")

    # ---- kept state ---------------------------------------------------------------------

    def _pool_state(self, jobs: list[JobRecord]) -> PoolState:
        """The long-lived pool state, brought in line with the store's active jobs (only
        the difference is applied: a round costs what changed)."""
        if self._state is None:
            self._state = PoolState(self.pool)
        state = self._state
        held = {j.id: j for j in jobs if j.state in ACTIVE and j.composition is not None}
        for job_id in [k for k in state.compositions() if k not in held]:
            state.release(job_id)
        for job in held.values():
            if job.id in state or self._on_missing_node(job):
                continue
            try:
                state.allocate(job.composition)  # type: ignore[arg-type]
            except AllocationError as exc:
                # The pool changed under a running job (a node or card gone from the
                # pool file). It keeps running; the user should know why.
                self.store.set_reason(job.id, f"composition outside the pool: {exc}",
                                      kind="warning")
        return state

    def _release(self, job_id: str) -> None:
        self._attempt_rates.forget(job_id)
        if self._state is not None and job_id in self._state:
            self._state.release(job_id)

    def _apply(self, plan: Plan, state: PoolState, jobs: Mapping[str, JobRecord],
               decision: Decision, stopping: set[str],
               copying: dict[tuple[str, str], tuple[str, Staging]], report: RoundReport) -> None:
        reasons = {k: str(v) for k, v in decision.reasons.items()}
        resized = {c.job_id: c for c in plan.start}
        for job_id in plan.stop:
            job = jobs.get(job_id)
            if job is None or job_id in stopping or job.state not in ACTIVE:
                continue
            new = resized.get(job_id)
            if new is not None and job.composition is not None:
                # A resize: checkpoint, stop, and start again at the new size (the policy
                # gives it the cores this stop frees once it is gone). Durable as any
                # preemption: a controller killed meanwhile requeues it.
                reason = resize_reason(job.composition, new, reasons.get(job_id))
                with self.actions.contained(job_id, "resize the job", report):
                    self.actions.checkpoint_stop(job, reason, report)
                    self._elastic.resizing(job_id, new.core_count)
                continue
            reason = reasons.get(job_id) or f"preempted by the {self.policy.name} policy"
            with self.actions.contained(job_id, "stop the job", report):
                self.actions.stop(job, JobState.PREEMPTED, reason, report)
        for comp in plan.start:
            # ``state`` still holds what every active job holds, the ones just told to stop
            # included: they keep it until their process is gone. A start that would share
            # any of it waits for a later round.
            try:
                state.allocate(comp)
            except AllocationError as exc:
                reasons[comp.job_id] = f"waits for jobs being stopped ({exc})"
                continue
            with self.actions.contained(comp.job_id, "start the job", report):
                self.staging.begin(jobs[comp.job_id], comp, copying, report, self.id)
        chosen = {a.job_id for a in decision.run}
        for job in jobs.values():
            if job.state in WAITING and job.id not in chosen and job.id not in reasons:
                reasons[job.id] = f"not chosen by the {self.policy.name} policy"
        reasons.update({k: self._waiting_reason(v, jobs.get(k)) for k, v in plan.waiting.items()})
        reasons.update(self.mig.wait_reasons(self.pool, plan.waiting, jobs, state))
        # Only reasons that changed are written, all in one transaction.
        changed = {k: v for k, v in reasons.items()
                   if (job := jobs.get(k)) is not None and job.state in WAITING
                   and job.reason != v}
        self.store.set_reasons(changed)

    def _enforce_stops(self, report: RoundReport) -> None:
        """Cancels asked for from elsewhere (the CLI), and time limits."""
        now = self._clock()
        for job in self.store.jobs(ACTIVE):
            if job.stop is not None:
                continue
            limit = job.spec.time_limit_seconds
            with self.actions.contained(job.id, "stop the job", report):
                if job.cancel_requested:
                    self.actions.stop(job, JobState.CANCELLED, "cancelled by user", report)
                elif limit is not None and job.ran_for(now) > limit:
                    self.actions.stop(job, JobState.FAILED,
                                      f"time limit of {limit:g}s exceeded", report)

    # ---- what the backend reports -------------------------------------------------------

    def _record(self, event: BackendEvent, report: RoundReport) -> None:
        if isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, Staged):
            self.staging.staged(event, report)
        elif isinstance(event, StagingFailed):
            job = self.store.job(event.job_id)
            if job.state is JobState.STAGING and self._lost_nodes(job):
                self._finish_node_lost(job, report)  # the copy failed with its node
            else:
                self.staging.failed(event, report)
        elif isinstance(event, Exited):
            job = self.store.job(event.job_id)
            if job.attempt == event.attempt and job.state in ACTIVE:
                losses = 0
                if not event.node_lost and event.exit_code in (CHECKPOINTED, None):
                    losses = node_losses(self.store, job.id)  # not held against the job
                to_state, reason = outcome(job, event, self._lost_nodes(job), losses)
                # A lost node leaves no exit code: the attempt's record says "gone".
                code = None if event.node_lost else event.exit_code
                self.actions.finish(job, to_state, reason, code, report,
                                    queued_reason=_QUEUED_AFTER_LOSS if event.node_lost
                                    else "requeued after preemption")
        else:
            self._note_other(event)

    def _progress(self, event: Progress) -> None:
        values = progress_values.clean(event.time, event.samples, event.quality, self._clock())
        offset = event.log_offset if isinstance(event.log_offset, int) else None
        if values.problems:
            job = self.store.job(event.job_id)
            key = (job.id, job.attempt)
            if key not in self._noted_bad_progress:  # once per attempt: a log may be junk
                self._noted_bad_progress.add(key)
                self.store.note(job.id, "bad-progress",
                                "ignored progress values: " + "; ".join(values.problems))
        if values.empty:
            if offset is not None:
                self.store.set_log_offset(event.job_id, offset)  # durable: never reread
            return
        self.store.record_progress(event.job_id, values.time, values.samples, values.quality,
                                   offset)
        self._observe(self.store.job(event.job_id), values)

    def _note_other(self, event: object) -> None:
        """An event type this controller does not know (e.g. a newer backend's): kept in
        the job's event log, never a crash."""
        job_id = getattr(event, "job_id", None)
        if not isinstance(job_id, str):
            return
        describe = getattr(event, "describe", None)
        reason = describe() if callable(describe) else repr(event)
        kind = getattr(event, "kind", None)
        if not isinstance(kind, str):
            kind = "breach" if type(event).__name__ == "Breached" else type(event).__name__
        details = {}
        if dataclasses.is_dataclass(event) and not isinstance(event, type):
            details = {f.name: _plain(getattr(event, f.name))
                       for f in dataclasses.fields(event) if f.name != "job_id"}
        self.store.note(job_id, kind.lower()[:_KIND_MAX], str(reason)[:2000], **details)

    def _observe(self, job: JobRecord, values: progress_values.CleanProgress) -> None:
        """Progress feeds MLflow and refines the measured profile of this slice shape."""
        if self.tracker is not None:
            # A repeated report (same sample count) is no evidence of zero throughput.
            self.tracker.job_progress(job.id, {"samples": values.samples,
                                               "samples_per_s": job.samples_per_s or None,
                                               "quality": values.quality},
                                      step=values.samples or 0, timestamp_s=values.time)
        comp = job.composition
        rate = self._attempt_rates.observe(job, values)
        if isinstance(self.profiles, ProfileTable) and comp and rate:
            size = comp.gpu_share if comp.slices else float(comp.core_count)
            self.profiles.refine(job.spec.workload_class, comp.kind, size,
                                 job.spec.precision, rate, values.time)

    def _record_run_ids(self) -> None:
        if self.tracker is not None:
            for job_id, run_id in self.tracker.new_run_ids().items():
                self.store.set_mlflow_run(job_id, run_id)


class AttemptRates:
    """Each attempt's average rate since its first report, for refining profiles.

    One report's rate is noisy: the interval before a report that follows an evaluation
    holds no training, and a profile refined with it makes this size look slower than it
    is. The average since the attempt's first report smooths that out (and leaves out the
    start-up and restore before it, which restarts pay for separately)."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[int, float, int]] = {}  # job -> (attempt, time, samples)

    def observe(self, job: JobRecord, values: progress_values.CleanProgress) -> float | None:
        if values.samples is None:
            return None
        first = self._first.get(job.id)
        if first is None or first[0] != job.attempt or values.samples < first[2]:
            self._first[job.id] = (job.attempt, values.time, values.samples)
            return None
        _, since, samples = first
        if values.time <= since or values.samples == samples:
            return None
        return (values.samples - samples) / (values.time - since)

    def forget(self, job_id: str) -> None:
        self._first.pop(job_id, None)


def _counts(jobs: list[JobRecord]) -> tuple[int, int]:
    return (sum(1 for j in jobs if j.state in WAITING),
            sum(1 for j in jobs if j.state in ACTIVE))


def _plain(value: object) -> object:
    """A value as the event log's JSON can hold it."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)[:500]
