"""``slicebox.Client``: the service's API from Python.

    client = slicebox.Client("http://127.0.0.1:8765", token)
    job = client.submit("train.yaml")        # a path, a dict, a JobSpec or YAML text
    for line in client.logs(job["id"], follow=True):
        print(line)
    client.wait(job["id"], timeout=600)

Every refusal raises a ``ClientError`` (a ``SliceboxError``) carrying the problem details:
``status``, ``detail`` (the message the CLI would print), and for a refused spec the
``field`` and ``reason``. A refused spec is also an ``InputError`` (the CLI's exit 2).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from slicebox.errors import InputError, SliceboxError

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
MAX_SPEC_FILE_BYTES = 256 * 1024  # what the service accepts as one job spec


class ClientError(SliceboxError):
    """The service refused a request, or could not be reached (``status`` 0)."""

    def __init__(self, status: int, detail: str, problem: Mapping[str, Any] | None = None
                 ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.problem: dict[str, Any] = dict(problem or {})
        self.field: str | None = self.problem.get("field")
        self.reason: str | None = self.problem.get("reason")


class Unauthorized(ClientError):
    """401: no token, or not a valid one."""


class Forbidden(ClientError):
    """403: the token's scope or team does not allow this."""


class NotFound(ClientError):
    """404: no such job (or another team's)."""


class Conflict(ClientError):
    """409: the job is not in a state that allows this (e.g. cancelling a finished job)."""


class Rejected(ClientError, InputError):
    """400/413/415/422: what was sent is wrong (a spec names its field and reason)."""


class Busy(ClientError):
    """429: the service has as much of this queued as it allows (simulations); retry later."""


class Unreachable(ClientError):
    """No answer from the service (not running, wrong URL, network)."""


class WaitTimeout(ClientError):
    """``wait`` ran out of time before the job ended."""


