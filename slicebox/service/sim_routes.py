"""``/v1/simulations``: run a trace through a policy on a simulated pool, fetch the report.

    POST /v1/simulations          {"trace": "pollux-workloads/philly-workload-1.csv",
                                   "pool": "sia-64", "policy": "slicebox"}   -> 202
    GET  /v1/simulations/{id}     its state, progress, and once done the report
    GET  /v1/simulations          the caller's team's (every team's for an admin)
    GET  /v1/simulations/traces   the bundled traces a request may name
    GET  /v1/simulations/choices  the traces, pool presets and policies a request may name
    GET  /v1/simulations/{id}/plots/{name}   one of the report's plots (PNG)

Everything in a request is untrusted: a trace is one of the bundled traces (named exactly
as listed) or a small uploaded one (``trace_text`` with its ``trace_format``, bounded in
bytes and lines); the pool is a preset (never a path on the service's machine); the policy
is a registered name (never a dotted path, which would import code). The run itself is
``slicebox simulate``'s, in a worker process (``simulations.Simulations``).
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, model_validator

from slicebox.service.auth import Reader, Submitter
from slicebox.service.problems import MEDIA_TYPE, ProblemError
from slicebox.service.simulations import QueueFull, SimulationRecord, Simulations, new_id

# The bundled job traces (data/traces; node lists and speed profiles are not traces).
BUNDLED = ("gavel/*.trace", "pollux-workloads/*.csv", "philly/*.csv",
           "alibaba-gpu-2023/openb_pod_list_*.csv")
POOLS = ("sia-64", "gavel-48", "alibaba-gpu-2023")
MAX_PHILLY_GPUS = 4096
MAX_UPLOAD_BYTES = 512 * 1024
MAX_UPLOAD_LINES = 20_000
SIM_ID = Annotated[str, PathParam(pattern=r"^sim-[0-9a-f]{8}$", description="a simulation id")]
# The plots `slicebox simulate` draws (sim.report.plot): the only files of a simulation's
# folder a caller may fetch, by these names only (never a path).
PLOTS = ("jct_cdf.png", "utilisation.png", "queue.png")
PlotName = Literal["jct_cdf.png", "utilisation.png", "queue.png"]
MAX_PLOT_BYTES = 4 * 1024 * 1024


class SimulationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    trace: str | None = Field(None, max_length=200, description=(
        "a bundled trace, as GET /v1/simulations/traces lists it"))
    trace_text: str | None = Field(None, max_length=MAX_UPLOAD_BYTES, description=(
        f"an uploaded trace (at most {MAX_UPLOAD_BYTES // 1024} KiB and "
        f"{MAX_UPLOAD_LINES:,} lines), instead of trace"))
    trace_format: Literal["philly", "pollux", "gavel", "alibaba"] | None = Field(
        None, description="the format of trace_text (needed with it)")
    pool: str = Field(max_length=40, description=(
        f"a preset: {', '.join(POOLS)}, or philly-<N> (N GPUs, at most {MAX_PHILLY_GPUS})"))
    policy: str = Field("slicebox", max_length=40, description="a registered policy name")
    round_seconds: float | None = Field(None, ge=1, le=86_400, allow_inf_nan=False,
                                        description="schedule in fixed rounds (Gavel: 360)")
    skip_bad_lines: bool = False

    @model_validator(mode="after")
    def _one_trace(self) -> SimulationRequest:
        if (self.trace is None) == (self.trace_text is None):
            raise ValueError("give either trace (a bundled one) or trace_text (an upload)")
        if self.trace_text is not None and self.trace_format is None:
            raise ValueError("trace_format: needed with trace_text")
        return self


class Progress(BaseModel):
    finished_jobs: int
    total_jobs: int
    simulated_seconds: float


class Simulation(BaseModel):
    id: str
    team: str
    state: str = Field(description="queued, running, succeeded, failed or cancelled")
    trace: str
    pool: str
    policy: str
    round_seconds: float | None
    submitted_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None = Field(description="why it failed (a bad trace line, a time limit)")
    progress: Progress | None = None
    report: dict[str, Any] | None = Field(None, description=(
        "the report's summary, as slicebox simulate writes summary.json"))
    report_markdown: str | None = Field(None, description="the report as summary.md")
    plots: list[str] = Field(default_factory=list, description=(
        "the report's plots, once succeeded: GET /v1/simulations/{id}/plots/{name}"))


class Choices(BaseModel):
    traces: list[str] = Field(description="bundled traces (trace)")
    pools: list[str] = Field(description=(
        "pool presets (pool); philly-<N> (N GPUs, a multiple of 8) is also taken"))
    philly_max_gpus: int = Field(description="the largest N of philly-<N>")
    policies: list[str] = Field(description="registered policies (policy)")


def bundled_traces(root: Path) -> list[str]:
    """The bundled traces' names (paths under the traces folder), sorted."""
    found = {p.relative_to(root).as_posix() for pattern in BUNDLED for p in root.glob(pattern)
             if p.is_file()}
    return sorted(found)


