"""Services (``kind: service``): replicas as ordinary jobs, a balancer in front, a count
that follows the traffic.

The controller calls ``ServiceManager.run_round()`` once a round, before it schedules. For
each live service in the store the manager keeps

- one ``Balancer`` (``slicebox.serving.balancer``) listening on the service's address,
  routing to the replicas that run (a replica is a job whose spec's ``replica_of`` names the
  service; it serves on the port in its ``SLICEBOX_SERVICE_PORT``);
- one ``Autoscaler`` that turns the balancer's traffic statistics into a replica count,
  kept between ``min_replicas`` and ``max_replicas``.

It queues replicas (``Store.add_replica``: the policy and placement place them like any
job, each on its own slice) until the count is met, and scales down by taking a replica out
of the balancer first and cancelling it once its requests in flight are done. A replica that
ends (its process died, it exited, someone cancelled it) is replaced by a new one; a service
whose replicas keep failing is given a growing pause between replacements (as Kubernetes'
CrashLoopBackOff does), so a broken command does not fill the event log.

Nothing is kept only here: the count the autoscaler last wanted, the balancer's URL and the
last statistics are in the service's row, so a new controller (after a restart) rebuilds
every balancer on the same port, with the same replicas, which the reconciler adopted.
A cancelled service's replicas are cancelled, then its balancer stops.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from slicebox.hours import share_now
from slicebox.snapshot import JobState
from slicebox.spec.job import gpu_share
from slicebox.spec.service import ServiceSection
from slicebox.store import JobRecord, ServiceRecord, Store
from slicebox.store.services import CANCELLING

from .actions import CONTROLLER_FATAL

if TYPE_CHECKING:
    from slicebox.pool.model import Pool
    from slicebox.serving.balancer import Replica, TrafficStats
    from slicebox.serving.sizing import ShapeStats
    from slicebox.spec.job import Resources

log = logging.getLogger("slicebox.controller.services")

NOT_ENDED = (JobState.QUEUED, JobState.PREEMPTED, JobState.STAGING, JobState.RUNNING)
DRAIN_TIMEOUT_S = 10.0  # a replica taken out is cancelled after this even with requests left
BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 60.0  # pause before replacing a failed replica
HEALTHY_RESET_S = 60.0  # a replica that ran this long clears its service's failure count
STATS_EVERY_S = 1.0  # how often the service row gets the balancer's latest statistics
DEFAULT_CAPACITY_RPS = 10.0  # first guess of one replica's capacity, when none is given
RETRY_AFTER_S = 5.0  # a service whose round failed (its port taken...) is looked at again
SHAPE_SUSTAIN_S = 30.0  # a shape's objective broken at low load this long: the next shape


class BalancerLike(Protocol):
    @property
    def url(self) -> str: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def set_replicas(self, replicas: Sequence[Replica]) -> None: ...
    def healthy(self) -> frozenset[str]: ...
    def draining(self) -> frozenset[str]: ...
    def stats(self) -> TrafficStats: ...


class AutoscalerLike(Protocol):
    capacity: float

    def desired(self, now: float, current: int, stats: TrafficStats) -> int: ...


BalancerFactory = Callable[[ServiceRecord, int], BalancerLike]  # (service, port)
AutoscalerFactory = Callable[[ServiceRecord, float], AutoscalerLike]  # (service, capacity)


@dataclass
class _Live:
    """What the manager keeps for one live service (all of it can be rebuilt)."""

    balancer: BalancerLike
    autoscaler: AutoscalerLike
    capacity: CapacityEstimate
    desired: int
    known: set[str] = field(default_factory=set)  # replica job ids alive last round
    draining: dict[str, float] = field(default_factory=dict)  # job id -> taken out at
    failures: int = 0  # replicas that ended on their own since the last long-lived one
    restart_at: float = 0.0  # no replacement before this (back-off)
    stats_at: float = -math.inf
    last_stats: dict[str, Any] = field(default_factory=dict)
    shape: int = 0  # index in the spec's shapes that new replicas get (0 without shapes)
    shape_stats: dict[int, ShapeStats] = field(default_factory=dict)  # measured, per shape


class CapacityEstimate:
    """One replica's capacity in requests per second: the spec's, when it gives one;
    otherwise learned from the service's own traffic (the issue's "or the service's own
    live metrics"). A window whose p99 broke the objective says the replicas that served
    it carry at most its rate (less a margin); a window well inside the objective says
    they carry at least its rate. Starts from the objective's rate over ``min_replicas``
    (else ``DEFAULT_CAPACITY_RPS``)."""

    def __init__(self, section: ServiceSection) -> None:
        self.fixed = section.replica_capacity_rps is not None
        if section.replica_capacity_rps is not None:
            self.rps = section.replica_capacity_rps
        elif section.objective.rate_rps is not None:
            self.rps = section.objective.rate_rps / section.min_replicas
        else:
            self.rps = DEFAULT_CAPACITY_RPS
        self.p99_ms = section.objective.p99_ms

    def observe(self, stats: TrafficStats, serving: int) -> float:
        if self.fixed or serving < 1 or stats.requests < 20:
            return self.rps
        per_replica = stats.rate_rps / serving
        if stats.p99_ms > self.p99_ms:
            self.rps = max(min(self.rps, 0.9 * per_replica), 0.1)
        elif stats.p99_ms < 0.5 * self.p99_ms and stats.errors == 0:
            self.rps = max(self.rps, per_replica)
        return self.rps


class ServiceManager:
    """Keeps every live service's balancer, autoscaler and replicas (see the module doc).

    ``balancer_factory`` / ``autoscaler_factory``: how to make them (default: the serving
    package's, imported only when a service exists); ``up_after_s``, ``down_after_s`` and
    ``window_s`` tune the default ones."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time, *,
                 balancer_factory: BalancerFactory | None = None,
                 autoscaler_factory: AutoscalerFactory | None = None,
                 port_picker: Callable[[set[int]], int] | None = None,
                 window_s: float = 10.0, up_after_s: float = 2.0,
                 down_after_s: float = 10.0, pool: Callable[[], Pool] | None = None,
                 local_time: Callable[[float], time.struct_time] = time.localtime,
                 shape_sustain_s: float = SHAPE_SUSTAIN_S) -> None:
        self.store = store
        self._clock = clock
        self._pool = pool  # for schedules: a share of the pool as a replica count
        self._local_time = local_time
        self._window_s = window_s
        self._up_after_s, self._down_after_s = up_after_s, down_after_s
        self._make_balancer = balancer_factory or self._default_balancer
        self._make_autoscaler = autoscaler_factory or self._default_autoscaler
        self._pick_port = port_picker or free_port
        self._live: dict[str, _Live] = {}
        self._retry_at: dict[str, float] = {}  # service id -> not before (after a failure)
        self._shape_sustain_s = shape_sustain_s
        self._hours_shares: dict[str, float] = {}  # service id -> its part of service_hours

    # ---- the round ----------------------------------------------------------------------

    def run_round(self) -> None:
        """One look at every service; a failure is confined to its service (logged, and
        its reason set), except the store or the lease failing, which stop the controller."""
        services = self.store.services()
        if not services and not self._live:
            return  # one cheap query a round when there are no services
        replicas = self._replicas_by_service()
        now = self._clock()
        self._hours_shares = self._split_service_hours(
            [svc for svc in services if svc.state != CANCELLING], now)
        for svc in services:
            if self._retry_at.get(svc.id, -math.inf) > now:
                continue  # failed a moment ago (e.g. its port is taken): not every round
            try:
                if svc.state == CANCELLING:
                    self._wind_down(svc, replicas.get(svc.id, []))
                else:
                    self._follow(svc, replicas.get(svc.id, []))
                self._retry_at.pop(svc.id, None)
            except CONTROLLER_FATAL:
                raise
            except Exception as exc:  # noqa: BLE001 - one service must not stop the rest
                log.exception("service %s: the round failed; retried in %.0f s", svc.name,
                              RETRY_AFTER_S)
                self._retry_at[svc.id] = now + RETRY_AFTER_S
                self.store.update_service(svc.id, reason=f"controller: {type(exc).__name__}: "
                                          f"{str(exc)[:300]}")
        gone = set(self._live) - {s.id for s in services}
        for service_id in gone:  # ended behind our back (another tool): let it go
            self._drop(service_id)

    def close(self) -> None:
        """Stop every balancer (the controller is stopping; replicas keep running and the
        next controller adopts them and starts the balancers again)."""
        for service_id in list(self._live):
            self._drop(service_id)

    def balancer(self, service_id: str) -> BalancerLike | None:
        """The live balancer of a service (tests, the demo)."""
        live = self._live.get(service_id)
        return None if live is None else live.balancer

    # ---- one service --------------------------------------------------------------------

    def _follow(self, svc: ServiceRecord, replicas: list[JobRecord]) -> None:
        now = self._clock()
        live = self._live.get(svc.id) or self._start(svc)
        # A replica being preempted comes back (requeued): it still counts.
        alive = [j for j in replicas if not j.cancel_requested
                 and (j.stop is None or j.stop.to_state is JobState.PREEMPTED)]
        self._note_ended(live, {j.id for j in alive}, now)
        # Replicas taken out last rounds: cancelled once drained (or after a timeout).
        names = {j.id: j.name for j in replicas}
        draining = live.balancer.draining()
        for job_id, since in list(live.draining.items()):
            job = next((j for j in alive if j.id == job_id), None)
            if job is None:
                del live.draining[job_id]
            elif names.get(job_id) not in draining or now - since > DRAIN_TIMEOUT_S:
                self.store.request_cancel(job_id, "scaled down: the autoscaler asked for "
                                          "fewer replicas")
                del live.draining[job_id]
        keep = [j for j in alive if j.id not in live.draining]
        serving = [j for j in keep if j.state is JobState.RUNNING and j.pid is not None
                   and j.stop is None]
        stats = live.balancer.stats()
        live.autoscaler.capacity = live.capacity.observe(stats, len(serving))
        target = live.autoscaler.desired(now, live.desired, stats)
        section = _section(svc)
        floor = min(max(section.min_replicas, self._scheduled_floor(svc, now)),
                    section.max_replicas)
        target = max(floor, min(section.max_replicas, target))
        if section.shapes and serving and all(_shape(j) == live.shape for j in keep):
            self._size(svc, live, stats, len(serving), target, now)
        # Replicas on an earlier shape (the service moved up): waiting ones leave at once,
        # serving ones as the new shape's replicas serve, never leaving fewer than the
        # target serving.
        current = [j for j in keep if _shape(j) == live.shape]
        old = [j for j in keep if _shape(j) != live.shape]
        if len(current) > target:
            for job in _scale_down_order(current)[:len(current) - target]:
                live.draining[job.id] = now
        spare = len([j for j in serving if j.id not in live.draining]) - target
        serving_ids = {j.id for j in serving}
        old_serving = [j for j in old if j.id in serving_ids]
        for job in [j for j in old if j.id not in serving_ids]:
            live.draining[job.id] = now
        for job in _scale_down_order(old_serving)[:max(0, spare)]:
            live.draining[job.id] = now
        keep = [j for j in keep if j.id not in live.draining]
        serving = [j for j in serving if j.id not in live.draining]
        current = [j for j in current if j.id not in live.draining]
        live.balancer.set_replicas([_endpoint(j) for j in serving])
        if len(current) < target and now >= live.restart_at:
            used = {j.spec.replica_of.port for j in replicas if j.spec.replica_of}
            for _ in range(target - len(current)):
                port = self._pick_port(used)
                used.add(port)
                job_id, _ = self.store.add_replica(svc.id, port, live.shape)
                live.known.add(job_id)
        live.known |= {j.id for j in keep}
        self._record(svc, live, target, stats, serving, now, floor)

    def _size(self, svc: ServiceRecord, live: _Live, stats: TrafficStats, serving: int,
              target: int, now: float) -> None:
        """Live sizing: the window, seen on the current shape, goes into that shape's
        measurements; a shape whose objective stays broken at low load gives way to the
        next (its new replicas start there; the old ones leave as they serve)."""
        from slicebox.serving.sizing import ShapeStats, next_shape, observe_shape

        section = _section(svc)
        seen = observe_shape(live.shape_stats.get(live.shape, ShapeStats()), now,
                             p99_ms=stats.p99_ms, per_replica_rps=stats.rate_rps / serving,
                             requests=stats.requests, errors=stats.errors,
                             objective_p99_ms=section.objective.p99_ms,
                             short_of_replicas=serving < target)
        live.shape_stats[live.shape] = seen
        chosen = next_shape(len(section.shapes), live.shape, live.shape_stats, now,
                            self._shape_sustain_s)
        if chosen == live.shape:
            return
        was, now_on = section.shapes[live.shape], section.shapes[chosen]
        reason = (f"sizing: p99 {seen.p99_ms:.0f} ms over the objective "
                  f"({section.objective.p99_ms:g} ms) at low load on {was.describe()} for "
                  f"{now - (seen.broken_since or now):.0f} s; moving to {now_on.describe()}")
        log.info("service %s: %s", svc.name, reason)
        live.shape = chosen
        live.capacity = CapacityEstimate(section)  # one replica's capacity is the shape's
        live.stats_at = -math.inf  # record the move at once
        self.store.update_service(svc.id, reason=reason)

    def _start(self, svc: ServiceRecord) -> _Live:
        """The balancer and autoscaler of a service: on its spec's port, else on the port
        it had (a restarted controller keeps the URL), else on any free port."""
        section = _section(svc)
        port = section.port or _port_of(svc.url)
        try:
            balancer = self._started(svc, port)
        except Exception:
            if section.port or not port:
                raise
            log.warning("service %s: port %d is taken now; the balancer moves", svc.name, port)
            balancer = self._started(svc, 0)
        capacity = CapacityEstimate(section)
        live = _Live(balancer, self._make_autoscaler(svc, capacity.rps), capacity,
                     desired=max(section.min_replicas, min(section.max_replicas,
                                                           svc.desired or 0)))
        if section.shapes:  # the shape it was on (a restarted controller keeps it)
            index = svc.stats.get("shape_index", 0)
            live.shape = min(index, len(section.shapes) - 1) if isinstance(index, int) else 0
        self._live[svc.id] = live
        self.store.update_service(svc.id, url=balancer.url, reason="serving")
        log.info("service %s: balancer on %s", svc.name, balancer.url)
        return live

    def _started(self, svc: ServiceRecord, port: int) -> BalancerLike:
        balancer = self._make_balancer(svc, port)
        balancer.start()
        return balancer

    def _scheduled_floor(self, svc: ServiceRecord, now: float) -> int:
        """Replicas the schedules ask for now: the service's own windows' share, or its
        part of the pool's ``service_hours``, whichever holds more (0 outside both)."""
        if self._pool is None:
            return 0
        own = share_now(_section(svc).schedule, self._local_time(now))
        share = max(own, self._hours_shares.get(svc.id, 0.0))
        return replicas_for_share(share, self._replica_resources(svc), self._pool()) \
            if share else 0

    def _replica_resources(self, svc: ServiceRecord) -> Resources:
        """One replica's resources now (on the service's current shape)."""
        live = self._live.get(svc.id)
        return svc.spec.shaped_resources(live.shape if live is not None else 0)

    def _split_service_hours(self, services: list[ServiceRecord], now: float
                             ) -> dict[str, float]:
        """Each service's part of the share the pool's ``service_hours`` hold now: equal
        parts, except that a service whose ``max_replicas`` hold less than its part gives
        the rest to the others (water-filling)."""
        if self._pool is None or not services:
            return {}
        pool = self._pool()
        share = share_now(pool.service_hours, self._local_time(now))
        if not share:
            return {}
        caps = {svc.id: _section(svc).max_replicas
                * replica_share(self._replica_resources(svc), pool) for svc in services}
        return split_share(share, caps)

    def _note_ended(self, live: _Live, alive: set[str], now: float) -> None:
        """Replicas that were alive last round and are not now: the ones that failed or
        exited on their own count towards the back-off; those we cancelled do not."""
        for job_id in live.known - alive:
            job = self.store.job(job_id)
            if job.state in (JobState.FAILED, JobState.SUCCEEDED):
                ran = job.run_seconds
                live.failures = 1 if ran >= HEALTHY_RESET_S else live.failures + 1
                pause = min(BACKOFF_FIRST_S * 2 ** (live.failures - 1), BACKOFF_MAX_S)
                live.restart_at = now + pause if live.failures > 1 else now
                log.warning("service replica %s ended (%s: %s); replaced%s", job.name,
                            job.state.value, job.reason,
                            f" in {pause:.0f}s" if live.failures > 1 else "")
        live.known &= alive

    def _record(self, svc: ServiceRecord, live: _Live, target: int, stats: TrafficStats,
                serving: list[JobRecord], now: float, floor: int) -> None:
        """The count and the statistics, for ``slicebox services`` (a row write at most
        every ``STATS_EVERY_S``, or when the count changes)."""
        changed = target != live.desired
        live.desired = target
        if not changed and now - live.stats_at < STATS_EVERY_S:
            return
        live.stats_at = now
        live.last_stats = {
            "rate_rps": round(stats.rate_rps, 3), "p50_ms": round(stats.p50_ms, 3),
            "p99_ms": round(stats.p99_ms, 3), "requests": stats.requests,
            "errors": stats.errors, "over_objective_s": stats.over_objective_s,
            "window_s": stats.window_s, "serving": len(serving),
            "healthy": len(live.balancer.healthy()),
            "capacity_rps": round(live.capacity.rps, 3),
            "floor": floor}  # min_replicas, or what a schedule window holds now
        section = _section(svc)
        if section.shapes:  # live sizing: the shape replicas start on, what it has shown
            measured = live.shape_stats.get(live.shape)
            live.last_stats.update(
                shape=section.shapes[live.shape].describe(), shape_index=live.shape,
                shape_capacity_rps=round(measured.capacity_rps, 3) if measured else None)
        self.store.update_service(svc.id, desired=target, stats=live.last_stats)

    def _wind_down(self, svc: ServiceRecord, replicas: list[JobRecord]) -> None:
        """A cancelled service: no traffic, every replica cancelled, then it ends."""
        if svc.id in self._live:
            self._live[svc.id].balancer.set_replicas([])
            self._drop(svc.id)
        for job in replicas:
            if not job.cancel_requested and job.stop is None:
                self.store.request_cancel(job.id, f"service {svc.name} cancelled")
        if not replicas:
            self.store.end_service(svc.id)
            log.info("service %s: cancelled", svc.name)

    def _drop(self, service_id: str) -> None:
        live = self._live.pop(service_id, None)
        if live is not None:
            try:
                live.balancer.stop()
            except Exception:  # noqa: BLE001 - stopping must not fail the round
                log.exception("service %s: the balancer did not stop cleanly", service_id)

    def _replicas_by_service(self) -> dict[str, list[JobRecord]]:
        out: dict[str, list[JobRecord]] = {}
        for job in self.store.jobs(NOT_ENDED):
            if job.spec.replica_of is not None:
                out.setdefault(job.spec.replica_of.service, []).append(job)
        return out

    # ---- the serving package's parts (imported only when a service exists) --------------

    def _default_balancer(self, svc: ServiceRecord, port: int) -> BalancerLike:
        from slicebox.serving.balancer import Balancer

        section = _section(svc)
        return Balancer(section.host, port, health_path=section.health_path,
                        health_interval_s=section.health_interval_s, window_s=self._window_s,
                        objective_p99_ms=section.objective.p99_ms)

    def _default_autoscaler(self, svc: ServiceRecord, capacity: float) -> AutoscalerLike:
        from slicebox.serving.autoscaler import Autoscaler, Objective

        section = _section(svc)
        return Autoscaler(Objective(section.objective.p99_ms, section.objective.rate_rps),
                          section.min_replicas, section.max_replicas,
                          replica_capacity_rps=capacity, up_after_s=self._up_after_s,
                          down_after_s=self._down_after_s)


