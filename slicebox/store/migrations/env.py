"""Alembic's entry point for the store's migrations.

``Store.open`` passes its own connection (``config.attributes["connection"]``), already
inside the transaction that holds the store's write lock, so a migration and the check that
asked for it are one unit. The ``alembic`` command line (developers, or a PostgreSQL
administrator who wants the SQL first with ``--sql``) connects to ``$SLICEBOX_STORE_URL``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from slicebox.store.engine import make_engine
from slicebox.store.migrations import schema_transaction
from slicebox.store.schema import Base

config = context.config


def _configure(**how: object) -> None:
    # Batch mode: SQLite cannot ALTER most things, so Alembic copies the table there (and
    # runs plain ALTERs on PostgreSQL). compare_type: a column whose type changes is a diff.
    context.configure(target_metadata=Base.metadata, render_as_batch=True, compare_type=True,
                      **how)  # type: ignore[arg-type]


def _url() -> str:
    url = os.environ.get("SLICEBOX_STORE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set SLICEBOX_STORE_URL to the store's database URL, e.g. "
                         "sqlite:////home/me/.slicebox/slicebox.db")
    return url


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if given is not None:
    _run(given)
elif context.is_offline_mode():
    _configure(url=_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = make_engine(_url())
    try:
        with schema_transaction(engine) as connection:  # as Store.open does it
            _run(connection)
    finally:
        engine.dispose()
