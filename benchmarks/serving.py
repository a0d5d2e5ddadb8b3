"""Autoscaled serving against a fixed maximum allocation, on the same load ramp.

    .venv/bin/python benchmarks/serving.py [--quick] [--capacity RPS] [--json]

1. The slice shape is sized from measurement (``serving.sizing``): one replica on 1, 2,
   ... cores, driven at rising rates by LoadGen's Server scenario (when installed);
   the smallest shape that serves within the objective is picked, and its capacity sets
   the autoscaler's replicas per rate (``--capacity`` skips the measurement).
2. The same open-loop ramp (rising then falling rate, Poisson arrivals, seeded) is
   driven through the balancer twice: replicas autoscaled between 1 and the most that
   fit the cores, and that most held fixed throughout.
3. Printed side by side: requests served within the objective, p99, errors, seconds
   over the objective (within ``--settle`` seconds after a step / elsewhere), and
   core-seconds allocated (cores x seconds each replica lived during the ramp) and
   CPU-seconds the replicas burned, with autoscaled / fixed ratios.

Everything runs on this machine: the client and the balancer share it with the replicas,
so absolute numbers are this machine's; the comparison is side by side on the same ramp.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slicebox.serving import loadgen_driver  # noqa: E402
from slicebox.serving.autoscaler import Autoscaler, Objective  # noqa: E402
from slicebox.serving.balancer import Balancer  # noqa: E402
from slicebox.serving.loadramp import RampReport, drive, ramp  # noqa: E402
from slicebox.serving.local_service import LocalService, Tick, prepare_weights  # noqa: E402
from slicebox.serving.replicas import LocalReplicas  # noqa: E402
from slicebox.serving.sizing import size_service  # noqa: E402

SAMPLES_PER_REQUEST = 1024  # held-out digits per request: enough work that rate matters here
BODY = {"count": SAMPLES_PER_REQUEST}


@dataclass
class Outcome:
    name: str
    report: RampReport
    core_s: float
    cpu_s: float
    replicas_seen: tuple[int, int]
    retries: int
    timeline: list[Tick]


def run(name: str, weights: Path, cores: list[int], shape: int, objective: Objective,
        rates: list[float], step_s: float, autoscaler: Autoscaler | None, initial: int,
        log_dir: Path) -> Outcome:
    balancer = Balancer(health_interval_s=0.5, window_s=4.0,
                        objective_p99_ms=objective.p99_ms)
    balancer.start()
    replicas = LocalReplicas(weights, log_dir=log_dir)
    service = LocalService(balancer, replicas, cores, shape, initial=initial,
                           autoscaler=autoscaler)
    try:
        service.start()
        core_before, cpu_before = replicas.usage()
        report = drive(balancer.url + "/predict", ramp(rates, step_s), body=BODY, seed=7)
        core_after, cpu_after = replicas.usage()
        counts = [t.replicas for t in service.timeline] or [initial]
        return Outcome(name, report, core_after - core_before, cpu_after - cpu_before,
                       (min(counts), max(counts)), balancer.retries, list(service.timeline))
    finally:
        service.stop()
        balancer.stop()


def _by_second(o: Outcome) -> list[int]:
    """Replicas running at each whole second of the run (the control thread's ticks)."""
    seen: dict[int, int] = {}
    for tick in o.timeline:
        seen.setdefault(int(tick.at_s), tick.replicas)
    return [seen[s] for s in sorted(seen)]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter steps (4 s: a 28 s ramp)")
    parser.add_argument("--objective-ms", type=float, default=200.0, help="p99 objective")
    parser.add_argument("--capacity", type=float, default=None,
                        help="replica capacity (rps) instead of measuring it")
    parser.add_argument("--settle", type=float, default=4.0,
                        help="seconds after a step during which a breach is expected")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    objective = Objective(p99_ms=args.objective_ms)
    step_s = 4.0 if args.quick else 8.0
    with tempfile.TemporaryDirectory(prefix="slicebox-serving-") as tmp:
        work = Path(tmp)
        weights = work / "model.pt"
        prepare_weights(weights)
        started = time.monotonic()
        if args.capacity is None:
            sizing = size_service(cores, weights, objective, body=BODY, start_rps=4.0,
                                  step_s=2.0)
            shape, capacity = sizing.cores, sizing.capacity_rps
            shapes = {s.cores: s.capacity_rps for s in sizing.shapes}
        else:
            shape, capacity, shapes = 1, args.capacity, {}
        sizing_s = time.monotonic() - started
        most = len(cores) // shape
        planning = 0.8 * capacity  # the measured capacity is the edge of the objective
        # Rising then falling: the peak needs every replica, the ends only one. The peak
        # stays below what they all serve together, as the client and the balancer
        # share these cores with the replicas.
        peak = 0.5 * most * capacity
        rates = [round(peak * f, 1) for f in (0.1, 0.3, 0.6, 1.0, 0.6, 0.3, 0.1)]
        scaler = Autoscaler(objective, 1, most, replica_capacity_rps=planning,
                            up_after_s=1.0, down_after_s=0.75 * step_s)
        auto = run("autoscaled", weights, cores, shape, objective, rates, step_s, scaler,
                   1, work)
        fixed = run("fixed max", weights, cores, shape, objective, rates, step_s, None,
                    most, work)

    results: dict[str, dict[str, Any]] = {o.name: {
        "requests": len(o.report.requests),
        "served_within_objective": o.report.served_within(objective.p99_ms),
        "p99_ms": round(o.report.p99_ms(), 1),
        "errors": o.report.errors,
        "seconds_over_near_step": o.report.seconds_over_after_step(objective.p99_ms,
                                                                   args.settle)[0],
        "seconds_over_elsewhere": o.report.seconds_over_after_step(objective.p99_ms,
                                                                   args.settle)[1],
        "core_seconds": round(o.core_s, 1),
        "cpu_seconds": round(o.cpu_s, 1),
        "replicas_min_max": list(o.replicas_seen),
        "seconds_over": o.report.seconds_over(objective.p99_ms),
        "replicas_by_second": _by_second(o),
        "retries": o.retries,
    } for o in (auto, fixed)}
    driver = ("given" if args.capacity is not None else
              "MLPerf LoadGen Server" if loadgen_driver.available() else "open-loop ramp")
    setup = {"sizing_driver": driver, "cores": cores, "shape_cores": shape,
             "shape_capacity_rps": shapes,
             "replica_capacity_rps": round(capacity, 1), "objective_p99_ms": objective.p99_ms,
             "rates_rps": rates, "step_s": step_s, "sizing_s": round(sizing_s, 1),
             "samples_per_request": SAMPLES_PER_REQUEST}
    if args.json:
        print(json.dumps({"setup": setup, "results": results}, indent=2))
        return 0
    print(f"cores {cores}; shape picked: {shape} core(s) per replica "
          f"(capacity by shape: {shapes or 'given'}, measured with {driver} in {sizing_s:.0f} s)")
    print(f"objective p99 <= {objective.p99_ms:g} ms; replicas 1..{most}; ramp {rates} rps, "
          f"{step_s:g} s each; {SAMPLES_PER_REQUEST} samples per request")
    a, f = results["autoscaled"], results["fixed max"]
    print(f"{'':28}{'autoscaled':>12}{'fixed max':>12}{'ratio':>9}")
    for key in ("requests", "served_within_objective", "p99_ms", "errors",
                "seconds_over_near_step", "seconds_over_elsewhere", "core_seconds",
                "cpu_seconds", "retries"):
        print(f"{key:28}{a[key]:>12}{f[key]:>12}{_ratio(float(a[key]), float(f[key])):>9}")
    print(f"{'replicas (min-max)':28}{'-'.join(map(str, a['replicas_min_max'])):>12}"
          f"{'-'.join(map(str, f['replicas_min_max'])):>12}")
    for name, r in results.items():
        print(f"{name}: replicas by second {''.join(map(str, r['replicas_by_second']))}; "
              f"seconds over the objective {r['seconds_over']} "
              f"(steps begin every {step_s:g} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