def replica_share(res: Resources, pool: Pool) -> float:
    """The share of the pool one replica with ``res`` holds: of its GPUs for a GPU
    service (``gpu_share``), of its cores for a CPU-only one (0 when the pool has none)."""
    if res.max_gpus > 0:
        per, total = gpu_share(res), float(pool.total_gpus)
    else:
        per, total = float(res.max_cpus), float(pool.total_cores)
    return per / total if total > 0 else 0.0


def replicas_for_share(share: float, res: Resources, pool: Pool) -> int:
    """How many replicas with ``res`` hold ``share`` of the pool (see ``replica_share``)."""
    per = replica_share(res, pool)
    return max(0, math.ceil(share / per - 1e-9)) if per > 0 else 0


def split_share(share: float, caps: dict[str, float]) -> dict[str, float]:
    """``share`` in equal parts over ``caps``'s keys, none above its cap: what a capped
    key cannot take goes to the others in equal parts (water-filling)."""
    parts: dict[str, float] = {}
    open_keys, left = sorted(caps, key=lambda k: caps[k]), share
    while open_keys:
        part = left / len(open_keys)
        key = open_keys[0]  # the smallest cap first: if it does not bind, none does
        if caps[key] >= part:
            parts.update(dict.fromkeys(open_keys, part))
            break
        parts[key] = caps[key]
        left -= caps[key]
        open_keys.pop(0)
    return parts


