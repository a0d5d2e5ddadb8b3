"""The pool's service hours (a pool file's ``service_hours`` or ``slicebox up
--service-hours``): in them the services together keep at least a share of the pool, split
equally among them, a service whose ``max_replicas`` hold less than its part giving the
rest to the others; training gets what is left, and outside them each service is back to
what its traffic needs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from slicebox.controller.services import replicas_for_share, split_share
from slicebox.controller.submit import submit_spec
from slicebox.errors import InputError
from slicebox.hours import Window, parse_window
from slicebox.placement.placer import Placer
from slicebox.pool.files import PoolFileError, parse_pool, pool_to_dict
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec

from .test_services import World


def test_a_share_is_split_equally_and_a_capped_service_gives_the_rest_to_the_others() -> None:
    assert split_share(0.5, {"a": 1.0, "b": 1.0}) == {"a": 0.25, "b": 0.25}
    parts = split_share(0.6, {"a": 0.1, "b": 1.0, "c": 0.15})
    assert parts["a"] == pytest.approx(0.1) and parts["c"] == pytest.approx(0.15)
    assert parts["b"] == pytest.approx(0.35)
    # Every cap binds: each takes its cap and the share is not met (nobody has room).
    assert split_share(0.9, {"a": 0.1, "b": 0.2}) == {"a": 0.1, "b": 0.2}


def add_service(world: World, name: str, port: int, max_replicas: int) -> str:
    spec = parse_spec({"name": name, "command": ["true"], "kind": "service",
                       "resources": {"cpus": 1},
                       "service": {"objective": {"p99_ms": 50.0}, "port": port,
                                   "min_replicas": 1, "max_replicas": max_replicas}})
    return submit_spec(world.store, world.pool, Placer(world.pool), spec, cwd=world.root,
                       services=True)


def test_in_the_pools_service_hours_the_services_together_hold_the_share(
        tmp_path: Path) -> None:
    world = World(tmp_path)  # 8 cores; the clock's time of day is UTC
    world.pool = dataclasses.replace(world.pool, service_hours=(
        Window(hours="08:00-20:00", at_least=0.5),))
    world.clock.advance_to(7 * 3600 + 50 * 60)  # 07:50
    training = world.store.submit(parse_spec({"name": "train", "command": ["true"],
                                              "resources": {"cpus": 4}}))
    add_service(world, "web", 18080, max_replicas=6)
    add_service(world, "api", 18081, max_replicas=1)
    world.scaler.want = 1  # no traffic: each service alone would keep one replica
    world.rounds(2)
    assert {world.store.find_service(n).desired for n in ("web", "api")} == {1}
    assert world.store.job(training).state is JobState.RUNNING

    world.clock.advance_to(8 * 3600)  # 08:00: half of 8 cores, 4 one-core replicas
    world.rounds(3)
    # api holds at most one replica (1/8 of the pool): web takes the rest of the half.
    assert world.store.find_service("web").stats["floor"] == 3
    assert world.store.find_service("api").stats["floor"] == 1
    assert len(world.running()) == 4
    # Training keeps the other half: it was not stopped to make room.
    assert world.store.job(training).state is JobState.RUNNING

    world.clock.advance_to(20 * 3600)  # 20:00: back to what the traffic needs
    world.rounds(4)
    assert len(world.running()) == 2
    assert world.store.find_service("web").desired == 1


def test_a_cpu_services_share_counts_cores() -> None:
    spec = parse_spec({"name": "s", "command": ["true"], "kind": "service",
                       "resources": {"cpus": 2},
                       "service": {"objective": {"p99_ms": 50.0}, "max_replicas": 8}})
    the_pool = parse_pool({"nodes": [{"name": "n", "memory_gib": 8, "cores": {0: "0-7"}}]})
    assert replicas_for_share(0.5, spec.resources, the_pool) == 2  # 4 of 8 cores, 2 cores each
    assert replicas_for_share(0.3, spec.resources, the_pool) == 2  # 2.4 cores: rounded up


def test_a_pool_file_gives_service_hours_and_names_a_bad_one() -> None:
    data = {"name": "day", "nodes": [{"name": "n", "memory_gib": 8, "cores": {0: "0-7"}}],
            "service_hours": [{"hours": "08:00-20:00", "at_least": 0.5}]}
    the_pool = parse_pool(data)
    assert the_pool.service_hours == (Window(hours="08:00-20:00", at_least=0.5),)
    assert parse_pool(pool_to_dict(the_pool)).service_hours == the_pool.service_hours
    for bad, words in (({"hours": "8-20", "at_least": 0.5}, "service_hours.0.hours"),
                       ({"hours": "08:00-20:00", "at_least": 2}, "service_hours.0.at_least"),
                       ({"hours": "08:00-08:00", "at_least": 0.5}, "empty window"),
                       ({"hours": "08:00-20:00", "share": 0.5}, "service_hours.0.share")):
        with pytest.raises(PoolFileError) as caught:
            parse_pool({**data, "service_hours": [bad]})
        assert words in str(caught.value), caught.value


def test_the_cli_form_of_a_window() -> None:
    assert parse_window("22:00-06:00=0.25") == Window(hours="22:00-06:00", at_least=0.25)
    for bad, words in (("08:00-20:00", "HH:MM-HH:MM=SHARE"), ("08:00-20:00=half", "number"),
                       ("08:00-25:00=0.5", "hours"), ("08:00-20:00=0", "at_least")):
        with pytest.raises(InputError) as caught:
            parse_window(bad)
        assert words in str(caught.value), caught.value
