"""The store protects itself: a lost or damaged database is an error that says what to do,
never a silent fresh start, and backups are consistent copies."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.spec.job import JobSpec
from slicebox.store import Store, StoreCorrupt
from slicebox.store.integrity import backup, check_state_dir


def _state_with_a_job(tmp_path: Path) -> tuple[Path, str]:
    state = tmp_path / "state"
    store = Store.open(state)
    job_id = store.submit(JobSpec.model_validate({"name": "j", "command": ["true"]}))
    store.close()
    (state / "logs").mkdir()
    (state / "logs" / f"{job_id}.log").write_text("ran\n")
    return state, job_id


def test_empty_database_where_jobs_ran_is_refused(tmp_path: Path):
    state, _ = _state_with_a_job(tmp_path)
    (state / "slicebox.db").write_bytes(b"")
    for name in ("slicebox.db-wal", "slicebox.db-shm"):
        (state / name).unlink(missing_ok=True)
    with pytest.raises(StoreCorrupt, match="slicebox store check"):
        Store.open(state)
    assert (state / "slicebox.db").stat().st_size == 0  # nothing was created over it
    result = CliRunner().invoke(app, ["--state", str(state), "up", "--until-idle"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "slicebox store check" in lines[0], result.output
    assert "Traceback" not in result.output
    check = CliRunner().invoke(app, ["--state", str(state), "store", "check"])
    assert check.exit_code == 1 and "lost" in check.output


def test_missing_database_is_refused_but_a_new_state_starts_fresh(tmp_path: Path):
    state, _ = _state_with_a_job(tmp_path)
    for name in ("slicebox.db", "slicebox.db-wal", "slicebox.db-shm"):
        (state / name).unlink(missing_ok=True)
    with pytest.raises(StoreCorrupt, match="missing"):
        Store.open(state)
    fresh = Store.open(tmp_path / "new")  # nothing ever ran there: a fresh start is right
    assert fresh.jobs() == []


def test_garbage_and_damaged_pages_give_one_line_errors(tmp_path: Path):
    state, _ = _state_with_a_job(tmp_path)
    db = state / "slicebox.db"
    db.write_bytes(b"not a database at all" * 300)
    with pytest.raises(StoreCorrupt, match="not a database"):
        Store.open(state)
    result = CliRunner().invoke(app, ["--state", str(state), "ps"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "slicebox store check" in result.output

    state2, _ = _state_with_a_job(tmp_path / "b")
    db2 = state2 / "slicebox.db"
    connection = sqlite3.connect(db2)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    data = bytearray(db2.read_bytes())
    data[-4096:-100] = b"\xab" * (4096 - 100)  # junk over the last page
    db2.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupt, match="integrity check failed"):
        Store.open(state2)
    assert not check_state_dir(state2).ok


def test_backup_is_a_working_copy_taken_while_the_store_is_open(tmp_path: Path):
    state, job_id = _state_with_a_job(tmp_path)
    live = Store.open(state)  # open and in use while the copy is made
    live.note(job_id, "note", "written before the backup")
    target = tmp_path / "copy.db"
    size = backup(state, target)
    assert size == target.stat().st_size > 0
    restored_dir = tmp_path / "restored"
    restored_dir.mkdir()
    target.rename(restored_dir / "slicebox.db")
    restored = Store.open(restored_dir)
    assert [j.id for j in restored.jobs()] == [job_id]
    assert [e.kind for e in restored.events(job_id)][-1] == "note"
    result = CliRunner().invoke(app, ["--state", str(state), "store", "backup",
                                      str(tmp_path / "cli.db")])
    assert result.exit_code == 0, result.output
    report = check_state_dir(state)
    assert report.ok and report.jobs_by_state == {"queued": 1}


def test_unknown_job_is_a_one_line_runtime_failure_not_a_traceback(tmp_path: Path):
    result = CliRunner().invoke(app, ["--state", str(tmp_path / "s"), "logs", "nope"])
    assert result.exit_code == 1  # issue 10: a well-formed request that failed
    assert "no job 'nope'" in result.output and "Traceback" not in result.output
