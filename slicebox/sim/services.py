"""Inference services next to training in the simulator: static slicing versus re-slicing.

A ``Service`` has a request-rate curve (``rate_curves``: a daily sine or a recorded
curve), a replica shape (whole GPUs, a share of a card, or a MIG instance, with cores and
memory) and the requests/s one replica of that shape serves within the service's latency
objective. Its replicas hold slices of the pool in the engine's own ``PoolState``, exactly
as a job's composition does, so the policy sees them as capacity that is taken and
placement never puts a training job on them.

How the pool is shared (``Slicing``):

- **static**: each service holds the replicas its peak rate needs, all day, from before
  the first job; training gets the rest.
- **re-slicing**: every ``interval_s`` each service is sized to its current rate (plus
  ``headroom``): up at once, down only after the lower need has lasted ``down_after_s``
  (hysteresis). A replica that does not fit in free capacity takes it from training: the
  running training jobs on that kind, fewest GPUs first (the latest started among
  equals), are preempted, pay their restart cost, and the policy re-plans them (elastic
  jobs come back at a size that fits). Freed replicas are capacity the policy hands to
  waiting and elastic jobs at once.

The service objective is counted the same way for both: the seconds in which a service's
ready replicas x per-replica rate were below its request rate (a new replica serves after
``replica_start_s``), on a ``sample_s`` grid over the run. The engine hook is
``engine.PoolChanges`` (``next_at``/``apply``); ``simulate`` runs one trace both ways.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from slicebox import policies
from slicebox.errors import InputError
from slicebox.placement import search
from slicebox.placement.state import PoolState
from slicebox.policies.base import Policy
from slicebox.pool.composition import Composition, NoFit
from slicebox.pool.kinds import get_kind
from slicebox.pool.model import Pool
from slicebox.sim import api, pools
from slicebox.sim.engine import DEFAULT_ROUND_SECONDS, Engine, EngineOptions
from slicebox.sim.rate_curves import RateCurve
from slicebox.sim.result import SimResult
from slicebox.sim.traces.model import TraceJob
from slicebox.sim.workloads import JobDefaults

MAX_REPLICAS = 4096  # a pool holds at most this many GPUs' worth anyway
REPLICA_PREFIX = "service:"  # replica ids in the pool state; no trace job id starts so

# Requests/s one replica serves within the MLPerf Server latency bound (p99 15 ms for
# ResNet-50, 130 ms for BERT): the Server-scenario target rates of NVIDIA's closed-division
# MLPerf Inference v1.1 submission (mlcommons/inference_results_v1.1,
# closed/NVIDIA/configs/{resnet50,bert}/Server/__init__.py, ``server_target_qps``; int8,
# 99 % accuracy, MaxP). Whole card: the A100-SXM4-40GB x1 configuration. MIG 1g: the
# A100-SXM-80GB 1x1g.10gb configuration, the same one-seventh compute slice as the 40 GB
# card's 1g.5gb. A share of a card (time-slicing) is not in MLPerf: ``replica_rps`` gives
# it the whole card's rate x the share, no more (an assumption, said where it is used).
# Keyed (model, GPU kind, MIG profile or None for a whole card).
REPLICA_RPS: dict[tuple[str, str, str | None], float] = {
    ("resnet50", "A100-40GB", None): 30_800.0,
    ("resnet50", "A100-40GB", "1g.5gb"): 3_600.0,
    ("bert", "A100-40GB", None): 3_100.0,
    ("bert", "A100-40GB", "1g.5gb"): 380.0,
}


class ServiceError(InputError):
    """A service the simulator cannot run; the message names the field."""


class Slicing(StrEnum):
    STATIC = "static"
    RESLICE = "reslice"


@dataclass(frozen=True)
class ReplicaShape:
    """What one replica holds: one whole GPU of ``kind``, a ``fraction`` of one card, or
    a MIG instance of profile ``mig``; plus host cores and memory."""

    kind: str
    fraction: float | None = None
    mig: str | None = None
    cpus: int = 2
    memory_gib: float = 8.0

    def __post_init__(self) -> None:
        try:
            kind = get_kind(self.kind)
        except KeyError:
            raise ServiceError(f"shape.kind: unknown GPU kind {self.kind!r}") from None
        if self.fraction is not None and self.mig is not None:
            raise ServiceError("shape: give fraction or mig, not both")
        if self.fraction is not None and not (math.isfinite(self.fraction)
                                              and 0.0 < self.fraction < 1.0):
            raise ServiceError(f"shape.fraction: a share of one card in (0, 1), got "
                               f"{self.fraction!r}")
        if self.mig is not None:
            try:
                kind.mig_profile(self.mig)
            except KeyError as exc:
                raise ServiceError(f"shape.mig: {exc.args[0]}") from None
        if not 0 <= self.cpus <= 1024:
            raise ServiceError(f"shape.cpus: 0..1024, got {self.cpus!r}")
        if not (math.isfinite(self.memory_gib) and 0.0 <= self.memory_gib <= 4096.0):
            raise ServiceError(f"shape.memory_gib: 0..4096, got {self.memory_gib!r}")

    @property
    def gpu_share(self) -> float:
        """The share of one card's compute a replica holds."""
        if self.fraction is not None:
            return self.fraction
        if self.mig is not None:
            return get_kind(self.kind).mig_profile(self.mig).compute / 7.0
        return 1.0

    def find(self, state: PoolState, replica_id: str) -> Composition | NoFit:
        """Where one replica fits in ``state`` now (the live placement's own searches)."""
        if self.fraction is not None:
            return search.find_fraction(state, replica_id, self.kind, self.fraction,
                                        self.cpus, self.memory_gib)
        if self.mig is not None:
            return search.find_mig(state, replica_id, self.kind, self.mig, self.cpus,
                                   self.memory_gib)
        return search.find_whole(state, replica_id, self.kind, 1, self.cpus, self.memory_gib)


