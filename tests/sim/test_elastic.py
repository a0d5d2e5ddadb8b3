"""Elastic Pollux/Sia jobs: goodput, resize accounting, and who runs them elastic."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest

from slicebox.policies.base import Policy
from slicebox.sim import api, pools
from slicebox.sim.engine import Engine, EngineOptions
from slicebox.sim.speed import SpeedBook
from slicebox.sim.traces import csvrows, paths
from slicebox.sim.traces.model import TraceJob
from slicebox.sim.workloads import JobDefaults, build_jobs
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobState

W1 = "data/traces/pollux-workloads/philly-workload-1.csv"


@pytest.fixture(scope="module")
def book() -> SpeedBook:
    return SpeedBook(["T4", "RTX-2080Ti", "A100-40GB"], cpu_sensitivity=False)


def _grad_stats(app: str, batch: int, epoch: int) -> tuple[float, float]:
    path = paths.trace_path(f"sia-profiles/{app}/validation-{batch}.csv")
    errors = csvrows.LineErrors(str(path), skip_bad_lines=False)
    with csvrows.open_table(path, ("grad_sqr", "grad_var"), errors) as table:
        rows = list(table.rows)
    fields = rows[epoch].fields
    sqr_at, var_at = table.columns["grad_sqr"], table.columns["grad_var"]
    return float(fields[sqr_at]), float(fields[var_at])


def test_efficiency_by_hand_between_validated_batch_sizes(book: SpeedBook) -> None:
    """Pollux's gain (var + sqr) / (var / scale + sqr) over scale, the gradient
    statistics interpolated linearly between the two validated batch sizes."""
    sizes = book.sia.validated_batch_sizes("cifar10")
    low, high = sizes[0], sizes[1]
    batch, epoch = (low + high) // 2, 7
    (s_lo, v_lo), (s_hi, v_hi) = _grad_stats("cifar10", low, epoch), \
        _grad_stats("cifar10", high, epoch)
    w = (batch - low) / (high - low)
    sqr, var = s_lo + w * (s_hi - s_lo), v_lo + w * (v_hi - v_lo)
    scale = batch / low
    expected = (var + sqr) / (var / scale + sqr) / scale
    assert book.sia.efficiency("cifar10", batch, epoch) == pytest.approx(expected, rel=1e-9)
    many = book.sia.efficiencies("cifar10", np.array([low, batch, high]), epoch)
    assert many[1] == pytest.approx(expected, rel=1e-9)
    assert many[0] == pytest.approx(1.0)  # the smallest batch is the unit
    assert 0.0 < many[2] < 1.0


def test_goodput_is_the_best_throughput_times_efficiency(book: SpeedBook) -> None:
    goodput, batch = book.sia_goodput("cifar10", "A100-40GB", 4, None, 10)
    assert batch > 0
    by_hand = (book.sia.samples_per_second("cifar10", "dgx-ext", 4, batch)
               * book.sia.efficiency("cifar10", batch, 10))
    assert goodput == pytest.approx(by_hand, rel=1e-9)
    # No batch size in the validated range does better than the search's grid allows
    # (50 geometric candidates, as Pollux's optimiser tries).
    sizes = book.sia.validated_batch_sizes("cifar10")
    for other in range(sizes[0], sizes[-1] + 1, 64):
        speed = book.sia.samples_per_second("cifar10", "dgx-ext", 4, other)
        if speed:
            assert speed * book.sia.efficiency("cifar10", other, 10) <= goodput * 1.01
    # More GPUs, more goodput for a job that scales; a kind Sia has no data for: none.
    assert book.sia_goodput("cifar10", "A100-40GB", 8, None, 10)[0] > goodput
    assert book.sia_goodput("cifar10", "K80", 1, None, 10) == (0.0, 0)


def _record(app: str = "cifar10", replicas: int = 4, batch: int = 2048) -> TraceJob:
    return TraceJob(id=f"{app}-0", arrival=0.0, num_gpus=replicas, workload=app,
                    batch_size=batch)


def test_who_runs_elastic(book: SpeedBook) -> None:
    pool = pools.resolve("sia-64")
    rigid = build_jobs([_record()], pool, book)[0]
    assert not rigid.elastic and rigid.demand.gpus == 4
    elastic = build_jobs([_record()], pool, book, elastic=True)[0]
    assert elastic.elastic and elastic.demand.gpus == 1 and elastic.demand.max_gpus > 4
    # Useful samples: Sia's progress target, max_epochs x the data set.
    assert elastic.work == book.sia.total_samples("cifar10")
    assert elastic.restart_seconds == elastic.startup_seconds == 50.0
    forced = build_jobs([_record()], pool, book, JobDefaults(elastic=False), elastic=True)[0]
    assert not forced.elastic


class _GrowAt(Policy):
    """One elastic job: 1 GPU of A100 until ``at``, then 4 (a resize), pure in time."""

    name: ClassVar[str] = "grow-at"
    resizes_jobs = True
    at: ClassVar[float] = 1200.0

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        gpus = 1 if snapshot.now < self.at else 4
        out = []
        for job in snapshot.jobs:
            cur = job.current
            if cur is not None and cur.gpus == gpus:
                out.append(cur)
            else:
                out.append(Assignment(job.id, gpus, "A100-40GB", job.demand.cpus * gpus,
                                      job.demand.memory_gib * gpus))
        return Decision(tuple(out))


def test_a_resize_pays_rescale_time_and_keeps_progress(book: SpeedBook) -> None:
    pool = pools.resolve("sia-64")
    jobs = build_jobs([_record()], pool, book, elastic=True)
    job = jobs[0]
    engine = Engine(jobs, pool, _GrowAt(), book,
                    EngineOptions(round_seconds=600.0, staging=False))
    result = engine.run()
    outcome = result.jobs[0]
    rescale = book.sia.rescale_time("cifar10")
    assert outcome.preemptions == 1  # the resize: a checkpoint and a restart
    assert outcome.setup_seconds == pytest.approx(2 * rescale)  # first start + resize
    # By hand: 1 GPU from `rescale` to 1200 s, then 4 GPUs after another `rescale`;
    # each epoch at its own efficiency (the rate is piecewise by epoch).
    done, t = 0.0, rescale
    per = book.sia.application("cifar10").dataset_size
    t_switch = 1200.0
    for gpus, until in ((1, t_switch), (4, math.inf)):
        while done < job.work - 1e-6 and t < until:
            epoch = int((done + 1e-6 * per) // per)
            rate = book.sia_goodput("cifar10", "A100-40GB", gpus, None, epoch)[0]
            boundary = min((epoch + 1) * per, job.work)
            step = min((boundary - done) / rate, until - t)
            done += rate * step
            t += step
        if gpus == 1:
            t = t_switch + rescale
    assert outcome.finish == pytest.approx(t, rel=1e-6)


@pytest.mark.slow
def test_slicebox_does_not_flap() -> None:
    """Six hours of an elastic 160-job workload; then, once a decision is carried out,
    asking again with nothing changed keeps every running job as it is."""
    pool = pools.resolve("sia-64")
    book = api.make_speeds(pool)
    policy = api.policies.get("slicebox")
    jobs, _, _ = api.load_jobs(W1, pool, book, elastic=True)
    engine = Engine(jobs, pool, policy, book, EngineOptions(until=6 * 3600.0))
    engine.run()
    assert engine.last_snapshot is not None
    # Jobs that were running (not restoring: Sia-style, a restoring job is left as it
    # is) when the last decision was taken, and still hold what it gave them.
    before = {j.id for j in engine.last_snapshot.jobs if j.state is JobState.RUNNING}
    snapshot = engine._snapshot()
    running = {j.id: j.current for j in snapshot.jobs
               if j.current is not None and j.id in before}
    assert len(running) >= 5
    decision = policy.decide(snapshot)
    again = {a.job_id: a for a in decision.run if a.job_id in running}
    for job_id, current in running.items():
        kept = again.get(job_id)
        assert kept is not None and (kept.kind, kept.gpus) == (current.kind, current.gpus), \
            job_id
