"""``/v1/services``: list services, show one, cancel one.

A service (``kind: service``, submitted through ``POST /v1/jobs`` or ``slicebox submit``)
is a row of the store's ``services`` table; the controller's ``ServiceManager`` keeps its
balancer and its replicas, which are ordinary jobs whose spec's ``replica_of.service`` is
the service's id. These routes only read the store and ask for cancels, as the job routes
do. Visibility follows the jobs': a team's token sees its team's services, an admin's
every team's, and another team's service is answered as missing (404), so ids cannot be
probed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from slicebox.service.auth import Caller, Reader, Submitter
from slicebox.service.problems import MEDIA_TYPE, ProblemError
from slicebox.snapshot import JobState
from slicebox.store import ServiceRecord, Store, UnknownService
from slicebox.store.records import JobRecord

SERVICE_ID = Annotated[str, PathParam(pattern=r"^[0-9a-f]{1,32}$",
                                      description="a service's id")]
CANCELLED = "cancelled"
# A replica that holds (or waits for) a slice: what the detail view lists.
NOT_ENDED = [JobState.QUEUED, JobState.STAGING, JobState.RUNNING, JobState.PREEMPTED]


class Replica(BaseModel):
    id: str = Field(description="the replica's job id (GET /v1/jobs/{job_id})")
    name: str
    index: int
    port: int
    state: str
    reason: str
    cancel_requested: bool


class Service(BaseModel):
    kind: Literal["service"] = Field("service", description="marks a service (not a job)")
    id: str
    name: str
    team: str
    state: str = Field(description="live, cancelling or cancelled")
    reason: str
    running: int = Field(description="replicas running and not being stopped")
    desired: int = Field(description="replicas the autoscaler (or a schedule) wants now")
    min_replicas: int
    max_replicas: int
    url: str | None = Field(description="the balancer's address (null: not started yet, "
                                        "or cancelled)")
    rate_rps: float | None = Field(description="requests per second over the last window")
    p99_ms: float | None
    objective_p99_ms: float | None
    shape: str | None = Field(None, description="the replica shape live sizing chose "
                                                "(null: the spec's resources)")
    capacity_rps: float | None = Field(None, description="what one replica serves within "
                                                         "the objective, as last estimated")
    created_at: float
    ended_at: float | None
    replicas: list[Replica] | None = Field(
        None, description="the replicas not ended (only in GET /v1/services/{service_id})")

    @classmethod
    def of(cls, record: ServiceRecord, replicas: list[JobRecord],
           detail: bool = False) -> Service:
        section = record.spec.service
        running = sum(1 for job in replicas
                      if job.state is JobState.RUNNING and not job.cancel_requested)
        return cls(kind="service", id=record.id, name=record.name, team=record.team,
                   state=record.state, reason=record.reason, running=running,
                   desired=record.desired,
                   min_replicas=section.min_replicas if section else 0,
                   max_replicas=section.max_replicas if section else 0,
                   url=record.url, rate_rps=_number(record.stats.get("rate_rps")),
                   p99_ms=_number(record.stats.get("p99_ms")),
                   objective_p99_ms=section.objective.p99_ms if section else None,
                   shape=_text(record.stats.get("shape")),
                   capacity_rps=_number(record.stats.get("capacity_rps")),
                   created_at=record.created_at, ended_at=record.ended_at,
                   replicas=[_replica(job) for job in replicas] if detail else None)


class ServiceCancelled(BaseModel):
    kind: Literal["service"] = "service"
    id: str
    name: str
    state: str


def router(store: Store) -> APIRouter:
    api = APIRouter(prefix="/v1")

    def visible(caller: Caller, service_id: str) -> ServiceRecord:
        """The service, if the caller may see it; another team's is as good as missing.
        By id only (the store's lookup also takes names)."""
        try:
            record = store.find_service(service_id)
        except UnknownService:
            record = None
        if record is None or record.id != service_id or not caller.sees(record.team):
            raise ProblemError(404, "not-found", f"no service {service_id!r}")
        return record

    @api.get("/services", response_model=list[Service], tags=["services"],
             responses=_problems(401, 403))
    def services(caller: Reader, show_all: Annotated[bool, Query(
            alias="all", description="include cancelled services")] = False
            ) -> list[Service]:
        """The caller's team's services (every team's for an admin), oldest first."""
        records = [r for r in store.services(include_ended=show_all) if caller.sees(r.team)]
        replicas = _replicas_by_service(store) if records else {}
        return [Service.of(r, replicas.get(r.id, [])) for r in records]

    @api.get("/services/{service_id}", response_model=Service, tags=["services"],
             responses=_problems(401, 403, 404))
    def service(service_id: SERVICE_ID, caller: Reader) -> Service:
        """One service, with its replicas that have not ended (job ids and states)."""
        record = visible(caller, service_id)
        return Service.of(record, _replicas_by_service(store).get(record.id, []), detail=True)

    @api.post("/services/{service_id}/cancel", response_model=ServiceCancelled,
              tags=["services"], responses=_problems(401, 403, 404, 409))
    def cancel(service_id: SERVICE_ID, caller: Submitter) -> ServiceCancelled:
        """Stop a service: the controller cancels its replicas, then stops its balancer
        (state ``cancelling``, then ``cancelled``). 409 if it was cancelled already."""
        record = visible(caller, service_id)
        if record.state == CANCELLED:
            raise ProblemError(409, "conflict", f"service {record.name} ({record.id}) is "
                               "cancelled already")
        done = store.request_service_cancel(record.id, f"cancelled through the API (token "
                                                       f"{caller.token_id})")
        return ServiceCancelled(id=done.id, name=done.name, state=done.state)

    return api


def service_answer(store: Store, service_id: str) -> Service:
    """What ``POST /v1/jobs`` answers for a service it created."""
    return Service.of(store.find_service(service_id), [], detail=True)


def _replicas_by_service(store: Store) -> dict[str, list[JobRecord]]:
    out: dict[str, list[JobRecord]] = {}
    for job in store.jobs(NOT_ENDED):
        if job.spec.replica_of is not None:
            out.setdefault(job.spec.replica_of.service, []).append(job)
    return out


def _replica(job: JobRecord) -> Replica:
    of = job.spec.replica_of
    return Replica(id=job.id, name=job.name, index=of.index if of else 0,
                   port=of.port if of else 0, state=job.state.value, reason=job.reason,
                   cancel_requested=job.cancel_requested)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": f"problem details ({status})", "content": {
        MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for status in statuses}
