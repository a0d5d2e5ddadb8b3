"""The controller under load: what one pass costs as the queue grows, how fast it starts
jobs, how much CPU it uses, and what it takes from the jobs' own speed.

Run: ``.venv/bin/python benchmarks/controller_load.py [--jobs 2000] [--seconds 20]``.
Not part of the test suite; it prints what it measured.

1. Pass time: two long jobs hold every job core, so everything else waits; the median
   ``run_once`` with 10 queued against the median with ``--jobs`` queued (goal: within 2x).
2. Throughput: the blockers go, and the ``--jobs`` tiny jobs (``true``) run to the end:
   starts per second, and the controller's CPU (process time / wall time).
3. Speed of a job: the same CPU-bound job (counting, reporting samples) run bare, pinned
   to the jobs' core, and under Slicebox on that core while the controller, pinned to its
   reserved core, drives a queue. The ratio of samples/s (goal >= 0.97).
"""

from __future__ import annotations

import argparse
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
        print(':::SLICEBOX ' + json.dumps({"samples": n}), flush=True)
print('RATE', n / (time.monotonic() - start), flush=True)
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
    small = _median_pass(controller, 20)
    queued += [submit_spec(store, pool, placer, _spec(f"t{i}", ["true"]), cwd=root)
               for i in range(10, jobs)]
    controller.run_once()  # the first pass over new arrivals writes their wait reasons
    large = _median_pass(controller, 20)
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


def _bare_rate(core: int, seconds: float) -> float:
    out = subprocess.run(["taskset", "-c", str(core), sys.executable, "-c", COUNTER,
                          str(seconds)], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1].split()[1])


def job_speed(seconds: float, root: Path) -> None:
    if len(CORES) < 2:
        print("job speed: needs 2 cores (one reserved for the controller); skipped")
        return
    state = root / "speed"
    store = Store.open(state)
    full = _pool(root)
    reserved = choose_reserved(full.nodes[0], "1")
    pool = without_cores(full, "local", reserved)
    job_core = pool.nodes[0].cores[0]
    bare = _bare_rate(job_core, seconds)
    placer = Placer(pool)
    job = submit_spec(store, pool, placer,
                      _spec("counter", [sys.executable, "-c", COUNTER, str(seconds)]),
                      cwd=root)
    for i in range(200):  # a queue for the controller to chew on while the job runs
        submit_spec(store, pool, placer, _spec(f"w{i}", ["true"], cpus=len(pool.nodes[0].cores)),
                    cwd=root)
    cpu0, wall0 = [0.0], [0.0]

    def drive() -> None:
        where = pin_controller(reserved)
        print(f"controller pinned to core(s) {','.join(map(str, where))}; job on core "
              f"{job_core}")
        controller = _controller(store, pool, state)
        controller.interval = 0.5
        cpu0[0], wall0[0] = time.thread_time(), time.monotonic()
        while not store.job(job).state.terminal:
            controller.run_once()
            time.sleep(controller.interval)
        cpu0[0], wall0[0] = time.thread_time() - cpu0[0], time.monotonic() - wall0[0]
        controller.close()

    thread = threading.Thread(target=drive)
    thread.start()
    thread.join()
    log = store.job(job).log_path
    rate = float(Path(log or "").read_text().strip().splitlines()[-1].split()[1])
    print(f"job speed: bare {bare:,.0f} samples/s, under Slicebox {rate:,.0f} samples/s: "
          f"{rate / bare:.3f}x (goal >= 0.97); controller CPU while it ran "
          f"{cpu0[0] / max(wall0[0], 1e-9):.0%} of its core")
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
