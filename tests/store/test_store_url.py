"""A store on a database server: URLs checked, the check and the backup commands say what
they can do there, and server errors are one line that never shows the password."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from slicebox.errors import InputError
from slicebox.spec import parse_spec
from slicebox.store import Store, StoreCorrupt, StoreError, StoreUnavailable
from slicebox.store.integrity import backup, check_state_dir
from tests.store.postgres_server import PostgresServer


@pytest.mark.parametrize(("url", "says"), [
    ("mysql://u@h/db", "'mysql' is not supported"),
    ("sqlite://", "must be a file"),
    ("postgresql+psycopg2://u@h/db", "driver 'psycopg2' is not installed"),
    ("not a url", "is not a database URL"),
])
def test_a_url_slicebox_cannot_keep_jobs_in_is_bad_input(tmp_path: Path, url: str, says: str):
    with pytest.raises(InputError, match=says):
        Store.open(tmp_path / "state", url=url)


def test_an_sqlite_url_elsewhere_is_a_store_too(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    store = Store.open(tmp_path / "state", url=url)
    job_id = store.submit(parse_spec({"name": "a", "command": ["true"]}))
    store.close()
    assert not (tmp_path / "state" / "slicebox.db").exists()
    report = check_state_dir(tmp_path / "state", url)
    assert report.ok and report.found and report.jobs_by_state == {"queued": 1}
    assert backup(tmp_path / "state", tmp_path / "copy.db", url) > 0
    assert [j.id for j in Store.open(f"sqlite:///{tmp_path / 'copy.db'}").jobs()] == [job_id]


def test_a_server_that_is_down_is_one_line_without_the_password(tmp_path: Path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://slicebox:s3cret@127.0.0.1:{port}/slicebox?connect_timeout=2"
    with pytest.raises(StoreUnavailable) as caught:
        Store.open(tmp_path / "state", url=url)
    message = str(caught.value)
    assert "\n" not in message and "s3cret" not in message and str(port) in message
    report = check_state_dir(tmp_path / "state", url)
    assert not report.ok and "s3cret" not in " ".join(report.problems)


def test_check_on_postgresql_counts_jobs_and_finds_a_schema_change(postgres_url: str,
                                                                  tmp_path: Path):
    state = tmp_path / "state"
    empty = check_state_dir(state, postgres_url)
    assert empty.ok and not empty.found  # nothing there before the first open
    store = Store.open(state, url=postgres_url)
    store.submit(parse_spec({"name": "a", "command": ["true"]}))
    report = check_state_dir(state, postgres_url)
    assert report.ok and report.found and report.jobs_by_state == {"queued": 1}
    with store._engine.begin() as conn:  # noqa: SLF001 - someone changes the schema by hand
        conn.execute(text("ALTER TABLE jobs DROP COLUMN mlflow_run_id"))
    store.close()
    broken = check_state_dir(state, postgres_url)
    assert not broken.ok and "mlflow_run_id" in broken.problems[0]


def test_backup_of_a_postgresql_store_points_to_pg_dump(postgres_url: str, tmp_path: Path):
    Store.open(tmp_path / "state", url=postgres_url).close()
    with pytest.raises(StoreError, match="pg_dump") as caught:
        backup(tmp_path / "state", tmp_path / "copy.db", postgres_url)
    assert not isinstance(caught.value, StoreCorrupt)
    assert not (tmp_path / "copy.db").exists()


def test_a_value_too_long_for_postgresql_is_not_called_corruption(postgres_url: str,
                                                                   tmp_path: Path):
    store = Store.open(tmp_path / "state", url=postgres_url)
    try:
        with pytest.raises(StoreError, match="does not fit its column") as caught:
            store.put_value("k" * 100, "v")  # kv.key is VARCHAR(64)
        assert not isinstance(caught.value, StoreCorrupt)
    finally:
        store.close()


def test_the_test_server_runs_unprivileged(postgres: PostgresServer):
    import os

    assert postgres.process.poll() is None
    owner = os.stat(f"/proc/{postgres.process.pid}").st_uid
    assert owner != 0  # PostgreSQL refuses root; as root the fixture runs it as nobody


def test_a_database_user_that_may_not_create_tables_is_told_so(postgres: PostgresServer,
                                                                postgres_url: str,
                                                                tmp_path: Path):
    """PostgreSQL 15 lets only a schema's owner create tables in it: a first `slicebox up`
    as another user is a setup problem to explain, not a damaged store."""
    import psycopg

    schema = postgres_url.rsplit("%3D", 1)[1]
    with psycopg.connect(postgres.dsn("slicebox_tests"), autocommit=True) as conn:
        conn.execute("CREATE ROLE visitor LOGIN")
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO visitor')
    url = postgres_url.replace("slicebox@", "visitor@")
    with pytest.raises(StoreUnavailable, match="permission denied.*must own the database"):
        Store.open(tmp_path / "state", url=url)


def test_the_cli_keeps_jobs_where_store_points(postgres_url: str, tmp_path: Path):
    """`--store URL` (or SLICEBOX_STORE_URL) on every command: the jobs go to PostgreSQL, the
    state directory keeps no database, and the store commands say what they do there."""
    import json

    from typer.testing import CliRunner

    from slicebox.cli import app

    job = tmp_path / "job.yaml"
    job.write_text("name: hello\ncommand: [/bin/true]\n")
    state = ["--state", str(tmp_path / "state")]
    runner = CliRunner()
    submitted = runner.invoke(app, [*state, "--store", postgres_url, "submit", str(job)])
    assert submitted.exit_code == 0, submitted.output
    check = runner.invoke(app, [*state, "store", "check", "--json"],
                          env={"SLICEBOX_STORE_URL": postgres_url})
    assert check.exit_code == 0, check.output
    assert json.loads(check.stdout)["jobs_by_state"] == {"queued": 1}
    assert not (tmp_path / "state" / "slicebox.db").exists()
    refused = runner.invoke(app, [*state, "--store", postgres_url, "store", "backup",
                                  str(tmp_path / "copy.db")])
    assert refused.exit_code == 1 and "pg_dump" in refused.output
    bad = runner.invoke(app, [*state, "--store", "mysql://x/y", "ps"])
    assert bad.exit_code == 2 and "store URL:" in bad.output
