"""Variants a device cannot run say so, with a reason, and produce no numbers."""

from __future__ import annotations

import pytest
import torch

from slicebox.bench import image, lm, recsys
from slicebox.bench.config import TrainConfig
from slicebox.bench.precision import autocast, unsupported_reason
from slicebox.bench.suite import run_suite


@pytest.mark.parametrize("train", [image.train, lm.train, recsys.train])
def test_fp16_on_cpu_is_not_supported_here(train, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    result = train(TrainConfig(precision="fp16", quick=True))
    assert result.status == "not supported here"
    assert "GPU" in result.reason
    assert result.samples_per_s is None and result.quality is None
    assert result.time_to_quality_s is None
    assert ":::MLLOG" not in capsys.readouterr().out  # no run was started, so none is logged


def test_suite_answers_for_cpu_slices_without_starting_a_process() -> None:
    [result] = run_suite(["lm"], ["cpu:1"], ["fp16"], quick=True)
    assert result.status == "not supported here" and "GPU" in result.reason
    assert result.wall_s == 0.0 and result.samples_per_s is None


@pytest.mark.parametrize("precision", ["fp32", "bf16", "sparse"])
def test_cpu_runs_the_other_variants(precision: str) -> None:
    assert unsupported_reason(precision, "cpu") is None  # type: ignore[arg-type]


def test_a_cuda_device_without_a_gpu_is_not_supported() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    reason = unsupported_reason("fp32", "cuda:0")
    assert reason is not None and "no CUDA GPU" in reason


def test_bf16_actually_runs_in_bf16() -> None:
    model = lm.TinyGPT(lm.QUICK)
    seen: list[torch.dtype] = []
    model.head.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    windows = torch.randint(0, lm.VOCAB, (2, lm.QUICK.context + 1))
    with autocast("bf16", "cpu"):
        lm.next_byte_loss(model, windows)
    assert seen == [torch.bfloat16]
