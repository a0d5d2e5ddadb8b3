"""Tokens: no route but /v1/health answers without a valid token, scopes are enforced,
and a team's token neither sees nor cancels another team's jobs.

The routes refused without a token are read from the app's own OpenAPI (every operation it
publishes but /v1/health), so a route added later is tested here without anyone listing
it; and every route of the app that could change anything (POST, PUT, PATCH, DELETE), in
the schema or not, must be among them."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from slicebox.client import Forbidden, NotFound, Unauthorized
from slicebox.pool.files import load_pool
from slicebox.service import create_app
from slicebox.snapshot import JobState
from slicebox.store import Store
from tests.service.conftest import TWO_CORES, Shared, Tokens, job_file

OPEN = {("GET", "/v1/health")}  # the one route that needs no token (liveness, version)
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What a path parameter is filled with: the shared service's queued job (a real one, which
# a valid token could cancel), else an id of the right form (refused before any lookup).
DUMMY_IDS = {"sim_id": "sim-0123abcd", "name": "jct_cdf.png", "service_id": "0123abcd"}
# A valid body for the routes that take one: the token must be the only thing wrong.
BODIES = {("POST", "/v1/jobs"): ("application/yaml", b"name: again\ncommand: [python, -V]\n"),
          ("POST", "/v1/simulations"): ("application/json", json.dumps(
              {"trace": "gavel/small_test.trace", "pool": "gavel-48",
               "policy": "fifo"}).encode())}


def _the_apps_routes() -> tuple[list[tuple[str, str]], set[tuple[str, str]]]:
    """(method, path) of each operation in the app's OpenAPI, and of each route the app
    serves at all (also those left out of the schema: the dashboard, /docs)."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "pool.yaml").write_text(TWO_CORES)
        store = Store.open(root / "state")
        try:
            app = create_app(store, load_pool(root / "pool.yaml"))
            try:
                paths = app.openapi()["paths"]
                served = {(method, route.path) for route in _flat(app.routes)
                          for method in getattr(route, "methods", None) or ()}
            finally:
                app.state.simulations.close()
        finally:
            store.close()
    published = sorted((method.upper(), path) for path, operations in paths.items()
                       for method in operations)
    return published, served


def _flat(routes: list) -> list:
    """Every route, also those of included routers: FastAPI 0.165 keeps an included router
    as one entry of ``app.routes`` and flattens it with ``iter_route_contexts``; before it,
    ``app.routes`` was flat already."""
    from fastapi import routing

    flatten = getattr(routing, "iter_route_contexts", None)
    return list(flatten(routes)) if flatten is not None else list(routes)


PUBLISHED, SERVED = _the_apps_routes()
ROUTES = [route for route in PUBLISHED if route not in OPEN]


@pytest.fixture()
def queued(store: Store, tokens: Tokens, client_for, tmp_path: Path) -> str:
    return str(client_for(tokens.a_submit).submit(job_file(tmp_path), cwd=tmp_path)["id"])


def _filled(route: str, job_id: str) -> str:
    values = {**DUMMY_IDS, "job_id": job_id}

    def value(match: re.Match[str]) -> str:
        assert match[1] in values, f"{route}: give test_auth.py a value for {{{match[1]}}}"
        return values[match[1]]

    return re.sub(r"\{([^}]+)\}", value, route)


def call(service, method: str, route: str, job_id: str, token: str | None,
         tmp_path: Path) -> httpx.Response:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    content_type, body = BODIES.get((method, route), (None, None))
    if content_type is not None:
        headers["Content-Type"] = content_type
    return httpx.request(method, service.url + _filled(route, job_id), headers=headers,
                         content=body, timeout=10,
                         params={"cwd": str(tmp_path)} if route == "/v1/jobs" else None)


def _everything(shared: Shared) -> object:
    """What any mutation would change: jobs, tokens, simulations (listed and on disk)."""
    app: Any = shared.service.server.config.app  # the FastAPI app it serves
    simulations = app.state.simulations
    folder = shared.state / "simulations"
    return ([(j.id, j.state, j.cancel_requested, j.priority) for j in shared.store.jobs()],
            [(t.id, t.revoked_at) for t in shared.store.tokens(include_revoked=True)],
            [r.id for r in simulations.all()],
            sorted(p.name for p in folder.iterdir()) if folder.is_dir() else [])


