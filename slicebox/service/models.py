"""What the API answers with (the OpenAPI schema is built from these)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field

from slicebox.store import EventRecord, JobRecord
from slicebox.store.codec import composition_to_json


class Job(BaseModel):
    id: str
    name: str
    team: str
    state: str
    reason: str = Field(description="why it is in its state, or what it waits for")
    priority: int
    submitted_at: float
    started_at: float | None = Field(description="this attempt's start")
    first_started_at: float | None
    finished_at: float | None
    wait_seconds: float | None = Field(description="submission to first start")
    run_seconds: float = Field(description="running time over all attempts so far")
    exit_code: int | None
    attempt: int
    preemptions: int
    cancel_requested: bool
    composition: str | None = Field(description="what it holds, in words")
    parts: list[dict[str, Any]] = Field(description="what it holds: per node, the slices, "
                                        "cores and memory")
    samples: int | None
    quality: float | None
    samples_per_s: float | None
    mlflow_run_id: str | None
    spec: dict[str, Any]

    @classmethod
    def of(cls, job: JobRecord, now: float | None = None) -> Job:
        comp = job.composition
        return cls(
            id=job.id, name=job.name, team=job.team, state=job.state.value, reason=job.reason,
            priority=job.priority, submitted_at=job.submitted_at, started_at=job.started_at,
            first_started_at=job.first_started_at, finished_at=job.finished_at,
            wait_seconds=job.wait_seconds, run_seconds=job.ran_for(now or time.time()),
            exit_code=job.exit_code, attempt=job.attempt, preemptions=job.preemptions,
            cancel_requested=job.cancel_requested,
            composition=comp.describe() if comp else None,
            parts=composition_to_json(comp)["parts"] if comp else [],
            samples=job.samples, quality=job.quality, samples_per_s=job.samples_per_s,
            mlflow_run_id=job.mlflow_run_id, spec=job.spec.model_dump(mode="json"))


class Event(BaseModel):
    id: int
    job_id: str
    time: float
    from_state: str | None
    kind: str = Field(description="the new state, or a note such as waiting or staged")
    reason: str
    details: dict[str, Any]

    @classmethod
    def of(cls, event: EventRecord) -> Event:
        return cls(id=event.id, job_id=event.job_id, time=event.time,
                   from_state=event.from_state, kind=event.kind, reason=event.reason,
                   details=event.details)


class Holder(BaseModel):
    """Who holds a slice or a core: the job for the caller's own team (or an admin), only
    the team for another team's job."""

    team: str
    job_id: str | None = None
    job_name: str | None = None


class HeldSlice(BaseModel):
    shape: str = Field(description="whole, mig or fraction")
    compute: float = Field(description="share of the card's compute")
    memory_gib: float
    mig_profile: str | None = None
    holder: Holder


class Device(BaseModel):
    index: int
    kind: str
    uuid: str
    memory_gib: float
    numa_node: int | None
    mig_enabled: bool
    slices: list[HeldSlice] = Field(description="the slices jobs hold on this card now")


class Volume(BaseModel):
    name: str
    path: str
    tier: str
    capacity_gib: float


class Node(BaseModel):
    name: str
    memory_gib: float
    memory_held_gib: float
    cores_by_numa: dict[str, list[int]]
    cores_held: dict[str, Holder] = Field(description="core id -> who holds it")
    devices: list[Device]
    volumes: list[Volume]


class Pool(BaseModel):
    name: str
    nodes: list[Node]


class Profile(BaseModel):
    workload: str
    kind: str
    size: float
    precision: str
    samples_per_s: float
    source: str
    updated_at: float
    observations: int


class Cancelled(BaseModel):
    id: str
    state: str
    cancel_requested: bool = Field(description="true: a running job is being stopped")