_BY_STATUS: dict[int, type[ClientError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound,
                                           409: Conflict, 400: Rejected, 413: Rejected,
                                           415: Rejected, 422: Rejected, 429: Busy}


class Client:
    """A client of one service, with one token (``slicebox token create``)."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url + "/v1", timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"},
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- jobs ---------------------------------------------------------------------------

    def submit(self, spec: str | os.PathLike[str] | Mapping[str, Any] | Any,
               cwd: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Queue a job; the job as the service has it (``["id"]`` is its id).

        ``spec``: a path to a job file, YAML text, a mapping, or a ``JobSpec``. Relative
        paths in it are relative to ``cwd`` (default: this process's working directory,
        as for ``slicebox submit``), which must be visible to the service's machine."""
        params = {"cwd": os.path.abspath(cwd if cwd is not None else os.getcwd())}
        if isinstance(spec, Mapping):
            return self._json("POST", "/jobs", params=params, json=dict(spec))
        if hasattr(spec, "model_dump"):  # a JobSpec
            return self._json("POST", "/jobs", params=params,
                              json=spec.model_dump(mode="json", exclude_none=True))
        if isinstance(spec, str) and "\n" in spec:
            body = spec.encode()
        else:
            body = _read_spec_file(Path(spec))
        return self._json("POST", "/jobs", params=params, content=body,
                          headers={"Content-Type": "application/yaml"})

    def jobs(self, states: list[str] | None = None) -> list[dict[str, Any]]:
        """The token's team's jobs (every team's for an admin token), oldest first."""
        return self._json("GET", "/jobs", params={"state": states} if states else None)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/jobs/{_id(job_id)}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job: ``{"id", "state", "cancel_requested"}``."""
        return self._json("POST", f"/jobs/{_id(job_id)}/cancel")

    def events(self, job_id: str, after: int = 0) -> list[dict[str, Any]]:
        return self._json("GET", f"/jobs/{_id(job_id)}/events", params={"after": after})

    def wait(self, job_id: str, timeout: float | None = None,
             poll_seconds: float = 1.0) -> dict[str, Any]:
        """The job once it has ended (succeeded, failed or cancelled); ``WaitTimeout``
        after ``timeout`` seconds (None: no limit)."""
        return _wait_until_ended(lambda: self.job(job_id), f"job {job_id}", timeout,
                                 poll_seconds)

    def logs(self, job_id: str, follow: bool = False, lines: int = 1000,
             raw: bool = False) -> Iterator[str]:
        """The job's log lines (without newlines). ``follow``: waits for the job to start
        and yields lines as they are written, until the job ends."""
        params = {"follow": follow, "lines": lines, "raw": raw}
        timeout = httpx.Timeout(self._http.timeout.connect, read=None) if follow else None
        request = self._http.build_request("GET", f"/jobs/{_id(job_id)}/logs", params=params,
                                           timeout=timeout or self._http.timeout)
        try:
            response = self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise Unreachable(0, f"{self.url}: {exc}") from None
        try:
            if response.status_code >= 400:
                response.read()
                raise _error(response)
            yield from response.iter_lines()
        finally:
            response.close()

    # ---- services -------------------------------------------------------------------------

    def services(self, include_cancelled: bool = False) -> list[dict[str, Any]]:
        """The token's team's services (every team's for an admin token), oldest first:
        replicas ``running``/``desired``, the balancer's ``url``, ``rate_rps``, ``p99_ms``.
        A service is submitted with ``submit`` (a spec with ``kind: service``)."""
        return self._json("GET", "/services",
                          params={"all": True} if include_cancelled else None)

    def service(self, service_id: str) -> dict[str, Any]:
        """One service, with ``replicas`` (job ids and states of those not ended)."""
        return self._json("GET", f"/services/{_id(service_id)}")

    def cancel_service(self, service_id: str) -> dict[str, Any]:
        """Stop a service (its replicas, then its balancer): ``{"id", "name", "state"}``."""
        return self._json("POST", f"/services/{_id(service_id)}/cancel")

    # ---- pool ---------------------------------------------------------------------------

    def pool(self) -> dict[str, Any]:
        """Nodes, devices, cores, and who holds each slice and core now."""
        return self._json("GET", "/pool")

    def profiles(self) -> list[dict[str, Any]]:
        return self._json("GET", "/profiles")

    # ---- simulations ----------------------------------------------------------------------

    def traces(self) -> list[str]:
        """The bundled traces a simulation may name."""
        return self._json("GET", "/simulations/traces")

    def simulate(self, trace: str | None = None, *, pool: str, policy: str = "slicebox",
                 trace_text: str | None = None, trace_format: str | None = None,
                 round_seconds: float | None = None, skip_bad_lines: bool = False
                 ) -> dict[str, Any]:
        """Queue a simulation (what ``slicebox simulate`` runs) of a bundled ``trace``, or
        of ``trace_text`` in ``trace_format``, on a preset ``pool``; ``["id"]`` is its id.
        ``Busy`` when the service has as many waiting as it allows."""
        body: dict[str, Any] = {"pool": pool, "policy": policy,
                                "skip_bad_lines": skip_bad_lines}
        for key, value in (("trace", trace), ("trace_text", trace_text),
                           ("trace_format", trace_format), ("round_seconds", round_seconds)):
            if value is not None:
                body[key] = value
        return self._json("POST", "/simulations", json=body)

    def simulation(self, sim_id: str) -> dict[str, Any]:
        """A simulation's state and progress; once succeeded, ``["report"]`` (the summary
        ``slicebox simulate`` writes) and ``["report_markdown"]``."""
        return self._json("GET", f"/simulations/{_id(sim_id)}")

    def simulations(self) -> list[dict[str, Any]]:
        return self._json("GET", "/simulations")

    def wait_simulation(self, sim_id: str, timeout: float | None = None,
                        poll_seconds: float = 1.0) -> dict[str, Any]:
        """The simulation once it has ended; ``WaitTimeout`` after ``timeout`` seconds."""
        return _wait_until_ended(lambda: self.simulation(sim_id), f"simulation {sim_id}",
                                 timeout, poll_seconds)

    # ---- internals ----------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(0, f"{self.url}: {exc}") from None
        if response.status_code >= 400:
            raise _error(response)
        return response.json()


def _id(job_id: str) -> str:
    # An id goes into the path: refuse what would change the path (/, .., ?, #).
    if not job_id or not all(c.isalnum() or c in "_-" for c in job_id):
        raise Rejected(0, f"{job_id[:40]!r} is not a job id")
    return job_id


def _read_spec_file(path: Path) -> bytes:
    from slicebox.untrusted import PathProblem, read_regular_file

    try:
        return read_regular_file(path, MAX_SPEC_FILE_BYTES, "a job spec")
    except PathProblem as exc:
        raise Rejected(0, f"{path}: cannot read the file: {exc}") from None


def _error(response: httpx.Response) -> ClientError:
    problem: dict[str, Any] = {}
    try:
        data = response.json()
        if isinstance(data, dict):
            problem = data
    except ValueError:
        pass
    detail = str(problem.get("detail") or response.reason_phrase or "error")
    kind = _BY_STATUS.get(response.status_code, ClientError)
    return kind(response.status_code, detail, problem)


def _wait_until_ended(read: Callable[[], dict[str, Any]], what: str, timeout: float | None,
                      poll_seconds: float) -> dict[str, Any]:
    """``read()`` polled until its ``state`` is terminal; ``WaitTimeout`` after ``timeout``
    seconds (None: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        item = read()
        if item["state"] in TERMINAL:
            return item
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(0, f"{what} is still {item['state']} after {timeout:g} s")
        time.sleep(poll_seconds if deadline is None
                   else max(min(poll_seconds, deadline - time.monotonic()), 0.0))
