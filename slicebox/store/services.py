"""Services in the store: the ``services`` table's rows and their life cycle.

A service is ``live`` from its submission until a cancel (``cancelling``: the controller
stops its replicas and its balancer) and then ``cancelled``. Its replicas are ordinary jobs
(rows of ``jobs``) whose spec's ``replica_of.service`` is the service's id; a replica and the
bump of the service's replica counter are written in one transaction, so two replicas never
share a name. Names are unique among services that are not cancelled.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from slicebox.errors import InputError
from slicebox.snapshot import JobState
from slicebox.spec.job import JobSpec
from slicebox.store.schema import EventRow, JobRow, ServiceRow
from slicebox.store.transitions import StoreError

LIVE, CANCELLING, CANCELLED = "live", "cancelling", "cancelled"
NOT_ENDED = (LIVE, CANCELLING)
DEFAULT_TEAM = "default"
MAX_STATS_KEYS = 16  # what the manager records of a balancer's stats; more is a bug


class UnknownService(StoreError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown service"


class ServiceNameTaken(InputError):
    """A live service already has this name (a cancelled one's name may be reused)."""


@dataclass(frozen=True)
class ServiceRecord:
    id: str
    name: str
    team: str
    spec: JobSpec
    workdir: str | None
    state: str
    reason: str
    next_index: int
    desired: int
    url: str | None
    stats: dict[str, Any]
    created_at: float
    updated_at: float
    ended_at: float | None

    @property
    def ended(self) -> bool:
        return self.state == CANCELLED


def create(s: Session, spec: JobSpec, workdir: str | None, now: float) -> ServiceRecord:
    if spec.kind != "service" or spec.service is None:
        raise StoreError(f"{spec.name}: only a spec with kind: service makes a service")
    taken = s.scalars(select(ServiceRow.id).where(ServiceRow.name == spec.name,
                                                  ServiceRow.state.in_(NOT_ENDED))).first()
    if taken is not None:
        raise ServiceNameTaken(f"name: a service named {spec.name!r} is already running "
                               f"({taken}); cancel it first or choose another name")
    row = ServiceRow(id=secrets.token_hex(4), name=spec.name, team=spec.team or DEFAULT_TEAM,
                     spec=spec.model_dump(mode="json"), workdir=workdir, state=LIVE,
                     reason="submitted", next_index=1, desired=spec.service.min_replicas,
                     url=None, stats=None, created_at=now, updated_at=now, ended_at=None)
    s.add(row)
    s.flush()
    return record(row)


def listed(s: Session, include_ended: bool = False) -> list[ServiceRecord]:
    query = select(ServiceRow).order_by(ServiceRow.created_at, ServiceRow.id)
    if not include_ended:
        query = query.where(ServiceRow.state.in_(NOT_ENDED))
    return [record(r) for r in s.scalars(query)]


def find(s: Session, ref: str) -> ServiceRecord:
    """By id, or by name (the one not ended, else the newest)."""
    row = s.get(ServiceRow, ref)
    if row is None:
        rows = list(s.scalars(select(ServiceRow).where(ServiceRow.name == ref)
                              .order_by(ServiceRow.created_at.desc())))
        live = [r for r in rows if r.state in NOT_ENDED]
        row = (live or rows)[0] if rows else None
    if row is None:
        raise UnknownService(f"no service {ref!r}")
    return record(row)


def request_cancel(s: Session, service_id: str, now: float,
                   reason: str = "cancelled by user") -> ServiceRecord:
    row = _row(s, service_id)
    if row.state == LIVE:
        row.state, row.reason, row.updated_at = CANCELLING, reason, now
    return record(row)


def end(s: Session, service_id: str, now: float) -> ServiceRecord:
    row = _row(s, service_id)
    if row.state != CANCELLED:
        row.state, row.ended_at, row.updated_at = CANCELLED, now, now
        row.url = None
    return record(row)


def update(s: Session, service_id: str, now: float, *, desired: int | None = None,
           url: str | None = None, stats: dict[str, Any] | None = None,
           reason: str | None = None) -> None:
    row = _row(s, service_id)
    if desired is not None:
        row.desired = desired
    if url is not None:
        row.url = url
    if stats is not None:
        if len(stats) > MAX_STATS_KEYS:
            raise StoreError(f"service {service_id}: {len(stats)} stats; at most "
                             f"{MAX_STATS_KEYS}")
        row.stats = stats
    if reason is not None:
        row.reason = reason
    row.updated_at = now


def add_replica(s: Session, service_id: str, port: int, now: float,
                shape: int = 0) -> tuple[str, JobSpec]:
    """Queue the service's next replica (``<name>-r<N>`` on ``port``, on the service's
    ``shape``-th shape when it lists shapes); its id and spec."""
    row = _row(s, service_id)
    if row.state != LIVE:
        raise StoreError(f"service {row.name} is {row.state}; it starts no replica")
    service = JobSpec.model_validate(row.spec)
    spec = replica_spec(service, service_id, row.next_index, port, shape)
    row.next_index += 1
    row.updated_at = now
    job_id = secrets.token_hex(4)
    s.add(JobRow(id=job_id, name=spec.name, spec=spec.model_dump(mode="json"),
                 state=JobState.QUEUED.value, reason="submitted", priority=spec.priority,
                 workdir=row.workdir, dataset_size_gib=None, submitted_at=now, team=row.team))
    s.flush()  # the job row first: the event refers to it
    s.add(EventRow(job_id=job_id, time=now, from_state=None, kind=JobState.QUEUED.value,
                   reason=f"replica {spec.replica_of.index if spec.replica_of else '?'} of "
                          f"service {row.name}",
                   details={"name": spec.name, "service": service_id, "port": port}))
    return job_id, spec


def replica_spec(service: JobSpec, service_id: str, index: int, port: int,
                 shape: int = 0) -> JobSpec:
    """A replica's job spec: the service's command, resources, team and priority, as an
    ordinary job named ``<service>-r<index>`` that serves on ``port``; with shapes, its
    resources are the ``shape``-th shape's."""
    data = service.model_dump(mode="json")
    shapes = service.service.shapes if service.service is not None else ()
    shape = min(shape, len(shapes) - 1) if shapes else 0
    data["resources"] = service.shaped_resources(shape).model_dump(mode="json")
    data.update(kind="job", service=None, name=f"{service.name}-r{index}",
                workload=service.workload_class,
                replica_of={"service": service_id, "index": index, "port": port,
                            "shape": shape})
    return JobSpec.model_validate(data)


def record(row: ServiceRow) -> ServiceRecord:
    return ServiceRecord(
        id=row.id, name=row.name, team=row.team, spec=JobSpec.model_validate(row.spec),
        workdir=row.workdir, state=row.state, reason=row.reason or "",
        next_index=row.next_index, desired=row.desired, url=row.url,
        stats=dict(row.stats or {}), created_at=row.created_at, updated_at=row.updated_at,
        ended_at=row.ended_at)


def _row(s: Session, service_id: str) -> ServiceRow:
    row = s.get(ServiceRow, service_id, with_for_update=True)
    if row is None:
        raise UnknownService(f"no service {service_id!r}")
    return row
