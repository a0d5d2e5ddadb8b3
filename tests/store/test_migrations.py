"""Alembic keeps the store's schema: stores made before Alembic keep every job, the newest
revision is exactly ``schema.py``, and a store from a newer Slicebox is refused.

Each test runs on SQLite and on PostgreSQL (``store_url`` in ``conftest.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, Text, inspect, select, text

from slicebox.pool.composition import Composition, Staging
from slicebox.pool.slices import Slice, SliceType
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import Store, StoreError, migrations
from slicebox.store.codec import composition_to_json
from slicebox.store.engine import make_engine, sqlite_url
from slicebox.store.schema import Base
from tests.store import baseline_schema

BASELINE_TABLES = ("jobs", "job_events", "compositions", "datasets", "progress", "kv")


def database_url(tmp_path: Path, store_url: str | None) -> str:
    if store_url is not None:
        return store_url
    (tmp_path / "state").mkdir(exist_ok=True)
    return sqlite_url(tmp_path / "state")


def open_store(tmp_path: Path, store_url: str | None) -> Store:
    return Store.open(tmp_path / "state", url=store_url)


def comp(job_id: str, cores: tuple[int, ...]) -> Composition:
    slices = (Slice("n0", 0, "H100", SliceType.FRACTION, 0.5, 20.0, "GPU-abc"),)
    staging = Staging("digits", "/slow/digits", "nvme", "/fast/digits", 0.5, False)
    return Composition.on_node(job_id, "n0", slices, cores, 2.0, (0,), "/fast/digits", staging)


def job_row(job_id: str, state: JobState, n: int, **extra: Any) -> dict[str, Any]:
    spec = parse_spec({"name": f"job-{n}", "command": ["python", "train.py", str(n)],
                       "priority": n % 3})
    row: dict[str, Any] = {
        "id": job_id, "name": spec.name, "spec": spec.model_dump(mode="json"),
        "state": state.value, "reason": f"why {state.value}", "priority": spec.priority,
        "workdir": f"/work/{n}", "dataset_size_gib": 0.5 * n, "submitted_at": 1000.0 + n,
        "run_seconds": 0.0, "attempt": 0, "preemptions": 0, "log_offset": 0,
        "cancel_requested": False}
    row.update(extra)
    return row


def old_store_rows() -> dict[str, list[dict[str, Any]]]:
    """A store as Slicebox left it before Alembic: a job in every state, with the history
    each state implies."""
    running = comp("aa000003", (0, 1))
    jobs = [
        job_row("aa000001", JobState.QUEUED, 1),
        job_row("aa000002", JobState.STAGING, 2, attempt=1, started_at=1010.0,
                first_started_at=1010.0, node="n0",
                composition=composition_to_json(comp("aa000002", (4,))), controller_id="c1"),
        job_row("aa000003", JobState.RUNNING, 3, attempt=2, preemptions=1, started_at=1050.0,
                first_started_at=1020.0, run_seconds=12.5, pid=4242, pid_start_time=99.25,
                controller_id="c1", node="n0", composition=composition_to_json(running),
                log_path="/state/logs/aa000003.log", log_offset=8192, cancel_requested=True,
                stop_to_state="cancelled", stop_reason="cancel asked",
                stop_requested_at=1060.0, stop_deadline=1090.0, samples=300_000,
                quality=0.75, samples_per_s=1234.5, reported_at=1059.0,
                mlflow_run_id="run-3"),
        job_row("aa000004", JobState.SUCCEEDED, 4, attempt=1, started_at=1004.0,
                first_started_at=1004.0, finished_at=1104.0, run_seconds=100.0,
                exit_code=0, samples=500, quality=0.9),
        job_row("aa000005", JobState.FAILED, 5, attempt=1, started_at=1005.0,
                first_started_at=1005.0, finished_at=1006.0, run_seconds=1.0, exit_code=3),
        job_row("aa000006", JobState.CANCELLED, 6),
        job_row("aa000007", JobState.PREEMPTED, 7, attempt=1, preemptions=1,
                first_started_at=1007.0, run_seconds=30.0, samples=70),
    ]
    events = []
    for job in jobs:
        events.append({"job_id": job["id"], "time": job["submitted_at"], "from_state": None,
                       "kind": "queued", "reason": "submitted", "details": {}})
        if job["state"] != "queued":
            events.append({"job_id": job["id"], "time": job["submitted_at"] + 1,
                           "from_state": "queued", "kind": job["state"],
                           "reason": job["reason"], "details": {"attempt": job["attempt"],
                                                                "note": "ünïcode ✓"}})
    compositions = [
        {"job_id": "aa000003", "attempt": 1, "node": "n0",
         "composition": composition_to_json(comp("aa000003", (2, 3))), "gpu_share": 0.5,
         "cores": 2, "memory_gib": 2.0, "started_at": 1020.0, "ended_at": 1032.5},
        {"job_id": "aa000003", "attempt": 2, "node": "n0",
         "composition": composition_to_json(running), "gpu_share": 0.5, "cores": 2,
         "memory_gib": 2.0, "started_at": 1050.0, "ended_at": None},
        {"job_id": "aa000004", "attempt": 1, "node": "n0",
         "composition": composition_to_json(comp("aa000004", (5,))), "gpu_share": 0.5,
         "cores": 1, "memory_gib": 2.0, "started_at": 1004.0, "ended_at": 1104.0},
    ]
    progress = [
        {"job_id": "aa000003", "attempt": 2, "time": 1055.0 + i, "samples": 1000 * i,
         "quality": None if i == 0 else 0.25 * i, "samples_per_s": None if i == 0 else 1000.0}
        for i in range(4)]
    datasets = [{"key": "digits", "node": "n0", "volume": "nvme", "path": "/fast/digits",
                 "size_gib": 0.5, "created_at": 1000.0, "last_used": 1050.0}]
    kv = [{"key": "controller", "value": '{"id": "c1", "heartbeat": 1060.0}',
           "updated_at": 1060.0},
          {"key": "pool", "value": "/etc/slicebox/pool.yaml", "updated_at": 1000.0}]
    return {"jobs": jobs, "job_events": events, "compositions": compositions,
            "datasets": datasets, "progress": progress, "kv": kv}


def make_old_store(url: str) -> None:
    """What Slicebox before Alembic did on open (``create_all`` of commit 2fe4c7f's schema),
    then the rows it wrote."""
    engine = make_engine(url)
    try:
        baseline_schema.Base.metadata.create_all(engine)
        with engine.begin() as conn:
            for name, rows in old_store_rows().items():
                table = baseline_schema.Base.metadata.tables[name]
                # Every row names every column: an insert of many rows takes its columns
                # from the first row.
                full = [{c.name: row.get(c.name) for c in table.columns
                         if c.name in row or not c.primary_key} for row in rows]
                conn.execute(table.insert(), full)
    finally:
        engine.dispose()


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the baseline tables, in key order (only the baseline's columns)."""
    old = baseline_schema.Base.metadata
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(
            select(old.tables[name]).order_by(*old.tables[name].primary_key.columns))]
            for name in BASELINE_TABLES}


def schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_a_store_made_before_alembic_keeps_every_job(tmp_path: Path, store_url: str | None):
    url = database_url(tmp_path, store_url)
    make_old_store(url)
    engine = make_engine(url)
    before = dump(engine)
    assert "alembic_version" not in inspect(engine).get_table_names()

    store = open_store(tmp_path, store_url)
    try:
        assert dump(engine) == before  # every row of every table, byte for byte
        with engine.connect() as conn:
            assert migrations.current_revision(conn) == migrations.head()
        assert schema_diff(engine) == []  # upgraded exactly to schema.py

        # ...and the store reads it all back as the jobs they were.
        jobs = {job.id: job for job in store.jobs()}
        assert {job.state for job in jobs.values()} == set(JobState)
        running = jobs["aa000003"]
        assert (running.pid, running.attempt, running.preemptions, running.samples) == (
            4242, 2, 1, 300_000)
        assert running.composition == comp("aa000003", (0, 1))
        assert running.cancel_requested and running.stop is not None
        assert running.stop.to_state is JobState.CANCELLED and running.stop.deadline == 1090.0
        assert running.spec.command == ("python", "train.py", "3")
        assert (jobs["aa000004"].exit_code, jobs["aa000005"].exit_code) == (0, 3)
        events = store.events("aa000003")
        assert [(e.from_state, e.kind) for e in events] == [(None, "queued"),
                                                             ("queued", "running")]
        assert events[1].details == {"attempt": 2, "note": "ünïcode ✓"}
        assert [(c.attempt, c.ended_at) for c in store.composition_history("aa000003")] == [
            (1, 1032.5), (2, None)]
        assert [p.samples for p in store.progress("aa000003")] == [0, 1000, 2000, 3000]
        assert [d.path for d in store.datasets()] == ["/fast/digits"]
        lease = store.lease()
        assert lease is not None and (lease.controller_id, lease.heartbeat) == ("c1", 1060.0)
        assert store.value("pool") == "/etc/slicebox/pool.yaml"
        # What the new revisions added starts out empty.
        assert store.checkpoints() == []

        # The migrated store works: an old running job ends, an old queued one starts.
        done = store.transition("aa000003", JobState.CANCELLED, "stopped")
        assert done.finished_at is not None and done.stop is None
        store.start("aa000001", JobState.RUNNING, comp("aa000001", (6,)), "placed")
        assert store.job("aa000001").attempt == 1
    finally:
        store.close()
        engine.dispose()

    again = open_store(tmp_path, store_url)  # a second open changes nothing further
    try:
        assert len(again.jobs()) == 7 and len(again.events("aa000001")) == 2
    finally:
        again.close()