def test_the_list_covers_every_route_that_changes_anything():
    mutations = {(method, path) for method, path in SERVED if method in MUTATING}
    # The routes known today are found (the derivation works), and none is left out.
    assert {("POST", "/v1/jobs"), ("POST", "/v1/jobs/{job_id}/cancel"),
            ("POST", "/v1/simulations")} <= mutations
    missing = mutations - set(ROUTES)
    assert not missing, f"routes that change things but are not tested here: {missing}"
    assert ("GET", "/metrics") in ROUTES  # it shows every team's jobs: a token too
    assert not OPEN & set(ROUTES) and set(PUBLISHED) >= OPEN


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_every_route_needs_a_valid_token(shared: Shared, tmp_path: Path, method: str,
                                         route: str):
    service, store, queued = shared.service, shared.store, shared.queued
    record, revoked = store.create_token("team-a", "admin")
    store.revoke_token(record.id)
    before = _everything(shared)
    for token in (None, "sbx_000000000000_" + "x" * 43, "Basic abc", revoked):
        answer = call(service, method, route, queued, token, tmp_path)
        assert answer.status_code == 401, (token, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["status"] == 401
    assert _everything(shared) == before


def test_a_valid_token_passes_the_same_calls(shared: Shared, tmp_path: Path):
    """The refusals above are for the token alone: with an admin token the same requests
    (a read-only copy of them: GETs) are answered."""
    admin = shared.tokens.admin
    for method, route in ROUTES:
        if method == "GET" and "{sim_id}" not in route and "{service_id}" not in route:
            answer = call(shared.service, method, route, shared.queued, admin, tmp_path)
            assert answer.status_code == 200, (route, answer.text)


def test_health_needs_no_token(shared: Shared):
    assert httpx.get(f"{shared.service.url}/v1/health").json()["status"] == "ok"


def test_a_read_token_reads_but_cannot_submit_or_cancel(store: Store, tokens: Tokens,
                                                       client_for, queued: str,
                                                       tmp_path: Path):
    reader = client_for(tokens.a_read)
    assert [j["id"] for j in reader.jobs()] == [queued]
    assert reader.job(queued)["state"] == "queued"
    with pytest.raises(Forbidden, match="scope submit"):
        reader.cancel(queued)
    with pytest.raises(Forbidden, match="scope submit"):
        reader.submit(job_file(tmp_path, "more"), cwd=tmp_path)
    assert [(j.id, j.state) for j in store.jobs()] == [(queued, JobState.QUEUED)]


def test_a_team_sees_and_cancels_only_its_own_jobs(store: Store, tokens: Tokens, client_for,
                                                   service, queued: str, tmp_path: Path):
    b = client_for(tokens.b_submit)
    theirs = b.submit(job_file(tmp_path, "theirs"), cwd=tmp_path)["id"]
    assert [j["id"] for j in b.jobs()] == [theirs]  # not team-a's
    for action in (b.job, b.cancel, b.events, lambda j: list(b.logs(j))):
        with pytest.raises(NotFound, match=f"no job '{queued}'"):
            action(queued)
    assert store.job(queued).state is JobState.QUEUED and not store.job(queued).cancel_requested
    asked = httpx.get(f"{service.url}/v1/jobs", params={"team": "team-a"},
                      headers={"Authorization": f"Bearer {tokens.b_submit}"})
    assert asked.status_code == 403 and asked.json()["field"] == "team"
    admin = client_for(tokens.admin)  # sees and cancels every team's
    assert {j["id"] for j in admin.jobs()} == {queued, theirs}
    assert admin.cancel(queued)["state"] == "cancelled"


def test_unauthorized_is_what_the_client_raises(shared_client_for):
    client_for = shared_client_for
    with pytest.raises(Unauthorized, match="not valid"):
        client_for("sbx_000000000000_" + "y" * 43).jobs()


def test_tokens_are_stored_hashed(state: Path, store: Store, tokens: Tokens, client_for,
                                  tmp_path: Path):
    client_for(tokens.a_submit).submit(job_file(tmp_path), cwd=tmp_path)  # writes too
    files = [p for p in state.iterdir() if p.name.startswith("slicebox.db")]
    assert any(p.name == "slicebox.db" for p in files)
    for token in (tokens.a_read, tokens.a_submit, tokens.b_submit, tokens.admin):
        # sbx_<id>_<secret>: the secret itself may hold "_", so split off the first two.
        secret = token.split("_", 2)[2].encode()
        assert len(secret) >= 40
        for path in files:  # the database, its WAL and shared memory
            assert secret not in path.read_bytes(), path.name
