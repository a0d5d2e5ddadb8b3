"""Live sizing through the controller (the spec's ``shapes``): replicas start on the
smallest shape; when the service's own traffic shows that shape breaking the objective at
low load for the sustain time, the service moves to the next shape: new replicas there,
the old ones drained and cancelled as the new ones serve, never fewer serving than
min_replicas. The chosen shape is recorded in the service row and survives a controller
restart. (The decision itself: tests/serving/test_sizing_live.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slicebox.errors import InputError
from slicebox.serving.balancer import TrafficStats
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store.services import replica_spec
from tests.controller.test_services import World
from tests.controller.test_services_spec import invoke
from tests.sim.helpers import pool

OBJECTIVE = {"p99_ms": 50.0}


def traffic(p99_ms: float, rate_rps: float) -> TrafficStats:
    return TrafficStats(window_s=10.0, requests=int(rate_rps * 10), rate_rps=rate_rps,
                        p50_ms=p99_ms / 2, p99_ms=p99_ms, errors=0, over_objective_s=0)


def service(**section: object) -> dict[str, object]:
    return {"name": "web", "command": ["true"], "kind": "service",
            "resources": {"cpus": 1, "memory_gib": 1.0},
            "service": {"objective": OBJECTIVE, **section}}


def test_a_too_small_shape_gives_way_to_the_next_without_a_gap(tmp_path: Path) -> None:
    world = World(tmp_path)  # 8 cores
    world.submit(min_replicas=2, max_replicas=2,
                 shapes=[{"cpus": 1}, {"cpus": 2, "memory_gib": 2.0}, {"cpus": 4}])
    world.rounds(2)
    first = world.running()
    assert sorted(j.name for j in first) == ["web-r1", "web-r2"]
    assert {j.spec.resources.cpus for j in first} == {1}
    assert world.store.find_service("web").stats["shape"] == "cpus=1"

    # 3 rps per replica (light) at p99 3x the objective: the shape itself is too slow.
    world.balancer.traffic = traffic(150.0, 6.0)
    world.rounds(25, step=1.0)  # 25 s: not long enough to move (hysteresis)
    assert sorted(j.name for j in world.replicas()) == ["web-r1", "web-r2"]
    world.rounds(8, step=1.0)
    record = world.store.find_service("web")
    assert record.stats["shape"] == "cpus=2,memory_gib=2" and record.stats["shape_index"] == 1
    assert "sizing" in record.reason and "cpus=1" in record.reason
    world.balancer.traffic = traffic(20.0, 6.0)  # the bigger shape meets the objective
    world.rounds(6, step=1.0)

    running = world.running()
    assert sorted(j.name for j in running) == ["web-r3", "web-r4"]
    assert all(j.spec.resources.cpus == 2 and j.spec.resources.memory_gib == 2.0
               and j.spec.replica_of and j.spec.replica_of.shape == 1 for j in running)
    assert world.serving_names() == ["web-r3", "web-r4"]
    assert {j.name for j in world.replicas([JobState.CANCELLED])} == {"web-r1", "web-r2"}
    # Never fewer than min_replicas behind the balancer once the service first served.
    served = world.balancer.history[next(i for i, names in enumerate(world.balancer.history)
                                         if len(names) == 2):]
    assert min(len(names) for names in served) == 2
    stats = world.store.find_service("web").stats
    assert stats["shape_capacity_rps"] == 3.0  # measured on cpus=2: 6 rps over 2 replicas
    listed = invoke(tmp_path / "state", "services", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)[0]["shape"] == "cpus=2,memory_gib=2"
    assert invoke(tmp_path / "state", "services").exit_code == 0  # the table (80 columns)

    # A new controller keeps the shape: a replacement replica gets 2 cores, not 1.
    world.controller.close()
    world.controller = world.new_controller()
    world.rounds(2)
    world.backend.finish(running[0].id, exit_code=137)
    world.rounds(3)
    replacement = [j for j in world.running() if j.name not in {"web-r3", "web-r4"}]
    assert [j.spec.resources.cpus for j in replacement] == [2]


def test_overload_does_not_move_the_shape(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.submit(min_replicas=1, max_replicas=3, shapes=[{"cpus": 1}, {"cpus": 2}])
    world.rounds(2)
    world.balancer.traffic = traffic(20.0, 10.0)  # 10 rps on one replica, within 50 ms
    world.rounds(2, step=1.0)
    world.balancer.traffic = traffic(200.0, 30.0)  # 30 rps/replica: above what it served
    world.rounds(40, step=1.0)
    assert world.store.find_service("web").stats["shape"] == "cpus=1"
    assert {j.spec.resources.cpus for j in world.replicas()} == {1}


def test_shapes_are_validated_and_shape_the_replica() -> None:
    spec = parse_spec(service(shapes=[{"cpus": 1}, {"cpus": 3, "memory_gib": 4.0}]))
    replica = replica_spec(spec, "0123abcd", 5, 31234, shape=1)
    assert replica.resources.cpus == 3 and replica.resources.memory_gib == 4.0
    assert replica.replica_of is not None and replica.replica_of.shape == 1
    plain = replica_spec(parse_spec(service()), "0123abcd", 5, 31234, shape=1)
    assert plain.resources.cpus == 1 and plain.replica_of and plain.replica_of.shape == 0

    bad = {
        "not larger": [{"cpus": 2}, {"cpus": 2}],
        "smallest first": [{"cpus": 4}, {"cpus": 2}],
        "not larger than": [{"cpus": 1, "memory_gib": 4.0}, {"cpus": 2, "memory_gib": 2.0}],
        "shapes": [{"cpus": n} for n in range(1, 10)],  # more than 8
        "cpus": [{"cpus": 0}],
        "either fraction or mig": [{"fraction": 0.5, "mig": "1g.10gb"}],
        "a shape gives": [{"memory_gib": 2.0}],
        "more of a GPU": [{"mig": "3g.40gb"}, {"mig": "1g.10gb"}],
        "pattern": [{"mig": "big"}],
        "tpus": [{"cpus": 1, "tpus": 1}],  # not a field of a shape
    }
    for words, shapes in bad.items():
        with pytest.raises(InputError, match=words) as caught:
            parse_spec(service(shapes=shapes))
        assert "service.shapes" in str(caught.value) or "service:" in str(caught.value)
    with pytest.raises(InputError, match="not both"):
        parse_spec(service(shapes=[{"cpus": 1}], replica_capacity_rps=5.0))


def test_gpu_shapes_move_a_service_from_a_fraction_to_a_whole_gpu(tmp_path: Path) -> None:
    """Shapes may give GPU shares: replicas start on a quarter of a GPU and, when that is
    too slow at low load, move to half of one, then to a whole card. Two GPUs: a new
    shape's replica starts before the old one leaves (no gap), so it needs room beside
    it; where there is none it waits and the old shape keeps serving."""
    world = World(tmp_path)
    world.pool = pool(nodes=1, gpus=2, cores=8)
    world.controller = world.new_controller()
    world.submit(min_replicas=1, max_replicas=1,
                 shapes=[{"fraction": 0.25}, {"fraction": 0.5, "cpus": 2},
                         {"gpus": 1, "cpus": 2}])
    world.rounds(2)
    (first,) = world.running()
    assert first.spec.resources.fraction == 0.25 and first.spec.resources.gpus == 1
    assert first.composition is not None and first.composition.gpu_share == 0.25
    assert world.store.find_service("web").stats["shape"] == "fraction=0.25"

    world.balancer.traffic = traffic(150.0, 3.0)  # light load, p99 3x the objective
    world.rounds(33, step=1.0)
    world.rounds(4, step=1.0)
    assert world.store.find_service("web").stats["shape"] == "cpus=2,fraction=0.5"
    world.rounds(33, step=1.0)
    world.rounds(4, step=1.0)
    record = world.store.find_service("web")
    assert record.stats["shape"] == "cpus=2,gpus=1" and record.stats["shape_index"] == 2
    whole = [j for j in world.running() if j.spec.replica_of and j.spec.replica_of.shape == 2]
    assert len(whole) == 1 and whole[0].spec.resources.fraction is None
    assert whole[0].composition is not None and whole[0].composition.gpu_share == 1.0
    assert whole[0].spec.resources.memory_gib == 1.0  # the spec's: no shape gave memory


def test_a_shape_the_pool_cannot_hold_is_refused_at_submit(tmp_path: Path) -> None:
    world = World(tmp_path)  # 1 GPU
    with pytest.raises(InputError, match=r"service\.shapes\.1") as caught:
        world.submit(shapes=[{"gpus": 1}, {"gpus": 2}])
    assert "gpu" in str(caught.value).lower()
