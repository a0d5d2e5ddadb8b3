"""The service's HTTP API: FastAPI, versioned under ``/v1``, OpenAPI at ``/openapi.json``.

The service only reads the store and writes to it, as the CLI does: it queues jobs and
asks for cancels; the controller (a separate loop, possibly another process) runs what
the store says. So it is safe beside a running controller, and two services on one store
are too. A job is admitted exactly as ``slicebox submit`` admits one
(``controller.submit.submit_spec``: the spec, the pool's "could this ever fit", the
program, the workdir, the dataset), and a refusal carries the CLI's message, with its
field and reason (``problems.py``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import StreamingResponse

from slicebox.errors import InputError
from slicebox.service import dashboard, history_routes, models, services_routes
from slicebox.service.auth import Caller, Reader, Submitter
from slicebox.service.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit
from slicebox.service.logs import log_lines
from slicebox.service.pool_view import pool_view
from slicebox.service.problems import MEDIA_TYPE, Problem, ProblemError, install
from slicebox.snapshot import JobState
from slicebox.spec import JobSpec, SpecError, parse_spec
from slicebox.spec.job import MAX_SPEC_BYTES
from slicebox.store import JobRecord, Store, UnknownJob
from slicebox.untrusted import parse_yaml

if TYPE_CHECKING:
    from slicebox.placement import Placer
    from slicebox.pool.model import Pool
    from slicebox.service.metrics import RoundLatency

log = logging.getLogger(__name__)
SPEC_SOURCE = "job spec"  # how a refusal names the submitted spec (the CLI names the file)
JSON_TYPES = frozenset({"application/json"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JOB_ID = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_-]{1,32}$", description="a job id")]


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": f"problem details ({status})", "content": {
        MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for status in statuses}


def create_app(store: Store, pool: Pool | Callable[[], Pool],
               placer: Placer | Callable[[], Placer] | None = None, *,
               state_dir: Path | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               poll_seconds: float = 0.5, simulation_workers: int = 1,
               simulation_queue: int = 4, simulation_time_limit_s: float = 900.0,
               rounds: RoundLatency | None = None, mlflow_ui: str | None = None) -> FastAPI:
    """The API over ``store`` for ``pool`` (admission asks ``placer``, by default the
    pool's own, whether a job could ever fit). Either may be a function that returns the
    current one: beside a controller whose pool changes (nodes joining or leaving a Ray
    cluster), pass ``lambda: controller.pool`` and ``lambda: controller.placer``.
    ``state_dir``: where ``profiles.json`` is (default: the store's state directory), and
    ``simulations/`` (reports of ``POST /v1/simulations``; ``simulation_workers`` run at
    once, at most ``simulation_queue`` wait, each for at most ``simulation_time_limit_s``).
    ``rounds``: the scheduling rounds of the controller beside the service, for /metrics.
    ``mlflow_ui``: the MLflow UI's address (http or https), which /v1/health gives so that
    the dashboard links each job to its run; a URL that is not one is refused here."""
    from slicebox import __version__
    from slicebox.controller.dependencies import check as check_dependencies
    from slicebox.controller.submit import submit_spec
    from slicebox.placement import Placer

    current_pool = _provider(pool)
    own: dict[int, Placer] = {}  # the placer of a pool, made once per pool

    def current_placer() -> Placer:
        if placer is not None:
            return _provider(placer)()
        the_pool = current_pool()
        if id(the_pool) not in own:
            own.clear()
            own[id(the_pool)] = Placer(the_pool)
        return own[id(the_pool)]

    profiles_dir = state_dir or store.state_dir
    mlflow_ui = mlflow_ui_url(mlflow_ui)
    app = FastAPI(title="Slicebox", version=__version__, openapi_url="/openapi.json",
                  docs_url="/docs", redoc_url=None,
                  description="Submit, watch and cancel jobs; see the pool and who holds "
                              "what. Every route but /v1/health needs 'Authorization: "
                              "Bearer <token>' (slicebox token create).")
    app.state.store = store
    install(app, SPEC_SOURCE)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    v1 = APIRouter(prefix="/v1")

    def visible(caller: Caller, job_id: str) -> JobRecord:
        """The job, if the caller may see it; another team's is as good as missing."""
        job = store.job(job_id)
        if not caller.sees(job.team):
            raise UnknownJob(f"no job {job_id!r}")
        return job

    @v1.get("/health", tags=["service"])
    def health() -> dict[str, str | None]:
        """Whether the service answers (no token needed); ``mlflow_ui``: the MLflow UI a
        job's run is shown in, as ``<mlflow_ui>/#/runs/<mlflow_run_id>`` (null: none set)."""
        return {"status": "ok", "version": __version__, "mlflow_ui": mlflow_ui}

    @v1.post("/jobs", status_code=201, response_model=models.Job | services_routes.Service,
             tags=["jobs"],
             responses=_problems(400, 401, 403, 413, 415, 422),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}},
                 "application/yaml": {"schema": {"type": "string",
                                                 "description": "a job file"}}}}})
    async def submit(request: Request, response: Response,
                     caller: Submitter,
                     cwd: Annotated[str | None, Query(max_length=4095, description=(
                         "the submitting directory (absolute): what a relative workdir, "
                         "command or dataset path is relative to"))] = None
                     ) -> models.Job | services_routes.Service:
        """Queue a job, checked exactly as `slicebox submit` checks a file; a refusal
        names the field and the reason. A spec with `kind: service` creates a service
        instead (answered as one: `kind: service`, see /v1/services)."""
        spec = _spec_of(await request.body(), request.headers.get("content-type", ""))
        spec = _with_team(spec, caller)
        where = _submitting_dir(spec, cwd)
        # Another team's job is as good as missing: its id cannot be probed by waiting on it.
        await run_in_threadpool(check_dependencies, store, spec, SPEC_SOURCE,
                                None if caller.admin else caller.team)
        if spec.kind == "service":  # a record; the controller starts its replicas
            service_id = await run_in_threadpool(
                lambda: submit_spec(store, current_pool(), current_placer(), spec, cwd=where,
                                    source=SPEC_SOURCE, services=True))
            response.headers["Location"] = f"/v1/services/{service_id}"
            log.info("service %s (%s) for team %s", service_id, spec.name, spec.team)
            return await run_in_threadpool(services_routes.service_answer, store, service_id)
        job_id = await run_in_threadpool(submit_spec, store, current_pool(), current_placer(),
                                         spec, cwd=where, source=SPEC_SOURCE)
        response.headers["Location"] = f"/v1/jobs/{job_id}"
        record = await run_in_threadpool(store.job, job_id)
        log.info("queued %s (%s) for team %s", job_id, record.name, record.team)
        return models.Job.of(record)

    @v1.get("/jobs", response_model=list[models.Job], tags=["jobs"],
            responses=_problems(401, 403))
    def jobs(caller: Reader,
             state: Annotated[list[JobState] | None,
                              Query(description="only these states")] = None,
             team: Annotated[str | None, Query(max_length=64, description=(
                 "only this team's jobs (an admin token sees every team's)"))] = None
             ) -> list[models.Job]:
        """The caller's team's jobs in submission order (every team's for an admin)."""
        if not caller.admin:
            if team is not None and team != caller.team:
                raise ProblemError(403, "forbidden", "a team's token sees only its own "
                                   "team's jobs", field="team",
                                   reason="not this token's team")
            team = caller.team
        return [models.Job.of(j) for j in store.jobs(state, team=team)]

    @v1.get("/jobs/{job_id}", response_model=models.Job, tags=["jobs"],
            responses=_problems(401, 403, 404))
    def job(job_id: JOB_ID, caller: Reader) -> models.Job:
        return models.Job.of(visible(caller, job_id))

    @v1.post("/jobs/{job_id}/cancel", response_model=models.Cancelled, tags=["jobs"],
             responses=_problems(401, 403, 404, 409))
    def cancel(job_id: JOB_ID, caller: Submitter) -> models.Cancelled:
        """A waiting job is cancelled at once; a running one is stopped gracefully (its
        checkpoint signal) by the controller."""
        visible(caller, job_id)
        record = store.request_cancel(job_id, f"cancelled through the API (token "
                                              f"{caller.token_id})")
        return models.Cancelled(id=record.id, state=record.state.value,
                                cancel_requested=record.cancel_requested)

    @v1.get("/jobs/{job_id}/events", response_model=list[models.Event], tags=["jobs"],
            responses=_problems(401, 403, 404))
    def events(job_id: JOB_ID, caller: Reader,
               after: Annotated[int, Query(ge=0, le=2**62,
                                           description="only events after this id")] = 0
               ) -> list[models.Event]:
        """Every state change and note of the job, with its reason, oldest first."""
        visible(caller, job_id)
        return [models.Event.of(e) for e in store.events(job_id, after_id=after)]

    @v1.get("/jobs/{job_id}/logs", tags=["jobs"], response_class=StreamingResponse,
            responses={200: {"description": "the log, one line per line",
                             "content": {"text/plain": {"schema": {"type": "string"}}}},
                       **_problems(401, 403, 404)})
    def logs(job_id: JOB_ID, caller: Reader,
             follow: Annotated[bool, Query(description="stream new lines until the job ends "
                                                       "(waits for it to start)")] = False,
             lines: Annotated[int, Query(ge=1, le=100_000,
                                         description="how many last lines")] = 1000,
             raw: Annotated[bool, Query(description="include :::SLICEBOX progress lines")
                            ] = False) -> StreamingResponse:
        """The job's output (stdout and stderr), as a stream of text lines."""
        record = visible(caller, job_id)
        stream = log_lines(store, record, lines=lines, raw=raw, follow=follow,
                           poll_seconds=poll_seconds)
        return StreamingResponse(stream, media_type="text/plain; charset=utf-8",
                                 headers={"X-Slicebox-Job-State": record.state.value,
                                          "Cache-Control": "no-store"})

    @v1.get("/pool", response_model=models.Pool, tags=["pool"], responses=_problems(401, 403))
    def the_pool(caller: Reader) -> models.Pool:
        """Nodes, devices, cores and memory, and which job (or, for another team's job,
        which team) holds each slice and core now."""
        active = store.jobs([JobState.STAGING, JobState.RUNNING])
        return pool_view(current_pool(), active, caller)

    @v1.get("/profiles", response_model=list[models.Profile], tags=["pool"],
            responses=_problems(401, 403))
    def profiles(caller: Reader) -> list[models.Profile]:
        """Measured throughput per workload, device kind and size (``slicebox bench`` and
        finished jobs); empty before any was measured."""
        return [models.Profile(**vars(e)) for e in _profiles(profiles_dir)]

    @app.get("/metrics", tags=["service"], response_class=Response,
             responses={200: {"description": "Prometheus text format", "content": {
                 "text/plain": {"schema": {"type": "string"}}}}, **_problems(401, 403)})
    def metrics(caller: Reader) -> Response:
        """Jobs by state and team, waits, throughput, the pool's allocated and free
        resources (Prometheus); a team's token gets its team's job series."""
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        from slicebox.service.metrics import exposition

        return Response(exposition(store, current_pool(), caller, rounds),
                        media_type=CONTENT_TYPE_LATEST)

    app.include_router(v1)
    app.include_router(history_routes.router(store))
    app.include_router(services_routes.router(store))
    from slicebox.service import sim_routes
    from slicebox.service.simulations import Simulations

    app.state.simulations = None if profiles_dir is None else Simulations(
        Path(profiles_dir) / "simulations", workers=simulation_workers,
        queue_limit=simulation_queue, time_limit_s=simulation_time_limit_s)
    app.include_router(sim_routes.router(app.state.simulations))
    dashboard.mount(app)  # the page at / and its assets under /dashboard/
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def mlflow_ui_url(url: str | None, field: str = "mlflow_ui") -> str | None:
    """``url`` as the dashboard may link to it: http(s) with a host, no user or password
    (the page shows it to every reader), no query or fragment (the run's route is added as
    a fragment); without a trailing slash. InputError naming ``field`` otherwise."""
    from urllib.parse import urlsplit

    if url is None:
        return None
    text = url.strip()
    if not text or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise InputError(f"{field}: {url[:200]!r}: give the UI's address, without spaces "
                         "or control characters")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError as exc:
        raise InputError(f"{field}: {text[:200]!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{field}: {text[:200]!r} is not an http(s) URL such as "
                         "http://127.0.0.1:5000 (where `mlflow ui` serves)")
    if parts.username is not None or parts.password is not None:
        raise InputError(f"{field}: give the URL without a user or password (the dashboard "
                         "shows it to every reader)")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise InputError(f"{field}: {text[:200]!r}: give the UI's address only, without a "
                         "query or fragment (the run's page is added as a fragment)")
    return parts.geturl().rstrip("/")


