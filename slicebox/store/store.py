"""The durable state of Slicebox: jobs, their events, compositions, datasets, progress.

Every method is one transaction. A state change and the event that explains it are
written together or not at all, so the event log is always the job's true history.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import DatabaseError, DataError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from slicebox.pool.composition import Composition
from slicebox.snapshot import JobState
from slicebox.spec.job import JobSpec
from slicebox.store import history, integrity, leases, migrations, tokens, transitions
from slicebox.store import services as service_rows
from slicebox.store.codec import composition_from_json, composition_to_json
from slicebox.store.engine import (
    DEFAULT_STATE_DIR,
    check_url,
    make_engine,
    redacted,
    sqlite_url,
)
from slicebox.store.records import (
    CheckpointRecord,
    CheckpointSummary,
    CompositionRecord,
    DatasetRecord,
    EventRecord,
    JobRecord,
    Lease,
    ProgressSample,
    StopRequest,
    TokenRecord,
    UtilisationPoint,
)
from slicebox.store.schema import (
    CheckpointRow,
    CompositionRow,
    DatasetRow,
    EventRow,
    JobRow,
    KeyValueRow,
    ProgressRow,
)
from slicebox.store.transitions import (
    IllegalTransition,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
    UnknownJob,
)

ACTIVE = (JobState.STAGING, JobState.RUNNING)
_INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for "permission denied"
WAITING = (JobState.QUEUED, JobState.PREEMPTED)


class Store:
    """Open with ``Store.open(state)``: a directory (SQLite inside) or a database URL."""

    def __init__(self, url: str, state_dir: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.state_dir = state_dir
        self._clock = clock
        self._where = (str(state_dir / "slicebox.db") if url.startswith("sqlite") and state_dir
                       else redacted(url))
        self._unavailable_hint = ("is the disk full, or another process holding it?"
                                  if url.startswith("sqlite")
                                  else "is the database server up and reachable?")
        self._engine = make_engine(url)
        try:
            if url.startswith("sqlite"):
                raw = self._engine.raw_connection()
                try:
                    connection = raw.driver_connection
                    assert isinstance(connection, sqlite3.Connection)
                    integrity.quick_check(connection, self._where)
                finally:
                    raw.close()
            migrations.bring_up_to_date(self._engine)
        except OperationalError as exc:
            self._engine.dispose()
            raise StoreUnavailable(f"{self._where}: {_first_line(exc.orig)}") from None
        except DatabaseError as exc:
            self._engine.dispose()
            if getattr(exc.orig, "sqlstate", None) == _INSUFFICIENT_PRIVILEGE:
                # A database user that may not create the tables (PostgreSQL 15 lets only
                # the owner create in `public`): a setup problem, not a damaged store.
                raise StoreUnavailable(f"{self._where}: {_first_line(exc.orig)} (the "
                                       "database user must own the database or schema, or "
                                       "be allowed to create tables in it)") from None
            raise StoreCorrupt(f"{self._where}: {_first_line(exc.orig)}; "
                               f"{integrity.CHECK_HINT}") from None
        except sqlite3.DatabaseError as exc:  # raised in the connect hook, unwrapped
            self._engine.dispose()
            raise StoreCorrupt(f"{self._where}: {_first_line(exc)}; "
                               f"{integrity.CHECK_HINT}") from None
        except StoreError:
            self._engine.dispose()
            raise
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    @classmethod
    def open(cls, state: str | Path | None = None,
             clock: Callable[[], float] = time.time, *, url: str | None = None) -> Store:
        """``state``: a state directory (default ``~/.slicebox``) or a database URL such as
        ``postgresql+psycopg://user@host/slicebox``. ``url``: the database, when it is not
        the SQLite file in the state directory (logs and exit records stay there)."""
        if state is not None and "://" in str(state):
            return cls(check_url(str(state)), None, clock)
        state_dir = Path(state or DEFAULT_STATE_DIR).expanduser().resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        if url:
            return cls(check_url(url), state_dir, clock)
        # Before SQLite creates an empty database over a lost one.
        integrity.refuse_lost_database(state_dir)
        return cls(sqlite_url(state_dir), state_dir, clock)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        # Database failures become one-line store errors; a raw driver traceback would
        # tell the user nothing they can act on.
        try:
            with self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            raise StoreUnavailable(f"{self._where}: {_first_line(exc.orig)} "
                                   f"({self._unavailable_hint})") from exc
        except DataError as exc:  # PostgreSQL checks ranges and lengths; SQLite does not
            raise StoreError(f"{self._where}: a value does not fit its column: "
                             f"{_first_line(exc.orig)}") from exc
        except DatabaseError as exc:
            raise StoreCorrupt(f"{self._where}: {_first_line(exc.orig)}; "
                               f"{integrity.CHECK_HINT}") from exc

    # ---- jobs -------------------------------------------------------------------------

    def submit(self, spec: JobSpec, *, check: Callable[[JobSpec], None] | None = None,
               workdir: str | None = None, dataset_size_gib: float | None = None) -> str:
        """Queue a job and return its id. ``check`` runs first; if it raises, nothing is
        written (the error reaches the caller unchanged)."""
        if check is not None:
            check(spec)
        now = self._clock()
        job_id = secrets.token_hex(4)
        with self._tx() as s:
            s.add(JobRow(id=job_id, name=spec.name, spec=spec.model_dump(mode="json"),
                         state=JobState.QUEUED.value, reason="submitted",
                         priority=spec.priority, workdir=workdir,
                         dataset_size_gib=dataset_size_gib, submitted_at=now,
                         team=spec.team or tokens.DEFAULT_TEAM))
            s.flush()  # the job row first: the event refers to it
            s.add(EventRow(job_id=job_id, time=now, from_state=None, kind=JobState.QUEUED.value,
                           reason="submitted", details={"name": spec.name}))
        return job_id

    def submit_many(self, jobs: Sequence[tuple[JobSpec, str | None, float | None]]
                    ) -> list[str]:
        """Queue several checked jobs (spec, workdir, measured dataset GiB) in one
        transaction: all of them, or (on any database error) none. Their ids, in order."""
        now = self._clock()
        ids = [secrets.token_hex(4) for _ in jobs]
        # The queue is ordered by submission time, then id: a microsecond apart keeps the
        # order the files were given in.
        times = [now + i * 1e-6 for i in range(len(jobs))]
        with self._tx() as s:
            for job_id, when, (spec, workdir, dataset_size_gib) in zip(ids, times, jobs,
                                                                       strict=True):
                s.add(JobRow(id=job_id, name=spec.name, spec=spec.model_dump(mode="json"),
                             state=JobState.QUEUED.value, reason="submitted",
                             priority=spec.priority, workdir=workdir,
                             dataset_size_gib=dataset_size_gib, submitted_at=when,
                             team=spec.team or tokens.DEFAULT_TEAM))
            s.flush()  # the job rows first: the events refer to them
            for job_id, when, (spec, _, _) in zip(ids, times, jobs, strict=True):
                s.add(EventRow(job_id=job_id, time=when, from_state=None,
                               kind=JobState.QUEUED.value, reason="submitted",
                               details={"name": spec.name}))
        return ids

    def job(self, job_id: str) -> JobRecord:
        with self._tx() as s:
            return self._out(s, _row(s, job_id))

    def find(self, ref: str) -> JobRecord:
        """A job by id, unique id prefix, or unique name (what a CLI user types)."""
        with self._tx() as s:
            row = s.get(JobRow, ref)
            if row is None:
                rows = s.scalars(select(JobRow).where(JobRow.id.startswith(ref))).all()
                if not rows:
                    rows = s.scalars(select(JobRow).where(JobRow.name == ref)).all()
                if len(rows) > 1:
                    ids = ", ".join(r.id for r in rows)
                    raise UnknownJob(f"{ref!r} matches several jobs ({ids}); give the id")
                if not rows:
                    raise UnknownJob(f"no job {ref!r}")
                row = rows[0]
            return self._out(s, row)

    def jobs(self, states: Iterable[JobState] | None = None, *,
             team: str | None = None) -> list[JobRecord]:
        """Jobs in submission order, optionally only those in ``states`` (and of ``team``).

        Specs are read and parsed once per job, not once per call: the controller asks
        for every waiting job each round, and thousands of them wait."""
        query = select(*_WITHOUT_SPEC).order_by(JobRow.submitted_at, JobRow.id)
        if states is not None:
            query = query.where(JobRow.state.in_([JobState(s).value for s in states]))
        if team is not None:
            query = query.where(JobRow.team == team)
        with self._tx() as s:
            rows = s.execute(query).all()
            unparsed = [r.id for r in rows if (r.id, r.submitted_at) not in _SPECS]
            raw: dict[str, Any] = {}
            for start in range(0, len(unparsed), 500):  # SQLite caps bound parameters
                chunk = unparsed[start:start + 500]
                for job_id, data in s.execute(select(JobRow.id, JobRow.spec)
                                              .where(JobRow.id.in_(chunk))):
                    raw[job_id] = data
            out = []
            for r in rows:
                spec = _SPECS.get((r.id, r.submitted_at))
                if spec is None:
                    spec, error = _parse_spec(r.id, r.submitted_at, r.name, raw.get(r.id))
                    if error is not None:
                        out.append(self._out(s, _row(s, r.id)))  # fails it, with the reason
                        continue
                # A plain namespace: a result row's attribute lookups cost more than the
                # record they build, thousands of times a round.
                out.append(_record(SimpleNamespace(**r._asdict()), spec))
            return out

    def count_by_state(self) -> dict[JobState, int]:
        """How many jobs are in each state (one cheap query)."""
        query = select(JobRow.state, func.count()).group_by(JobRow.state)
        with self._tx() as s:
            return {JobState(state): int(n) for state, n in s.execute(query)}

    def count_by_team_and_state(self) -> dict[tuple[str, JobState], int]:
        """How many jobs each team has in each state (one cheap query; the metrics)."""
        query = select(JobRow.team, JobRow.state, func.count()).group_by(JobRow.team,
                                                                          JobRow.state)
        with self._tx() as s:
            return {(team, JobState(state)): int(n) for team, state, n in s.execute(query)}

    def last_event_id(self) -> int:
        """The newest event's id. Every change that matters to scheduling (a submit, a
        state change, a cancel, a staged copy, a new wait reason) writes an event, so an
        unchanged id means nothing to decide anew."""
        with self._tx() as s:
            return int(s.execute(select(func.max(EventRow.id))).scalar() or 0)

    def transition(self, job_id: str, to_state: JobState, reason: str, *,
                   expect: JobState | None = None, exit_code: int | None = None,
                   **details: Any) -> JobRecord:
        """Move a job to ``to_state``, recording why; raises ``IllegalTransition`` for a
        move the life cycle does not allow (or when the job is not in ``expect``)."""
        with self._tx() as s:
            row = _row(s, job_id)
            current = JobState(row.state)
            if expect is not None and current != expect:
                raise IllegalTransition(job_id, current, to_state,
                                        f"expected it to be {expect}")
            if current in WAITING and to_state in ACTIVE:
                raise StoreError(f"job {job_id}: use start() to give it a composition")
            if exit_code is not None:
                row.exit_code = exit_code
                details.setdefault("exit_code", exit_code)
            self._move(s, row, to_state, reason, details)
            return self._out(s, row)

    def start(self, job_id: str, to_state: JobState, composition: Composition, reason: str,
              controller_id: str | None = None) -> JobRecord:
        """A waiting job gets ``composition`` and begins an attempt (staging or running).

        Written before any process or copy starts, so a crash right after leaves a job the
        next controller finds without a process, and requeues."""
        if to_state not in ACTIVE:
            raise StoreError(f"start() moves to staging or running, not {to_state}")
        with self._tx() as s:
            row = _row(s, job_id)
            now = self._clock()
            row.attempt += 1
            row.composition = composition_to_json(composition)
            row.node = ",".join(composition.nodes)
            row.controller_id = controller_id
            row.exit_code = None
            row.pid = row.pid_start_time = row.started_at = None
            row.log_offset = 0
            row.reported_at = None
            s.add(CompositionRow(job_id=job_id, attempt=row.attempt, node=row.node,
                                 composition=row.composition, gpu_share=composition.gpu_share,
                                 cores=composition.core_count,
                                 memory_gib=composition.memory_gib, started_at=now))
            self._move(s, row, to_state, reason,
                       {"attempt": row.attempt, "composition": composition.describe()})
            return self._out(s, row)

    def set_composition(self, job_id: str, composition: Composition) -> None:
        """Replace the composition of the current attempt (e.g. once data is staged)."""
        with self._tx() as s:
            row = _row(s, job_id)
            row.composition = composition_to_json(composition)
            row.node = ",".join(composition.nodes)
            current = _open_attempt(s, job_id, row.attempt)
            if current is not None:
                current.composition = row.composition

    def set_process(self, job_id: str, pid: int, start_time: float,
                    log_path: str | None = None, log_offset: int | None = None,
                    reason: str | None = None) -> None:
        with self._tx() as s:
            row = _row(s, job_id)
            row.pid, row.pid_start_time = pid, start_time
            if log_path is not None:
                row.log_path = log_path
            if log_offset is not None:
                row.log_offset = log_offset
            s.add(EventRow(job_id=job_id, time=self._clock(), from_state=row.state,
                           kind="process", reason=reason or f"process {pid} started",
                           details={"pid": pid, "attempt": row.attempt, "log": log_path}))

    def request_stop(self, job_id: str, to_state: JobState, reason: str, *,
                     grace_seconds: float) -> JobRecord:
        """Record that an active job is being stopped, before it is signalled; it ends in
        ``to_state`` once its process is gone (SIGKILL after the grace period)."""
        with self._tx() as s:
            row = _row(s, job_id)
            current = JobState(row.state)
            transitions.check(job_id, current, to_state)
            if current not in ACTIVE:
                raise IllegalTransition(job_id, current, to_state, "only active jobs are stopped")
            now = self._clock()
            row.stop_to_state, row.stop_reason = to_state.value, reason
            row.stop_requested_at, row.stop_deadline = now, now + grace_seconds
            s.add(EventRow(job_id=job_id, time=now, from_state=row.state, kind="stopping",
                           reason=reason, details={"to": to_state.value,
                                                   "grace_seconds": grace_seconds}))
            return self._out(s, row)

    def request_cancel(self, job_id: str, reason: str = "cancelled by user") -> JobRecord:
        """Cancel: a waiting job at once; an active one is flagged for its controller to stop
        (which may be another process: the flag is the message)."""
        with self._tx() as s:
            row = _row(s, job_id)
            current = JobState(row.state)
            if current.terminal:
                raise IllegalTransition(job_id, current, JobState.CANCELLED,
                                        f"it already {current}")
            if current in WAITING:
                self._move(s, row, JobState.CANCELLED, reason, {})
            elif not row.cancel_requested:
                row.cancel_requested = True
                s.add(EventRow(job_id=job_id, time=self._clock(), from_state=row.state,
                               kind="cancel-requested", reason=reason, details={}))
            return self._out(s, row)

    def note(self, job_id: str, kind: str, reason: str, **details: Any) -> None:
        """An event that is not a state change (staged, reused, waiting, adopted...)."""
        with self._tx() as s:
            row = _row(s, job_id)
            s.add(EventRow(job_id=job_id, time=self._clock(), from_state=row.state, kind=kind,
                           reason=reason, details=details))

    def set_reason(self, job_id: str, reason: str, kind: str = "waiting") -> bool:
        """Update why a job is where it is; an event only when the reason changed (a job
        waiting for GPUs is not re-logged every round). True when it changed."""
        with self._tx() as s:
            row = _row(s, job_id)
            if row.reason == reason:
                return False
            row.reason = reason
            s.add(EventRow(job_id=job_id, time=self._clock(), from_state=row.state, kind=kind,
                           reason=reason, details={}))
            return True

    def set_mlflow_run(self, job_id: str, run_id: str) -> None:
        with self._tx() as s:
            _row(s, job_id).mlflow_run_id = run_id

    def events(self, job_id: str | None = None, after_id: int = 0) -> list[EventRecord]:
        query = select(EventRow).where(EventRow.id > after_id).order_by(EventRow.id)
        if job_id is not None:
            query = query.where(EventRow.job_id == job_id)
        with self._tx() as s:
            return [EventRecord(e.id, e.job_id, e.time, e.from_state, e.kind, e.reason,
                                dict(e.details or {})) for e in s.scalars(query)]

    # ---- checkpoints ------------------------------------------------------------------

    def checkpoints(self, job_id: str | None = None) -> list[CheckpointRecord]:
        """Each requeued attempt's checkpoint record, oldest first."""
        query = select(CheckpointRow).order_by(CheckpointRow.id)
        if job_id is not None:
            query = query.where(CheckpointRow.job_id == job_id)
        with self._tx() as s:
            return [_checkpoint_record(c) for c in s.scalars(query)]

    def record_checkpoint(self, job_id: str, record: CheckpointRecord) -> None:
        """The checkpoint record of an attempt that ended without a requeue (it resumed
        from a checkpoint and then finished): its restore time still counts."""
        with self._tx() as s:
            row = _row(s, job_id)
            s.add(_checkpoint_row(record, job_id, row.attempt, self._clock()))

    def checkpoint_summaries(self, job_ids: Iterable[str] | None = None
                             ) -> dict[str, CheckpointSummary]:
        """Per job (only jobs with a requeued attempt): requeues, lost samples in all, and
        the latest checkpoint with its save and restore times."""
        by_job: dict[str, list[CheckpointRecord]] = {}
        wanted = None if job_ids is None else set(job_ids)
        for record in self.checkpoints():
            if wanted is None or record.job_id in wanted:
                by_job.setdefault(record.job_id, []).append(record)
        return {job_id: _summary(job_id, records) for job_id, records in by_job.items()}

    # ---- progress ---------------------------------------------------------------------

    def record_progress(self, job_id: str, when: float, samples: int | None = None,
                        quality: float | None = None, log_offset: int | None = None) -> None:
        """A progress report; throughput comes from the previous report of this attempt.

        A report that repeats the sample count (a job reports its quality after an
        evaluation, and once more as it ends) measures no throughput: it neither gives a
        rate nor moves the point the next rate is measured from, so the job keeps its last
        real rate instead of 0."""
        with self._tx() as s:
            row = _row(s, job_id)
            rate = None
            if (samples is not None and row.samples is not None and row.reported_at
                    is not None and when > row.reported_at and samples > row.samples):
                rate = (samples - row.samples) / (when - row.reported_at)
            s.add(ProgressRow(job_id=job_id, attempt=row.attempt, time=when, samples=samples,
                              quality=quality, samples_per_s=rate))
            if samples is not None and (row.samples is None or row.reported_at is None
                                        or samples != row.samples):
                row.samples, row.reported_at = samples, when
            if quality is not None:
                row.quality = quality
            if rate is not None:
                row.samples_per_s = rate
            if log_offset is not None:
                row.log_offset = log_offset

    def set_log_offset(self, job_id: str, offset: int) -> None:
        with self._tx() as s:
            _row(s, job_id).log_offset = offset

    def progress(self, job_id: str) -> list[ProgressSample]:
        query = select(ProgressRow).where(ProgressRow.job_id == job_id).order_by(ProgressRow.id)
        with self._tx() as s:
            return [ProgressSample(p.job_id, p.attempt, p.time, p.samples, p.quality,
                                   p.samples_per_s) for p in s.scalars(query)]

    # ---- staged datasets --------------------------------------------------------------

    def datasets(self, node: str | None = None) -> list[DatasetRecord]:
        query = select(DatasetRow).order_by(DatasetRow.last_used)
        if node is not None:
            query = query.where(DatasetRow.node == node)
        with self._tx() as s:
            return [DatasetRecord(d.key, d.node, d.volume, d.path, d.size_gib, d.last_used,
                                  d.created_at) for d in s.scalars(query)]

    def put_dataset(self, record: DatasetRecord) -> None:
        with self._tx() as s:
            row = s.get(DatasetRow, (record.key, record.node, record.volume))
            if row is None:
                s.add(DatasetRow(key=record.key, node=record.node, volume=record.volume,
                                 path=record.path, size_gib=record.size_gib,
                                 created_at=record.created_at or record.last_used,
                                 last_used=record.last_used))
            else:
                row.path, row.size_gib, row.last_used = (record.path, record.size_gib,
                                                         record.last_used)

    def touch_dataset(self, key: str, node: str, volume: str, when: float | None = None) -> None:
        with self._tx() as s:
            row = s.get(DatasetRow, (key, node, volume))
            if row is not None:
                row.last_used = when if when is not None else self._clock()

    def drop_dataset(self, key: str, node: str, volume: str) -> None:
        with self._tx() as s:
            s.execute(delete(DatasetRow).where(DatasetRow.key == key, DatasetRow.node == node,
                                               DatasetRow.volume == volume))

    # ---- history ----------------------------------------------------------------------

    def composition_history(self, job_id: str | None = None) -> list[CompositionRecord]:
        query = select(CompositionRow).order_by(CompositionRow.started_at, CompositionRow.id)
        if job_id is not None:
            query = query.where(CompositionRow.job_id == job_id)
        with self._tx() as s:
            return [CompositionRecord(c.job_id, c.attempt, c.node,
                                      composition_from_json(c.composition), c.started_at,
                                      c.ended_at) for c in s.scalars(query)]

    def utilisation(self, now: float | None = None) -> list[UtilisationPoint]:
        """GPUs, cores, memory and jobs held over time (a step function)."""
        return history.utilisation_timeline(self.composition_history(), now)

    def core_conflicts(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """Attempts that held one core at the same time: the proof that none did."""
        return history.core_conflicts(self.composition_history())

    def attained_gpu_seconds(self, now: float,
                             job_ids: Iterable[str] | None = None) -> dict[str, float]:
        """Service each job has had so far (what least-attained-service policies rank by);
        only ``job_ids`` when given (the controller asks for the jobs it schedules, so the
        cost follows them, not the whole history)."""
        columns = (CompositionRow.job_id, CompositionRow.gpu_share, CompositionRow.started_at,
                   CompositionRow.ended_at)
        wanted = None if job_ids is None else list(job_ids)
        queries = [select(*columns)] if wanted is None else [
            select(*columns).where(CompositionRow.job_id.in_(wanted[i:i + 500]))
            for i in range(0, len(wanted), 500)]
        totals: dict[str, float] = {}
        with self._tx() as s:
            for query in queries:
                for job_id, share, started, ended in s.execute(query):
                    end = ended if ended is not None else now
                    totals[job_id] = totals.get(job_id, 0.0) + share * max(end - started, 0.0)
        return totals

    # ---- small settings -----------------------------------------------------------------

    def put_value(self, key: str, value: str) -> None:
        """A shared setting (e.g. the pool file ``up`` runs with, so ``submit`` from another
        process validates against the same pool). The key ``controller`` is the lease's."""
        if key == leases.KEY:
            raise StoreError(f"{key!r} is reserved for the controller lease")
        with self._tx() as s:
            row = s.get(KeyValueRow, key)
            if row is None:
                s.add(KeyValueRow(key=key, value=value, updated_at=self._clock()))
            else:
                row.value, row.updated_at = value, self._clock()

    def value(self, key: str) -> str | None:
        with self._tx() as s:
            row = s.get(KeyValueRow, key)
            return row.value if row is not None else None

    # ---- API tokens -------------------------------------------------------------------

    def create_token(self, team: str, scope: str, expires_in: float | None = None
                     ) -> tuple[TokenRecord, str]:
        """A new API token for ``team`` with ``scope``: its record, and the token itself,
        which is not kept (only its hash is) and so can be shown only now. ``expires_in``:
        seconds it is accepted for (None: until revoked)."""
        with self._tx() as s:
            return tokens.create(s, team, scope, self._clock(), expires_in)

    def tokens(self, include_revoked: bool = False) -> list[TokenRecord]:
        """Live tokens; with ``include_revoked``, revoked and expired ones too."""
        with self._tx() as s:
            return tokens.listed(s, include_revoked, self._clock())

    def revoke_token(self, token_id: str) -> TokenRecord:
        """Revoke by id (``UnknownToken`` if there is none); takes effect on the next
        request."""
        with self._tx() as s:
            return tokens.revoke(s, token_id, self._clock())

    def authenticate(self, token: str) -> TokenRecord | None:
        """The live token ``token`` is, or None (unknown, wrong, revoked, expired)."""
        with self._tx() as s:
            return tokens.authenticate(s, token, self._clock())

    # ---- services (kind: service; see store/services.py) -------------------------------

    def create_service(self, spec: JobSpec, workdir: str | None = None
                       ) -> service_rows.ServiceRecord:
        """A live service from an admitted ``kind: service`` spec (``ServiceNameTaken`` if a
        live one has its name); the controller starts its replicas."""
        with self._tx() as s:
            return service_rows.create(s, spec, workdir, self._clock())

    def services(self, include_ended: bool = False) -> list[service_rows.ServiceRecord]:
        with self._tx() as s:
            return service_rows.listed(s, include_ended)

    def find_service(self, ref: str) -> service_rows.ServiceRecord:
        """A service by id or name (``UnknownService`` if none)."""
        with self._tx() as s:
            return service_rows.find(s, ref)

    def request_service_cancel(self, service_id: str, reason: str = "cancelled by user"
                               ) -> service_rows.ServiceRecord:
        """Flag a service for its controller to stop (replicas, then its balancer)."""
        with self._tx() as s:
            return service_rows.request_cancel(s, service_id, self._clock(), reason)

    def end_service(self, service_id: str) -> service_rows.ServiceRecord:
        with self._tx() as s:
            return service_rows.end(s, service_id, self._clock())

    def update_service(self, service_id: str, **fields: Any) -> None:
        """``desired``, ``url``, ``stats``, ``reason``: what the controller last saw."""
        with self._tx() as s:
            service_rows.update(s, service_id, self._clock(), **fields)

    def add_replica(self, service_id: str, port: int, shape: int = 0) -> tuple[str, JobSpec]:
        """Queue the service's next replica, serving on ``port`` (on its ``shape``-th shape,
        when the service lists shapes); its job id and spec."""
        with self._tx() as s:
            return service_rows.add_replica(s, service_id, port, self._clock(), shape)

    # ---- controller lease -------------------------------------------------------------

    def acquire_lease(self, controller_id: str, ttl: float,
                      holder_alive: Callable[[str], bool] | None = None) -> Lease:
        """Become the one controller; raises ``LeaseHeld`` while another one is alive."""
        with self._tx() as s:
            return leases.acquire(s, controller_id, ttl, self._clock(), holder_alive)

    def heartbeat(self, controller_id: str) -> None:
        """Renew the lease; raises ``LeaseLost`` when another controller has taken it."""
        with self._tx() as s:
            leases.renew(s, controller_id, self._clock())

    def release_lease(self, controller_id: str) -> None:
        with self._tx() as s:
            leases.release(s, controller_id)

    def lease(self) -> Lease | None:
        with self._tx() as s:
            return leases.current(s)

    def requeue(self, job_id: str, reason: str, queued_reason: str = "requeued",
                checkpoint: CheckpointRecord | None = None) -> JobRecord:
        """An active job whose attempt ended without it finishing goes back to the queue
        (preempted, then queued, in one transaction), unless a cancel was asked for: then
        it ends cancelled, so a cancel is never lost to a requeue. ``checkpoint``: what the
        attempt left to resume from, written in the same transaction, so a crash never
        leaves a requeued job without the record of where it resumes."""
        with self._tx() as s:
            row = _row(s, job_id)
            if checkpoint is not None:
                s.add(_checkpoint_row(checkpoint, job_id, row.attempt, self._clock()))
            details = {} if checkpoint is None else {
                "checkpoint_step": checkpoint.step, "checkpoint_samples": checkpoint.samples,
                "lost_samples": checkpoint.lost_samples}
            self._move(s, row, JobState.PREEMPTED, reason, details)
            if row.state == JobState.PREEMPTED.value:
                self._move(s, row, JobState.QUEUED, queued_reason, {})
            return self._out(s, row)

    def set_reasons(self, reasons: dict[str, str], kind: str = "waiting",
                    only: Iterable[JobState] = WAITING) -> int:
        """``set_reason`` for many jobs in one transaction (the controller's waiting list
        every round); jobs no longer in ``only`` are left alone. How many changed."""
        if not reasons:
            return 0
        allowed = [JobState(x).value for x in only]
        changed = 0
        with self._tx() as s:
            now = self._clock()
            ids = list(reasons)
            for start in range(0, len(ids), 500):  # SQLite caps bound parameters
                query = select(JobRow).where(JobRow.id.in_(ids[start:start + 500]),
                                             JobRow.state.in_(allowed))
                for row in s.scalars(query):
                    reason = reasons[row.id]
                    if row.reason != reason:
                        row.reason = reason
                        s.add(EventRow(job_id=row.id, time=now, from_state=row.state,
                                       kind=kind, reason=reason, details={}))
                        changed += 1
        return changed

    # ---- internals --------------------------------------------------------------------

    def _out(self, s: Session, row: JobRow) -> JobRecord:
        """The record of a row. A stored spec that no longer reads (written by an older
        version, or behind admission's back) fails that job, with the reason, instead of
        failing every read of the store."""
        spec, error = _spec_of(row)
        if error is not None and not JobState(row.state).terminal:
            self._move(s, row, JobState.FAILED, f"stored job spec is invalid: {error}", {})
        return _record(row, spec)


    def _move(self, s: Session, row: JobRow, to_state: JobState, reason: str,
              details: dict[str, Any]) -> None:
        """The one place a state changes, keeping the bookkeeping invariants together."""
        current = JobState(row.state)
        if current.active and to_state is JobState.PREEMPTED and row.cancel_requested:
            # Cancelled while being stopped or requeued: the user's cancel wins.
            to_state, reason = JobState.CANCELLED, f"cancelled by user ({reason})"
        transitions.check(row.id, current, to_state)
        now = self._clock()
        if to_state is JobState.RUNNING:
            row.started_at = now
            row.first_started_at = row.first_started_at or now
        if current.active and not to_state.active:
            self._end_attempt(s, row, now, to_state)
        if to_state.terminal:
            row.finished_at = now
        row.state, row.reason = to_state.value, reason
        s.add(EventRow(job_id=row.id, time=now, from_state=current.value, kind=to_state.value,
                       reason=reason, details=_jsonable(details)))

    def _end_attempt(self, s: Session, row: JobRow, now: float, to_state: JobState) -> None:
        if row.state == JobState.RUNNING.value and row.started_at is not None:
            row.run_seconds += max(now - row.started_at, 0.0)
        if to_state is JobState.PREEMPTED:
            row.preemptions += 1
        attempt = _open_attempt(s, row.id, row.attempt)
        if attempt is not None:
            attempt.ended_at = now
        row.pid = row.pid_start_time = None
        row.cancel_requested = False
        row.stop_to_state = row.stop_reason = None
        row.stop_requested_at = row.stop_deadline = None


def _row(s: Session, job_id: str) -> JobRow:
    # FOR UPDATE: on PostgreSQL a read-check-write (a transition racing a cancel from the
    # CLI) must hold the row; SQLite's BEGIN IMMEDIATE already serialises writers.
    row = s.get(JobRow, job_id, with_for_update=True)
    if row is None:
        raise UnknownJob(f"no job {job_id!r}")
    return row


def _open_attempt(s: Session, job_id: str, attempt: int) -> CompositionRow | None:
    return s.scalars(select(CompositionRow).where(
        CompositionRow.job_id == job_id, CompositionRow.attempt == attempt,
        CompositionRow.ended_at.is_(None))).first()


def _checkpoint_row(record: CheckpointRecord, job_id: str, attempt: int,
                    now: float) -> CheckpointRow:
    return CheckpointRow(
        job_id=job_id, attempt=attempt, recorded_at=now, outcome=record.outcome[:16],
        reason=record.reason, path=record.path, step=record.step, samples=record.samples,
        saved_at=record.saved_at, save_seconds=record.save_seconds,
        reported_samples=record.reported_samples, lost_samples=record.lost_samples,
        restored_samples=record.restored_samples, restore_seconds=record.restore_seconds)


def _checkpoint_record(row: CheckpointRow) -> CheckpointRecord:
    return CheckpointRecord(
        job_id=row.job_id, attempt=row.attempt, recorded_at=row.recorded_at,
        outcome=row.outcome, reason=row.reason, path=row.path, step=row.step,
        samples=row.samples, saved_at=row.saved_at, save_seconds=row.save_seconds,
        reported_samples=row.reported_samples, lost_samples=row.lost_samples,
        restored_samples=row.restored_samples, restore_seconds=row.restore_seconds)


REQUEUED = ("checkpointed", "killed", "gone")  # outcomes of an attempt that was requeued


def _summary(job_id: str, records: list[CheckpointRecord]) -> CheckpointSummary:
    saved = [r for r in records if r.path is not None]
    last = saved[-1] if saved else None
    restored = [r.restore_seconds for r in records if r.restore_seconds is not None]
    return CheckpointSummary(
        job_id=job_id, requeues=sum(1 for r in records if r.outcome in REQUEUED),
        checkpointed=sum(1 for r in records if r.outcome == "checkpointed"),
        lost_samples=sum(r.lost_samples or 0 for r in records),
        last_path=last.path if last else None, last_step=last.step if last else None,
        last_samples=last.samples if last else None,
        last_saved_at=last.saved_at if last else None,
        last_save_seconds=last.save_seconds if last else None,
        last_restore_seconds=restored[-1] if restored else None)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, str | int | float | bool | list | dict) or v is None
                else str(v)) for k, v in details.items()}


