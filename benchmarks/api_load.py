"""1,000 concurrent job submissions over loopback: all accepted or cleanly refused, none
lost or duplicated.

Starts the service in a process of its own (admission only: no controller, so every
accepted job stays queued and can be counted) on 127.0.0.1 with a temporary state
directory and a one-node pool, then fires N submissions at once from one
httpx.AsyncClient (N connections open together). A tenth of them are invalid in
different ways (more cores than the pool has, an unknown field, a bad value, malformed
JSON). Each request carries a unique job name, so the store can be checked afterwards:

* every valid request got 201 and an id; every invalid one a 4xx problem detail
  (application/problem+json) naming the field, or the request is counted as failed;
* every accepted id is in the store exactly once, under its request's name (none lost);
  no name appears twice and no refused request left a row (none duplicated); the store
  holds exactly as many jobs as were accepted.

Prints submissions per second, p50/p99 latency (from the moment all requests are released
to each one's answer: with fewer connections than requests it includes the wait for a
connection), and the verdict (exit 1 if it fails).

    .venv/bin/python benchmarks/api_load.py [--requests 1000] [--connections 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from slicebox.pool.files import load_pool
from slicebox.service.server import start
from slicebox.store import Store

POOL = "name: bench\nnodes:\n  - {name: n1, memory_gib: 8, cores: {0: \"0-3\"}}\n"
WORKDIR = "/tmp"

# (what is wrong, the change to a valid spec (None: cut the JSON short), the field the
# refusal must name (None: none, the body is not a spec at all))
INVALID: list[tuple[str, dict[str, Any] | None, str | None]] = [
    ("too many cores", {"resources": {"cpus": 64}}, "resources.cpus"),
    ("unknown field", {"colour": "blue"}, "colour"),
    ("bad priority", {"priority": "high"}, "priority"),
    ("malformed JSON", None, None),
]


@dataclass
class Outcome:
    index: int
    name: str
    valid: bool
    field: str | None  # the field an invalid request's refusal must name
    status: int  # 0: no response (a transport error or timeout)
    seconds: float
    job_id: str | None = None
    clean_refusal: bool = False
    error: str = ""


def request_body(index: int) -> tuple[str, bool, str | None, bytes]:
    """(job name, valid?, the field a refusal must name, JSON body) for request
    ``index``: one in ten is invalid."""
    name = f"load-{index:05d}"
    spec: dict = {"name": name, "command": ["python", "-c", "pass"],
                  "resources": {"cpus": 1, "memory_gib": 1}, "workdir": WORKDIR}
    if index % 10 != 7:
        return name, True, None, json.dumps(spec).encode()
    _, change, field = INVALID[(index // 10) % len(INVALID)]
    if change is None:
        return name, False, None, json.dumps(spec).encode()[:-5]  # cut off mid-document
    for key, value in change.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) else value
    return name, False, field, json.dumps(spec).encode()


async def submit_one(client: httpx.AsyncClient, index: int, gate: asyncio.Event) -> Outcome:
    name, valid, field, body = request_body(index)
    await gate.wait()  # all start together
    began = time.perf_counter()
    try:
        response = await client.post("/v1/jobs", content=body,
                                     headers={"content-type": "application/json"})
    except httpx.HTTPError as exc:
        return Outcome(index, name, valid, field, 0, time.perf_counter() - began,
                       error=f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - began
    outcome = Outcome(index, name, valid, field, response.status_code, seconds)
    if response.status_code == 201:
        outcome.job_id = response.json().get("id")
    elif 400 <= response.status_code < 500:
        problem = response.json() if response.headers.get("content-type", "").startswith(
            "application/problem+json") else {}
        outcome.clean_refusal = (bool(problem.get("detail"))
                                 and problem.get("status") == response.status_code
                                 and problem.get("field") == field)
        outcome.error = str(problem.get("detail", response.text))[:200]
    else:
        outcome.error = response.text[:200]
    return outcome


async def fire(url: str, token: str, requests: int, connections: int,
               timeout: float) -> tuple[list[Outcome], float]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits,
                                 headers={"authorization": f"Bearer {token}"}) as client:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(submit_one(client, i, gate)) for i in range(requests)]
        await asyncio.sleep(0)
        began = time.perf_counter()
        gate.set()
        outcomes = await asyncio.gather(*tasks)
        return outcomes, time.perf_counter() - began


def check(outcomes: list[Outcome], store: Store) -> list[str]:
    """What went wrong (empty: every request accepted or cleanly refused, none lost or
    duplicated)."""
    problems: list[str] = []
    for o in outcomes:
        if o.valid and (o.status != 201 or not o.job_id):
            problems.append(f"valid request {o.index}: {o.status or 'no response'} {o.error}")
        elif not o.valid and not (400 <= o.status < 500 and o.clean_refusal):
            problems.append(f"invalid request {o.index}: {o.status or 'no response'} "
                            f"{o.error}")
    rows = store.jobs()
    names = Counter(job.name for job in rows)
    ids = Counter(job.id for job in rows)
    by_id = {job.id: job for job in rows}
    accepted = [o for o in outcomes if o.status == 201 and o.job_id]
    for o in accepted:
        job = by_id.get(o.job_id or "")
        if job is None:
            problems.append(f"lost: request {o.index} got id {o.job_id}, not in the store")
        elif job.name != o.name:
            problems.append(f"request {o.index}'s id {o.job_id} holds {job.name!r}")
    problems += [f"duplicated: {n} jobs named {name!r}" for name, n in names.items() if n > 1]
    problems += [f"duplicated id {i}" for i, n in ids.items() if n > 1]
    refused = {o.name for o in outcomes if o.status != 201}
    problems += [f"refused request left a job: {name}" for name in refused & set(names)]
    if len(rows) != len(accepted):
        problems.append(f"the store holds {len(rows)} jobs; {len(accepted)} were accepted")
    return problems


def percentile(values: list[float], q: int) -> float:
    """The ``q``-th percentile (1..99)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run(requests: int, connections: int, timeout: float) -> tuple[list[Outcome], float,
                                                                  list[str]]:
    """Serve a fresh store from a separate process (so the client's work does not share
    the server's GIL), fire ``requests`` submissions, check the store: (the outcomes,
    seconds from the first request to the last answer, what went wrong)."""
    with tempfile.TemporaryDirectory(prefix="slicebox-api-load-") as tmp:
        state = Path(tmp)
        (state / "pool.yaml").write_text(POOL)
        store = Store.open(state)
        try:
            _, token = store.create_token("load", "submit")
            server = subprocess.Popen([sys.executable, __file__, "--serve", str(state)],
                                      stdout=subprocess.PIPE, text=True)
            try:
                assert server.stdout is not None
                url = server.stdout.readline().strip()
                if not url.startswith("http://"):
                    raise SystemExit(f"the service did not start (exit {server.wait(30)})")
                outcomes, wall = asyncio.run(fire(url, token, requests, connections,
                                                  timeout))
            finally:
                server.terminate()
                server.wait(60)
            return outcomes, wall, check(outcomes, store)
        finally:
            store.close()