def test_counters_past_two_to_the_31_fit_after_an_upgrade(tmp_path: Path,
                                                         store_url: str | None):
    """Sample counts and log offsets pass 2**31 on long runs: 64-bit on both databases
    (PostgreSQL's INTEGER is 32-bit; the upgrade widens the baseline's columns)."""
    make_old_store(database_url(tmp_path, store_url))
    store = open_store(tmp_path, store_url)
    try:
        big = 2**62
        store.record_progress("aa000003", 2000.0, samples=big, log_offset=big + 1)
        job = store.job("aa000003")
        assert (job.samples, job.log_offset) == (big, big + 1)
        assert store.progress("aa000003")[-1].samples == big
    finally:
        store.close()


def test_the_newest_revision_is_exactly_schema_py(tmp_path: Path, store_url: str | None):
    """`alembic check`: a change to schema.py without a revision fails here. The revisions
    run from an empty database, down one step and up again (a broken downgrade fails too),
    and must build what a new store gets from schema.py."""
    url = database_url(tmp_path, store_url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrations.config(conn), "head")
        assert schema_diff(engine) == []
        with engine.begin() as conn:
            command.downgrade(migrations.config(conn), "-1")
            assert migrations.current_revision(conn) != migrations.head()
        with engine.begin() as conn:  # every downgrade, the baseline's included
            command.downgrade(migrations.config(conn), "base")
        empty = MetaData()
        empty.reflect(engine)
        assert set(empty.tables) <= {"alembic_version"}
        with engine.begin() as conn:
            command.upgrade(migrations.config(conn), "head")
            assert migrations.current_revision(conn) == migrations.head()
        assert schema_diff(engine) == []
        reflected = MetaData()
        reflected.reflect(engine)
        assert set(reflected.tables) == set(Base.metadata.tables) | {"alembic_version"}
    finally:
        engine.dispose()


def test_a_new_store_is_stamped_at_the_newest_revision(tmp_path: Path, store_url: str | None):
    store = open_store(tmp_path, store_url)
    store.close()
    engine = make_engine(database_url(tmp_path, store_url))
    try:
        with engine.connect() as conn:
            assert migrations.current_revision(conn) == migrations.head()
        assert schema_diff(engine) == []
    finally:
        engine.dispose()


def test_an_older_revision_is_upgraded_on_open(tmp_path: Path, store_url: str | None):
    url = database_url(tmp_path, store_url)
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(migrations.config(conn), migrations.BASELINE)
            conn.execute(baseline_schema.Base.metadata.tables["jobs"].insert(),
                         [job_row("bb000001", JobState.QUEUED, 1)])
        open_store(tmp_path, store_url).close()
        with engine.connect() as conn:
            assert migrations.current_revision(conn) == migrations.head()
        assert schema_diff(engine) == []
    finally:
        engine.dispose()
    store = open_store(tmp_path, store_url)
    try:
        assert [job.id for job in store.jobs()] == ["bb000001"]
    finally:
        store.close()


def test_a_store_from_a_newer_slicebox_is_refused(tmp_path: Path, store_url: str | None):
    open_store(tmp_path, store_url).close()
    engine = make_engine(database_url(tmp_path, store_url))
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="revision 9999_future, which this version of "
                                         "Slicebox does not know"):
        open_store(tmp_path, store_url)


def test_opening_a_current_store_runs_no_migration(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    """The suite and the CLI open stores all the time: a store at the newest revision costs
    one query, not a migration run (Alembic's no-op upgrade reloads every script: ~7 ms
    against ~3 ms for the whole open; ``benchmarks/store_open.py``)."""
    Store.open(tmp_path / "state").close()

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a migration ran on a current store")

    monkeypatch.setattr(command, "upgrade", refuse)
    Store.open(tmp_path / "state").close()


def test_a_revision_may_copy_the_jobs_table_on_sqlite(tmp_path: Path):
    """A future revision that SQLite can only apply by copying ``jobs`` (batch mode) keeps
    its events and compositions, whose foreign keys point at the table being replaced."""
    from alembic.operations import Operations

    make_old_store(database_url(tmp_path, None))
    open_store(tmp_path, None).close()
    engine = make_engine(database_url(tmp_path, None))
    try:
        before = dump(engine)
        with migrations.schema_transaction(engine) as conn:
            ops = Operations(MigrationContext.configure(conn, opts={"render_as_batch": True}))
            with ops.batch_alter_table("jobs", recreate="always") as batch:
                batch.alter_column("reason", existing_type=Text(), nullable=True)
        assert dump(engine) == before
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            assert inspect(conn).get_columns("jobs")[4]["nullable"] is True
    finally:
        engine.dispose()
    store = open_store(tmp_path, None)  # keys are enforced again afterwards
    try:
        with store._engine.connect() as conn:  # noqa: SLF001 - the pragma of a pooled connection
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.close()
