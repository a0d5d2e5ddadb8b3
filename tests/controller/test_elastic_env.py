"""An elastic job learns its size from the environment and scales its batch with it."""

from __future__ import annotations

import math

import pytest

from slicebox import sdk
from slicebox.backends.env import job_environment
from slicebox.controller.elastic import resize_reason
from slicebox.pool.composition import Composition, Part
from slicebox.spec.job import parse_spec


def _comp(cores: tuple[int, ...]) -> Composition:
    return Composition("j1", (Part("n0", (), cores, 2.0),))


def _spec(cpus: object) -> object:
    return parse_spec({"name": "e", "command": ["true"], "resources": {"cpus": cpus}})


def test_the_environment_says_the_size_and_the_declared_range() -> None:
    env = job_environment({}, "j1", 2, _spec({"min": 1, "max": 4}), _comp((0, 1, 2)))
    assert (env["SLICEBOX_CPUS"], env["SLICEBOX_MIN_CPUS"], env["SLICEBOX_MAX_CPUS"]) == \
        ("3", "1", "4")
    assert (env["SLICEBOX_GPUS"], env["SLICEBOX_WORLD_SIZE"]) == ("0", "1")
    rigid = job_environment({"SLICEBOX_CPUS": "99"}, "j1", 1, _spec(2), _comp((0, 1)))
    assert (rigid["SLICEBOX_CPUS"], rigid["SLICEBOX_MIN_CPUS"], rigid["SLICEBOX_MAX_CPUS"]) \
        == ("2", "2", "2")  # the controller's own value never leaks in


@pytest.mark.parametrize(("env", "expected"), [
    ({}, 512),  # outside Slicebox: the base batch
    ({"SLICEBOX_CPUS": "1", "SLICEBOX_MIN_CPUS": "1"}, 512),
    ({"SLICEBOX_CPUS": "2", "SLICEBOX_MIN_CPUS": "1"}, 1024),
    ({"SLICEBOX_CPUS": "4", "SLICEBOX_MIN_CPUS": "1"}, 1536),  # the declared maximum
    ({"SLICEBOX_CPUS": "2", "SLICEBOX_MIN_CPUS": "1", "SLICEBOX_GPUS": "3",
      "SLICEBOX_MIN_GPUS": "1"}, 1536),  # a GPU job scales by GPUs
    ({"SLICEBOX_CPUS": "junk", "SLICEBOX_MIN_CPUS": "1"}, 512),
])
def test_elastic_batch_follows_the_size(monkeypatch: pytest.MonkeyPatch,
                                        env: dict[str, str], expected: int) -> None:
    for name in ("SLICEBOX_CPUS", "SLICEBOX_MIN_CPUS", "SLICEBOX_GPUS", "SLICEBOX_MIN_GPUS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert sdk.elastic_batch(512, 256, 1536) == expected


def test_elastic_batch_stays_put_without_declared_bounds(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setenv("SLICEBOX_CPUS", "2")
    monkeypatch.setenv("SLICEBOX_MIN_CPUS", "1")
    assert sdk.elastic_batch(512) == 512  # no max_batch declared: never larger
    with pytest.raises(ValueError, match="min_batch"):
        sdk.elastic_batch(512, 1024, 256)
    with pytest.raises(ValueError, match="base_batch"):
        sdk.elastic_batch(0)


def test_learning_rate_keeps_step_with_the_batch() -> None:
    assert sdk.scaled_learning_rate(0.01, 512, 2048) == pytest.approx(0.02)  # sqrt
    assert sdk.scaled_learning_rate(0.1, 256, 1024, rule="linear") == pytest.approx(0.4)
    assert math.isclose(sdk.scaled_learning_rate(0.01, 512, 512), 0.01)
    with pytest.raises(ValueError, match="rule"):
        sdk.scaled_learning_rate(0.01, 512, 1024, rule="cubic")


def test_resize_reason_names_the_sizes() -> None:
    assert resize_reason(_comp((0,)), _comp((0, 1)), "resize 1\u21922 cores: 1.10x measured") \
        == "resize 1\u21922 cores: 1.10x measured"
    assert resize_reason(_comp((0, 1)), _comp((1,)), None) == "resize 2\u21921 cores"


def test_reference_workloads_scale_batch_and_learning_rate(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from slicebox.bench.config import TrainConfig
    monkeypatch.setenv("SLICEBOX_CPUS", "2")
    monkeypatch.setenv("SLICEBOX_MIN_CPUS", "1")
    monkeypatch.delenv("SLICEBOX_GPUS", raising=False)
    assert TrainConfig().batch_and_lr(512, 0.01) == (512, 0.01)  # not elastic: unchanged
    batch, lr = TrainConfig(batch_size=4096, max_batch_size=8192).batch_and_lr(512, 0.01)
    assert batch == 8192 and lr == pytest.approx(0.01 * math.sqrt(2))
    monkeypatch.setenv("SLICEBOX_CPUS", "1")
    assert TrainConfig(max_batch_size=8192).batch_and_lr(512, 0.01) == (512, 0.01)
    with pytest.raises(ValueError, match="max_batch_size"):
        TrainConfig(max_batch_size=0)