def replica_rps(model: str, shape: ReplicaShape) -> float:
    """Requests/s a replica of ``shape`` serves for ``model``, from ``REPLICA_RPS``."""
    key = (model, shape.kind, shape.mig)
    if key not in REPLICA_RPS:
        known = ", ".join(sorted({f"{m} on {k}" + (f" {g}" if g else "")
                                  for m, k, g in REPLICA_RPS}))
        raise ServiceError(f"no measured rate for {model!r} on {shape.kind}"
                           f"{' ' + shape.mig if shape.mig else ''} (known: {known}); give "
                           "replica_rps yourself")
    rate = REPLICA_RPS[key]
    return rate * shape.fraction if shape.fraction is not None else rate


@dataclass(frozen=True)
class Service:
    """An inference service: its rate curve, replica shape and what a replica serves.

    ``replica_rps``: requests/s one replica of ``shape`` serves with its p99 latency
    within the objective (measured: LoadGen's Server scenario, or the live service's
    metrics, see ``slicebox/serving``). ``headroom``: capacity provisioned above the rate
    (0.1 = 10 %), which also covers the rate's rise between two re-slices."""

    name: str
    curve: RateCurve
    shape: ReplicaShape
    replica_rps: float
    min_replicas: int = 1
    max_replicas: int = 64
    headroom: float = 0.1

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 64 or not self.name.isprintable():
            raise ServiceError(f"name: 1..64 printable characters, got {self.name[:80]!r}")
        if not (math.isfinite(self.replica_rps) and self.replica_rps > 0.0):
            raise ServiceError(f"{self.name}: replica_rps must be > 0, got "
                               f"{self.replica_rps!r}")
        if not 0 <= self.min_replicas <= self.max_replicas <= MAX_REPLICAS:
            raise ServiceError(f"{self.name}: need 0 <= min_replicas <= max_replicas <= "
                               f"{MAX_REPLICAS}, got {self.min_replicas}, {self.max_replicas}")
        if not (math.isfinite(self.headroom) and 0.0 <= self.headroom <= 10.0):
            raise ServiceError(f"{self.name}: headroom 0..10, got {self.headroom!r}")

    def replicas_for(self, rate_rps: float) -> int:
        """Replicas that serve ``rate_rps`` with the headroom, within min..max."""
        need = math.ceil(rate_rps * (1.0 + self.headroom) / self.replica_rps - 1e-9)
        return min(self.max_replicas, max(self.min_replicas, need))

    def rate(self, t: float) -> float:
        return float(self.curve.rates(np.array([t]))[0])


