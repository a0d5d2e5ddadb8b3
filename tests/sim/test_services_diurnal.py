"""The must-show on the benchmark's own setup: services with diurnal load next to the
Philly-derived training day, static slicing against re-slicing (benchmarks/diurnal.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from slicebox.sim import services as svc

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "diurnal.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("diurnal_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compare(policy: str) -> tuple[svc.ServicesRun, svc.ServicesRun]:
    bench = _bench()
    pool, services, jobs = bench.dgx_pool(), bench.day_services(), bench.philly_day([1, 2, 3])
    static = svc.simulate(jobs, pool, policy, services, "static")
    reslice = svc.simulate(jobs, pool, policy, services, "reslice")
    return static, reslice


def _check(static: svc.ServicesRun, reslice: svc.ServicesRun) -> None:
    for run in (static, reslice):
        assert run.result.metrics.finished == run.result.metrics.jobs == 480
        assert run.services.short_seconds == 0.0  # the same objective, met by both
    assert reslice.result.metrics.avg_jct < 0.9 * static.result.metrics.avg_jct
    assert reslice.result.metrics.makespan < static.result.metrics.makespan
    assert reslice.service_share() < static.service_share()
    assert reslice.training_utilisation() > static.training_utilisation()


def test_reslicing_beats_static_on_the_philly_day_with_fifo() -> None:
    _check(*_compare("fifo"))


@pytest.mark.slow
def test_reslicing_beats_static_on_the_philly_day_with_elastic_slicebox() -> None:
    static, reslice = _compare("slicebox")
    _check(static, reslice)
    assert reslice.result.metrics.avg_jct < 0.7 * static.result.metrics.avg_jct


def test_benchmark_prints_both_side_by_side() -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--policies", "fifo", "--workloads",
                          "1"], capture_output=True, text=True, timeout=300, check=True).stdout
    assert "static" in out and "re-slicing" in out
    jct = next(line for line in out.splitlines() if line.startswith("training avg JCT"))
    static, reslice, ratio = jct.split()[-3:]
    assert float(static.replace(",", "")) > float(reslice.replace(",", ""))
    assert ratio.endswith("x")


def test_benchmark_refuses_a_bad_workload_number() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--workloads", "9"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "1..8" in done.stderr
