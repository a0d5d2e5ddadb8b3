"""The CLI through a running service: with a server configured, ``submit``, ``ps``,
``cancel`` and ``logs`` go through ``slicebox.Client``, and show what the embedded
commands show (the same messages, fields, reasons and exit codes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.pool.composition import Composition, Part
from slicebox.pool.files import load_pool
from slicebox.service import create_app
from slicebox.service.server import Service, serve
from slicebox.snapshot import JobState
from slicebox.store import Store

TWO_CORES = ("name: two-cores\nnodes:\n"
             "  - {name: here, memory_gib: 4, cores: {0: \"0-1\"}}\n")
runner = CliRunner()


@dataclass
class Remote:
    root: Path
    state: Path
    pool_file: Path
    store: Store
    service: Service
    team_a: str
    team_a_read: str
    team_b: str

    def cli(self, *args: str, token: str | None = None, server: bool = True):
        """The CLI as a user with ``token`` and the server in the environment; another
        state directory, so nothing can reach the service's store but the API."""
        env = {"SLICEBOX_HOME": str(self.root / "elsewhere")}
        if server:
            env["SLICEBOX_SERVER"] = self.service.url
        if token is not None:
            env["SLICEBOX_TOKEN"] = token
        return runner.invoke(app, list(args), env=env)

    def local(self, *args: str):
        """The embedded CLI on a store of its own with the same pool."""
        return runner.invoke(app, ["--state", str(self.root / "local"), *args],
                             env={"SLICEBOX_HOME": str(self.root / "local")})


