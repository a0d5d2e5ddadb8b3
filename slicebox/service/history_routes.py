"""``GET /v1/history``: who held what, attempt by attempt, since a time (read-only).

The dashboard's Gantt chart draws it. A job's record in ``/v1/jobs`` carries only its
current composition; a job preempted or requeued held other slices before, and the store
keeps every attempt's composition (``Store.composition_history``). Visibility follows
``/v1/pool``: the caller's own team's attempts (every team's for an admin) name the job,
another team's name only the team, so a team sees that a card was busy, not whose job it
was.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from slicebox.service.auth import Caller, Reader
from slicebox.service.models import Holder
from slicebox.service.problems import MEDIA_TYPE
from slicebox.store import Store
from slicebox.store.records import CompositionRecord

DEFAULT_WINDOW_S = 6 * 3600.0
MAX_ATTEMPTS = 5000  # the newest ones, if more overlap the window


class HeldPiece(BaseModel):
    """One slice of a card an attempt held (``device`` is the card's index on ``node``)."""

    node: str
    device: int
    shape: str = Field(description="whole, mig or fraction")
    compute: float
    memory_gib: float
    mig_profile: str | None = None


class Attempt(BaseModel):
    holder: Holder
    attempt: int
    started_at: float
    ended_at: float | None = Field(description="null: still holding")
    slices: list[HeldPiece]
    cores: dict[str, list[int]] = Field(description="node -> the cores held there")
    memory_gib: float


def router(store: Store) -> APIRouter:
    history = APIRouter(prefix="/v1")

    @history.get("/history", response_model=list[Attempt], tags=["pool"], responses={
        status: {"description": f"problem details ({status})", "content": {
            MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for status in (401, 403, 422)})
    async def attempts(caller: Reader, since: Annotated[float | None, Query(
            ge=0, le=1e11, description="seconds since the epoch: attempts that held "
            "anything at or after it (default: the last 6 hours)")] = None
            ) -> list[Attempt]:
        """Every attempt that held slices, cores or memory since ``since``, oldest first:
        what the dashboard's Gantt chart draws."""
        start = time.time() - DEFAULT_WINDOW_S if since is None else since
        return await run_in_threadpool(_attempts, store, caller, start)

    return history


def _attempts(store: Store, caller: Caller, since: float) -> list[Attempt]:
    records = [r for r in store.composition_history()
               if r.ended_at is None or r.ended_at >= since][-MAX_ATTEMPTS:]
    jobs = {job.id: job for job in store.jobs()} if records else {}
    out = []
    for record in records:
        job = jobs.get(record.job_id)
        if job is None:  # a history row outliving its job: nothing to name it by
            continue
        holder = (Holder(team=job.team, job_id=job.id, job_name=job.name)
                  if caller.sees(job.team) else Holder(team=job.team))
        out.append(_attempt(record, holder))
    return out


def _attempt(record: CompositionRecord, holder: Holder) -> Attempt:
    comp = record.composition
    slices = [HeldPiece(node=s.node, device=s.device, shape=str(s.shape), compute=s.compute,
                        memory_gib=s.memory_gib, mig_profile=s.mig_profile)
              for part in comp.parts for s in part.slices]
    cores: dict[str, list[int]] = {}
    for part in comp.parts:
        if part.cores:
            cores.setdefault(part.node, []).extend(part.cores)
    return Attempt(holder=holder, attempt=record.attempt, started_at=record.started_at,
                   ended_at=record.ended_at, slices=slices, cores=cores,
                   memory_gib=comp.memory_gib)
