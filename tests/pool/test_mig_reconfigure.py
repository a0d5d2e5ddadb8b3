"""Executing a MIG re-layout through (fake) NVML: only when allowed, only on idle cards,
only when the card is as planned; the calls are the planned ones, in order."""

from __future__ import annotations

import pytest

from slicebox.backends.mig_reconfigure import (
    MigReconfigureFailed,
    MigReconfigureRefused,
    execute_relayout,
)
from slicebox.errors import SliceboxError
from slicebox.pool.gpus import discover_gpus
from slicebox.pool.mig_layout import CardLayout, Placement, plan_relayout
from tests.pool import fake_nvml

FULL = (Placement("4g.40gb", 0), Placement("3g.40gb", 4))


def seven_small(**card):
    return plan_relayout([CardLayout("a100", 0, "A100-80GB", FULL, **card)], {"1g.10gb": 7})


def layout(nvml) -> list[tuple[str, int]]:
    return [(m.profile, m.start) for m in discover_gpus(nvml).devices[0].mig_instances]


def test_the_plan_runs_as_the_planned_nvml_calls() -> None:
    nvml = fake_nvml.a100_relayout()
    result = execute_relayout(seven_small(), nvml, allow=True, node="a100")
    assert [(name, where) for name, _, where in nvml.mig_calls] == [
        ("nvmlComputeInstanceDestroy", "4g.40gb@0"),
        ("nvmlComputeInstanceDestroy", "3g.40gb@4"),
        ("nvmlGpuInstanceDestroy", "4g.40gb@0"),
        ("nvmlGpuInstanceDestroy", "3g.40gb@4"),
        *[(name, f"1g.10gb@{s}") for s in range(7)
          for name in ("nvmlDeviceCreateGpuInstanceWithPlacement",
                       "nvmlGpuInstanceCreateComputeInstance")]]
    assert layout(nvml) == [("1g.10gb", s) for s in range(7)]
    uuids = [e.uuid for e in result.done if e.uuid is not None]
    assert len(set(uuids)) == 7 and all(u.startswith("MIG-") for u in uuids)
    assert nvml.initialised == 0  # NVML shut down again


def test_without_the_flag_nothing_is_called() -> None:
    nvml = fake_nvml.a100_relayout()
    with pytest.raises(MigReconfigureRefused, match="--allow-mig-reconfigure"):
        execute_relayout(seven_small(), nvml, allow=False, node="a100")
    assert nvml.mig_calls == [] and nvml.initialised == 0


def test_a_card_a_job_holds_is_refused_by_name() -> None:
    nvml = fake_nvml.a100_relayout()
    with pytest.raises(MigReconfigureRefused, match="card a100/gpu0 runs job train-7"):
        execute_relayout(seven_small(), nvml, allow=True, node="a100",
                         running={("a100", 0): ["train-7"]})
    assert nvml.mig_calls == []


def test_a_process_nvml_sees_on_the_card_refuses_it() -> None:
    nvml = fake_nvml.a100_relayout()
    card = nvml.cards[0]
    card.processes[card.migs[1].uuid] = [31337]
    with pytest.raises(MigReconfigureRefused, match="a100/gpu0 runs process 31337"):
        execute_relayout(seven_small(), nvml, allow=True, node="a100")
    assert nvml.mig_calls == [] and layout(nvml) == [("4g.40gb", 0), ("3g.40gb", 4)]


def test_a_stale_plan_or_another_node_is_refused() -> None:
    nvml = fake_nvml.a100_relayout()
    stale = plan_relayout([CardLayout("a100", 0, "A100-80GB", (Placement("7g.80gb", 0),))],
                          {"1g.10gb": 7})
    with pytest.raises(MigReconfigureRefused, match="is now 4g.40gb@0 \\+ 3g.40gb@4"):
        execute_relayout(stale, nvml, allow=True, node="a100")
    with pytest.raises(MigReconfigureRefused, match="not on this machine"):
        execute_relayout(seven_small(), nvml, allow=True, node="other-box")
    assert nvml.mig_calls == []


def test_a_failure_part_way_says_where_it_stopped(monkeypatch) -> None:
    nvml = fake_nvml.a100_relayout()
    real = nvml.nvmlDeviceCreateGpuInstanceWithPlacement
    made = []

    def flaky(device, profile_id, placement):
        if len(made) == 3:
            raise fake_nvml.NVMLError(fake_nvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
        made.append(placement.start)
        return real(device, profile_id, placement)

    monkeypatch.setattr(nvml, "nvmlDeviceCreateGpuInstanceWithPlacement", flaky)
    with pytest.raises(MigReconfigureFailed) as raised:
        execute_relayout(seven_small(), nvml, allow=True, node="a100")
    text = str(raised.value)
    assert "a100/gpu0 at 'create GPU instance 1g.10gb@3'" in text
    assert "10 of 18 steps done" in text
    assert isinstance(raised.value, SliceboxError) and nvml.initialised == 0
    assert layout(nvml) == [("1g.10gb", s) for s in range(3)]
