"""``slicebox events`` through a running service: the same events, table and ``--json``
document as the embedded command shows from the store, for one job or (no job given)
every job the token's team sees; another team's jobs stay out."""

from __future__ import annotations

import json

from slicebox.snapshot import JobState

from .test_remote import Remote, job_file, remote  # noqa: F401 - the fixture


def _submitted(remote: Remote, name: str, token: str) -> str:  # noqa: F811
    result = remote.cli("submit", str(job_file(remote.root, name)), "--json", token=token)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["submitted"][0]


def test_events_through_the_service_are_the_stores_events(remote: Remote) -> None:  # noqa: F811
    first = _submitted(remote, "first", remote.team_a)
    second = _submitted(remote, "second", remote.team_a)
    theirs = _submitted(remote, "theirs", remote.team_b)
    remote.store.set_reasons({second: "after " + first})  # a note need not be a transition
    assert remote.cli("cancel", first, token=remote.team_a).exit_code == 0
    assert remote.store.job(first).state is JobState.CANCELLED

    def embedded(*args: str) -> str:  # the store's own view, no server
        result = remote.cli("--state", str(remote.state), "events", *args, server=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    one = remote.cli("events", "first", "--json", token=remote.team_a_read)
    assert one.exit_code == 0, one.output
    assert one.stdout == embedded(first, "--json")  # byte for byte
    assert [e["kind"] for e in json.loads(one.stdout)][-1] == "cancelled"

    # No job: every job this team sees, in the store's order; team b's is not among them.
    every = json.loads(remote.cli("events", "--json", token=remote.team_a_read).stdout)
    stored = json.loads(embedded("--json"))
    assert every == [e for e in stored if e["job_id"] != theirs]
    assert {e["job_id"] for e in every} == {first, second}
    assert theirs in {e["job_id"] for e in stored}

    table = remote.cli("events", first, token=remote.team_a_read)
    assert table.exit_code == 0 and table.stdout == embedded(first)
    assert "queued→cancelled" in table.stdout

    refused = remote.cli("events", theirs, token=remote.team_a_read)
    assert refused.exit_code == 1 and f"no job {theirs!r}" in refused.stderr
