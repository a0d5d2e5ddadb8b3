"""The API through ``slicebox.Client`` against a real server: jobs submitted, listed,
read, cancelled, logged; refusals as problem details with the CLI's field and reason."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.client import Conflict, Forbidden, NotFound, Rejected, WaitTimeout
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import Store
from tests.service.conftest import TWO_CORES, Shared, Tokens, job_file, run_it

PROGRESS = ':::SLICEBOX {"time":1.0,"samples":10,"quality":null}'


def test_submit_list_get_and_cancel_through_the_client(store: Store, tokens: Tokens,
                                                       client_for, tmp_path: Path):
    a = client_for(tokens.a_submit)
    job = a.submit(job_file(tmp_path), cwd=tmp_path)
    assert (job["name"], job["team"], job["state"]) == ("hello", "team-a", "queued")
    stored = store.job(job["id"])  # written through the store, admitted as the CLI does
    assert stored.team == "team-a" and stored.workdir == str(tmp_path.resolve())
    assert stored.spec.command == ("python", "-c", "print(1)")

    second = a.submit({"name": "two", "command": ["python", "-c", "pass"]}, cwd=tmp_path)
    third = a.submit(parse_spec({"name": "three", "command": ["python", "-V"]}), cwd=tmp_path)
    fourth = a.submit("name: four\ncommand: [python, -V]\n", cwd=tmp_path)
    assert [j["id"] for j in a.jobs()] == [job["id"], second["id"], third["id"],
                                           fourth["id"]]
    assert a.job(second["id"])["spec"]["command"] == ["python", "-c", "pass"]
    assert [j["id"] for j in a.jobs(states=["cancelled"])] == []

    cancelled = a.cancel(job["id"])
    assert cancelled == {"id": job["id"], "state": "cancelled", "cancel_requested": False}
    assert store.job(job["id"]).state is JobState.CANCELLED
    assert [j["id"] for j in a.jobs(states=["cancelled"])] == [job["id"]]
    events = a.events(job["id"])
    assert [e["kind"] for e in events] == ["queued", "cancelled"]
    assert "through the API" in events[-1]["reason"]


def test_a_running_job_is_only_flagged_for_the_controller(store: Store, tokens: Tokens,
                                                          client_for, tmp_path: Path):
    a = client_for(tokens.a_submit)
    job = a.submit(job_file(tmp_path), cwd=tmp_path)
    run_it(store, job["id"], tmp_path / "logs" / "x.log")
    answer = a.cancel(job["id"])
    assert answer["state"] == "running" and answer["cancel_requested"] is True
    assert store.job(job["id"]).cancel_requested  # the controller stops it
    store.transition(job["id"], JobState.CANCELLED, "stopped")
    with pytest.raises(Conflict, match="cannot go from cancelled to cancelled") as refused:
        a.cancel(job["id"])
    assert refused.value.status == 409


@pytest.mark.parametrize(("extra", "field"), [
    ("resouces: {cpus: 1}\n", "resouces"),  # misspelt
    ("resources: {cpus: 0}\n", "resources.cpus"),  # out of range
    ("resources: {cpus: 64}\n", "resources.cpus"),  # can never fit the pool
    ("env: {LD_PRELOAD: /x.so}\n", "env.LD_PRELOAD"),  # admission's own check
])
def test_a_bad_spec_is_refused_with_the_clis_field_and_reason(
        shared: Shared, shared_client_for, tmp_path: Path, extra: str, field: str):
    path = job_file(tmp_path, extra=extra)
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text(TWO_CORES)
    before = len(shared.store.jobs())
    cli = CliRunner().invoke(app, ["--state", str(tmp_path / "cli"), "submit", str(path),
                                   "--pool", str(pool_file)])
    assert cli.exit_code == 2, cli.output
    cli_message = " ".join(cli.stderr.split()).removeprefix("error: ")

    with pytest.raises(Rejected) as refused:
        shared_client_for(shared.tokens.a_submit).submit(path, cwd=tmp_path)
    assert len(shared.store.jobs()) == before  # nothing written
    problem = refused.value.problem
    assert refused.value.status == 422 and problem["status"] == 422
    assert problem["type"].endswith("invalid-spec") and problem["title"]
    assert problem["field"] == field
    # The same message the CLI prints, only naming the spec instead of the file.
    assert problem["detail"] == cli_message.replace(str(path), "job spec", 1)
    assert problem["detail"] == f"job spec: {field}: {problem['reason']}"


def test_relative_paths_need_a_submitting_directory(shared: Shared, tmp_path: Path):
    service = shared.service
    body = b"name: hello\ncommand: [python, -V]\n"
    headers = {"Authorization": f"Bearer {shared.tokens.a_submit}",
               "Content-Type": "application/yaml"}
    answer = httpx.post(f"{service.url}/v1/jobs", content=body, headers=headers)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["field"] == "workdir"
    relative = httpx.post(f"{service.url}/v1/jobs", params={"cwd": "here"}, content=body,
                          headers=headers)
    assert relative.status_code == 422 and relative.json()["field"] == "cwd"
    absolute = httpx.post(f"{service.url}/v1/jobs", content=body + f"workdir: {tmp_path}\n"
                          .encode(), headers=headers)
    assert absolute.status_code == 201, absolute.text
    assert absolute.headers["location"] == f"/v1/jobs/{absolute.json()['id']}"


@pytest.mark.parametrize(("content_type", "body", "status", "field"), [
    ("text/plain", b"name: x", 415, None),
    ("application/json", b'{"name": "x", "name": "y", "command": ["python"]}', 422, None),
    ("application/json", b"[" * 5000 + b"]" * 5000, 422, None),
    ("application/json", b'{"name": "x", "command": "ls | wc"}', 422, "command"),
    ("application/yaml", b"a: [", 422, None),
    ("application/json", b"\xff\xfe", 422, None),
])
def test_malformed_bodies_are_clean_problems(shared: Shared, tmp_path: Path,
                                             content_type: str, body: bytes, status: int,
                                             field: str | None):
    token = shared.tokens.a_submit
    answer = httpx.post(f"{shared.service.url}/v1/jobs", params={"cwd": str(tmp_path)},
                        content=body, headers={"Authorization": f"Bearer {token}",
                                               "Content-Type": content_type})
    assert answer.status_code == status, answer.text
    problem = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    assert problem["status"] == status and problem["detail"]
    assert problem.get("field") == field


def test_a_body_over_the_limit_is_refused_with_413(shared: Shared):
    headers = {"Authorization": f"Bearer {shared.tokens.a_submit}",
               "Content-Type": "application/yaml"}
    url = f"{shared.service.url}/v1/jobs"
    big = b"#" * (1 << 20) + b"\nname: x\n"
    declared = httpx.post(url, content=big, headers=headers)
    assert declared.status_code == 413
    assert declared.json()["type"].endswith("too-large")

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"#" * 65536

    chunked = httpx.post(url, content=chunks(), headers=headers)
    assert chunked.status_code == 413
    # Under the service's limit, over a job spec's (256 KiB, as for a job file).
    spec_sized = httpx.post(url, content=b"#" * 300_000, headers=headers)
    assert spec_sized.status_code == 413 and "job spec" in spec_sized.json()["detail"]


def test_logs_plain_and_followed(store: Store, tokens: Tokens, client_for, tmp_path: Path):
    a = client_for(tokens.a_submit)
    job = a.submit(job_file(tmp_path), cwd=tmp_path)
    log = tmp_path / "logs" / f"{job['id']}.log"
    assert list(a.logs(job["id"])) == []  # not started: no log yet

    def controller() -> None:  # starts the job a little later; it writes, then ends
        time.sleep(0.3)
        run_it(store, job["id"], log)
        with log.open("a") as out:
            out.write(f"epoch 1\n{PROGRESS}\n")
        time.sleep(0.3)
        with log.open("a") as out:
            out.write("step 2\nlast, no newline")
        time.sleep(0.3)
        store.transition(job["id"], JobState.SUCCEEDED, "exit code 0", exit_code=0)

    thread = threading.Thread(target=controller)
    thread.start()
    try:
        followed = list(a.logs(job["id"], follow=True))
    finally:
        thread.join()
    assert followed == ["epoch 1", "step 2", "last, no newline"]
    assert list(a.logs(job["id"])) == followed
    assert list(a.logs(job["id"], raw=True)) == ["epoch 1", PROGRESS, "step 2",
                                                 "last, no newline"]
    assert list(a.logs(job["id"], lines=1)) == ["step 2", "last, no newline"]
    assert a.wait(job["id"], timeout=5)["state"] == "succeeded"


def test_wait_times_out_on_a_job_that_does_not_end(tokens: Tokens, client_for,
                                                   tmp_path: Path):
    a = client_for(tokens.a_submit)
    job = a.submit(job_file(tmp_path), cwd=tmp_path)
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match="still queued"):
        a.wait(job["id"], timeout=0.3, poll_seconds=0.1)
    assert time.monotonic() - started < 5


def test_the_pool_shows_who_holds_what(store: Store, tokens: Tokens, client_for,
                                       tmp_path: Path):
    mine = client_for(tokens.a_submit).submit(job_file(tmp_path, "mine"), cwd=tmp_path)
    theirs = client_for(tokens.b_submit).submit(job_file(tmp_path, "theirs"), cwd=tmp_path)
    run_it(store, mine["id"], tmp_path / "logs" / "a.log", cores=(0,))
    run_it(store, theirs["id"], tmp_path / "logs" / "b.log", cores=(1,))
    (node,) = client_for(tokens.a_read).pool()["nodes"]
    assert node["name"] == "here" and node["cores_by_numa"] == {"0": [0, 1]}
    assert node["cores_held"] == {
        "0": {"team": "team-a", "job_id": mine["id"], "job_name": "mine"},
        "1": {"team": "team-b", "job_id": None, "job_name": None}}  # not team-a's to see
    assert node["memory_held_gib"] == 2.0
    admin_view = client_for(tokens.admin).pool()["nodes"][0]["cores_held"]
    assert admin_view["1"]["job_id"] == theirs["id"]


def test_profiles_are_listed(state: Path, tokens: Tokens, client_for):
    from slicebox.profiles.store import save_profiles
    from slicebox.profiles.table import ProfileEntry, ProfileTable

    assert client_for(tokens.a_read).profiles() == []
    save_profiles(state, ProfileTable([ProfileEntry("cnn", "cpu", 2, "fp32", 123.0, "bench")]))
    (entry,) = client_for(tokens.a_read).profiles()
    assert (entry["workload"], entry["size"], entry["samples_per_s"]) == ("cnn", 2, 123.0)


def test_unknown_routes_and_jobs_are_problems(shared: Shared, shared_client_for):
    tokens, client_for = shared.tokens, shared_client_for
    missing = httpx.get(f"{shared.service.url}/v1/nothing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    with pytest.raises(NotFound, match="no job 'abc123'"):
        client_for(tokens.a_read).job("abc123")
    with pytest.raises(Rejected):  # never sent: it would change the path
        client_for(tokens.a_read).job("../pool")


def test_a_team_token_may_not_submit_for_another_team(tokens: Tokens, client_for,
                                                      tmp_path: Path, store: Store):
    path = job_file(tmp_path, extra="team: team-b\n")
    with pytest.raises(Forbidden) as refused:
        client_for(tokens.a_submit).submit(path, cwd=tmp_path)
    assert refused.value.field == "team"
    assert store.jobs() == []
    job = client_for(tokens.admin).submit(path, cwd=tmp_path)  # an admin may
    assert job["team"] == "team-b"
