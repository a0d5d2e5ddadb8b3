"""The tables. Times are unix seconds (floats): the same numbers the simulator's clock uses,
and free of time-zone ambiguity across SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


# A counter that may pass 2**31 (samples, byte offsets): BIGINT on PostgreSQL, whose INTEGER
# is 32-bit; SQLite's INTEGER is 64-bit already (and stays, so no table is copied there).
Count = BigInteger().with_variant(Integer(), "sqlite")


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")  # why it is in its state / waits
    priority: Mapped[int] = mapped_column(Integer, default=0)
    workdir: Mapped[str | None] = mapped_column(Text, nullable=True)
    dataset_size_gib: Mapped[float | None] = mapped_column(Float, nullable=True)
    submitted_at: Mapped[float] = mapped_column(Float, index=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # current attempt
    first_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    run_seconds: Mapped[float] = mapped_column(Float, default=0.0)  # earlier attempts
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    preemptions: Mapped[int] = mapped_column(Integer, default=0)
    # The process: pid plus its start time, because a pid alone may be reused after a crash.
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pid_start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    controller_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    node: Mapped[str | None] = mapped_column(String(128), nullable=True)
    composition: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    log_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    log_offset: Mapped[int] = mapped_column(Count, default=0)  # progress read up to here
    # A stop in progress survives a controller restart: the next one finishes the escalation.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    stop_to_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    stop_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    stop_requested_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    stop_deadline: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples: Mapped[int | None] = mapped_column(Count, nullable=True)
    quality: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    reported_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # this attempt
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Whose job it is: the service shows a team's token only its team's jobs. Jobs from
    # before teams (and from the CLI, without `team:` in the spec) are the default team's.
    team: Mapped[str] = mapped_column(String(64), index=True, default="default",
                                      server_default="default")


class EventRow(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    time: Mapped[float] = mapped_column(Float)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))  # the new state, or e.g. "staged", "waiting"
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CompositionRow(Base):
    """What each attempt held, and when: the source of utilisation and core-sharing checks."""

    __tablename__ = "compositions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    node: Mapped[str] = mapped_column(String(128))
    composition: Mapped[dict[str, Any]] = mapped_column(JSON)
    gpu_share: Mapped[float] = mapped_column(Float)
    cores: Mapped[int] = mapped_column(Integer)
    memory_gib: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class DatasetRow(Base):
    __tablename__ = "datasets"

    key: Mapped[str] = mapped_column(String(512).with_variant(Text(), "postgresql"),
                                     primary_key=True)
    node: Mapped[str] = mapped_column(String(128), primary_key=True)
    volume: Mapped[str] = mapped_column(String(128), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    size_gib: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)
    last_used: Mapped[float] = mapped_column(Float)


class ProgressRow(Base):
    __tablename__ = "progress"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    time: Mapped[float] = mapped_column(Float)
    samples: Mapped[int | None] = mapped_column(Count, nullable=True)
    quality: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_progress_job_time", "job_id", "time"),)


class KeyValueRow(Base):
    """Small shared settings; the controller lease lives here (key ``controller``)."""

    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)


class CheckpointRow(Base):
    """How one attempt of a job ended with respect to its checkpoints: the checkpoint the
    next attempt restores (path, step, samples, when it was saved and how long saving
    took), the work that attempt did past it (lost: the next attempt redoes it), and how
    long this attempt took to restore. Written in the transaction that requeues the job.

    A table of its own, not columns of ``jobs``: an older database gains it by
    ``create_all`` alone, and a job's history of attempts is a list, not a value."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)  # the attempt that ended
    recorded_at: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16))  # checkpointed | killed | gone
    reason: Mapped[str] = mapped_column(Text, default="")  # why it was stopped
    path: Mapped[str | None] = mapped_column(Text, nullable=True)  # None: no checkpoint yet
    step: Mapped[int | None] = mapped_column(Count, nullable=True)
    samples: Mapped[int | None] = mapped_column(Count, nullable=True)
    saved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    save_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    reported_samples: Mapped[int | None] = mapped_column(Count, nullable=True)
    lost_samples: Mapped[int | None] = mapped_column(Count, nullable=True)
    restored_samples: Mapped[int | None] = mapped_column(Count, nullable=True)
    restore_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)


class TokenRow(Base):
    """An API token of the service. Only the SHA-256 of the token is kept: the token itself
    is shown once, when it is made, and a copy of the database lets no one act as it.

    ``id`` is the token's public part (it is in the token, so a request's token is found by
    key and then compared in constant time, never looked up by its secret)."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    team: Mapped[str] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(String(16))  # read | submit | admin
    secret_hash: Mapped[str] = mapped_column(String(64))  # hex SHA-256 of the whole token
    created_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: never


class ServiceRow(Base):
    """A service (``kind: service``): not placed itself; its replicas are ordinary jobs whose
    spec names it (``replica_of``). The controller's ``ServiceManager`` keeps its balancer
    and replica count; what it measured last is here for ``slicebox services``."""

    __tablename__ = "services"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    team: Mapped[str] = mapped_column(String(64), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    workdir: Mapped[str | None] = mapped_column(Text, nullable=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # live | cancelling | cancelled
    reason: Mapped[str] = mapped_column(Text, default="")
    next_index: Mapped[int] = mapped_column(Integer, default=1)  # N of the next <name>-r<N>
    desired: Mapped[int] = mapped_column(Integer, default=0)  # replicas the autoscaler wants
    url: Mapped[str | None] = mapped_column(Text, nullable=True)  # the balancer's, when up
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
