"""benchmarks/gpu_check.py's MIG re-layout step, run against the fake NVML: a dry run by
default; with --allow-mig-reconfigure the plan is carried out and the card restored."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from slicebox.backends import mig_reconfigure
from slicebox.pool.gpus import discover_gpus
from tests.pool import fake_nvml

CHECK = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", CHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture
def nvml(monkeypatch):
    fake = fake_nvml.a100_relayout()
    monkeypatch.setattr(mig_reconfigure, "load_nvml", lambda: fake)
    return fake


def test_dry_run_prints_the_plan_and_touches_nothing(gpu_check, nvml, capsys) -> None:
    assert gpu_check.mig_relayout_check("", allow=False) == 0
    out = capsys.readouterr().out
    assert "4g.40gb@0 + 3g.40gb@4 -> 1g.10gb@0" in out and "dry run" in out
    assert nvml.mig_calls == []


def test_allowed_it_runs_and_puts_the_card_back(gpu_check, nvml, capsys) -> None:
    assert gpu_check.mig_relayout_check("1g.10gb=7", allow=True) == 0
    names = [name for name, _, _ in nvml.mig_calls]
    assert names.count("nvmlDeviceCreateGpuInstanceWithPlacement") == 7 + 2  # there, back
    assert names.count("nvmlGpuInstanceDestroy") == 2 + 7
    found = discover_gpus(nvml).devices[0].mig_instances
    assert [(m.profile, m.start) for m in found] == [("4g.40gb", 0), ("3g.40gb", 4)]
    assert "restored: yes" in capsys.readouterr().out


def test_a_busy_card_is_refused(gpu_check, nvml, capsys) -> None:
    nvml.cards[0].processes[nvml.cards[0].migs[0].uuid] = [99]
    assert gpu_check.mig_relayout_check("", allow=True) == 1
    assert "runs process 99" in capsys.readouterr().out
    assert nvml.mig_calls == []


def test_a_bad_demand_is_refused(gpu_check) -> None:
    with pytest.raises(SystemExit, match="--relayout-demand"):
        gpu_check.parse_demand("1g.10gb=lots")
