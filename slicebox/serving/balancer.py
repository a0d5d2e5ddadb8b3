"""The load balancer in front of a service's replicas: a small HTTP reverse proxy.

Built from libraries made for it: uvicorn serves a Starlette app on a thread of its own
(its own asyncio loop), and an ``httpx.AsyncClient`` (kept-alive connections) forwards
each request to a replica. What it adds is the serving policy:

- **Routing:** the healthy replica with the fewest requests in flight (ties in turn).
- **Health checks:** every ``health_interval_s`` each replica's ``health_path`` is asked;
  a replica that fails one is taken out at once, and one that passes is (re-)admitted.
  A new replica gets traffic only after its first passing check.
- **Retry:** a request whose connection to a replica fails before any response byte
  (refused, reset, closed) is retried once on another healthy replica, and the failed
  replica is taken out until it passes a check again. Nothing the replica answered is
  ever retried (it may have acted on the request).
- **Draining:** a replica removed by ``set_replicas`` gets no new requests; those in
  flight finish (``draining()`` says which still have some).
- **Traffic statistics** over a sliding window (``stats()``): rate, p50/p99 latency,
  errors, and the seconds whose p99 broke the objective.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from slicebox.errors import InputError, SliceboxError
from slicebox.listening import listening_socket, serve_on_thread

if TYPE_CHECKING:
    import httpx
    import uvicorn
    from starlette.requests import Request
    from starlette.responses import Response

_MAX_BODY: Final = 16 * 2**20  # a request body larger than this is refused (413)
# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business, never forwarded;
# content-length is recomputed by whoever sends the body next.
_HOP_HEADERS: Final = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length",
})
_MAX_SAMPLES: Final = 1_000_000  # latencies kept at most, whatever the window


class BalancerError(SliceboxError):
    """The balancer could not start."""


@dataclass(frozen=True)
class Replica:
    name: str
    host: str
    port: int


@dataclass(frozen=True)
class TrafficStats:
    window_s: float
    requests: int
    rate_rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    over_objective_s: int  # seconds in the window whose p99 broke the objective


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (0 < q <= 100) of already sorted values; 0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


class TrafficWindow:
    """Each request's (end time, latency, error) for the last ``window_s`` seconds.

    Separate from the proxy so it can be tested on a fake clock. Thread-safe: the proxy's
    loop records, any thread reads."""

    def __init__(self, window_s: float, objective_p99_ms: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not window_s > 0:
            raise InputError(f"window_s must be positive, got {window_s}")
        if objective_p99_ms is not None and not objective_p99_ms > 0:
            raise InputError(f"objective_p99_ms must be positive, got {objective_p99_ms}")
        self.window_s = window_s
        self.objective_p99_ms = objective_p99_ms
        self.clock = clock
        self.started = clock()
        self._samples: deque[tuple[float, float, bool]] = deque(maxlen=_MAX_SAMPLES)
        self._lock = threading.Lock()

    def record(self, latency_ms: float, error: bool) -> None:
        with self._lock:
            self._samples.append((self.clock(), latency_ms, error))

    def stats(self) -> TrafficStats:
        now = self.clock()
        cutoff = now - self.window_s
        with self._lock:
            while self._samples and self._samples[0][0] < cutoff:
                self._samples.popleft()
            samples = list(self._samples)
        # Right after start the window is not full yet: the rate is over what was seen.
        span = min(self.window_s, max(now - self.started, 1e-3))
        served = sorted(latency for _, latency, error in samples if not error)
        errors = sum(1 for *_, error in samples if error)
        return TrafficStats(
            window_s=self.window_s,
            requests=len(samples),
            rate_rps=len(samples) / span,
            p50_ms=percentile(served, 50),
            p99_ms=percentile(served, 99),
            errors=errors,
            over_objective_s=self._seconds_over(samples),
        )

    def _seconds_over(self, samples: list[tuple[float, float, bool]]) -> int:
        if self.objective_p99_ms is None:
            return 0
        per_second: dict[int, list[float]] = {}
        for at, latency, error in samples:
            # An error is a request not served within any objective.
            per_second.setdefault(int(at), []).append(math.inf if error else latency)
        return sum(1 for values in per_second.values()
                   if percentile(sorted(values), 99) > self.objective_p99_ms)


class _Backend:
    """One replica as the proxy sees it."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.base = f"http://{replica.host}:{replica.port}"
        self.healthy = False
        self.removed = False
        self.in_flight = 0


