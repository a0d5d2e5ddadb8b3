"""Inference services by day, training by night: static slicing against re-slicing in the
simulator, same services, same Philly-derived training trace, same pool, same policy.

    .venv/bin/python benchmarks/diurnal.py                        # slicebox and fifo
    .venv/bin/python benchmarks/diurnal.py --policies tiresias --workloads 1,2
    .venv/bin/python benchmarks/diurnal.py --rate-curve day.csv   # a recorded vision curve

Pool: 8 DGX A100 nodes (64 A100-40GB, NVLink). Services (one whole A100 a replica, rates
from ``slicebox.sim.services.REPLICA_RPS``, MLPerf Inference v1.1 Server rates):
``vision`` (ResNet-50) 60,000..600,000 requests/s peaking at 14:00 and ``qa`` (BERT)
4,000..40,000 requests/s peaking at 11:00, 10 % headroom: 37 of the 64 GPUs at the peak,
5 at night. Training: the Pollux/Sia workloads sampled from Microsoft's Philly trace
(``data/traces/pollux-workloads/philly-workload-N.csv``, 160 jobs over 8 h each), one
after another (workload 1 from 00:00, 2 from 08:00, 3 from 16:00) so training arrives
all day. Static slicing holds the peak's replicas all day; re-slicing resizes the
services every 15 min (down only after 30 min lower) and preempts training to make room.
Both count the seconds in which a service's ready replicas served less than its rate.
"""

from __future__ import annotations

import argparse
import sys
import time

from slicebox.pool.files import parse_pool
from slicebox.pool.model import Pool
from slicebox.sim import services as svc
from slicebox.sim.rate_curves import DAY_SECONDS, RateCurve, SineRate, read_rate_curve
from slicebox.sim.traces import read_trace, trace_path
from slicebox.sim.traces.model import TraceJob

HOUR = 3600.0
KIND = "A100-40GB"


def dgx_pool(nodes: int = 8) -> Pool:
    return parse_pool({"name": f"dgx-a100-{8 * nodes}", "nodes": [
        {"name": "dgx", "replicas": nodes, "memory_gib": 1024, "cores": 128,
         "gpus": [{"kind": KIND, "count": 8}], "links": "nvlink"}]}, "diurnal benchmark")


def day_services(vision_curve: RateCurve | None = None) -> list[svc.Service]:
    whole = svc.ReplicaShape(KIND, cpus=8, memory_gib=64.0)
    vision = vision_curve or SineRate(60_000.0, 600_000.0, peak_at_s=14 * HOUR)
    return [
        svc.Service("vision", vision, whole, svc.replica_rps("resnet50", whole),
                    max_replicas=64),
        svc.Service("qa", SineRate(4_000.0, 40_000.0, peak_at_s=11 * HOUR), whole,
                    svc.replica_rps("bert", whole), max_replicas=64),
    ]


def philly_day(workloads: list[int]) -> list[TraceJob]:
    """Pollux's Philly-derived workloads, each starting 8 h after the one before."""
    jobs: list[TraceJob] = []
    for position, number in enumerate(workloads):
        path = trace_path(f"pollux-workloads/philly-workload-{number}.csv")
        jobs += svc.shifted(read_trace(path).jobs, position * 8 * HOUR, f"w{number}-")
    return jobs


ROWS = (
    # label, unit, value from a run, whether a ratio means something
    ("training avg JCT", "h", lambda r: r.result.metrics.avg_jct / HOUR, True),
    ("training median JCT", "h", lambda r: r.result.metrics.median_jct / HOUR, True),
    ("training makespan", "h", lambda r: r.result.metrics.makespan / HOUR, True),
    ("service seconds short", "s", lambda r: r.services.short_seconds, True),
    ("requests beyond capacity", "", lambda r: r.services.unserved_total, True),
    ("GPU util: training", "%", lambda r: 100 * r.training_utilisation(), True),
    ("GPU held by services", "%", lambda r: 100 * r.service_share(), True),
    ("GPU util: training + service need", "%", lambda r: 100 * r.useful_utilisation(),
     True),
    ("training preemptions + resizes", "", lambda r: r.result.metrics.preemptions, False),
    ("  of them made room for replicas", "", lambda r: r.services.preempted, False),
    ("replica changes", "", lambda r: r.services.replica_changes, False),
)


def compare(policy: str, jobs: list[TraceJob], pool: Pool, services: list[svc.Service]
            ) -> tuple[dict[svc.Slicing, svc.ServicesRun], dict[svc.Slicing, float]]:
    runs, walls = {}, {}
    for slicing in svc.Slicing:
        started = time.perf_counter()
        runs[slicing] = svc.simulate(jobs, pool, policy, services, slicing)
        walls[slicing] = time.perf_counter() - started
    return runs, walls


def print_table(policy: str, runs: dict[svc.Slicing, svc.ServicesRun],
                walls: dict[svc.Slicing, float]) -> None:
    static, reslice = runs[svc.Slicing.STATIC], runs[svc.Slicing.RESLICE]
    print(f"\npolicy {policy}: {static.result.metrics.jobs} training jobs, "
          f"{static.result.total_gpus:g} GPUs")
    print(f"{'':36}{'static':>12}{'re-slicing':>12}{'static/re-slice':>17}")
    for label, unit, value, has_ratio in ROWS:
        a, b = float(value(static)), float(value(reslice))
        ratio = "-" if not has_ratio else f"{a / b:.2f}x" if b else "=" if a == b else "-"
        name = f"{label} ({unit})" if unit else label
        print(f"{name:36}{a:12,.2f}{b:12,.2f}{ratio:>17}")
    for one, other in zip(static.services.services, reslice.services.services,
                          strict=True):
        print(f"  {one.name}: replicas {one.min_ready}..{one.max_ready} static, "
              f"{other.min_ready}..{other.max_ready} re-sliced; short "
              f"{one.short_seconds:g} s / {other.short_seconds:g} s")
    unfinished = [r for r in runs.values() if r.result.metrics.finished
                  < r.result.metrics.jobs]
    for run in unfinished:
        print(f"  {run.slicing.value}: {run.result.metrics.jobs - run.result.metrics.finished}"
              " job(s) did not finish", *run.result.notes)
    print(f"  simulated in {walls[svc.Slicing.STATIC]:.1f} s (static) and "
          f"{walls[svc.Slicing.RESLICE]:.1f} s (re-slicing) wall")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default="slicebox,fifo",
                        help="comma-separated registered policies")
    parser.add_argument("--workloads", default="1,2,3", help="comma-separated, 1..8")
    parser.add_argument("--rate-curve", help="CSV time_s,rate_rps for vision (a day, "
                        "repeated)")
    args = parser.parse_args(argv)
    try:
        workloads = [int(w) for w in args.workloads.split(",")]
    except ValueError:
        parser.error("--workloads takes numbers 1..8")
    if not workloads or not all(1 <= w <= 8 for w in workloads):
        parser.error("--workloads takes numbers 1..8")
    curve = read_rate_curve(args.rate_curve, DAY_SECONDS) if args.rate_curve else None
    pool, services, jobs = dgx_pool(), day_services(curve), philly_day(workloads)
    peak = sum(s.replicas_for(s.curve.peak()) * s.shape.gpu_share for s in services)
    print(f"pool {pool.name}; services' peak holds {peak:g} of "
          f"{sum(pool.gpu_counts().values())} GPUs; training workloads {workloads}")
    for policy in args.policies.split(","):
        print_table(policy, *compare(policy, jobs, pool, services))
    return 0


if __name__ == "__main__":
    sys.exit(main())