_SPECS: dict[tuple[str, float], JobSpec] = {}  # a spec never changes once submitted
_SPEC_CACHE_SIZE = 50_000


def _first_line(error: object) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


_WITHOUT_SPEC = [c for c in JobRow.__table__.columns if c.name != "spec"]


def _spec_of(row: JobRow) -> tuple[JobSpec, str | None]:
    return _parse_spec(row.id, row.submitted_at, row.name, row.spec)


def _parse_spec(job_id: str, submitted_at: float, name: str | None,
                data: Any) -> tuple[JobSpec, str | None]:
    """A job's spec, parsed once per job (parsing thousands per round is the cost that
    grew with the queue); a placeholder and the reason when it does not validate."""
    key = (job_id, submitted_at)
    spec = _SPECS.get(key)
    if spec is not None:
        return spec, None
    try:
        spec = JobSpec.model_validate(data)
    except Exception as exc:  # noqa: BLE001 - any stored junk; the reason is kept
        label = str(name or "?")
        placeholder = JobSpec.model_construct(name=label, command=(label,))
        return placeholder, _first_line(exc)[:300]
    if len(_SPECS) >= _SPEC_CACHE_SIZE:
        _SPECS.clear()
    _SPECS[key] = spec
    return spec, None


def _record(row: Any, spec: JobSpec) -> JobRecord:
    """``row``: an ORM row or a result row with the same column names."""
    stop = None
    if row.stop_to_state is not None:
        stop = StopRequest(JobState(row.stop_to_state), row.stop_reason or "",
                           row.stop_requested_at, row.stop_deadline)
    return JobRecord(
        id=row.id, name=row.name, spec=spec,
        state=JobState(row.state), reason=row.reason, priority=row.priority,
        submitted_at=row.submitted_at, workdir=row.workdir,
        dataset_size_gib=row.dataset_size_gib, started_at=row.started_at,
        first_started_at=row.first_started_at, finished_at=row.finished_at,
        run_seconds=row.run_seconds, exit_code=row.exit_code, attempt=row.attempt,
        preemptions=row.preemptions, pid=row.pid, pid_start_time=row.pid_start_time,
        controller_id=row.controller_id, node=row.node,
        composition=composition_from_json(row.composition) if row.composition else None,
        log_path=row.log_path, log_offset=row.log_offset,
        cancel_requested=row.cancel_requested, stop=stop, samples=row.samples,
        quality=row.quality, samples_per_s=row.samples_per_s, reported_at=row.reported_at,
        mlflow_run_id=row.mlflow_run_id, team=row.team)
