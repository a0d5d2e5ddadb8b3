"""What running on Ray costs a job, against the local backend on the same cores.

Run: ``.venv/bin/python benchmarks/ray_overhead.py [--address HOST:PORT] [--repeats 2]``.
Without ``--address`` it starts a one-node Ray cluster of its own on this machine (the
same cores the local backend gets) and shuts it down at the end.

Both measurements go through the real controller and store, as ``slicebox up`` runs jobs:

1. Submit -> running latency: a small job is submitted and a controller round runs at
   once (then every ``--round`` seconds); the time from the store's ``submitted_at`` to
   the moment the store holds the job's process (the backend said Started) is taken,
   ``--latency-jobs`` times per backend. Must show: under 2 s on Ray. (Under ``slicebox
   up`` a submission also waits for the next round: up to ``--interval``, 1 s by default,
   the same on both backends.)
2. Samples/s of one job: the reference workload ``python -m slicebox.bench.run image
   --quick`` on all of this machine's cores, its own ``samples_per_s`` (the result line
   it prints last, read from the controller's copy of its log), ``--repeats`` runs per
   backend after one warm-up run, in ABBA order so that load from elsewhere and warm
   caches fall on both alike. Must show: Ray within 5 % of local (no more than 5 %
   slower: ray/local >= 0.95; faster is noise or luck, not overhead). On a shared machine
   single runs vary by far more than 5 % (the spread of the local runs is printed), so
   this verdict is shown for information, on each backend's best (least disturbed) run.
3. The same, both at once (``--concurrent``): the two jobs run side by side on the same
   cores, one under each backend, so whatever else loads the machine loads both alike;
   the median ratio of their samples/s is the cost of running a job under a Ray agent
   rather than under the local controller, and is the verdict the exit code follows
   (Ray's own daemons, shared by both, are not in it: the sequential runs show those).

Not part of the test suite; it prints what it measured, side by side, with the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from slicebox import policies
from slicebox.backends.local import LocalBackend
from slicebox.controller import Controller, submit_spec
from slicebox.placement import Placer
from slicebox.pool.model import Node, Pool
from slicebox.spec.job import JobSpec
from slicebox.store import Store

CORES = tuple(sorted(os.sched_getaffinity(0)))
NODE = "local"
LATENCY_BOUND_S = 2.0
THROUGHPUT_BOUND = 0.05
WORKLOAD = [sys.executable, "-m", "slicebox.bench.run", "image", "--quick"]

BackendFactory = Callable[[Path], object]


def _spec(name: str, command: list[str], cpus: int, memory_gib: float) -> JobSpec:
    return JobSpec.model_validate({"name": name, "command": command,
                                   "resources": {"cpus": cpus, "memory_gib": memory_gib}})


class Bench:
    """One backend driven by a real controller over a fresh store."""

    def __init__(self, kind: str, root: Path, make_backend: BackendFactory,
                 pool: Pool, round_s: float) -> None:
        self.kind, self.root, self.round_s = kind, root, round_s
        self.state = root / "state"
        self.store = Store.open(self.state)
        self.pool = pool
        self.placer = Placer(pool)
        self.backend = make_backend(self.state)
        self.controller = Controller(self.store, pool, policies.get("fifo"), self.placer,
                                     self.backend, self.state,  # type: ignore[arg-type]
                                     interval=round_s)

    def submit(self, spec: JobSpec) -> str:
        return submit_spec(self.store, self.pool, self.placer, spec, cwd=self.root)

    def rounds_until(self, done: Callable[[], bool], timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.controller.run_once()
            if done():
                return
            time.sleep(self.round_s)
        raise TimeoutError(f"{self.kind}: not done within {timeout:.0f} s")

    def latency(self) -> float:
        """Seconds from submitted_at to the store holding the job's running process."""
        job_id = self.submit(_spec("latency", ["sleep", "0.5"], 1, 0.5))
        seen: list[float] = []

        def running() -> bool:
            if self.store.job(job_id).pid is not None:
                seen.append(time.time())
                return True
            return False

        self.rounds_until(running, 60)
        latency = seen[0] - self.store.job(job_id).submitted_at
        self.rounds_until(lambda: self.store.job(job_id).state.terminal, 60)
        return latency

    def samples_per_s(self) -> float:
        job_id = self.submit_workload()
        self.rounds_until(self.ended(job_id), 900)
        return self.result(job_id)

    def submit_workload(self) -> str:
        return self.submit(_spec("image", WORKLOAD, len(CORES), 4.0))

    def ended(self, job_id: str) -> Callable[[], bool]:
        return lambda: self.store.job(job_id).state.terminal

    def result(self, job_id: str) -> float:
        """The workload's own samples/s, from the result line it prints last."""
        job = self.store.job(job_id)
        log = Path(job.log_path or self.state / "logs" / f"{job_id}.log")
        for line in reversed(log.read_text(errors="replace").splitlines()):
            if line.startswith("{") and '"samples_per_s"' in line:
                return float(json.loads(line)["samples_per_s"])
        raise RuntimeError(f"{self.kind}: no result line in {log} (job {job.state.value}: "
                           f"{job.reason})")

    def close(self) -> None:
        self.controller.close()


