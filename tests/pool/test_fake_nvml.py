"""The fake NVML must answer like nvidia-ml-py, or GPU-discovery tests prove nothing."""

from __future__ import annotations

import inspect

import pynvml
import pytest

from tests.pool import fake_nvml
from tests.pool.fake_nvml import FakeNvml


def _fake_calls() -> list[str]:
    return [name for name, _ in inspect.getmembers(FakeNvml, inspect.isfunction)
            if name.startswith("nvml")]


def test_every_call_exists_in_pynvml_with_compatible_arguments() -> None:
    for name in _fake_calls():
        assert hasattr(pynvml, name), f"pynvml has no {name}"
        real = [p for p in inspect.signature(getattr(pynvml, name)).parameters.values()
                if p.default is inspect.Parameter.empty]
        fake = [p for p in inspect.signature(getattr(FakeNvml, name)).parameters.values()
                if p.default is inspect.Parameter.empty][1:]  # drop self
        assert len(real) == len(fake), f"{name}: pynvml takes {real}, fake takes {fake}"


def test_constants_match_pynvml() -> None:
    names = [n for n in vars(fake_nvml) if n.startswith("NVML_")]
    assert len(names) > 15
    for name in names:
        assert getattr(fake_nvml, name) == getattr(pynvml, name), name


def test_errors_carry_nvml_codes_like_pynvml() -> None:
    nvml = fake_nvml.l4_pair()
    with pytest.raises(nvml.NVMLError) as raised:
        nvml.nvmlDeviceGetCount()
    assert raised.value.value == pynvml.NVML_ERROR_UNINITIALIZED
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(nvml.NVMLError) as raised:
        nvml.nvmlDeviceGetMigMode(handle)
    assert raised.value.value == pynvml.NVML_ERROR_NOT_SUPPORTED
    assert str(raised.value) == "Not Supported"
    nvml.nvmlShutdown()