def _section(svc: ServiceRecord) -> ServiceSection:
    assert svc.spec.service is not None, "a service record always has its section"
    return svc.spec.service


def _endpoint(job: JobRecord) -> Replica:
    from slicebox.serving.balancer import Replica

    assert job.spec.replica_of is not None
    # LocalBackend: the replica shares the controller's network (private mount and pid
    # namespaces only), so it answers on the loopback address.
    return Replica(job.name, "127.0.0.1", job.spec.replica_of.port)


def _shape(job: JobRecord) -> int:
    return job.spec.replica_of.shape if job.spec.replica_of is not None else 0


def _scale_down_order(jobs: list[JobRecord]) -> list[JobRecord]:
    """Which replicas go first: those not serving yet (waiting, then starting), then the
    newest running ones (the oldest have warm caches and a track record)."""
    rank = {JobState.QUEUED: 0, JobState.PREEMPTED: 0, JobState.STAGING: 1}
    return sorted(jobs, key=lambda j: (rank.get(j.state, 2),
                                       -(j.spec.replica_of.index if j.spec.replica_of else 0)))


def _port_of(url: str | None) -> int:
    if not url:
        return 0
    try:
        return urlsplit(url).port or 0
    except ValueError:
        return 0


def free_port(used: set[int]) -> int:
    """A port nothing listens on now (the kernel's choice), not among ``used`` (ports
    already promised to replicas that may not have started yet)."""
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in used and port >= 1024:
            return port
    raise RuntimeError("no free port found for a replica")
