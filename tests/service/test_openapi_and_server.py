"""The OpenAPI document, and the server's life: pid file, address in use, clean stop."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import httpx
import pytest

from slicebox.pool.model import Pool
from slicebox.service import create_app
from slicebox.service.server import PID_FILE, ServiceError, running, serve, stop_running
from slicebox.store import Store
from tests.service.conftest import Shared


def test_openapi_lists_every_route_with_its_security_and_problems(shared: Shared):
    doc = httpx.get(f"{shared.service.url}/openapi.json").json()
    paths = doc["paths"]
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel",
            "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/logs", "/v1/pool",
            "/v1/profiles", "/v1/health", "/metrics"} <= set(paths)
    submit = paths["/v1/jobs"]["post"]
    body = submit["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/JobSpec"}
    assert "application/yaml" in body
    schemas = doc["components"]["schemas"]
    assert {"JobSpec", "Resources", "Problem", "Job"} <= set(schemas)
    assert set(schemas["JobSpec"]["properties"]) >= {"name", "command", "resources", "team"}
    assert schemas["Problem"]["required"] == ["type", "title", "status", "detail"]
    problem_422 = submit["responses"]["422"]["content"]
    assert problem_422 == {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in paths.items():
        for method, operation in operations.items():
            if path != "/v1/health":
                assert operation.get("security") == [{"HTTPBearer": []}], (method, path)
    # every $ref resolves
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in schemas, ref


def test_the_pid_file_names_the_service_until_it_stops(store: Store, pool: Pool, state: Path):
    service = serve(create_app(store, pool), port=0, state_dir=state)
    try:
        info = running(state)
        assert info is not None
        assert (info.pid, info.url, info.port) == (os.getpid(), service.url, service.port)
        assert info.host == "127.0.0.1"
        assert httpx.get(f"{info.url}/v1/health").status_code == 200
    finally:
        service.stop()
    assert not (state / PID_FILE).exists() and running(state) is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{service.url}/v1/health")
    assert stop_running(state) is None  # nothing to stop


def test_a_stale_pid_file_is_ignored(state: Path):
    (state / PID_FILE).write_text(json.dumps({"pid": os.getpid(), "started_at": 1.0,
                                              "host": "127.0.0.1", "port": 1,
                                              "url": "http://127.0.0.1:1"}))
    assert running(state) is None  # this pid started later than the file says: reused
    (state / PID_FILE).write_text("not json")
    assert running(state) is None


def test_a_port_in_use_is_a_clear_error(store: Store, pool: Pool, state: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServiceError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(create_app(store, pool), port=port, state_dir=state)
    assert not (state / PID_FILE).exists()
    with pytest.raises(ServiceError, match="--host 'no.such.host.invalid'"):
        serve(create_app(store, pool), host="no.such.host.invalid", port=0)


def test_start_serves_the_controllers_current_pool(store: Store, pool: Pool, state: Path,
                                                   tmp_path: Path):
    """Beside a controller whose pool changes, the service follows it (pool given as a
    function): GET /pool and admission see the new pool."""
    from dataclasses import replace

    from slicebox.client import Client, Rejected
    from slicebox.service.server import start
    from tests.service.conftest import job_file

    current = [pool]
    service = start(store, lambda: current[0], state_dir=state, port=0)
    try:
        token = store.create_token("team-a", "submit")[1]
        with Client(service.url, token) as client:
            assert [n["name"] for n in client.pool()["nodes"]] == ["here"]
            big = job_file(tmp_path, "big", "resources: {cpus: 4}\n")
            with pytest.raises(Rejected, match="resources.cpus"):
                client.submit(big, cwd=tmp_path)
            node = pool.nodes[0]
            wider = replace(node, name="wide", cores_by_numa=((0, (0, 1, 2, 3)),))
            current[0] = replace(pool, nodes=(node, wider))
            assert [n["name"] for n in client.pool()["nodes"]] == ["here", "wide"]
            assert client.submit(big, cwd=tmp_path)["state"] == "queued"
        assert running(state) is not None and running(state).url == service.url
    finally:
        service.stop()
