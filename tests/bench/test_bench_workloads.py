"""Each workload, quick, reaches its quality target; inference is served under LoadGen."""

from __future__ import annotations

import dataclasses

import pytest

from slicebox.bench import image, inference, lm, loadgen_run, recsys
from slicebox.bench.config import TrainConfig


@pytest.mark.parametrize("module", [image, lm, recsys], ids=["image", "lm", "recsys"])
def test_quick_training_reaches_its_target(module, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    result = module.train(TrainConfig(quick=True, seed=0))
    assert result.status == "ok" and result.reached_target, result
    assert result.quality_target == module.QUICK.target
    if result.higher_is_better:
        assert result.quality >= result.quality_target
    else:
        assert result.quality <= result.quality_target


@pytest.mark.skipif(not loadgen_run.available(), reason="mlcommons-loadgen is not installed")
def test_inference_reports_loadgen_throughput_and_server_latency(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A shorter Offline run than quick's, and a latency bound a loaded test machine meets:
    # the numbers matter less here than their presence. Server keeps quick's duration:
    # fewer queries than that are too few for LoadGen's early stopping (INVALID, a failed
    # cell).
    monkeypatch.setattr(
        inference,
        "QUICK",
        dataclasses.replace(inference.QUICK, offline_min_ms=300, server_latency_ms=100.0),
    )
    result = inference.train(TrainConfig(quick=True, server_qps=400.0))
    assert result.status == "ok", result
    assert result.samples_per_s is not None and result.samples_per_s > 200
    assert result.server_target_qps == 400.0
    assert result.server_valid
    assert result.server_p99_latency_ms is not None and result.server_p99_latency_ms > 0
    assert result.quality is not None and result.quality >= image.QUICK.target
    assert "offline" in result.note and "server" in result.note


def test_a_failing_model_still_answers_every_query_so_loadgen_cannot_hang() -> None:
    from types import SimpleNamespace

    import torch

    def broken(images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("CUDA out of memory")

    completed: list[object] = []
    sut = inference.DigitsSUT(
        broken,  # type: ignore[arg-type]
        torch.zeros(4, 1, 8, 8),
        torch.zeros(4, dtype=torch.long),
        2,
        completed.extend,
    )
    sut.issue([SimpleNamespace(id=i, index=i % 4) for i in range(5)])
    sut.stop()
    assert len(completed) == 5
    assert isinstance(sut.error, RuntimeError) and "out of memory" in str(sut.error)
