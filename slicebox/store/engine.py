"""Opening the database: SQLite (WAL) in the state directory by default, any URL otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

DEFAULT_STATE_DIR = Path("~/.slicebox")
DB_NAME = "slicebox.db"
_BUSY_TIMEOUT_MS = 30_000


def sqlite_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / DB_NAME}"


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
