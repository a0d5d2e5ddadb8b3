"""Schemathesis against the published OpenAPI document: for requests generated from it,
on every route, the service never answers with a server error (5xx). In-process (ASGI),
with an admin token, so every route is reached past its authentication; the routes of one
job are tried with random ids and with the id of a job that exists.

Schemathesis's own pytest plugin does not run on pytest 9.2 (it reads a private
attribute pytest removed), so each operation's Hypothesis strategy is driven here with
``@given``. A small budget by default; ``SLICEBOX_HYPOTHESIS=slow`` (CI's slow step) runs
a large one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis.checks import not_a_server_error

from slicebox.pool.files import load_pool
from slicebox.service import create_app
from slicebox.spec import parse_spec
from slicebox.store import Store
from tests.service.conftest import TWO_CORES

EXAMPLES = 300 if os.environ.get("SLICEBOX_HYPOTHESIS") == "slow" else 10


def no_server_error(strategy: SearchStrategy[Any], auth: dict[str, str]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case: Any) -> None:
        if case.path.endswith("/logs") and isinstance(case.query, dict):
            case.query["follow"] = False  # a followed live log streams until the job ends
        response = case.call(headers=auth)
        case.validate_response(response, checks=[not_a_server_error], headers=auth)

    check()


@pytest.mark.fuzz
def test_no_route_answers_with_a_server_error(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(TWO_CORES)
    store = Store.open(tmp_path / "state")
    try:
        auth = {"Authorization": f"Bearer {store.create_token('ops', 'admin')[1]}"}
        job_id = store.submit(parse_spec({"name": "there", "command": ["python", "-V"]}))
        app = create_app(store, load_pool(tmp_path / "pool.yaml"), poll_seconds=0.01)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 20  # every route, /v1/health, /v1/history, /metrics,
        # /v1/simulations (list, submit, one, traces, choices, plots) and /v1/services
        # (list, one, cancel) included
        for operation in operations:
            no_server_error(operation.as_strategy(), auth)
            if "{job_id}" in operation.path:
                no_server_error(operation.as_strategy(path_parameters={"job_id": job_id}),
                                auth)
        app.state.simulations.close()  # any simulation a valid request queued
    finally:
        store.close()
