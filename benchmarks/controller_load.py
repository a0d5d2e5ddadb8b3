"""The controller under load: what one pass costs as the queue grows, how fast it starts
jobs, how much CPU it uses, and what it takes from the jobs' own speed.

Run: ``.venv/bin/python benchmarks/controller_load.py [--jobs 2000] [--seconds 20]``.
Not part of the test suite; it prints what it measured.

1. Pass time: two long jobs hold every job core, so everything else waits; the median
   ``run_once`` with 10 queued against the median with ``--jobs`` queued (goal: within 2x).
2. Throughput: the blockers go, and the ``--jobs`` tiny jobs (``true``) run to the end:
   starts per second, and the controller's CPU (process time / wall time).
3. Speed of a job: the same CPU-bound job (counting, reporting samples) run bare, pinned
   to the jobs' core, and under Slicebox on that core at the same time, while the
   controller, pinned to its reserved core, drives a queue. The ratio of samples/s
   (goal >= 0.97).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from slicebox import policies
from slicebox.backends.local import LocalBackend
from slicebox.controller import Controller, submit_spec
from slicebox.controller.reserve import choose_reserved, pin_controller, without_cores
from slicebox.placement import Placer
from slicebox.pool.files import load_pool
from slicebox.pool.model import Pool
from slicebox.snapshot import JobState
from slicebox.spec.job import JobSpec
from slicebox.store import Store

CORES = sorted(os.sched_getaffinity(0))
COUNTER = """
import json, os, sys, time
end = time.monotonic() + float(sys.argv[1])
n, last, start = 0, time.monotonic(), time.monotonic()
while time.monotonic() < end:
    for _ in range(20000):
        n += 1
    if time.monotonic() - last > 0.5:
        last = time.monotonic()
        print(':::SLICEBOX ' + json.dumps({"samples": n, "time": time.time()}), flush=True)
"""


def _pool(root: Path) -> Pool:
    path = root / "pool.yaml"
    path.write_text(yaml.safe_dump({"name": "bench", "nodes": [
        {"name": "local", "memory_gib": 8, "cores": {0: CORES}}]}))
    return load_pool(path)


def _controller(store: Store, pool: Pool, state: Path) -> Controller:
    return Controller(store, pool, policies.get("fifo"), Placer(pool),
                      LocalBackend(state, node="local"), state, interval=0.0)


def _spec(name: str, command: list[str], cpus: int = 1) -> JobSpec:
    return JobSpec.model_validate({"name": name, "command": command,
                                   "resources": {"cpus": cpus, "memory_gib": 0.5}})


def _median_pass(controller: Controller, rounds: int) -> float:
    """The median of ``rounds`` passes after the arrivals have been decided on (the first
    pass over new jobs parses their specs and writes their wait reasons, once)."""
    for _ in range(3):
        controller.run_once()
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        controller.run_once()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def pass_and_throughput(jobs: int, run: int, root: Path) -> None:
    state = root / "state"
    store = Store.open(state)
    pool = _pool(root)
    placer = Placer(pool)
    blockers = [submit_spec(store, pool, placer, _spec(f"block{i}", ["sleep", "600"]),
                            cwd=root) for i in range(len(CORES))]
    controller = _controller(store, pool, state)
    controller.run_once()
    assert all(store.job(b).state is JobState.RUNNING for b in blockers)
    queued = [submit_spec(store, pool, placer, _spec(f"t{i}", ["true"]), cwd=root)
              for i in range(10)]
    controller.run_once()
    small = _median_pass(controller, 60)
    queued += [submit_spec(store, pool, placer, _spec(f"t{i}", ["true"]), cwd=root)
               for i in range(10, jobs)]
    began = time.perf_counter()
    controller.run_once()
    print(f"first pass over {jobs - 10} new arrivals: {time.perf_counter() - began:.2f} s "
          "(specs parsed and wait reasons written once)")
    large = _median_pass(controller, 60)
    print(f"pass time: {small * 1000:.1f} ms with 10 queued, {large * 1000:.1f} ms with "
          f"{jobs} queued: ratio {large / small:.2f} (goal <= 2)")
    # A pass that has to decide again (one more arrival) with the full queue:
    submit_spec(store, pool, placer, _spec("one-more", ["true"]), cwd=root)
    began = time.perf_counter()
    controller.run_once()
    print(f"a pass after one arrival with {jobs + 1} queued: "
          f"{(time.perf_counter() - began) * 1000:.1f} ms (policy and placement over the "
          "whole queue)")
    for job_id in queued[run:]:  # only --run of them are run to the end
        store.request_cancel(job_id)
    queued = queued[:run]
    jobs = len(queued)
    for blocker in blockers:
        store.request_cancel(blocker)
    cpu0, wall0 = time.process_time(), time.monotonic()
    while not all(store.job(j).state.terminal for j in queued):
        controller.run_once()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    done = sum(store.job(j).state is JobState.SUCCEEDED for j in queued)
    print(f"throughput: {done}/{jobs} tiny jobs succeeded in {wall:.1f} s: "
          f"{jobs / wall:.1f} starts/s; controller CPU {cpu / wall:.0%} of one core "
          f"({cpu:.1f} s CPU)")
    controller.close()
    store.close()


def _reports(output: str) -> list[tuple[float, int]]:
    found = []
    for line in output.splitlines():
        if line.startswith(":::SLICEBOX "):
            data = json.loads(line.removeprefix(":::SLICEBOX "))
            found.append((float(data["time"]), int(data["samples"])))
    return found


def _overlap_rates(a: list[tuple[float, int]], b: list[tuple[float, int]]
                   ) -> tuple[float, float, float]:
    """Each run's samples/s over the window both ran in (so neither had the core alone)."""
    start, end = max(a[0][0], b[0][0]), min(a[-1][0], b[-1][0])

    def rate(series: list[tuple[float, int]]) -> float:
        inside = [(t, n) for t, n in series if start <= t <= end]
        (t0, n0), (t1, n1) = inside[0], inside[-1]
        return (n1 - n0) / (t1 - t0)

    return rate(a), rate(b), end - start