def _provider(value: Any) -> Callable[[], Any]:
    """``value`` as a function returning the current one (a Pool or Placer is not
    callable; a function given is used as it is)."""
    return value if callable(value) else (lambda: value)


def _spec_of(body: bytes, content_type: str) -> JobSpec:
    """The job spec in a request body (JSON or YAML), bounded as a job file is."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in JSON_TYPES | YAML_TYPES:
        raise ProblemError(415, "unsupported-media-type", "send the job spec as "
                           "application/json or application/yaml (got "
                           f"{media[:80] or 'no Content-Type'!r})")
    if len(body) > MAX_SPEC_BYTES:
        raise ProblemError(413, "too-large", f"the job spec is {len(body)} bytes; a job spec "
                           f"may be at most {MAX_SPEC_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{SPEC_SOURCE}: not UTF-8 text (byte {exc.start})") from None
    if media in YAML_TYPES:
        data = parse_yaml(text, SPEC_SOURCE, SpecError)
    else:
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{SPEC_SOURCE}: not valid JSON: line {exc.lineno}, column "
                            f"{exc.colno}: {exc.msg}") from None
        except ValueError as exc:  # a duplicate key
            raise SpecError(f"{SPEC_SOURCE}: {exc}") from None
        except RecursionError:
            raise SpecError(f"{SPEC_SOURCE}: nested too deeply") from None
    return parse_spec(data, SPEC_SOURCE)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key[:60]!r} is given twice")
        out[key] = value
    return out


def _with_team(spec: JobSpec, caller: Caller) -> JobSpec:
    """The spec with the caller's team; only an admin token submits for another team."""
    if spec.team is None:
        return spec.model_copy(update={"team": caller.team})
    if spec.team != caller.team and not caller.admin:
        raise ProblemError(403, "forbidden", f"{SPEC_SOURCE}: team: this token submits for "
                           f"team {caller.team!r} only", field="team",
                           reason=f"this token submits for team {caller.team!r} only")
    return spec


