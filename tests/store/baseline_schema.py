"""FROZEN: ``slicebox/store/schema.py`` as of commit 2fe4c7f, the schema of every store made
before Alembic kept it (revision 0001). The migration tests build such a store with it;
never edit it to follow schema.py.

(Its own docstring then:) The tables. Times are unix seconds (floats): the same numbers the
simulator's clock uses, and free of time-zone ambiguity across SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


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
    log_offset: Mapped[int] = mapped_column(Integer, default=0)  # progress read up to here
    # A stop in progress survives a controller restart: the next one finishes the escalation.
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    stop_to_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    stop_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    stop_requested_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    stop_deadline: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quality: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    reported_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # this attempt
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


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

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
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
    samples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quality: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_progress_job_time", "job_id", "time"),)


class KeyValueRow(Base):
    """Small shared settings; the controller lease lives here (key ``controller``)."""

    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)