@contextmanager
def ray_cluster(address: str | None) -> Iterator[str | None]:
    """A one-node Ray cluster on this machine (named ``local``), unless one is given."""
    import ray

    if address is None:
        ray.init(address="local", num_cpus=len(CORES), object_store_memory=80 << 20,
                 include_dashboard=False,
                 log_to_driver=False, namespace="slicebox",
                 labels={"slicebox/name": NODE})
    else:
        ray.init(address=address, namespace="slicebox", include_dashboard=False,
                 log_to_driver=False)
    try:
        yield address
    finally:
        ray.shutdown()


def local_pool() -> Pool:
    from slicebox.pool.discovery import discover_local

    return discover_local(node_name=NODE, measure=False)


def _ray_node(backend: object) -> Node:
    nodes = backend.nodes()  # type: ignore[attr-defined]
    named = [n for n in nodes if n.name == NODE] or list(nodes)
    return named[0]


def _row(name: str, local: float, ray: float, unit: str) -> str:
    return f"{name:<28} {local:>10.3f} {ray:>10.3f} {unit:<10} ratio ray/local {ray / local:6.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", help="an existing Ray cluster (default: start one)")
    parser.add_argument("--latency-jobs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--round", type=float, default=1.0, dest="round_s",
                        help="seconds between controller rounds, both backends (default: "
                             "slicebox up's 1 s)")
    parser.add_argument("--concurrent", type=int, default=3, metavar="N",
                        help="side-by-side pairs to run (0: none)")
    parser.add_argument("--skip-throughput", action="store_true",
                        help="no sequential samples/s runs")
    args = parser.parse_args(argv)

    from slicebox.backends.ray.backend import RayBackend

    with tempfile.TemporaryDirectory(prefix="ray-overhead-") as tmp, \
            ray_cluster(args.address):
        root = Path(tmp)
        (root / "local").mkdir()
        (root / "ray").mkdir()
        local = Bench("local", root / "local", lambda s: LocalBackend(s, node=NODE),
                      local_pool(), args.round_s)
        ray_backend = RayBackend(root / "ray" / "state", "auto",
                                 agent_root=str(root / "agents"))
        node = _ray_node(ray_backend)
        ray = Bench("ray", root / "ray", lambda s: ray_backend,
                    Pool((node,), "ray"), args.round_s)
        print(f"cores {list(CORES)}; Ray node {node.name!r} with cores {list(node.cores)}; "
              f"controller round {args.round_s} s")
        latencies: dict[str, list[float]] = {"local": [], "ray": []}
        for _ in range(args.latency_jobs):
            for bench in (local, ray):
                latencies[bench.kind].append(bench.latency())
        rates: dict[str, list[float]] = {"local": [], "ray": []}
        load = os.getloadavg()[0]
        if not args.skip_throughput:
            print(f"  warm-up (not counted): {local.samples_per_s():.1f} samples/s local",
                  flush=True)
            for repeat in range(args.repeats):
                for bench in (local, ray) if repeat % 2 == 0 else (ray, local):
                    rates[bench.kind].append(bench.samples_per_s())
                    print(f"  {bench.kind}: {rates[bench.kind][-1]:.1f} samples/s "
                          f"(load average {os.getloadavg()[0]:.1f})", flush=True)
        pairs: list[float] = []
        for _ in range(args.concurrent):
            ids = {bench: bench.submit_workload() for bench in (local, ray)}
            _rounds_both(ids, args.round_s)
            got = {bench.kind: bench.result(job_id) for bench, job_id in ids.items()}
            pairs.append(got["ray"] / got["local"])
            print(f"  at once: local {got['local']:.1f}, ray {got['ray']:.1f} samples/s "
                  f"(ratio {pairs[-1]:.3f}; load average {os.getloadavg()[0]:.1f})",
                  flush=True)
        local.close()
        ray.close()

    print()
    print(f"{'':<28} {'local':>10} {'ray':>10}")
    lat_local = statistics.median(latencies["local"])
    lat_ray = statistics.median(latencies["ray"])
    print(_row("submit->running median", lat_local, lat_ray, "s"))
    print(_row("submit->running max", max(latencies["local"]), max(latencies["ray"]), "s"))
    latency_ok = max(latencies["ray"]) < LATENCY_BOUND_S
    print(f"must show: Ray submit->running < {LATENCY_BOUND_S:g} s (every job): "
          f"{'MET' if latency_ok else 'NOT MET'}")
    ok = latency_ok
    if rates["local"]:
        print(_row("image --quick samples/s best", max(rates["local"]), max(rates["ray"]),
                   "samples/s"))
        print(_row("image --quick samples/s median", statistics.median(rates["local"]),
                   statistics.median(rates["ray"]), "samples/s"))
        within = max(rates["ray"]) / max(rates["local"]) >= 1 - THROUGHPUT_BOUND
        spread = max(rates["local"]) / min(rates["local"]) - 1
        print(f"sequential (information): Ray no more than {THROUGHPUT_BOUND:.0%} slower "
              f"(best runs): {'yes' if within else 'no'}; local runs alone spread by "
              f"{spread:.0%} (runs: local {[round(r, 1) for r in rates['local']]}, "
              f"ray {[round(r, 1) for r in rates['ray']]}; load average at start "
              f"{load:.1f} on {os.cpu_count()} CPUs)")
    if pairs:
        ratio = statistics.median(pairs)
        within = ratio >= 1 - THROUGHPUT_BOUND
        print(f"{'image --quick at once':<28} ratio ray/local median {ratio:6.3f} over "
              f"{len(pairs)} pairs {[round(r, 3) for r in pairs]}")
        print(f"must show: Ray samples/s within {THROUGHPUT_BOUND:.0%} of local (side by "
              f"side, ray/local >= {1 - THROUGHPUT_BOUND:.2f}): "
              f"{'MET' if within else 'NOT MET'}")
        ok = ok and within
    return 0 if ok else 1


def _rounds_both(ids: dict[Bench, str], round_s: float, timeout: float = 900) -> None:
    """Both controllers' rounds, one after the other, until both jobs have ended."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for bench in ids:
            bench.controller.run_once()
        if all(bench.ended(job_id)() for bench, job_id in ids.items()):
            return
        time.sleep(round_s)
    raise TimeoutError("the side-by-side runs did not end")


if __name__ == "__main__":
    sys.exit(main())
