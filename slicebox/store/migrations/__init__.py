"""The store's schema history, kept by Alembic for SQLite and PostgreSQL alike.

``Store.open`` calls :func:`bring_up_to_date`, which works inside one transaction holding
the store's write lock (SQLite's ``BEGIN IMMEDIATE``; a transaction-scoped advisory lock on
PostgreSQL), so two processes opening one store at once never migrate it twice:

* a new database gets every table from ``schema.py`` and is stamped at the newest revision
  (what Alembic recommends for a fresh database; it is also the fastest);
* a database made before Alembic (a ``jobs`` table, no ``alembic_version``) is stamped at
  the baseline revision, the schema every such store has, and then upgraded;
* an older revision is upgraded; the newest one costs one query;
* a revision this code does not know (a newer Slicebox wrote it) is refused.

A change to ``schema.py`` needs a revision in ``versions/``: ``tests/store`` compares the
newest revision with ``schema.py`` and fails on any difference. To write one::

    export SLICEBOX_STORE_URL=sqlite:////tmp/sbx-migrate.db
    alembic -c slicebox/store/migrations/alembic.ini upgrade head
    alembic -c slicebox/store/migrations/alembic.ini revision --autogenerate -m "what changed"

then read what Alembic wrote (types, defaults for existing rows, batch mode for SQLite).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from slicebox.store.schema import Base
from slicebox.store.transitions import StoreCorrupt, StoreError

LOCATION = Path(__file__).resolve().parent
BASELINE = "0001"  # the schema of every store made before Alembic (commit 2fe4c7f)
# Any fixed number: PostgreSQL's advisory locks are keyed by a 64-bit integer.
_PG_LOCK_KEY = 0x51CEB0C5


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration without an ini file; ``connection`` is used as it is."""
    cfg = Config()
    cfg.set_main_option("script_location", str(LOCATION))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def scripts() -> ScriptDirectory:
    """The revisions (read once per process: every ``Store.open`` needs the head)."""
    return ScriptDirectory.from_config(config())


def head() -> str:
    newest = scripts().get_current_head()
    assert newest is not None, "the migrations have no revision"
    return newest


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def bring_up_to_date(engine: Engine) -> None:
    """Create, stamp or upgrade the schema, in one write transaction."""
    with schema_transaction(engine) as connection:
        _bring_up_to_date(connection)


@contextmanager
def schema_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction for changing the schema.

    SQLite alters most things by copying a table (Alembic's batch mode): drop the old one,
    rename the copy. With foreign keys on, dropping ``jobs`` would delete its rows first,
    which events and compositions still refer to. So, as SQLite's documentation says to,
    keys are off while the schema changes (that pragma only works outside a transaction)
    and checked before the commit; they are on again before the connection is reused."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            _sqlite_driver(connection).execute("PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                yield connection
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise StoreCorrupt(f"schema upgrade left {len(broken)} rows whose "
                                           f"job is missing (first: {tuple(broken[0])}); "
                                           "nothing was changed")
        finally:
            if sqlite and not connection.invalidated:
                _sqlite_driver(connection).execute("PRAGMA foreign_keys = ON")


def _sqlite_driver(connection: Connection) -> sqlite3.Connection:
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


def _bring_up_to_date(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    context = MigrationContext.configure(connection)
    current = context.get_current_revision()
    newest = head()
    if current == newest:
        return
    if current is None:
        if not inspect(connection).has_table("jobs"):  # a new store
            Base.metadata.create_all(connection)
            context.stamp(scripts(), newest)
            return
        context.stamp(scripts(), BASELINE)  # made before Alembic kept the schema
    elif _unknown(current):
        raise StoreError(
            f"the store's schema is at revision {current}, which this version of Slicebox "
            f"does not know (its newest is {newest}): a newer Slicebox has upgraded this "
            "store; run that version, or restore a backup taken before the upgrade")
    command.upgrade(config(connection), "head")


def _unknown(revision: str) -> bool:
    try:
        return scripts().get_revision(revision) is None
    except CommandError:  # an id that matches no revision, or several
        return True