def job_speed(seconds: float, root: Path) -> None:
    """The same counter twice on the jobs' core at the same time: once as a Slicebox job,
    once bare (``taskset``). They share the core, so each gets about half of it; any
    overhead of Slicebox's shows as the job's rate falling below the bare one's."""
    if len(CORES) < 2:
        print("job speed: needs 2 cores (one reserved for the controller); skipped")
        return
    state = root / "speed"
    store = Store.open(state)
    full = _pool(root)
    reserved = choose_reserved(full.nodes[0], "1")
    pool = without_cores(full, "local", reserved)
    job_core = pool.nodes[0].cores[0]
    placer = Placer(pool)
    job = submit_spec(store, pool, placer,
                      _spec("counter", [sys.executable, "-c", COUNTER, str(seconds)]),
                      cwd=root)
    for i in range(200):  # a queue for the controller to chew on while the job runs
        submit_spec(store, pool, placer, _spec(f"w{i}", ["true"], cpus=len(pool.nodes[0].cores)),
                    cwd=root)
    measured: dict[str, float] = {}
    bare: list[subprocess.Popen[str]] = []

    def drive() -> None:
        where = pin_controller(reserved)
        print(f"controller pinned to core(s) {','.join(map(str, where))}; job and bare run "
              f"share core {job_core}")
        controller = _controller(store, pool, state)
        controller.interval = 0.5
        cpu, wall = time.thread_time(), time.monotonic()
        while not store.job(job).state.terminal:
            controller.run_once()
            if not bare and store.job(job).pid is not None:
                bare.append(subprocess.Popen(
                    ["taskset", "-c", str(job_core), sys.executable, "-c", COUNTER,
                     str(seconds)], stdout=subprocess.PIPE, text=True))
            time.sleep(controller.interval)
        measured["cpu"], measured["wall"] = time.thread_time() - cpu, time.monotonic() - wall
        controller.close()

    thread = threading.Thread(target=drive)
    thread.start()
    thread.join()
    comp = store.job(job).composition
    print(f"the job's composition: {comp.describe() if comp else '-'}")
    bare_series = _reports(bare[0].communicate()[0])
    log = store.job(job).log_path
    rate, bare_rate, window = _overlap_rates(_reports(Path(log or "").read_text()),
                                             bare_series)
    print(f"job speed: bare {bare_rate:,.0f} samples/s, under Slicebox {rate:,.0f} samples/s "
          f"on the same core over the same {window:.0f} s: {rate / bare_rate:.3f}x "
          "(goal >= 0.97); "
          f"controller CPU while it ran {measured['cpu'] / max(measured['wall'], 1e-9):.0%} "
          "of its reserved core")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--run", type=int, default=None,
                        help="run only this many of the queued jobs to the end")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of a speed run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pass_and_throughput(args.jobs, args.run or args.jobs, root)
        job_speed(args.seconds, root)


if __name__ == "__main__":
    main()