@pytest.fixture()
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Remote]:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))  # no user config file
    for name in ("SLICEBOX_SERVER", "SLICEBOX_TOKEN", "SLICEBOX_STORE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text(TWO_CORES)
    store = Store.open(state)
    service = serve(create_app(store, load_pool(pool_file), poll_seconds=0.05), port=0,
                    state_dir=state)
    try:
        yield Remote(tmp_path, state, pool_file, store, service,
                     store.create_token("team-a", "submit")[1],
                     store.create_token("team-a", "read")[1],
                     store.create_token("team-b", "submit")[1])
    finally:
        service.stop()
        store.close()


def job_file(folder: Path, name: str, extra: str = "",
             command: str = "[python, -c, 'print(1)']") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\ncommand: {command}\n{extra}")
    return path


def test_submit_ps_cancel_go_through_the_service(remote: Remote) -> None:
    first = job_file(remote.root, "first")
    result = remote.cli("submit", str(first), "--json", token=remote.team_a)
    assert result.exit_code == 0, result.output
    [first_id] = json.loads(result.stdout)["submitted"]
    # It is in the service's store, as team-a's job, and nowhere else.
    assert remote.store.job(first_id).team == "team-a"
    assert not (remote.root / "elsewhere" / "slicebox.db").exists()

    second = job_file(remote.root, "second")
    result = remote.cli("submit", str(second), "--afterok", "first", "--array", "0-1",
                        token=remote.team_a)
    assert result.exit_code == 0, result.output
    assert "queued 2 jobs" in result.stdout
    members = [j for j in remote.store.jobs() if j.name.startswith("second-")]
    assert [j.spec.afterok for j in members] == [(first_id,), (first_id,)]

    listed = json.loads(remote.cli("ps", "--json", token=remote.team_a_read).stdout)
    assert [j["name"] for j in listed] == ["first", "second-0", "second-1"]
    table = remote.cli("ps", token=remote.team_a_read)
    assert table.exit_code == 0 and first_id in table.stdout  # the id whole, as locally
    # Team b sees none of them, and cannot cancel one by name or id.
    assert json.loads(remote.cli("ps", "--json", token=remote.team_b).stdout) == []
    refused = remote.cli("cancel", first_id, token=remote.team_b)
    assert refused.exit_code == 1 and f"no job {first_id!r}" in refused.stderr
    # A read-only token cannot cancel (exit 1, the scope named).
    refused = remote.cli("cancel", "first", token=remote.team_a_read)
    assert refused.exit_code == 1 and "scope submit" in refused.stderr
    assert remote.store.job(first_id).state is JobState.QUEUED

    done = remote.cli("cancel", first_id[:5], "--json", token=remote.team_a)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == [{"id": first_id, "state": "cancelled"}]
    assert remote.store.job(first_id).state is JobState.CANCELLED
    again = remote.cli("cancel", first_id, token=remote.team_a)
    assert again.exit_code == 1 and "cannot go from cancelled" in again.stderr
    assert len(json.loads(remote.cli("ps", "--all", "--json",
                                     token=remote.team_a).stdout)) == 3


def test_a_refusal_reads_as_the_embedded_one_with_the_same_exit_code(remote: Remote) -> None:
    # Found only by admission (the program), so the service is the one that refuses.
    missing = job_file(remote.root, "missing", command="[no-such-program-here]")
    through = remote.cli("submit", str(missing), token=remote.team_a)
    local = remote.local("submit", str(missing), "--pool", str(remote.pool_file))
    assert through.exit_code == local.exit_code == 2
    assert through.stderr == local.stderr
    assert f"{missing}: command: program 'no-such-program-here' not found" in through.stderr
    # A dependency on a job the store does not have: the same message, field and id.
    waits = job_file(remote.root, "waits", extra="after: [cafe0123]\n")
    through = remote.cli("submit", str(waits), token=remote.team_a)
    local = remote.local("submit", str(waits), "--pool", str(remote.pool_file))
    assert through.exit_code == local.exit_code == 2
    assert through.stderr == local.stderr
    assert "after: no job 'cafe0123'" in through.stderr
    unknown = remote.cli("submit", str(missing), "--after", "nothing", token=remote.team_a)
    assert unknown.exit_code == 2 and "--after: no job 'nothing'" in unknown.stderr
    assert remote.store.jobs() == []


def test_a_refused_file_withdraws_what_the_submission_queued(remote: Remote) -> None:
    good = job_file(remote.root, "good")
    bad = job_file(remote.root, "bad", command="[no-such-program-here]")
    result = remote.cli("submit", str(good), str(bad), token=remote.team_a)
    assert result.exit_code == 2
    assert f"{bad}: command:" in result.stderr and "withdrew" in result.stderr
    assert [(j.name, j.state) for j in remote.store.jobs()] == [("good", JobState.CANCELLED)]


def test_another_teams_job_cannot_be_waited_on(remote: Remote) -> None:
    theirs = remote.store.submit(_spec("theirs", team="team-b"))
    waits = job_file(remote.root, "waits", extra=f"after: [{theirs}]\n")
    result = remote.cli("submit", str(waits), token=remote.team_a)
    assert result.exit_code == 2 and f"after: no job {theirs!r}" in result.stderr


def test_logs_through_the_service(remote: Remote) -> None:
    job_id = remote.store.submit(_spec("talks", team="team-a"))
    unstarted = remote.cli("logs", "talks", token=remote.team_a)
    assert unstarted.exit_code == 0 and "has no log: it has not run" in unstarted.stderr
    log = remote.root / "talks.log"
    log.write_text("one\n:::SLICEBOX {\"samples\": 1}\ntwo\n")
    remote.store.start(job_id, JobState.RUNNING,
                       Composition(job_id, (Part("here", (), (0,), 1.0),)), "placed")
    remote.store.set_process(job_id, 4242, 1.0, log_path=str(log))
    shown = remote.cli("logs", job_id, token=remote.team_a)
    assert shown.exit_code == 0 and shown.stdout == "one\ntwo\n"
    raw = remote.cli("logs", job_id, "--raw", "-n", "2", "--json", token=remote.team_a)
    assert json.loads(raw.stdout)["lines"] == [':::SLICEBOX {"samples": 1}', "two"]
    remote.store.transition(job_id, JobState.SUCCEEDED, "exit 0")
    followed = remote.cli("logs", job_id, "-f", token=remote.team_a)
    assert followed.exit_code == 0 and followed.stdout == "one\ntwo\n"
    assert remote.cli("logs", job_id, token=remote.team_b).exit_code == 1


def test_a_server_without_a_token_is_refused_and_none_configured_runs_embedded(
        remote: Remote) -> None:
    result = remote.cli("ps", token=None)
    assert result.exit_code == 2 and "needs a token" in result.stderr
    embedded = remote.cli("ps", "--json", token=None, server=False)
    assert embedded.exit_code == 0 and json.loads(embedded.stdout) == []
    assert (remote.root / "elsewhere" / "slicebox.db").exists()  # the store, directly
    wrong = remote.cli("ps", "--server", "http://127.0.0.1:9", token=remote.team_a)
    assert wrong.exit_code == 1 and "is `slicebox up --serve` running there?" in wrong.stderr


def _spec(name: str, **fields: object):
    from slicebox.spec import parse_spec

    return parse_spec({"name": name, "command": ["true"], **fields})


def test_run_goes_through_the_service_and_a_pool_file_is_refused(remote: Remote) -> None:
    result = remote.cli("run", "--cpus", "1", "--json", "--", "python", "-c", "pass",
                        token=remote.team_a)
    assert result.exit_code == 0, result.output
    [job_id] = json.loads(result.stdout)["submitted"]
    assert remote.store.job(job_id).team == "team-a"
    missing = remote.cli("run", "--", "no-such-program-here", token=remote.team_a)
    local = remote.local("run", "--pool", str(remote.pool_file), "--",
                         "no-such-program-here")
    assert missing.exit_code == local.exit_code == 2
    assert missing.stderr == local.stderr and "slicebox run: command:" in missing.stderr
    for command in (["run", "--pool", str(remote.pool_file), "--", "true"],
                    ["submit", "--pool", str(remote.pool_file),
                     str(job_file(remote.root, "x"))]):
        refused = remote.cli(*command, token=remote.team_a)
        assert refused.exit_code == 2 and "--pool: the service checks" in refused.stderr
    assert len(remote.store.jobs()) == 1