class Balancer:
    """An HTTP reverse proxy on its own thread and event loop (uvicorn + Starlette +
    httpx). ``set_replicas``, ``healthy``, ``draining`` and ``stats`` may be called from
    any thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, health_path: str = "/health",
                 health_interval_s: float = 1.0, window_s: float = 10.0,
                 objective_p99_ms: float | None = None, request_timeout_s: float = 30.0,
                 health_timeout_s: float | None = None) -> None:
        if not health_path.startswith("/") or len(health_path) > 1000:
            raise InputError(f"health_path must be a path starting with '/', got {health_path!r}")
        if not 0.01 <= health_interval_s <= 3600:
            raise InputError(f"health_interval_s must be in 0.01..3600, got {health_interval_s}")
        if not request_timeout_s > 0:
            raise InputError(f"request_timeout_s must be positive, got {request_timeout_s}")
        self.host = host
        self.port = port
        self.health_path = health_path
        self.health_interval_s = health_interval_s
        # A check must end before the next one is due, or a hung replica would stay in.
        self.health_timeout_s = health_timeout_s or min(1.0, health_interval_s)
        self.request_timeout_s = request_timeout_s
        self.window = TrafficWindow(window_s, objective_p99_ms)
        self._backends: dict[str, _Backend] = {}
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.retries = 0  # requests retried on another replica (for tests and reports)

    # -- the thread-safe surface -------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise BalancerError("the balancer has not been started")
        return self._url

    def set_replicas(self, replicas: Sequence[Replica]) -> None:
        names = [r.name for r in replicas]
        if len(set(names)) != len(names):
            raise InputError(f"replica names must be unique, got {names}")
        with self._lock:
            wanted = {r.name: r for r in replicas}
            for name, backend in list(self._backends.items()):
                if wanted.get(name) != backend.replica:
                    backend.removed = True  # drains: in-flight requests finish
                    backend.healthy = False
                    if backend.in_flight == 0:
                        del self._backends[name]
            added = []
            for name, replica in wanted.items():
                current = self._backends.get(name)
                if current is None or current.removed:
                    # A new (or re-addressed) replica waits for a passing health check.
                    self._backends[name] = _Backend(replica)
                    added.append(self._backends[name])
        loop = self._loop
        for backend in added:  # checked now, not at the next round: admitted sooner
            if loop is None:
                break
            check = self._check(backend)
            try:
                asyncio.run_coroutine_threadsafe(check, loop)
            except RuntimeError:  # the loop closed meanwhile: the balancer is stopping
                check.close()
                break

    def healthy(self) -> frozenset[str]:
        with self._lock:
            return frozenset(n for n, b in self._backends.items() if b.healthy and not b.removed)

    def in_flight(self) -> dict[str, int]:
        """Requests in flight per replica (removed ones still draining included)."""
        with self._lock:
            return {n: b.in_flight for n, b in self._backends.items()}

    def draining(self) -> frozenset[str]:
        """Removed replicas that still have requests in flight."""
        with self._lock:
            return frozenset(n for n, b in self._backends.items() if b.removed)

    def wait_drained(self, names: Sequence[str], timeout_s: float) -> bool:
        """Wait until none of ``names`` has a request in flight; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.draining() & set(names):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stats(self) -> TrafficStats:
        return self.window.stats()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import Route

        if self._thread is not None:
            raise BalancerError("the balancer is already started")
        sock = listening_socket(self.host, self.port, backlog=1024, error=BalancerError,
                                host_label="balancer host")
        bound_host, bound_port = sock.getsockname()[:2]
        app = Starlette(routes=[Route("/{path:path}", self._proxy, methods=[
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])])
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)

        async def serve() -> None:
            import httpx

            self._loop = asyncio.get_running_loop()
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.request_timeout_s, connect=2.0),
                limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
            )
            checks = asyncio.create_task(self._health_loop(), name="health-checks")
            try:
                await server.serve(sockets=[sock])
            finally:
                checks.cancel()
                await self._client.aclose()

        def stopped() -> None:
            self._loop = None
            sock.close()

        thread = serve_on_thread(server, serve, name="slicebox-balancer", what="balancer",
                                 error=BalancerError, on_exit=stopped)
        self._server, self._thread = server, thread
        self._url = f"http://{bound_host}:{bound_port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout_s)
        self._server = self._thread = None

    def __enter__(self) -> Balancer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- on the balancer's loop --------------------------------------------------------

    def _pick(self, exclude: str | None) -> _Backend | None:
        with self._lock:
            candidates = [b for n, b in self._backends.items()
                          if b.healthy and not b.removed and n != exclude]
            if not candidates:
                return None
            least = min(b.in_flight for b in candidates)
            tied = [b for b in candidates if b.in_flight == least]
            chosen = tied[next(self._turn) % len(tied)]
            chosen.in_flight += 1
            return chosen

    def _done(self, backend: _Backend) -> None:
        with self._lock:
            backend.in_flight -= 1
            name = backend.replica.name
            if (backend.removed and backend.in_flight == 0
                    and self._backends.get(name) is backend):
                del self._backends[backend.replica.name]

    def _mark_down(self, backend: _Backend) -> None:
        with self._lock:
            backend.healthy = False

    async def _proxy(self, request: Request) -> Response:
        from starlette.responses import Response

        start = time.perf_counter()
        body = await request.body()
        if len(body) > _MAX_BODY:
            return Response("request body too large\n", status_code=413)
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS]
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        tried: str | None = None
        last_error = ""
        for _attempt in range(2):  # the first replica, then one retry elsewhere
            backend = self._pick(exclude=tried)
            if backend is None:
                break
            if tried is not None:
                self.retries += 1
            try:
                answer = await self._forward(backend, request.method, target, headers, body)
            finally:  # also when the client went away and this task was cancelled
                self._done(backend)
            if isinstance(answer, Response):
                return self._answer(start, answer)
            tried, last_error = backend.replica.name, answer
        if tried is not None:
            message = f"no healthy replica answered ({last_error})\n"
        else:
            message = "no healthy replica\n"
        return self._answer(start, Response(message, status_code=503))

    async def _forward(self, backend: _Backend, method: str, target: str,
                       headers: list[tuple[str, str]], body: bytes) -> Response | str:
        """The replica's answer, or (a string: why) a failure that may be retried."""
        import httpx
        from starlette.responses import Response

        assert self._client is not None
        upstream = self._client.build_request(method, backend.base + target, headers=headers,
                                              content=body)
        try:
            # stream=True: send() returns once the status line and headers arrived, so an
            # error raised by it happened before any response byte.
            response = await self._client.send(upstream, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError,
                httpx.ReadError, httpx.WriteError) as exc:
            # Refused, reset or closed before the status line: the replica never answered,
            # so the request may go elsewhere; the replica is out until a check passes.
            self._mark_down(backend)
            return type(exc).__name__
        except httpx.TimeoutException:
            return Response("replica timed out\n", status_code=504)
        try:
            content = await response.aread()
        except httpx.HTTPError:
            return Response("replica failed mid-response\n", status_code=502)
        finally:
            await response.aclose()
        # The body is decoded already (aread), so its content-encoding no longer applies.
        out_headers = {k: v for k, v in response.headers.items()
                       if k.lower() not in _HOP_HEADERS and k.lower() != "content-encoding"}
        return Response(content, status_code=response.status_code, headers=out_headers)

    def _answer(self, start: float, response: Response) -> Response:
        self.window.record((time.perf_counter() - start) * 1000.0, response.status_code >= 500)
        return response

    async def _health_loop(self) -> None:
        while True:
            with self._lock:
                backends = [b for b in self._backends.values() if not b.removed]
            await asyncio.gather(*(self._check(b) for b in backends))
            await asyncio.sleep(self.health_interval_s)

    async def _check(self, backend: _Backend) -> None:
        import httpx

        assert self._client is not None
        try:
            response = await self._client.get(backend.base + self.health_path,
                                              timeout=self.health_timeout_s)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        with self._lock:
            if not backend.removed:
                backend.healthy = ok

