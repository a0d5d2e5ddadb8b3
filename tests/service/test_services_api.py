"""Services through the API, the client and the CLI, against the real test server: a
``kind: service`` spec sent to ``POST /v1/jobs`` makes a service; ``/v1/services`` lists
and shows them (replicas running/desired, URL, rate, p99, the replicas' jobs); a team sees
and cancels only its own; a read token cannot cancel. The tests play the controller's part
by writing to the store (replicas queued and started, statistics recorded), as the
``ServiceManager`` would."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.client import Conflict, Forbidden, NotFound, Rejected
from slicebox.service.server import Service
from slicebox.snapshot import JobState
from slicebox.store import Store
from tests.service.conftest import Tokens, run_it

runner = CliRunner()


def service_file(folder: Path, name: str = "digits") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nkind: service\ncommand: [python, -m, http.server]\n"
                    "resources: {cpus: 1, memory_gib: 1}\n"
                    "service: {port: 0, objective: {p99_ms: 50}, min_replicas: 1, "
                    "max_replicas: 2}\n")
    return path


def test_a_service_spec_through_post_jobs_makes_a_service(store: Store, tokens: Tokens,
                                                          client_for, service: Service,
                                                          tmp_path: Path):
    answer = httpx.post(f"{service.url}/v1/jobs", params={"cwd": str(tmp_path)},
                        content=service_file(tmp_path).read_bytes(), timeout=10,
                        headers={"Authorization": f"Bearer {tokens.a_submit}",
                                 "Content-Type": "application/yaml"})
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["kind"] == "service" and made["name"] == "digits" and made["team"] == "team-a"
    assert answer.headers["location"] == f"/v1/services/{made['id']}"
    record = store.find_service(made["id"])
    assert record.state == "live" and record.desired == 1 and record.workdir == str(tmp_path)
    assert store.jobs() == []  # a service is a record; its replicas come from the controller
    # The client's submit returns the same marker (the CLI reads ["id"] either way).
    again = client_for(tokens.a_submit)
    with pytest.raises(Rejected, match="already running") as refused:
        again.submit(service_file(tmp_path), cwd=tmp_path)
    assert refused.value.field == "name"


def test_list_and_get_show_replicas_url_rate_and_p99(store: Store, tokens: Tokens,
                                                     client_for, tmp_path: Path):
    a = client_for(tokens.a_submit)
    service_id = a.submit(service_file(tmp_path), cwd=tmp_path)["id"]
    [listed] = a.services()
    assert (listed["id"], listed["running"], listed["desired"], listed["url"]) == \
        (service_id, 0, 1, None)
    assert listed["replicas"] is None  # only the detail view lists them
    # The controller queues two replicas, starts one, and records the balancer's numbers.
    first, _ = store.add_replica(service_id, 40001)
    second, _ = store.add_replica(service_id, 40002)
    run_it(store, first, tmp_path / "logs" / "r1.log")
    store.update_service(service_id, desired=2, url="http://127.0.0.1:40000",
                         stats={"rate_rps": 12.5, "p99_ms": 31.0, "requests": 125,
                                "shape": "cpus=1", "capacity_rps": 20.0})
    [listed] = a.services()
    assert (listed["running"], listed["desired"], listed["url"], listed["rate_rps"],
            listed["p99_ms"], listed["objective_p99_ms"]) == \
        (1, 2, "http://127.0.0.1:40000", 12.5, 31.0, 50.0)
    assert (listed["shape"], listed["capacity_rps"]) == ("cpus=1", 20.0)  # live sizing's
    shown = a.service(service_id)
    assert {(r["id"], r["state"], r["index"], r["port"]) for r in shown["replicas"]} == \
        {(first, "running", 1, 40001), (second, "queued", 2, 40002)}
    assert a.job(first)["name"] == "digits-r1"  # a replica is an ordinary job
    with pytest.raises(NotFound, match="no service"):
        a.service("0123abcd")


def test_a_team_sees_and_cancels_only_its_own_services(store: Store, tokens: Tokens,
                                                       client_for, tmp_path: Path):
    a, b, admin = (client_for(tokens.a_submit), client_for(tokens.b_submit),
                   client_for(tokens.admin))
    ours = a.submit(service_file(tmp_path, "ours"), cwd=tmp_path)["id"]
    theirs = b.submit(service_file(tmp_path, "theirs"), cwd=tmp_path)["id"]
    assert [s["id"] for s in a.services()] == [ours]
    assert [s["id"] for s in b.services()] == [theirs]
    assert [s["id"] for s in admin.services()] == [ours, theirs]
    for action in (b.service, b.cancel_service):
        with pytest.raises(NotFound, match=f"no service '{ours}'"):
            action(ours)
    assert store.find_service(ours).state == "live"
    assert admin.cancel_service(theirs)["state"] == "cancelling"  # an admin cancels any


def test_a_read_token_cannot_cancel_and_a_submit_token_can(store: Store, tokens: Tokens,
                                                           client_for, tmp_path: Path):
    service_id = client_for(tokens.a_submit).submit(service_file(tmp_path), cwd=tmp_path)["id"]
    reader = client_for(tokens.a_read)
    assert [s["id"] for s in reader.services()] == [service_id]
    with pytest.raises(Forbidden, match="scope submit"):
        reader.cancel_service(service_id)
    assert store.find_service(service_id).state == "live"
    a = client_for(tokens.a_submit)
    assert a.cancel_service(service_id) == {"kind": "service", "id": service_id,
                                            "name": "digits", "state": "cancelling"}
    assert "through the API" in store.find_service(service_id).reason
    store.end_service(service_id)  # the controller, once its replicas are gone
    with pytest.raises(Conflict, match="cancelled already"):
        a.cancel_service(service_id)
    assert a.services() == []  # cancelled ones only on request
    assert [s["state"] for s in a.services(include_cancelled=True)] == ["cancelled"]


def test_bad_service_ids_are_refused_before_any_lookup(service: Service, tokens: Tokens):
    for bad in ("NOT-HEX", "a" * 33):
        answer = httpx.get(f"{service.url}/v1/services/{bad}", timeout=10,
                           headers={"Authorization": f"Bearer {tokens.admin}"})
        assert answer.status_code == 422 and answer.json()["field"].startswith("path")


def _cli(service: Service, root: Path, token: str, *args: str):
    return runner.invoke(app, list(args), env={"SLICEBOX_HOME": str(root / "elsewhere"),
                                                "SLICEBOX_SERVER": service.url,
                                                "SLICEBOX_TOKEN": token})


def test_the_cli_lists_and_cancels_services_through_the_server(
        store: Store, tokens: Tokens, client_for, service: Service, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no user config file
    monkeypatch.delenv("SLICEBOX_STORE_URL", raising=False)
    a = client_for(tokens.a_submit)
    service_id = a.submit(service_file(tmp_path), cwd=tmp_path)["id"]
    job_id = a.submit({"name": "train", "command": ["python", "-V"]}, cwd=tmp_path)["id"]
    store.update_service(service_id, url="http://127.0.0.1:40000",
                         stats={"rate_rps": 3.0, "p99_ms": 7.5})
    listed = _cli(service, tmp_path, tokens.a_read, "services", "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.output)
    assert (row["id"], row["name"], row["running"], row["desired"], row["url"],
            row["rate_rps"], row["p99_ms"]) == \
        (service_id, "digits", 0, 1, "http://127.0.0.1:40000", 3.0, 7.5)
    table = _cli(service, tmp_path, tokens.a_read, "services")
    assert table.exit_code == 0 and "digits" in table.output and "0/1" in table.output
    assert row["shape"] is None  # no live sizing here: the spec's resources
    # Another team's token does not see it, so cannot cancel it by name (a job, then).
    refused = _cli(service, tmp_path, tokens.b_submit, "cancel", "digits")
    assert refused.exit_code == 1 and "no job 'digits'" in refused.output
    assert store.find_service(service_id).state == "live"
    # One cancel for a service (by name) and a job (by id), as embedded.
    done = _cli(service, tmp_path, tokens.a_submit, "cancel", "digits", job_id, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == [
        {"id": service_id, "service": "digits", "state": "cancelling"},
        {"id": job_id, "state": "cancelled"}]
    assert store.find_service(service_id).state == "cancelling"
    assert store.job(job_id).state is JobState.CANCELLED