def router(simulations: Simulations | None) -> APIRouter:
    """The routes over ``simulations`` (None: no state directory to keep reports in; the
    routes then answer 503)."""
    from slicebox.service.app import _problems

    api = APIRouter(prefix="/v1", tags=["simulations"])

    def runner() -> Simulations:
        if simulations is None:
            raise ProblemError(503, "unavailable", "this service has no state directory to "
                               "keep simulation reports in")
        return simulations

    @api.get("/simulations/traces", response_model=list[str], responses=_problems(401, 403))
    def traces(caller: Reader) -> list[str]:
        """The bundled traces a simulation may name (``trace``)."""
        from slicebox.sim.traces import traces_dir

        return bundled_traces(traces_dir())

    @api.get("/simulations/choices", response_model=Choices, responses=_problems(401, 403))
    def choices(caller: Reader) -> Choices:
        """What a simulation request may name: bundled traces, pool presets, policies."""
        from slicebox import policies
        from slicebox.sim.traces import traces_dir

        # philly-2000: the size `slicebox simulate` uses for the Philly trace
        return Choices(traces=bundled_traces(traces_dir()), pools=[*POOLS, "philly-2000"],
                       philly_max_gpus=MAX_PHILLY_GPUS, policies=list(policies.names()))

    @api.post("/simulations", status_code=202, response_model=Simulation,
              responses={**_problems(400, 401, 403, 413, 422, 503),
                         429: {"description": "as many simulations wait as allowed",
                               "content": {MEDIA_TYPE: {"schema": {
                                   "$ref": "#/components/schemas/Problem"}}}}})
    def submit(request: SimulationRequest, caller: Submitter,
               response: Response) -> Simulation:
        """Queue a simulation (admin or submit token); poll GET /v1/simulations/{id}."""
        sims = runner()
        asked, upload, trace_name = _checked(request)
        record = SimulationRecord(id=new_id(), team=caller.team, state="queued",
                                  trace=trace_name, pool=request.pool, policy=request.policy,
                                  round_seconds=request.round_seconds,
                                  submitted_at=time.time())
        try:
            record = sims.submit(record, asked, upload)
        except QueueFull as exc:
            raise ProblemError(429, "too-many-simulations", str(exc),
                               headers={"Retry-After": "30"}) from None
        response.headers["Location"] = f"/v1/simulations/{record.id}"
        return _view(sims, record, with_report=False)

    @api.get("/simulations", response_model=list[Simulation], responses=_problems(401, 403))
    def listed(caller: Reader) -> list[Simulation]:
        """The caller's team's simulations, oldest first (every team's for an admin);
        without their reports (GET one for it)."""
        if simulations is None:
            return []
        return [_view(simulations, r, with_report=False) for r in simulations.all()
                if caller.sees(r.team)]

    @api.get("/simulations/{sim_id}", response_model=Simulation,
             responses=_problems(401, 403, 404))
    def one(sim_id: SIM_ID, caller: Reader) -> Simulation:
        """Where a simulation stands; once succeeded, its report."""
        record = simulations.get(sim_id) if simulations is not None else None
        if record is None or not caller.sees(record.team):
            raise ProblemError(404, "not-found", f"no simulation {sim_id!r}")
        return _view(simulations, record, with_report=True)  # type: ignore[arg-type]

    @api.get("/simulations/{sim_id}/plots/{name}", response_class=Response,
             responses={200: {"description": "the plot", "content": {"image/png": {
                 "schema": {"type": "string", "format": "binary"}}}},
                 **_problems(401, 403, 404)})
    def plot(sim_id: SIM_ID, name: PlotName, caller: Reader) -> Response:
        """One of a succeeded simulation's plots, by name (see its ``plots``)."""
        record = simulations.get(sim_id) if simulations is not None else None
        if simulations is None or record is None or not caller.sees(record.team):
            raise ProblemError(404, "not-found", f"no simulation {sim_id!r}")
        data = _plot_bytes(simulations, sim_id, name) if record.state == "succeeded" else None
        if data is None:
            raise ProblemError(404, "not-found", f"simulation {sim_id} has no plot {name!r}")
        return Response(data, media_type="image/png", headers={
            "X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"})

    return api