def _submitting_dir(spec: JobSpec, cwd: str | None) -> str:
    """What relative paths in the spec are relative to. The service's own working
    directory means nothing to a client, so it is never used."""
    if cwd is not None:
        if not os.path.isabs(cwd) or "\x00" in cwd:
            raise SpecError(f"{SPEC_SOURCE}: cwd: must be an absolute path")
        return cwd
    if spec.workdir is not None and os.path.isabs(spec.workdir):
        return spec.workdir
    raise SpecError(f"{SPEC_SOURCE}: workdir: give an absolute workdir in the spec, or the "
                    "submitting directory as ?cwd=/path (the service has no current "
                    "directory of yours)")


def _profiles(state_dir: Path | None) -> list[Any]:
    from slicebox.profiles.store import profiles_path
    from slicebox.profiles.table import ProfileTable

    if state_dir is None or not profiles_path(state_dir).exists():
        return []
    try:
        return ProfileTable.from_json(profiles_path(state_dir)).entries()
    except ValueError as exc:  # the controller sets a bad file aside; we only read
        log.warning("profiles unreadable: %s", exc)
        return []


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the job spec's (the request body of POST /v1/jobs, read by
    hand so that YAML is accepted too) and the problem details model."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    spec = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(spec.pop("$defs", {}))
    components["JobSpec"] = spec
    components["Problem"] = Problem.model_json_schema()
    app.openapi_schema = schema
    return schema
