"""Must-show: an elastic recsys job grows to 2 cores when another job leaves one, runs
faster there (its rates are printed beside what ``slicebox bench`` measures on 1 and 2
cores), shrinks back to 1 core when a higher-priority job arrives, and loses nothing on
the way.

On a 2-vCPU machine recsys gains 1.06-1.55x from a second core (it depends on the VM),
and other work on the machine moves every rate by up to 20 % between two windows a minute
apart, so nothing here is a fixed factor and no rate rests on one window: the test benches the
workload on 1 and 2 cores itself, alternating (the child runs `slicebox bench` makes, with
the job's batch), and requires the job's own 2-core/1-core ratio, measured in the same
test (pooled over all its attempts at each size), to come within 10 % of bench's.

The job trains with batch 4096 on 1 core and, Pollux-style, 8192 on 2 (``--max-batch-size``:
the learning rate follows by the square-root rule), for a number of epochs sized to bench's
speed (so that growing pays for a restart: a 10 % gain needs a job of about a minute), and
must reach the workload's AUC target on the way (its target is set out of reach so that
it trains all those epochs). Bench runs each size at the batch the job uses there.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import pytest

from slicebox.backends.local import LocalBackend
from slicebox.bench.child import child_argv, child_env, run_child
from slicebox.bench.results import RunResult
from slicebox.bench.slices import SliceShape
from slicebox.controller import Controller
from slicebox.policies.elastic import ElasticFifo
from slicebox.profiles.table import ProfileEntry, ProfileTable
from slicebox.snapshot import JobState
from slicebox.store import ProgressSample

from .helpers import NODE, Setup

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")]

BENCH_SECONDS = 10.0  # each bench run; two per core count, alternating
BATCH = 4096
TRAIN_ROWS = 350_000  # recsys: 400,000 generated rows less 50,000 held out for AUC
# The job's length at twice bench's 1-core speed (the machine's load may drop while it
# runs): room for all three phases.
JOB_SECONDS = 120.0
BLOCKER_SECONDS = 45.0  # a loaded machine takes ~20 s to start a torch job
MEASURE_SECONDS = 20.0  # of the job on 2 cores before the urgent job arrives
WARM_UP_SECONDS = 4.0  # of each attempt left out of its rate (start, restore, first eval)
TARGET_AUC = 0.82  # the recsys workload's quality target
# Controller rounds as `slicebox up` runs them (its default --interval): the test process
# is the controller, on the same two cores as the job it measures.
POLL = 1.0


def _rate(progress: list[ProgressSample], attempts: list[int],
          until: dict[int, float] | None = None) -> float:
    """Samples/s of the given attempts pooled (their samples over their time), each over
    its reports after its warm-up (and before ``until[attempt]`` where given)."""
    samples = seconds = 0.0
    for attempt in attempts:
        points = [(p.time, p.samples) for p in progress
                  if p.attempt == attempt and p.samples is not None]
        start, end = points[0][0] + WARM_UP_SECONDS, (until or {}).get(attempt)
        window = [(t, s) for t, s in points if t >= start and (end is None or t <= end)]
        if len(window) >= 2:
            (t0, s0), (t1, s1) = window[0], window[-1]
            samples, seconds = samples + s1 - s0, seconds + t1 - t0
    assert seconds >= 5.0, f"attempts {attempts}: only {seconds:.1f}s of reports"
    return samples / seconds


def _bench(cores: int) -> float:
    """Train-time samples/s of recsys on the first ``cores`` cores, as `slicebox bench`
    runs it (a pinned child), at the batch the elastic job uses on that many cores."""
    shape = SliceShape.cpu(cores)
    argv = [*child_argv("recsys", shape, "fp32", quick=False, seed=0,
                        max_seconds=BENCH_SECONDS), "--batch-size", str(BATCH * cores)]
    result = run_child(argv, child_env(shape), BENCH_SECONDS + 120)
    assert isinstance(result, RunResult) and result.samples_per_s, result
    return result.samples_per_s


def _cores(setup: Setup, job_id: str) -> list[int]:
    return [c.composition.core_count for c in setup.store.composition_history(job_id)]


def test_elastic_recsys_grows_to_benched_speed_and_shrinks_for_priority(tmp_path: Path
                                                                        ) -> None:
    runs = {1: [_bench(1)], 2: [_bench(2)]}
    runs[1].append(_bench(1))
    runs[2].append(_bench(2))
    bench_one, bench_two = (sum(runs[n]) / 2 for n in (1, 2))
    bench_ratio = bench_two / bench_one

    setup = Setup(tmp_path)
    # The policy sees what bench measured.
    profiles = ProfileTable([ProfileEntry("recsys", "cpu", float(n), "fp32", rate, "bench")
                             for n, rate in ((1, bench_one), (2, bench_two))])
    setup.controller = Controller(setup.store, setup.pool, ElasticFifo(), setup.placer,
                                  LocalBackend(setup.state, node=NODE), setup.state,
                                  profiles=profiles, interval=POLL)
    epochs = min(80, max(6, math.ceil(JOB_SECONDS * 2 * bench_one / TRAIN_ROWS)))
    blocker = setup.submit("blocker", setup.python_job("sleeper.py", str(BLOCKER_SECONDS),
                                                       str(setup.locks)),
                           resources={"cpus": 1})
    # Target above reach: the job trains all its epochs, so its length is known.
    elastic = setup.submit(
        "dlrm", [sys.executable, "-m", "slicebox.bench.run", "recsys", "--batch-size",
                 str(BATCH), "--max-batch-size", str(2 * BATCH), "--epochs", str(epochs),
                 "--target", "0.99"],
        workload="recsys", resources={"cpus": {"min": 1, "max": 2}, "memory_gib": 3},
        checkpoint={"grace_seconds": 60})

    # 1 core while the blocker holds the other; 2 once it has gone and growing pays.
    setup.run_until(lambda: setup.state_of(elastic) is JobState.RUNNING, timeout=60,
                    every=POLL)
    assert _cores(setup, elastic) == [1]
    setup.run_until(lambda: len(_cores(setup, elastic)) == 2
                    and setup.state_of(elastic) is JobState.RUNNING, timeout=240, every=POLL)
    assert _cores(setup, elastic) == [1, 2]
    assert setup.state_of(blocker) is JobState.SUCCEEDED
    stops = [r for k, r in setup.reasons(elastic) if k == "stopping"]
    assert stops[0].startswith("resize 1\u21922 cores"), stops

    # Measure it on 2 cores, then a higher-priority job takes a core back.
    def reported_for(attempt: int) -> float:
        times = [p.time for p in setup.store.progress(elastic) if p.attempt == attempt]
        return times[-1] - times[0] if times else 0.0

    setup.run_until(lambda: reported_for(2) > MEASURE_SECONDS + WARM_UP_SECONDS,
                    timeout=180, every=POLL)
    assert setup.state_of(elastic) is JobState.RUNNING, "the job ended too soon"
    measured_until = time.time()
    urgent = setup.submit("urgent", setup.python_job("sleeper.py", "8", str(setup.locks)),
                          resources={"cpus": 1}, priority=5)
    setup.run_until(lambda: setup.state_of(urgent) is not JobState.QUEUED, timeout=120,
                    every=POLL)
    assert _cores(setup, elastic)[:3] == [1, 2, 1]
    stops = [r for k, r in setup.reasons(elastic) if k == "stopping"]
    assert stops[1].startswith("resize 2\u21921 cores") and urgent in stops[1], stops

    setup.run_until(setup.finished(elastic, urgent), timeout=900,
                    every=POLL)
    job = setup.store.job(elastic)
    progress = setup.store.progress(elastic)
    # Pooled over every attempt at each size (1 and 3 on one core; 2, measured before
    # the urgent job came, and 4 on two): a single window of this VM moves by up to 20 %.
    by_cores: dict[int, list[int]] = {}
    for record in setup.store.composition_history(elastic):
        by_cores.setdefault(record.composition.core_count, []).append(record.attempt)
    job_one = _rate(progress, by_cores[1])
    job_two = _rate(progress, by_cores[2], until={2: measured_until})
    job_ratio = job_two / job_one
    print(f"\nbench recsys: 1 core {bench_one:.0f}/s, 2 cores "
          f"{bench_two:.0f}/s ({bench_ratio:.3f}x; runs {runs}); elastic job: 1 core "
          f"{job_one:.0f}/s, 2 cores {job_two:.0f}/s ({job_ratio:.3f}x); "
          f"2-core rate vs bench's scaled to the job's conditions: "
          f"{job_two / (job_one * bench_ratio):.3f}; final AUC {job.quality}; "
          f"cores by attempt {_cores(setup, elastic)}; attempts by cores {by_cores}")
    assert job.state is JobState.SUCCEEDED, setup.reasons(elastic)
    # The workload's quality target was reached (MLPerf's criterion: an evaluation at or
    # past it; the run then trains on for its fixed epochs, which may overfit a little).
    assert max(p.quality for p in progress if p.quality is not None) >= TARGET_AUC

    # Nothing lost: each resize saved on request, the next attempt restored exactly that.
    records = setup.store.checkpoints(elastic)
    resizes = [r for r in records if r.reason.startswith("resize")]
    assert len(resizes) >= 2
    assert all(r.outcome == "checkpointed" and r.lost_samples == 0 for r in resizes), records
    restored = {r.attempt: r.restored_samples for r in records}
    for r in resizes:
        assert restored.get(r.attempt + 1) == r.samples, records
    # Every sample of every epoch trained; a resume at a new batch size starts at the
    # batch boundary below its checkpoint, so at most one batch per resize is trained again.
    assert epochs * TRAIN_ROWS <= (job.samples or 0) <= \
        epochs * TRAIN_ROWS + len(resizes) * 2 * BATCH

    # On 2 cores it speeds up as bench says 2 cores do (the must-show's "within 10 %",
    # taken on the ratio as the issue asks: this 2-vCPU VM moves absolute rates by up to
    # 20 % between two bench tries a minute apart, so the job's own 1-core rate, measured
    # in the same run, is the yardstick that bench's 2-core/1-core ratio scales).
    assert bench_ratio > 1.0 and job_ratio > 1.0
    assert job_ratio >= 0.9 * bench_ratio, (job_ratio, bench_ratio)
