"""Services through the live controller, on the in-memory backend and a clock that moves
only when told, with a fake balancer and autoscaler (the real ones are tested in
tests/serving and, together with real processes, in tests/integration/test_serving.py).

What matters: the replica count follows the autoscaler within the spec's bounds; a replica
that dies is replaced (and one that keeps dying is replaced ever more slowly); a replica
being scaled down leaves the balancer before it is cancelled; cancelling the service
cancels its replicas and stops its balancer; a new controller rebuilds all of it from the
store, on the same port, without new replicas."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from slicebox import policies
from slicebox.backends.memory import MemoryBackend
from slicebox.controller import Controller
from slicebox.controller.services import ServiceManager
from slicebox.controller.submit import submit_spec
from slicebox.placement.placer import Placer
from slicebox.serving.balancer import Replica, TrafficStats
from slicebox.sim.clock import ManualClock
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import JobRecord, ServiceRecord, Store
from tests.sim.helpers import pool

TAKEN: set[int] = set()  # ports a fake balancer cannot bind
QUIET = TrafficStats(window_s=10.0, requests=0, rate_rps=0.0, p50_ms=0.0, p99_ms=0.0,
                     errors=0, over_objective_s=0)


class FakeBalancer:
    def __init__(self, port: int) -> None:
        self.port = port or 40000
        self.asked_port = port
        self.started = self.stopped = False
        self.replicas: list[Replica] = []
        self.history: list[list[str]] = []
        self.in_flight: set[str] = set()  # names that still have requests (draining)
        self.traffic = QUIET

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.port in TAKEN:
            raise OSError(98, f"port {self.port} is in use")
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def set_replicas(self, replicas: Sequence[Replica]) -> None:
        self.replicas = list(replicas)
        self.history.append(sorted(r.name for r in self.replicas))

    def healthy(self) -> frozenset[str]:
        return frozenset(r.name for r in self.replicas)

    def draining(self) -> frozenset[str]:
        return frozenset(self.in_flight - {r.name for r in self.replicas})

    def stats(self) -> TrafficStats:
        return self.traffic


class FakeAutoscaler:
    def __init__(self) -> None:
        self.want: int | None = None  # None: keep the current count
        self.capacity = 0.0
        self.seen: list[int] = []

    def desired(self, now: float, current: int, stats: TrafficStats) -> int:
        self.seen.append(current)
        return current if self.want is None else self.want


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.clock = ManualClock(1000.0)
        self.pool = pool(nodes=1, gpus=1, cores=8)
        self.store = Store.open(root / "state", clock=self.clock)
        self.backend = MemoryBackend(clock=self.clock)
        self.balancers: list[FakeBalancer] = []
        self.scaler = FakeAutoscaler()
        self.ports = iter(range(20000, 30000))
        self.controller = self.new_controller()

    def new_controller(self) -> Controller:
        controller = Controller(self.store, self.pool, policies.get("fifo"),
                                Placer(self.pool), self.backend, self.root / "state",
                                clock=self.clock)
        controller.services = ServiceManager(
            self.store, self.clock, balancer_factory=self._balancer,
            autoscaler_factory=lambda svc, capacity: self.scaler,
            port_picker=lambda used: next(p for p in self.ports if p not in used),
            pool=lambda: self.pool, local_time=time.gmtime)
        return controller

    def _balancer(self, svc: ServiceRecord, port: int) -> FakeBalancer:
        balancer = FakeBalancer(port)
        self.balancers.append(balancer)
        return balancer

    @property
    def balancer(self) -> FakeBalancer:
        return self.balancers[-1]

    def submit(self, min_replicas: int = 1, max_replicas: int = 3, **service: object) -> str:
        spec = parse_spec({"name": "web", "command": ["true"], "kind": "service",
                           "resources": {"cpus": 1},
                           "service": {"objective": {"p99_ms": 50.0},
                                       "min_replicas": min_replicas,
                                       "max_replicas": max_replicas, **service}})
        return submit_spec(self.store, self.pool, Placer(self.pool), spec, cwd=self.root,
                           services=True)

    def rounds(self, n: int = 1, step: float = 0.5) -> None:
        for _ in range(n):
            self.clock.advance_to(self.clock.now + step)
            self.controller.run_once()

    def replicas(self, states: Iterable[JobState] | None = None) -> list[JobRecord]:
        return [j for j in self.store.jobs(states) if j.spec.replica_of is not None]

    def running(self) -> list[JobRecord]:
        return [j for j in self.replicas([JobState.RUNNING]) if not j.cancel_requested]

    def serving_names(self) -> list[str]:
        return sorted(r.name for r in self.balancer.replicas)


def test_a_service_starts_min_replicas_behind_its_balancer(tmp_path: Path) -> None:
    world = World(tmp_path)
    service_id = world.submit(min_replicas=2, max_replicas=3)
    assert world.store.find_service("web").id == service_id
    assert world.replicas() == []  # the controller queues them, not admission
    world.rounds(2)
    running = world.running()
    assert sorted(j.name for j in running) == ["web-r1", "web-r2"]
    assert world.balancer.started
    assert world.serving_names() == ["web-r1", "web-r2"]
    ports = {r.port for r in world.balancer.replicas}
    assert ports == {j.spec.replica_of.port for j in running if j.spec.replica_of}
    assert len(ports) == 2  # each replica its own port
    for job in running:  # ordinary jobs, each on its own cores
        assert job.spec.kind == "job" and job.spec.resources.cpus == 1
    cores = [c for j in running if j.composition for c in j.composition.cores]
    assert len(cores) == len(set(cores)) == 2
    record = world.store.find_service("web")
    assert record.url == world.balancer.url and record.desired == 2


def test_the_replica_count_follows_the_autoscaler_within_the_bounds(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.submit(min_replicas=1, max_replicas=3)
    world.rounds(2)
    assert len(world.running()) == 1
    world.scaler.want = 3
    world.rounds(2)
    assert sorted(j.name for j in world.running()) == ["web-r1", "web-r2", "web-r3"]
    assert world.serving_names() == ["web-r1", "web-r2", "web-r3"]
    world.scaler.want = 10  # above max_replicas: held at 3
    world.rounds(2)
    assert len(world.replicas([JobState.QUEUED, JobState.RUNNING])) == 3
    assert world.store.find_service("web").desired == 3

    world.scaler.want = 0  # below min_replicas: held at 1
    world.balancer.in_flight = {"web-r2", "web-r3"}  # requests still running on them
    world.rounds(1)
    # Taken out of the balancer first (the newest go first), not yet cancelled.
    assert world.serving_names() == ["web-r1"]
    assert len(world.running()) == 3
    world.balancer.in_flight = set()  # drained
    world.rounds(3)
    assert [j.name for j in world.running()] == ["web-r1"]
    ended = {j.name: j for j in world.replicas([JobState.CANCELLED])}
    assert set(ended) == {"web-r2", "web-r3"}
    assert all("scaled down" in j.reason or "autoscaler" in j.reason
               or "cancel" in j.reason for j in ended.values())
    assert world.store.find_service("web").desired == 1


def test_a_replica_whose_process_dies_is_replaced(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.submit(min_replicas=2, max_replicas=2)
    world.rounds(2)
    first = {j.name: j.id for j in world.running()}
    world.backend.finish(first["web-r1"], exit_code=137)  # killed
    world.rounds(1)
    assert world.store.job(first["web-r1"]).state is JobState.FAILED
    world.rounds(1)
    names = sorted(j.name for j in world.running())
    assert names == ["web-r2", "web-r3"]  # a new replica, not a requeue of the dead one
    assert world.serving_names() == ["web-r2", "web-r3"]

    # One that keeps dying is replaced ever more slowly (back-off), not in a tight loop.
    world.backend.finish(next(j.id for j in world.running() if j.name == "web-r3"), 1)
    world.rounds(2, step=0.1)
    assert sorted(j.name for j in world.replicas(
        [JobState.QUEUED, JobState.RUNNING])) == ["web-r2"]
    world.rounds(3, step=1.0)
    assert sorted(j.name for j in world.running()) == ["web-r2", "web-r4"]


def test_cancelling_the_service_cancels_replicas_and_stops_the_balancer(
        tmp_path: Path) -> None:
    world = World(tmp_path)
    service_id = world.submit(min_replicas=2, max_replicas=2)
    world.rounds(2)
    assert len(world.running()) == 2
    world.store.request_service_cancel(service_id)
    world.rounds(3)
    assert world.balancer.stopped
    assert world.balancer.replicas == []  # no traffic to replicas being stopped
    assert {j.state for j in world.replicas()} == {JobState.CANCELLED}
    record = world.store.find_service("web")
    assert record.state == "cancelled" and record.url is None
    assert world.store.services() == []
    world.rounds(2)
    assert world.replicas([JobState.QUEUED, JobState.RUNNING]) == []  # none come back
    assert len(world.balancers) == 1


def test_a_new_controller_rebuilds_services_from_the_store(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.submit(min_replicas=1, max_replicas=3)
    world.rounds(1)
    world.scaler.want = 2
    world.rounds(2)
    world.scaler.want = None
    before = sorted((j.name, j.id) for j in world.running())
    assert len(before) == 2
    old = world.balancer
    url = world.store.find_service("web").url
    world.controller.close()
    assert old.stopped  # the balancer goes with its controller; the replicas stay

    world.controller = world.new_controller()
    world.rounds(2)
    assert len(world.balancers) == 2
    assert world.balancer.asked_port == old.port  # the same URL as before
    assert world.store.find_service("web").url == url
    assert sorted((j.name, j.id) for j in world.running()) == before  # adopted, no new ones
    assert world.scaler.seen[-1] == 2  # the count the last controller wanted
    assert world.serving_names() == [name for name, _ in before]


def test_without_services_no_balancer_starts(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.rounds(2)
    assert world.balancers == []


def test_a_schedule_keeps_a_share_of_the_pool_for_the_service_in_its_hours(
        tmp_path: Path) -> None:
    world = World(tmp_path)  # 8 cores; the clock's time of day is UTC
    world.clock.advance_to(7 * 3600 + 50 * 60)  # 07:50
    training = world.store.submit(parse_spec({"name": "train", "command": ["true"],
                                              "resources": {"cpus": 6}}))
    world.submit(min_replicas=1, max_replicas=6,
                 schedule=[{"hours": "08:00-20:00", "at_least": 0.5}])
    world.scaler.want = 1  # no traffic: the autoscaler alone would keep one replica
    world.rounds(2)
    assert len(world.running()) == 1
    assert world.store.job(training).state is JobState.RUNNING
    world.clock.advance_to(8 * 3600)  # 08:00: half of 8 cores = 4 one-core replicas
    world.rounds(2)
    assert len(world.replicas([JobState.QUEUED, JobState.RUNNING])) == 4
    assert world.store.find_service("web").desired == 4
    assert world.store.find_service("web").stats["floor"] == 4
    # Capacity moves by waiting: the training job keeps its cores until it ends.
    assert len(world.running()) == 2
    assert world.store.job(training).state is JobState.RUNNING
    world.backend.finish(training)
    world.rounds(3)
    assert len(world.running()) == 4
    world.clock.advance_to(20 * 3600)  # 20:00: back to what the traffic needs
    world.rounds(4)
    assert len(world.running()) == 1
    assert world.store.find_service("web").desired == 1


def test_a_balancer_that_cannot_start_is_retried_and_stops_nothing_else(
        tmp_path: Path) -> None:
    world = World(tmp_path)
    TAKEN.add(8470)
    try:
        world.submit(min_replicas=1, max_replicas=1, port=8470)
        job = world.store.submit(parse_spec({"name": "train", "command": ["true"]}))
        world.rounds(2)
        assert world.store.job(job).state is JobState.RUNNING  # the controller went on
        record = world.store.find_service("web")
        assert "in use" in record.reason and record.url is None
        assert world.replicas() == []
        tries = len(world.balancers)
        world.rounds(4)  # 2 s: not retried every round
        assert len(world.balancers) == tries
    finally:
        TAKEN.discard(8470)
    world.rounds(8)  # the port is free again: retried within seconds
    assert world.balancer.started and world.balancer.port == 8470
    assert len(world.running()) == 1
    assert world.store.find_service("web").url == "http://127.0.0.1:8470"
