"""Opening the database: SQLite (WAL) in the state directory by default, any URL otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from slicebox.errors import InputError

DEFAULT_STATE_DIR = Path("~/.slicebox")
DB_NAME = "slicebox.db"
_BUSY_TIMEOUT_MS = 30_000


def sqlite_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / DB_NAME}"


class StoreUrlError(InputError):
    """The store's database URL names no database Slicebox can keep its jobs in."""


def check_url(url: str, field: str = "store URL") -> str:
    """``url`` when it names an SQLite file or a PostgreSQL database; a plain
    ``postgresql://`` gets the psycopg (3) driver, the one Slicebox installs."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreUrlError(f"{field}: {redacted(url)!r} is not a database URL (expected "
                            "e.g. postgresql+psycopg://user:password@host:5432/slicebox)") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgresql":
        if driver not in ("", "psycopg"):
            raise StoreUrlError(f"{field}: driver {driver!r} is not installed with Slicebox; "
                                "use postgresql+psycopg://...")
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise StoreUrlError(f"{field}: an SQLite store must be a file (sqlite:///PATH); "
                                "an in-memory one would lose every job when it closes")
        return url
    raise StoreUrlError(f"{field}: {backend!r} is not supported; Slicebox keeps its jobs in "
                        "SQLite (the default, in the state directory) or PostgreSQL "
                        "(postgresql+psycopg://...)")


def redacted(url: str) -> str:
    """``url`` for messages: never the password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and real transactions."""
    if not url.startswith("sqlite"):
        # PostgreSQL and friends: their own transactions are what we need already.
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin, so the
        # BEGIN below is the one that runs (the sqlite3 module would defer it otherwise).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL: the CLI reads while the controller writes. NORMAL sync in WAL mode loses no
        # committed transaction when a process dies (kill -9), only on power loss.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front: a read-check-write transaction (submit,
        # transition, the lease) can then never interleave with another writer's.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
