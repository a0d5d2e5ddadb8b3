"""Placement speed on simulator-sized pools: placements per second and one full round.

Run: ``.venv/bin/python benchmarks/placement_scale.py [--gpus 10000] [--jobs 5000]``.
Not part of the test suite; it prints what it measured, side by side.
"""

from __future__ import annotations

import argparse
import random
import time

from slicebox.placement import Placer, PoolState
from slicebox.placement.search import find_whole
from slicebox.pool.synthetic import uniform_pool
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobState, JobView
from slicebox.spec.demand import Demand

SIZES = (1, 1, 1, 1, 2, 2, 4, 8)  # trace-like: most jobs want one GPU


def _jobs(rng: random.Random, count: int, kinds: tuple[str, ...]) -> list[JobView]:
    return [JobView(f"job-{i}", Demand(gpus=rng.choice(SIZES), kinds=(rng.choice(kinds),),
                                       cpus=rng.choice((1, 2, 4)), memory_gib=8), float(i))
            for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpus", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    half = args.gpus // 2
    pool = uniform_pool({"V100": half, "K80": args.gpus - half})
    kinds = ("V100", "K80")
    state = PoolState(pool)
    placer = Placer(pool)
    print(f"pool: {len(pool.nodes)} nodes, {pool.total_gpus} GPUs")

    # 1. one job at a time, straight into the state, until the pool is ~90% full.
    placed, start, i = 0, time.perf_counter(), 0
    while state.free_whole_gpus("V100") > half // 10:
        size = rng.choice(SIZES)
        comp = find_whole(state, f"fill-{i}", "V100", size, 2, 8)
        i += 1
        if not isinstance(comp, str):
            state.allocate(comp)
            placed += 1
    fill_s = time.perf_counter() - start
    print(f"fill: {placed} placements in {fill_s:.3f} s = {placed / fill_s:,.0f} placements/s "
          f"({fill_s / placed * 1e6:.0f} us each)")

    # 2. a 1-GPU job on the nearly full pool.
    reps = 2_000
    start = time.perf_counter()
    for r in range(reps):
        comp = find_whole(state, f"probe-{r}", "V100", 1, 2, 8)
    one_us = (time.perf_counter() - start) / reps * 1e6
    print(f"one 1-GPU placement on the {pool.total_gpus}-GPU pool: {one_us:.1f} us")

    # 3. a full round: everything running, plus `--jobs` waiting, through Placer.place.
    running = [JobView(job, Demand(gpus=len(c.slices), kinds=(c.kind,), cpus=len(c.cores),
                                   memory_gib=c.memory_gib), 0.0, state=JobState.RUNNING,
                       current=Assignment(job, len(c.slices), c.kind))
               for job, c in state.compositions().items()]
    waiting = _jobs(rng, args.jobs, kinds)
    snapshot = ClusterSnapshot(0.0, tuple(running + waiting), state.capacity())
    decision = Decision(tuple([j.current for j in running if j.current] +
                              [Assignment(j.id, j.demand.gpus) for j in waiting]))
    start = time.perf_counter()
    plan = placer.place(state, snapshot, decision)
    round_s = time.perf_counter() - start
    print(f"round: {len(running)} running + {len(waiting)} waiting -> {len(plan.start)} started, "
          f"{len(plan.keep)} kept, {len(plan.waiting)} waiting, in {round_s:.3f} s")

    # 4. the same round on an empty pool: every start is a real placement.
    empty = PoolState(pool)
    snapshot = ClusterSnapshot(0.0, tuple(waiting), empty.capacity())
    decision = Decision(tuple(Assignment(j.id, j.demand.gpus) for j in waiting))
    start = time.perf_counter()
    plan = placer.place(empty, snapshot, decision)
    empty_s = time.perf_counter() - start
    print(f"round on the empty pool: {len(plan.start)} started, {len(plan.waiting)} waiting, "
          f"in {empty_s:.3f} s = {len(plan.start) / empty_s:,.0f} placements/s")


if __name__ == "__main__":
    main()
