"""The store tests run twice: on an SQLite file (the default store) and on a real
PostgreSQL server started for the session (``postgres_server.py``).

Without PostgreSQL's programs the PostgreSQL half is skipped with the reason, except where
``CI`` or ``SLICEBOX_REQUIRE_POSTGRES`` is set: there it fails, so CI cannot pass while
silently testing only SQLite.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from slicebox.store import Store
from tests.store.fakes import Clock
from tests.store.postgres_server import NoPostgres, PostgresServer

_databases = itertools.count()  # one schema per test


def postgres_required() -> bool:
    return any(os.environ.get(name, "") not in ("", "0", "false")
               for name in ("CI", "SLICEBOX_REQUIRE_POSTGRES"))


TEST_DATABASE = "slicebox_tests"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.start()
    except NoPostgres as exc:
        if postgres_required():
            pytest.fail(f"PostgreSQL is required here (CI / SLICEBOX_REQUIRE_POSTGRES): {exc}")
        pytest.skip(f"no PostgreSQL server to test against: {exc}")
    try:
        server.create_database(TEST_DATABASE)
        yield server
    finally:
        server.stop()


@pytest.fixture()
def postgres_url(postgres: PostgresServer) -> str:
    """A store of its own on the session's server: a new, empty schema, which is all the
    store sees (its search path)."""
    return postgres.create_schema(TEST_DATABASE, f"test_{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """The database of the store under test: None for the SQLite file in the state
    directory, or a URL of a new PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def store(tmp_path: Path, clock: Clock, store_url: str | None) -> Iterator[Store]:
    opened = Store.open(tmp_path / "state", clock=clock, url=store_url)
    try:
        yield opened
    finally:
        opened.close()