def _report_folder(sims: Simulations, sim_id: str) -> Path:
    return sims.root / sim_id / "report"


def _plot_bytes(sims: Simulations, sim_id: str, name: str) -> bytes | None:
    """A plot's bytes: ``name`` is one of PLOTS and ``sim_id`` matched its pattern, so the
    path stays in the simulation's report folder; a link there is not followed."""
    if name not in PLOTS:
        return None
    try:
        fd = os.open(_report_folder(sims, sim_id) / name, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        data = handle.read(MAX_PLOT_BYTES + 1)
    return data if len(data) <= MAX_PLOT_BYTES else None


def _plots(sims: Simulations, sim_id: str) -> list[str]:
    folder = _report_folder(sims, sim_id)
    return [name for name in PLOTS
            if (folder / name).is_file() and not (folder / name).is_symlink()]


def _checked(request: SimulationRequest) -> tuple[dict[str, Any], bytes | None, str]:
    """What the worker is given, the uploaded trace, and the trace's name; a problem
    naming the field otherwise."""
    from slicebox import policies
    from slicebox.sim.traces import traces_dir

    def refuse(field: str, reason: str) -> ProblemError:
        return ProblemError(422, "invalid-simulation", f"simulation: {field}: {reason}",
                            field=field, reason=reason)

    if request.policy not in policies.names():
        raise refuse("policy", f"unknown policy {request.policy[:40]!r} (one of "
                               f"{', '.join(policies.names())})")
    philly = re.fullmatch(r"philly-([0-9]{1,9})", request.pool)
    if request.pool not in POOLS and not (
            philly and 1 <= int(philly.group(1)) <= MAX_PHILLY_GPUS):
        raise refuse("pool", f"unknown pool {request.pool!r} (one of {', '.join(POOLS)}, "
                             f"or philly-<N> with N from 1 to {MAX_PHILLY_GPUS})")
    asked: dict[str, Any] = {"pool": request.pool, "policy": request.policy,
                             "round_seconds": request.round_seconds,
                             "skip_bad_lines": request.skip_bad_lines}
    if request.trace is not None:
        root = traces_dir()
        if request.trace not in bundled_traces(root):
            raise refuse("trace", f"no bundled trace {request.trace[:200]!r} (GET "
                                  "/v1/simulations/traces lists them)")
        asked["trace_file"] = str(root / request.trace)
        return asked, None, request.trace
    text = request.trace_text or ""
    if "\x00" in text:
        raise refuse("trace_text", "holds a NUL character")
    try:
        upload = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        raise refuse("trace_text", "is not valid Unicode text") from None
    if len(upload) > MAX_UPLOAD_BYTES:
        raise refuse("trace_text", f"is {len(upload):,} bytes; at most {MAX_UPLOAD_BYTES:,}")
    if upload.count(b"\n") > MAX_UPLOAD_LINES:
        raise refuse("trace_text", f"has more than {MAX_UPLOAD_LINES:,} lines")
    asked["trace_format"] = request.trace_format
    return asked, upload, f"uploaded ({request.trace_format})"


def _view(sims: Simulations, record: SimulationRecord, *, with_report: bool) -> Simulation:
    progress = sims.progress(record.id) if record.state in ("running", "succeeded") else None
    summary = markdown = None
    if with_report and record.state == "succeeded":
        summary, markdown = sims.report(record.id)
        if isinstance(summary, dict):
            summary = {**summary, "trace": record.trace}  # not a path on this machine
    try:
        shown = Progress(**progress) if isinstance(progress, dict) else None
    except (TypeError, ValueError):
        shown = None
    return Simulation(id=record.id, team=record.team, state=record.state, trace=record.trace,
                      pool=record.pool, policy=record.policy,
                      round_seconds=record.round_seconds, submitted_at=record.submitted_at,
                      started_at=record.started_at, finished_at=record.finished_at,
                      error=record.error, progress=shown,
                      report=summary if isinstance(summary, dict) else None,
                      report_markdown=markdown,
                      plots=_plots(sims, record.id) if with_report and summary else [])
