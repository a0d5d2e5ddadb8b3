"""A service's spec, its admission and its commands: `kind: service` with a bounded
`service:` section (errors name the field), a record instead of a queued job, names unique
among live services, `replica_of` never from a user, and the CLI's `services`/`cancel`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from slicebox.backends.env import job_environment
from slicebox.cli import app
from slicebox.controller.submit import submit_files, submit_spec
from slicebox.placement.placer import Placer
from slicebox.pool.composition import Composition
from slicebox.spec import SpecError, parse_spec
from slicebox.store import ServiceNameTaken, Store
from slicebox.store.services import replica_spec
from tests.sim.helpers import pool


def service(**section: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"objective": {"p99_ms": 50.0}, "min_replicas": 1,
                            "max_replicas": 3}
    body.update(section)
    return {"name": "web", "command": ["true"], "kind": "service", "service": body}


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"min_replicas": 4}, "service", "min_replicas (4) is larger than max_replicas (3)"),
    ({"max_replicas": 65}, "service.max_replicas", "64"),
    ({"min_replicas": 0}, "service.min_replicas", "1"),
    ({"min_replicas": True}, "service.min_replicas", "integer"),
    ({"objective": {"p99_ms": -1}}, "service.objective.p99_ms", "greater than 0"),
    ({"objective": {}}, "service.objective.p99_ms", "required"),
    ({"host": "example.com"}, "service.host", "not an IP address"),
    ({"port": 22}, "service.port", "privileged"),
    ({"health_path": "health"}, "service.health_path", "pattern"),
    ({"health_interval_s": 0}, "service.health_interval_s", "0.1"),
    ({"replica_capacity_rps": 0}, "service.replica_capacity_rps", "greater than 0"),
    ({"colour": "blue"}, "service.colour", "unknown field"),
])
def test_a_bad_service_section_is_refused_naming_the_field(
        change: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(service(**change))
    message = str(caught.value)
    assert field in message and words in message, message


@pytest.mark.parametrize(("data", "words"), [
    ({"name": "web", "command": ["true"], "kind": "service"}, "needs a service section"),
    ({"name": "web", "command": ["true"], "service": {"objective": {"p99_ms": 5.0}}},
     "only a spec with kind: service"),
    ({**service(), "name": "w" * 56}, "at most 55"),
    ({**service(), "time_limit_seconds": 60.0}, "runs until it is cancelled"),
    ({**service(), "resources": {"cpus": {"min": 1, "max": 2}}}, "fixed"),
    ({**service(), "kind": "daemon"}, "kind"),
])
def test_kind_and_section_must_agree(data: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError, match=words):
        parse_spec(data)


def test_a_service_is_admitted_as_a_record_and_its_name_is_unique(tmp_path: Path) -> None:
    the_pool = pool(nodes=1, gpus=1, cores=4)
    store = Store.open(tmp_path / "state")
    placer = Placer(the_pool)
    service_id = submit_spec(store, the_pool, placer, parse_spec(service()), cwd=tmp_path,
                             services=True)
    assert store.jobs() == []  # no job: the controller queues its replicas
    record = store.find_service("web")
    assert (record.id, record.state, record.desired) == (service_id, "live", 1)
    with pytest.raises(ServiceNameTaken, match="name: a service named 'web'"):
        submit_spec(store, the_pool, placer, parse_spec(service()), cwd=tmp_path,
                    services=True)
    # A replica's resources are checked against the pool like any job's.
    with pytest.raises(SpecError, match="resources.cpus"):
        submit_spec(store, the_pool, placer,
                    parse_spec({**service(), "name": "big", "resources": {"cpus": 64}}),
                    cwd=tmp_path, services=True)
    # Interfaces that answer with the queued job (the REST API) refuse a service.
    with pytest.raises(SpecError, match="kind: a service is submitted with"):
        submit_spec(store, the_pool, placer, parse_spec({**service(), "name": "other"}),
                    cwd=tmp_path)
    assert [s.name for s in store.services()] == ["web"]
    store.request_service_cancel(service_id)
    store.end_service(service_id)
    again = submit_spec(store, the_pool, placer, parse_spec(service()), cwd=tmp_path,
                             services=True)
    assert again != service_id  # a cancelled service's name may be used again


def test_files_with_services_and_jobs_keep_their_order(tmp_path: Path) -> None:
    the_pool = pool(nodes=1, gpus=1, cores=4)
    store = Store.open(tmp_path / "state")
    paths = []
    for name, data in (("a", {"name": "a", "command": ["true"]}), ("web", service()),
                       ("b", {"name": "b", "command": ["true"]})):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        paths.append(path)
    ids = submit_files(store, the_pool, Placer(the_pool), paths, cwd=tmp_path)
    assert [store.job(ids[0]).name, store.find_service(ids[1]).name,
            store.job(ids[2]).name] == ["a", "web", "b"]
    with pytest.raises(SpecError, match="--array"):
        submit_files(store, the_pool, Placer(the_pool), [paths[1]], cwd=tmp_path, array=(0,))


def test_a_user_may_not_submit_a_replica(tmp_path: Path) -> None:
    the_pool = pool(nodes=1, gpus=1, cores=4)
    store = Store.open(tmp_path / "state")
    fake = {"name": "web-r1", "command": ["true"],
            "replica_of": {"service": "0123abcd", "index": 1, "port": 30000}}
    with pytest.raises(SpecError, match="replica_of: is set by Slicebox"):
        submit_spec(store, the_pool, Placer(the_pool), parse_spec(fake), cwd=tmp_path)


def test_a_replica_is_an_ordinary_job_told_its_port() -> None:
    svc = parse_spec({**service(), "priority": 7, "team": "search",
                      "resources": {"cpus": 2, "memory_gib": 3.0}})
    spec = replica_spec(svc, "0123abcd", 12, 31234)
    assert (spec.kind, spec.service, spec.name) == ("job", None, "web-r12")
    assert (spec.priority, spec.team, spec.resources) == (7, "search", svc.resources)
    comp = Composition.on_node("j1", "n", (), (0, 1), 3.0)
    env = job_environment({}, "j1", 1, spec, comp)
    assert env["SLICEBOX_SERVICE_PORT"] == "31234"
    plain = job_environment({}, "j1", 1, parse_spec({"name": "a", "command": ["true"]}), comp)
    assert "SLICEBOX_SERVICE_PORT" not in plain


def invoke(state: Path, *args: str):
    return CliRunner().invoke(app, ["--state", str(state), *args])


def test_submit_list_and_cancel_a_service_from_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(service()))
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "train", "command": ["true"]}))
    queued = invoke(tmp_path, "submit", "--json", str(path), str(job))
    assert queued.exit_code == 0, queued.output
    service_id, job_id = json.loads(queued.stdout)["submitted"]
    listed = invoke(tmp_path, "services", "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["name"], row["state"], row["running"]) == (service_id, "web",
                                                                      "live", 0)
    assert row["objective_p99_ms"] == 50.0
    table = invoke(tmp_path, "services")
    assert "web" in table.stdout and "0/1" in table.stdout
    cancelled = invoke(tmp_path, "cancel", "--json", "web", "train")
    assert cancelled.exit_code == 0, cancelled.output
    assert json.loads(cancelled.stdout) == [
        {"id": service_id, "service": "web", "state": "cancelling"},
        {"id": job_id, "state": "cancelled"}]
    missing = invoke(tmp_path, "cancel", "nothing-here")
    assert missing.exit_code != 0 and "nothing-here" in missing.output


def test_a_share_of_the_pool_in_replicas_counts_gpus_or_cores() -> None:
    from slicebox.controller.services import replicas_for_share

    gpus = pool(nodes=2, gpus=4, cores=16)  # 8 GPUs, 32 cores
    cpu_only = parse_spec({**service(), "resources": {"cpus": 3}})
    whole = parse_spec({**service(), "resources": {"gpus": 1, "cpus": 1}})
    half = parse_spec({**service(), "resources": {"gpus": 1, "fraction": 0.5, "cpus": 1}})
    mig = parse_spec({**service(), "resources": {"gpus": 1, "mig": "1g.10gb", "cpus": 1}})
    assert replicas_for_share(0.5, cpu_only.resources, gpus) == 6  # 16 cores / 3 per replica
    assert replicas_for_share(0.5, whole.resources, gpus) == 4
    assert replicas_for_share(0.5, half.resources, gpus) == 8
    assert replicas_for_share(0.25, mig.resources, gpus) == 14  # 2 GPUs as seven 1g slices each
    assert replicas_for_share(0.0, whole.resources, gpus) == 0


def test_a_schedule_window_is_checked_and_may_run_over_midnight() -> None:
    spec = parse_spec(service(schedule=[{"hours": "08:00-20:00", "at_least": 0.5},
                                        {"hours": "22:00-02:00", "at_least": 0.25}]))
    assert spec.service is not None
    day, night = spec.service.schedule
    assert [day.contains(m) for m in (479, 480, 1199, 1200)] == [False, True, True, False]
    assert [night.contains(m) for m in (1319, 1320, 0, 119, 120)] == [
        False, True, True, True, False]
    for bad, words in ((("8:00-20:00", 0.5), "pattern"), (("08:00-08:00", 0.5), "empty"),
                       (("08:00-20:00", 1.5), "less than or equal to 1")):
        with pytest.raises(SpecError, match=words) as caught:
            parse_spec(service(schedule=[{"hours": bad[0], "at_least": bad[1]}]))
        assert "service.schedule.0" in str(caught.value)
