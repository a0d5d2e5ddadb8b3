"""Token expiry: ``slicebox token create --expires-in 30d`` stores when a token stops being
accepted, and the service refuses it from then on (401), as it does a revoked one."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.pool.files import load_pool
from slicebox.service import create_app
from slicebox.service.server import serve
from slicebox.store import Store
from slicebox.store.tokens import TokenInputError

from .conftest import TWO_CORES

runner = CliRunner()


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_token_is_accepted_until_it_expires_and_then_refused(tmp_path: Path) -> None:
    clock = Clock()
    store = Store.open(tmp_path / "state", clock=clock)
    (tmp_path / "pool.yaml").write_text(TWO_CORES)
    service = serve(create_app(store, load_pool(tmp_path / "pool.yaml")), port=0)
    try:
        record, token = store.create_token("vision", "read", expires_in=3600)
        forever = store.create_token("vision", "read")[1]
        assert record.expires_at == 1000.0 + 3600

        def status(secret: str) -> httpx.Response:
            return httpx.get(f"{service.url}/v1/jobs", timeout=10,
                             headers={"Authorization": f"Bearer {secret}"})

        clock.now = 1000.0 + 3599
        assert status(token).status_code == 200
        clock.now = 1000.0 + 3600
        refused = status(token)
        assert refused.status_code == 401 and "expired" in refused.json()["detail"]
        assert status(forever).status_code == 200  # no expiry: until revoked
        # An expired token is listed only with --all, as a revoked one.
        assert [t.id for t in store.tokens()] != [] and record.id not in \
            [t.id for t in store.tokens()]
        assert record.id in [t.id for t in store.tokens(include_revoked=True)]
    finally:
        service.stop()
        store.close()


def test_a_lifetime_must_be_positive_and_bounded(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state")
    try:
        for bad in (0, -5, 20 * 366 * 86400.0):
            with pytest.raises(TokenInputError, match="expires_in"):
                store.create_token("vision", "read", expires_in=bad)
        assert store.tokens(include_revoked=True) == []
    finally:
        store.close()


def test_token_create_expires_in(tmp_path: Path) -> None:
    before = time.time()
    made = runner.invoke(app, ["token", "create", "--team", "vision", "--expires-in", "30d",
                               "--json", "--state", str(tmp_path)])
    assert made.exit_code == 0, made.output
    expires = json.loads(made.stdout)["expires_at"]
    assert before + 30 * 86400 <= expires <= time.time() + 30 * 86400
    listed = runner.invoke(app, ["token", "list", "--json", "--state", str(tmp_path)])
    assert json.loads(listed.stdout)[0]["expires_at"] == expires
    assert "expires" in runner.invoke(app, ["token", "list", "--state",
                                            str(tmp_path)]).stdout
    for bad in ("0d", "soon", "30y", "99999w", "-1h"):
        refused = runner.invoke(app, ["token", "create", "--team", "vision", "--expires-in",
                                      bad, "--state", str(tmp_path)])
        assert refused.exit_code == 2 and "--expires-in" in refused.stderr, (bad,
                                                                             refused.output)