def serve(state: Path) -> None:
    """The service over ``state`` until SIGTERM; prints its URL first."""
    store = Store.open(state)
    service = start(store, load_pool(state / "pool.yaml"), state_dir=state,
                    host="127.0.0.1", port=0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(service.url, flush=True)
    while not stop.wait(0.5):
        pass
    service.stop()
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=1000,
                        help="connections open at once (default: one per request)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="httpx's timeout (each of connect, write, read) per request")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the server process
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0
    outcomes, wall, problems = run(args.requests, args.connections, args.timeout)
    latencies = sorted(o.seconds for o in outcomes)
    statuses = Counter(o.status for o in outcomes)
    print(f"service: admission only (no controller), SQLite store, 127.0.0.1; "
          f"{args.requests} submissions, {min(args.connections, args.requests)} at once")
    print("responses: " + ", ".join(f"{s or 'none'}: {n}" for s, n in sorted(statuses.items())))
    print(f"throughput: {args.requests / wall:.0f} submissions/s ({wall:.2f} s in all)")
    print(f"latency: p50 {percentile(latencies, 50) * 1000:.0f} ms, "
          f"p99 {percentile(latencies, 99) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    if problems:
        print(f"FAIL: {len(problems)} problem(s); the first:")
        for line in problems[:15]:
            print(f"  {line}")
        return 1
    print("PASS: every submission accepted (201, an id) or cleanly refused (4xx problem "
          "detail); none lost, none duplicated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
