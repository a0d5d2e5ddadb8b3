"""API tokens and teams in the store, on SQLite and PostgreSQL (``store`` in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select

from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import DEFAULT_TEAM, Scope, Store, UnknownToken, migrations
from slicebox.store.engine import make_engine
from slicebox.store.schema import TokenRow
from slicebox.store.tokens import TokenInputError
from tests.store import baseline_schema
from tests.store.fakes import Clock
from tests.store.test_migrations import database_url, job_row, open_store


def spec(name: str, team: str | None = None):
    data: dict = {"name": name, "command": ["python", "train.py"]}
    if team is not None:
        data["team"] = team
    return parse_spec(data)


def test_a_token_authenticates_as_its_team_and_scope(store: Store, clock: Clock):
    record, token = store.create_token("vision", "submit")
    assert token.startswith(f"sbx_{record.id}_")
    assert (record.team, record.scope, record.created_at) == ("vision", "submit", clock.now)
    assert store.authenticate(token) == record


def test_only_the_hash_is_stored(store: Store):
    _, token = store.create_token("vision", "read")
    secret = token.split("_", 2)[2]
    with store._tx() as s:  # every column of every token row
        rows = [tuple(r) for r in s.execute(select(TokenRow.__table__))]
    assert rows and not any(secret in str(value) for row in rows for value in row)


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # wrong secret
    lambda t: t.replace("sbx_", "sbx-"),  # malformed
    lambda t: t + "x",  # too long
    lambda t: "sbx_ffffffffffff_" + t.split("_", 2)[2],  # unknown id, right secret
    lambda t: "",
])
def test_a_wrong_token_authenticates_as_nobody(store: Store, mangle):
    _, token = store.create_token("vision", "admin")
    assert store.authenticate(mangle(token)) is None


def test_a_revoked_token_is_refused_and_listed_only_on_request(store: Store, clock: Clock):
    kept, _ = store.create_token("vision", "read")
    gone, token = store.create_token("nlp", "submit")
    clock.now += 5
    revoked = store.revoke_token(gone.id)
    assert revoked.revoked and revoked.revoked_at == clock.now
    assert store.authenticate(token) is None
    assert [t.id for t in store.tokens()] == [kept.id]
    assert {t.id for t in store.tokens(include_revoked=True)} == {kept.id, gone.id}
    clock.now += 5
    assert store.revoke_token(token).revoked_at == revoked.revoked_at  # the whole token too
    with pytest.raises(UnknownToken, match="no token 'nope'"):
        store.revoke_token("nope")


@pytest.mark.parametrize(("team", "scope", "field"), [
    ("Vision", "read", "team"), ("", "read", "team"), ("a" * 64, "read", "team"),
    ("vision", "write", "scope"), ("vision", "", "scope")])
def test_bad_team_or_scope_is_refused_naming_it(store: Store, team: str, scope: str,
                                                 field: str):
    with pytest.raises(TokenInputError, match=f"^{field}: "):
        store.create_token(team, scope)
    assert store.tokens(include_revoked=True) == []


def test_scopes_include_the_ones_before_them():
    assert Scope.ADMIN.allows(Scope.SUBMIT) and Scope.SUBMIT.allows(Scope.READ)
    assert not Scope.READ.allows(Scope.SUBMIT) and not Scope.SUBMIT.allows(Scope.ADMIN)


def test_jobs_carry_their_team(store: Store, clock: Clock):
    a = store.submit(spec("a", "vision"))
    clock.now += 1
    b = store.submit(spec("b"))
    clock.now += 1
    (c,) = store.submit_many([(spec("c", "vision"), None, None)])
    assert store.job(a).team == "vision" and store.job(b).team == DEFAULT_TEAM
    assert [j.id for j in store.jobs(team="vision")] == [a, c]
    assert [j.id for j in store.jobs([JobState.QUEUED], team=DEFAULT_TEAM)] == [b]
    assert store.find(c).team == "vision"


def test_jobs_from_before_teams_are_the_default_teams(tmp_path: Path, store_url: str | None):
    """A store at revision 0003 upgrades to teams and tokens with its jobs kept."""
    url = database_url(tmp_path, store_url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrations.config(conn), "0003")
            # The jobs table as revision 0003 has it (no team column yet).
            conn.execute(baseline_schema.Base.metadata.tables["jobs"].insert(),
                         [job_row("cc000001", JobState.QUEUED, 1)])
    finally:
        engine.dispose()
    store = open_store(tmp_path, store_url)
    try:
        (job,) = store.jobs()
        assert (job.id, job.team, job.name) == ("cc000001", DEFAULT_TEAM, "job-1")
        _, token = store.create_token("vision", "read")
        assert store.authenticate(token) is not None
    finally:
        store.close()
