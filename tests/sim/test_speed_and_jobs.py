"""Speed models and trace records -> simulated jobs."""

from __future__ import annotations

import pytest

from slicebox import policies
from slicebox.sim import pools
from slicebox.sim.engine import Engine, EngineOptions
from slicebox.sim.job import Family, SimJob
from slicebox.sim.speed import SpeedBook
from slicebox.sim.traces.model import TraceJob
from slicebox.sim.workloads import JobDefaults, build_jobs
from slicebox.spec.demand import Demand
from tests.sim.helpers import pool


def test_duration_jobs_run_at_their_trace_speed_on_the_reference_kind() -> None:
    book = SpeedBook(["V100", "K80"])
    assert book.model_rate(Family.DURATION, "philly", None, "V100", 4.0, None) == 4.0
    # Elsewhere by the ratio of fp32 peak rates (2.9 / 15.7 TFLOPS).
    assert book.kind_factor("K80") == pytest.approx(2.9 / 15.7)


def test_cpu_factor_is_one_at_the_request_and_follows_synergy_elsewhere() -> None:
    book = SpeedBook(["V100"])
    job = SimJob("j", 0.0, Demand(gpus=1, cpus=3, memory_gib=62.5), Family.DURATION, "philly",
                 1.0, "philly", cpu_model="res18")
    assert book.cpu_factor(job, 3, 62.5) == 1.0
    assert book.cpu_factor(job, 9, 62.5) == pytest.approx(2.4)  # Synergy's res18 grid
    assert book.cpu_factor(job, 1, 62.5) < 0.5


def test_gavel_jobs_use_measured_steps_per_second() -> None:
    book = SpeedBook(["V100", "K80"])
    v100 = book.model_rate(Family.GAVEL, "ResNet-50 (batch size 64)", 64, "V100", 1.0, None)
    k80 = book.model_rate(Family.GAVEL, "ResNet-50 (batch size 64)", 64, "K80", 1.0, None)
    assert v100 > 5 * k80 > 0
    assert book.model_rate(Family.GAVEL, "ResNet-50 (batch size 64)", 64, "T4", 1.0,
                           None) == 0.0  # not measured there: cannot run


def test_sia_work_trains_max_epochs_at_the_batch_size_efficiency() -> None:
    book = SpeedBook(["T4"])
    recipe = book.sia.application("cifar10")
    work = book.sia_work("cifar10", 2048)
    # At least max_epochs x data set (efficiency <= 1), and more at a large batch size.
    assert work >= recipe.max_epochs * recipe.dataset_size
    assert book.sia_work("cifar10", 128) <= work


def test_build_jobs_sizes_each_family() -> None:
    the_pool = pools.gavel_cluster()
    book = SpeedBook(sorted(the_pool.gpu_counts()))
    records = [
        TraceJob("p", 0.0, 2, "philly", duration=100.0),
        TraceJob("g", 5.0, 1, "ResNet-18 (batch size 64)", total_work=1000.0, batch_size=64),
    ]
    philly, gavel = build_jobs(records, the_pool, book)
    assert (philly.family, philly.work) == (Family.DURATION, 200.0)  # GPU-seconds
    assert philly.cpu_model is not None  # Synergy's method: a model drawn per job
    assert (gavel.family, gavel.work, gavel.restart_seconds) == (Family.GAVEL, 1000.0, 30.0)
    assert gavel.dataset is not None and gavel.dataset.key == "cifar10"
    assert philly.demand.cpus == 8  # 2 GPUs x the pool's smallest share, 4 cores per GPU


def test_sia_jobs_pay_rescale_time_and_skip_kinds_without_data() -> None:
    the_pool = pools.sia_cluster(aws=1, dgx=1, rtx=0)
    book = SpeedBook(sorted(the_pool.gpu_counts()))
    (job,) = build_jobs([TraceJob("c", 0.0, 4, "cifar10", batch_size=512)], the_pool, book,
                        JobDefaults())
    assert job.family is Family.SIA
    assert job.startup_seconds == job.restart_seconds == 50.0  # Sia's rescale_time
    assert set(job.demand.kinds) <= {"T4", "A100-40GB"}


def test_co_located_gavel_jobs_run_at_their_measured_pair_speed() -> None:
    the_pool = pool(gpus=1, kind="V100")
    book = SpeedBook(["V100"], cpu_sensitivity=False)
    a_type, b_type = "ResNet-18 (batch size 64)", "ResNet-50 (batch size 64)"
    pair = book.gavel.colocated(a_type, 1, b_type, 1, "v100")
    jobs = [SimJob(name, 0.0, Demand(gpus=1, fraction=0.5), Family.GAVEL, t, 1e9, t)
            for name, t in (("a", a_type), ("b", b_type))]
    engine = Engine(jobs, the_pool, policies.get("fifo"), book,
                    EngineOptions(until=1.0, staging=False))
    engine.run()
    rates = {r.job.id: r.rate for r in engine.runs}
    assert rates == pytest.approx({"a": pair[0], "b": pair[1]})


def test_setup_accounting_survives_a_co_runner_change_during_staging() -> None:
    from slicebox.spec.demand import DatasetRef

    the_pool = pool(gpus=1, kind="V100", volumes=True)
    book = SpeedBook(["V100"], cpu_sensitivity=False)
    a_type, b_type = "ResNet-18 (batch size 64)", "ResNet-50 (batch size 64)"
    data = DatasetRef("big", "/data/big", 50.0)  # 50 s of staging
    jobs = [SimJob("a", 0.0, Demand(gpus=1, fraction=0.5), Family.GAVEL, a_type, 2000.0,
                   a_type, dataset=data),
            SimJob("b", 10.0, Demand(gpus=1, fraction=0.5), Family.GAVEL, b_type, 2000.0,
                   b_type)]
    engine = Engine(jobs, the_pool, policies.get("fifo"), book, EngineOptions())
    result = engine.run()
    assert all(j.finished for j in result.jobs)
    assert engine.book.setup_gpus == pytest.approx(0.0)
    assert (result.timeline.busy_gpus >= -1e-9).all()
    assert (result.timeline.busy_gpus <= result.timeline.allocated_gpus + 1e-9).all()