@dataclass(frozen=True)
class SlicingOptions:
    interval_s: float = 900.0  # re-slicing: how often services are resized
    down_after_s: float = 1800.0  # re-slicing: a lower need must last this long
    replica_start_s: float = 60.0  # a new replica serves this long after it is placed
    sample_s: float = 10.0  # the grid the objective is counted on
    # Re-slicing stops (and the engine may call the run stuck) after this long with jobs
    # waiting, none running and none to arrive: a job that no trough ever makes room for.
    idle_limit_s: float = 2 * 86_400.0

    def __post_init__(self) -> None:
        for name in ("interval_s", "down_after_s", "replica_start_s", "sample_s",
                     "idle_limit_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1e6):
                raise ServiceError(f"{name}: 0..1e6 s, got {value!r}")
        if self.interval_s < 1.0 or self.sample_s < 1.0:
            raise ServiceError("interval_s and sample_s are at least 1 s")


@dataclass
class _Replica:
    comp: Composition
    placed: float
    ready: float
    removed: float = math.inf


@dataclass
class _ServiceState:
    service: Service
    live: list[_Replica] = field(default_factory=list)
    gone: list[_Replica] = field(default_factory=list)
    low_since: float | None = None  # when a lower need than held was first seen
    unplaced: int = 0  # re-slices at which a wanted replica found no room


class ServiceSlicing:
    """The engine's ``PoolChanges`` for services: holds, frees and makes room for their
    replicas, static or re-sliced, and records when each replica served."""

    def __init__(self, services: Sequence[Service], slicing: Slicing,
                 options: SlicingOptions | None = None) -> None:
        names = [s.name for s in services]
        if len(set(names)) != len(names):
            raise ServiceError("service names must be unique")
        self.slicing = Slicing(slicing)
        self.options = options or SlicingOptions()
        self.states = [_ServiceState(s) for s in services]
        self.preempted = 0  # training jobs stopped to make room for replicas
        self.changes = 0  # replicas placed or removed after the first sizing
        self._next = 0.0
        self._first = True
        self._count = 0
        self._held: set[str] = set()
        self._idle_since: float | None = None
        self._node_index: dict[str, int] = {}

    def next_at(self) -> float:
        return self._next

    def held(self) -> set[str]:
        return self._held

    def apply(self, engine: Engine) -> bool:
        now = engine.now
        changed = False
        for st in self.states:
            target = self._target(st, now)
            held = len(st.live)
            while len(st.live) > target:
                self._remove(engine, st, now)
                changed = True
            for _ in range(target - held):
                if not self._add(engine, st, now):
                    st.unplaced += 1
                    break
                changed = True
        self._first = False
        self._next = now + self.options.interval_s if self.slicing is Slicing.RESLICE \
            else math.inf
        if self._stalled(engine, now):
            self._next = math.inf
            return True  # asked once more, the engine sees nothing can happen and says so
        return changed

    def _stalled(self, engine: Engine, now: float) -> bool:
        """Jobs wait, none runs, none will arrive, and that has lasted ``idle_limit_s``."""
        book = engine.book
        if not book.waiting or book.running or engine.clock.arrivals_left:
            self._idle_since = None
            return False
        if self._idle_since is None:
            self._idle_since = now
        return now - self._idle_since >= self.options.idle_limit_s

    def _target(self, st: _ServiceState, now: float) -> int:
        svc = st.service
        if self.slicing is Slicing.STATIC:
            return svc.replicas_for(svc.curve.peak())
        want, held = svc.replicas_for(svc.rate(now)), len(st.live)
        if want >= held or self._first:
            st.low_since = None
            return want
        if st.low_since is None:
            st.low_since = now
        if now - st.low_since + 1e-6 >= self.options.down_after_s:
            st.low_since = None
            return want
        return held

    def _add(self, engine: Engine, st: _ServiceState, now: float) -> bool:
        shape = st.service.shape
        self._count += 1
        replica_id = f"{REPLICA_PREFIX}{st.service.name}:{self._count}"
        found = self._make_room(engine, shape, replica_id)
        if isinstance(found, NoFit):
            return False
        engine.placement.state.allocate(found)
        self._held.add(replica_id)
        engine.placement.held(-1, found, found.gpu_share, False)
        # Replicas up before the run are serving when it starts.
        ready = now if self._first else now + self.options.replica_start_s
        st.live.append(_Replica(found, now, ready))
        self.changes += not self._first
        return True

    def _remove(self, engine: Engine, st: _ServiceState, now: float) -> None:
        # The replica on the node with the most free GPUs goes first, so what replicas
        # free joins free space already there: whole free nodes are what gangs need, and
        # replicas left scattered over every node block them (on the benchmark, FIFO's
        # average JCT gain was 1.14x removing the newest first, 1.47x with this rule).
        state = engine.placement.state
        if not self._node_index:
            self._node_index = {node.name: n for n, node in enumerate(engine.pool.nodes)}
        index = self._node_index

        def free_beside(r: _Replica) -> tuple[int, float]:
            part = r.comp.parts[0]
            return len(state.free_gpus_on(index[part.node], r.comp.kind)), r.placed

        replica = max(st.live, key=free_beside)
        st.live.remove(replica)
        engine.placement.release(-1, replica.comp, replica.comp.gpu_share, False)
        self._held.discard(replica.comp.job_id)
        replica.removed = now
        st.gone.append(replica)
        self.changes += 1

    def _make_room(self, engine: Engine, shape: ReplicaShape, replica_id: str
                   ) -> Composition | NoFit:
        """Where the replica goes, preempting training jobs if it must: victims are tried
        on a copy of the state first, so jobs are stopped only when stopping them makes
        the replica fit (training never makes room for a MIG instance on a card that is
        not in MIG mode, say)."""
        state = engine.placement.state
        found = shape.find(state, replica_id)
        if not isinstance(found, NoFit):
            return found
        trial, chosen = state.copy(), []
        for victim in self._victims(engine, shape.kind):
            trial.release(victim)
            chosen.append(victim)
            if not isinstance(shape.find(trial, replica_id), NoFit):
                break
        else:
            return found  # nothing training holds would make room
        for victim in chosen:
            engine.preempt(victim)
            self.preempted += 1
        return shape.find(state, replica_id)

    @staticmethod
    def _victims(engine: Engine, kind: str) -> list[str]:
        """Running training jobs on ``kind``, the one to stop first first: the fewest
        GPUs, then the latest start (they lose the least to a restart)."""
        running = [r for r in engine.book.running.values()
                   if r.comp is not None and r.comp.kind == kind]
        running.sort(key=lambda r: (len(r.comp.slices) if r.comp else 0,
                                    -(r.first_start or 0.0)))
        return [r.id for r in running]

    # -- what came of it -------------------------------------------------------------

    def report(self, start: float, end: float) -> ServiceReport:
        """Each service's objective and GPU use over [start, end] (the training run)."""
        step = self.options.sample_s
        times = np.arange(start, max(end, start + step), step) + step / 2.0
        rows, spans = [], []
        for st in self.states:
            svc = st.service
            replicas = st.live + st.gone
            rates = svc.curve.rates(times)
            ready = np.zeros(len(times))
            held_gpu_s = 0.0
            for r in replicas:
                spans.append(ReplicaSpan(svc.name, r.placed, r.ready, r.removed))
                ready += (times >= r.ready) & (times < r.removed)
                lo, hi = max(r.placed, start), min(r.removed, end)
                held_gpu_s += max(0.0, hi - lo) * r.comp.gpu_share
            short = ready * svc.replica_rps < rates - 1e-9
            needed = np.ceil(rates / svc.replica_rps - 1e-9) * svc.shape.gpu_share
            rows.append(ServiceOutcome(
                name=svc.name, short_seconds=float(short.sum() * step),
                unserved_requests=float(np.maximum(rates - ready * svc.replica_rps, 0.0).sum()
                                        * step),
                requests=float(rates.sum() * step), held_gpu_seconds=held_gpu_s,
                needed_gpu_seconds=float(needed.sum() * step),
                min_ready=int(ready.min()) if len(ready) else 0,
                max_ready=int(ready.max()) if len(ready) else 0,
                replicas_placed=len(replicas), unplaced=st.unplaced))
        return ServiceReport(tuple(rows), self.preempted, self.changes, tuple(spans))


@dataclass(frozen=True)
class ServiceOutcome:
    name: str
    short_seconds: float  # seconds in which ready replicas served less than the rate
    unserved_requests: float  # requests beyond the ready replicas' capacity
    requests: float
    held_gpu_seconds: float  # GPU share x seconds its replicas held
    needed_gpu_seconds: float  # what the rate needed, without headroom, in whole replicas
    min_ready: int
    max_ready: int
    replicas_placed: int
    unplaced: int  # re-slices at which a wanted replica found no room


@dataclass(frozen=True)
class ReplicaSpan:
    """One replica's life: placed, serving from ``ready``, removed (inf: at the end)."""

    service: str
    placed: float
    ready: float
    removed: float


@dataclass(frozen=True)
class ServiceReport:
    services: tuple[ServiceOutcome, ...]
    preempted: int  # training jobs stopped to make room for replicas
    replica_changes: int
    replicas: tuple[ReplicaSpan, ...] = ()

    @property
    def short_seconds(self) -> float:
        return sum(s.short_seconds for s in self.services)

    @property
    def held_gpu_seconds(self) -> float:
        return sum(s.held_gpu_seconds for s in self.services)

    @property
    def needed_gpu_seconds(self) -> float:
        return sum(s.needed_gpu_seconds for s in self.services)

    @property
    def unserved_total(self) -> float:
        return sum(s.unserved_requests for s in self.services)


@dataclass(frozen=True)
class ServicesRun:
    """One simulation of training next to services."""

    slicing: Slicing
    result: SimResult  # the training jobs (timeline GPUs include the replicas)
    services: ServiceReport
    start: float
    end: float

    @property
    def span(self) -> float:
        return self.end - self.start

    def training_utilisation(self) -> float:
        """Share of the pool's GPU time training jobs computed on (setup excluded)."""
        busy = _integral(self.result, self.start, self.end)
        total = self.result.total_gpus * self.span
        return max(0.0, busy - self.services.held_gpu_seconds) / total if total > 0 else 0.0

    def useful_utilisation(self) -> float:
        """Training's share plus what the services' rate needed (not what they held)."""
        total = self.result.total_gpus * self.span
        return (self.training_utilisation()
                + (self.services.needed_gpu_seconds / total if total > 0 else 0.0))

    def service_share(self) -> float:
        """Share of the pool's GPU time the services' replicas held."""
        total = self.result.total_gpus * self.span
        return self.services.held_gpu_seconds / total if total > 0 else 0.0


def _integral(result: SimResult, start: float, end: float) -> float:
    """GPU-seconds busy (held and not in setup) over [start, end], from the timeline."""
    t = result.timeline.time
    if len(t) == 0 or end <= start:
        return 0.0
    edges = np.clip(np.append(t, end), start, end)
    return float(np.sum(np.diff(edges) * result.timeline.busy_gpus))


def shifted(jobs: Sequence[TraceJob], offset_s: float, prefix: str) -> list[TraceJob]:
    """Trace jobs arriving ``offset_s`` later, ids prefixed (several workloads, one after
    another, make one longer trace)."""
    return [replace(j, id=f"{prefix}{j.id}", arrival=j.arrival + offset_s) for j in jobs]


def simulate(trace: api.TraceInput, pool: Pool | str | os.PathLike[str],
             policy: str | Policy, services: Sequence[Service], slicing: Slicing | str, *,
             options: SlicingOptions | None = None, defaults: JobDefaults | None = None,
             round_seconds: float | None = None, staging: bool = False) -> ServicesRun:
    """Run ``trace`` with ``policy`` on ``pool`` next to ``services``, sliced one way.

    The same call as ``api.simulate`` for the training side (same job building, same
    engine, same policy and placement); the services' replicas change what the pool
    leaves it. The objective is counted from the first arrival to the last finish."""
    defaults = defaults or JobDefaults()
    the_pool = pools.resolve(pool)
    the_policy = policies.get(policy) if isinstance(policy, str) else policy
    speeds = api.make_speeds(the_pool, defaults.cpu_sensitivity)
    jobs, name, _ = api.load_jobs(trace, the_pool, speeds, defaults=defaults,
                                  elastic=the_policy.resizes_jobs)
    if round_seconds is None and the_policy.periodic:
        round_seconds = the_policy.default_round_seconds or DEFAULT_ROUND_SECONDS
    changes = ServiceSlicing(services, Slicing(slicing), options)
    engine = Engine(jobs, the_pool, the_policy, speeds,
                    EngineOptions(round_seconds=round_seconds, staging=staging),
                    trace_name=name, changes=changes)
    result = engine.run()
    start = min((j.arrival for j in result.jobs), default=0.0)
    end = max((j.finish for j in result.jobs if j.finish is not None), default=start)
    return ServicesRun(Slicing(slicing), result, changes.report(start, end), start, end)
