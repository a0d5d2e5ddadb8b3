"""The store protects itself: checks before and after opening, a report, online backups.

A state directory whose database is missing or empty while job logs or exit records are
there has lost its jobs: starting afresh would silently forget them (and their processes
may still run), so that is an error that says what to do. SQLite's ``quick_check`` runs
when a store opens; ``slicebox store check`` runs the full ``integrity_check``.

A store on PostgreSQL is the server's to protect (its WAL, its checksums, ``pg_dump``): the
check there reports whether the schema is the one this Slicebox expects, and a backup is
refused with the command that takes one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from slicebox.store.engine import DB_NAME, check_url, make_engine, redacted
from slicebox.store.transitions import StoreCorrupt, StoreError

CHECK_HINT = "run `slicebox store check` for details"
_JOB_TRACES = ("logs", "exit")  # what the local backend leaves behind for every job


def job_traces(state_dir: Path) -> list[Path]:
    """Files that only exist because jobs were run from this state directory."""
    found: list[Path] = []
    for name in _JOB_TRACES:
        folder = state_dir / name
        if folder.is_dir():
            found.extend(p for p in folder.iterdir() if p.is_file())
            if found:
                break
    return found


def refuse_lost_database(state_dir: Path) -> None:
    """``StoreCorrupt`` when the database is missing or empty but jobs have run here."""
    db = state_dir / DB_NAME
    try:
        size = db.stat().st_size
    except FileNotFoundError:
        size = None
    except OSError as exc:
        raise StoreCorrupt(f"{db}: cannot be read ({exc.strerror}); {CHECK_HINT}") from None
    if size:
        return
    traces = job_traces(state_dir)
    if traces:
        what = "missing" if size is None else "empty (0 bytes)"
        raise StoreCorrupt(
            f"{db} is {what}, but jobs have run from {state_dir} (e.g. {traces[0].name} in "
            f"{traces[0].parent.name}/): refusing to start from an empty store; {CHECK_HINT}, "
            f"then restore a backup or move {state_dir} aside")


def quick_check(connection: sqlite3.Connection, where: str) -> None:
    """SQLite's ``quick_check`` (seconds for gigabytes): ``StoreCorrupt`` if it fails."""
    try:
        rows = connection.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(f"{where}: {exc}; {CHECK_HINT}") from None
    problems = _problems(rows)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StoreCorrupt(f"{where}: integrity check failed: {problems[0]}{more}; "
                           f"{CHECK_HINT}")


def _problems(rows: list[tuple[object, ...]]) -> list[str]:
    """SQLite's check output as one problem a line ("ok" and headers dropped)."""
    lines = [line.strip() for r in rows if r for line in str(r[0]).splitlines()]
    return [line for line in lines if line and line != "ok" and not line.startswith("***")]


@dataclass
class CheckReport:
    """What ``slicebox store check`` found. ``ok`` is False when anything is wrong."""

    database: Path | str  # the SQLite file, or the server's URL without its password
    problems: list[str] = field(default_factory=list)
    jobs_by_state: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def found(self) -> bool:
        """There is a store (a non-empty file, or a server database with the tables)."""
        return self.size_bytes > 0


def sqlite_file(url: str) -> Path | None:
    """The file of an ``sqlite:///PATH`` URL; None for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).expanduser().resolve()


def check_state_dir(state_dir: Path, url: str | None = None) -> CheckReport:
    """Every check, without changing anything (the database is opened read-only).
    ``url``: the store's database when it is not the state directory's SQLite file."""
    if url is not None:
        url = check_url(url)
        if sqlite_file(url) is None:
            return check_server(url)
    db = sqlite_file(url) if url is not None else state_dir / DB_NAME
    assert db is not None
    report = CheckReport(db)
    if not db.exists() or db.stat().st_size == 0:
        traces = job_traces(state_dir)
        what = "missing" if not db.exists() else "empty (0 bytes)"
        if traces:
            report.problems.append(
                f"{db} is {what} while {len(traces)}+ job files exist under {state_dir}: the "
                "job records are lost; restore a backup, or move the state directory aside "
                "to start afresh")
        return report
    report.size_bytes = db.stat().st_size
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        report.problems.append(f"{db}: cannot be opened: {exc}")
        return report
    try:
        rows = connection.execute("PRAGMA integrity_check").fetchall()
        report.problems.extend(f"{db}: {p}" for p in _problems(rows))
        if not report.problems:
            counts = connection.execute("SELECT state, count(*) FROM jobs GROUP BY state")
            report.jobs_by_state = {str(state): int(n) for state, n in counts}
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"{db}: {exc}")
    finally:
        connection.close()
    return report


def check_server(url: str) -> CheckReport:
    """A store on a database server: reachable, at this Slicebox's schema revision and
    exactly its tables; jobs counted. Read-only."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from slicebox.store import migrations
    from slicebox.store.schema import Base, JobRow

    report = CheckReport(redacted(url))
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            revision = migrations.current_revision(conn)
            if revision is None:
                return report  # nothing here yet: the first `Store.open` creates it
            report.size_bytes = int(conn.execute(
                select(func.pg_database_size(func.current_database()))).scalar() or 0)
            if revision != migrations.head():
                report.problems.append(
                    f"{report.database}: schema revision {revision}, this Slicebox expects "
                    f"{migrations.head()} (opening the store upgrades an older one)")
            else:
                context = MigrationContext.configure(conn, opts={"compare_type": True})
                report.problems.extend(f"{report.database}: schema differs: {diff}"
                                       for diff in compare_metadata(context, Base.metadata))
            if not report.problems:
                counts = conn.execute(select(JobRow.state, func.count()).group_by(JobRow.state))
                report.jobs_by_state = {str(state): int(n) for state, n in counts}
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        report.problems.append(f"{report.database}: {str(cause).splitlines()[0]}")
    finally:
        engine.dispose()
    return report


def backup(state_dir: Path, target: Path, url: str | None = None) -> int:
    """A consistent copy of the live database at ``target`` (SQLite's online backup API:
    safe while a controller writes). The number of bytes written. ``url``: the store's
    database when it is not the state directory's SQLite file."""
    if url is not None:
        url = check_url(url)
        db_file = sqlite_file(url)
        if db_file is None:
            raise StoreError(
                f"the store is on a database server ({redacted(url)}): back it up with the "
                "server's own tool, e.g. `pg_dump --format=custom --file=slicebox.dump "
                "DBNAME` (consistent while a controller writes); `slicebox store backup` "
                "copies SQLite stores")
        db = db_file
    else:
        db = state_dir / DB_NAME
        refuse_lost_database(state_dir)
    if not db.exists() or db.stat().st_size == 0:
        raise StoreError(f"{db}: there is no database to back up")
    target = target.expanduser().resolve()
    if target == db.resolve():
        raise StoreError(f"backup target {target} is the database itself; choose another path")
    if not target.parent.is_dir():
        raise StoreError(f"backup target folder {target.parent} does not exist")
    partial = target.with_name(target.name + ".partial")
    try:
        source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        partial.replace(target)  # never a half backup under the name asked for
    except sqlite3.DatabaseError as exc:
        partial.unlink(missing_ok=True)
        raise StoreCorrupt(f"{db}: backup failed: {exc}; {CHECK_HINT}") from None
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise StoreError(f"cannot write the backup to {target}: {exc.strerror}") from None
    return target.stat().st_size
