"""The fake NVML's MIG reconfiguration answers like a real card (names and argument counts
are held to pynvml by test_fake_nvml.py; here: structures, ids, rules, errors)."""

from __future__ import annotations

import pynvml
import pytest

from slicebox.pool.gpus import discover_gpus
from tests.pool import fake_nvml


def test_placement_structure_has_pynvml_fields() -> None:
    real = [name for name, _ in pynvml.c_nvmlGpuInstancePlacement_t._fields_]
    fake = fake_nvml.a100_relayout().c_nvmlGpuInstancePlacement_t()
    assert real == ["start", "size"]
    assert all(hasattr(fake, name) for name in real)


def _ready():
    nvml = fake_nvml.a100_relayout()
    nvml.nvmlInit()
    return nvml, nvml.nvmlDeviceGetHandleByIndex(0)


def _placement(nvml, start: int, size: int):
    placement = nvml.c_nvmlGpuInstancePlacement_t()
    placement.start, placement.size = start, size
    return placement


def test_profile_ids_are_not_the_profile_constants() -> None:
    nvml, card = _ready()
    info = nvml.nvmlDeviceGetGpuInstanceProfileInfo(card, nvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE)
    assert info.id == 19 and info.sliceCount == 1 and info.name == "1g.10gb"
    with pytest.raises(nvml.NVMLError) as raised:  # the constant is not the id
        nvml.nvmlDeviceCreateGpuInstanceWithPlacement(
            card, nvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE, _placement(nvml, 0, 1))
    assert raised.value.value in (pynvml.NVML_ERROR_INVALID_ARGUMENT,
                                  pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES)


def test_the_card_enforces_placement_rules_and_order() -> None:
    nvml, card = _ready()
    one = nvml.nvmlDeviceGetGpuInstanceProfileInfo(card, nvml.NVML_GPU_INSTANCE_PROFILE_1_SLICE)
    with pytest.raises(nvml.NVMLError) as raised:  # the card is full
        nvml.nvmlDeviceCreateGpuInstanceWithPlacement(card, one.id, _placement(nvml, 0, 1))
    assert raised.value.value == pynvml.NVML_ERROR_INSUFFICIENT_RESOURCES
    gi = nvml.nvmlDeviceGetGpuInstanceById(card, 1)  # the 4g.40gb at 0
    assert nvml.nvmlGpuInstanceGetInfo(gi).placement.start == 0
    with pytest.raises(nvml.NVMLError) as raised:  # its compute instance is still there
        nvml.nvmlGpuInstanceDestroy(gi)
    assert raised.value.value == pynvml.NVML_ERROR_IN_USE
    nvml.nvmlComputeInstanceDestroy(nvml.nvmlGpuInstanceGetComputeInstanceById(gi, 0))
    nvml.nvmlGpuInstanceDestroy(gi)
    with pytest.raises(nvml.NVMLError) as raised:  # 1g may not start at 7
        nvml.nvmlDeviceCreateGpuInstanceWithPlacement(card, one.id, _placement(nvml, 7, 1))
    assert raised.value.value == pynvml.NVML_ERROR_INVALID_ARGUMENT
    new = nvml.nvmlDeviceCreateGpuInstanceWithPlacement(card, one.id, _placement(nvml, 2, 1))
    ci = nvml.nvmlGpuInstanceGetComputeInstanceProfileInfo(
        new, nvml.NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE,
        nvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
    nvml.nvmlGpuInstanceCreateComputeInstance(new, ci.id)
    nvml.nvmlShutdown()
    found = discover_gpus(nvml).devices[0].mig_instances
    assert [(m.profile, m.start) for m in found] == [("1g.10gb", 2), ("3g.40gb", 4)]
    assert [c[0] for c in nvml.mig_calls] == [
        "nvmlComputeInstanceDestroy", "nvmlGpuInstanceDestroy",
        "nvmlDeviceCreateGpuInstanceWithPlacement", "nvmlGpuInstanceCreateComputeInstance"]


def test_a_process_on_a_mig_device_keeps_its_instance() -> None:
    nvml, card = _ready()
    mig = nvml.cards[0].migs[1]
    nvml.cards[0].processes[mig.uuid] = [4242]
    handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(card, 1)
    assert [p.pid for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)] == [4242]
    gi = nvml.nvmlDeviceGetGpuInstanceById(card, mig.gi_id)
    with pytest.raises(nvml.NVMLError) as raised:
        nvml.nvmlComputeInstanceDestroy(nvml.nvmlGpuInstanceGetComputeInstanceById(gi, 0))
    assert raised.value.value == pynvml.NVML_ERROR_IN_USE
    assert nvml.mig_calls == []
