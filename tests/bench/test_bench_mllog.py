"""The :::MLLOG lines a training run prints are an MLPerf training log."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest

from slicebox.bench import image, mlperf_log
from slicebox.bench.config import TrainConfig
from slicebox.bench.results import RunResult


def mllog_entries(text: str) -> list[dict[str, Any]]:
    return [
        json.loads(line.removeprefix(":::MLLOG "))
        for line in text.splitlines()
        if line.startswith(":::MLLOG ")
    ]


def first(entries: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return next(e for e in entries if e["key"] == key)


Run = tuple[RunResult, list[dict[str, Any]], str]


@pytest.fixture(scope="module")
def successful_run() -> Run:
    """One quick image run, shared: (result, MLLOG entries, all of stdout)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        result = image.train(TrainConfig(quick=True, seed=3, batch_size=48))
    return result, mllog_entries(buffer.getvalue()), buffer.getvalue()


def test_a_run_logs_the_keys_mlperf_requires(successful_run: Run) -> None:
    result, entries, _ = successful_run
    keys = [e["key"] for e in entries]
    for required in (
        "init_start",
        "init_stop",
        "run_start",
        "eval_accuracy",
        "run_stop",
        "seed",
        "global_batch_size",
        "epoch_start",
        "epoch_stop",
        "train_samples",
    ):
        assert required in keys, required
    assert first(entries, "seed")["value"] == 3
    assert first(entries, "global_batch_size")["value"] == 48
    assert first(entries, "run_stop")["metadata"]["status"] == "success"
    assert result.reached_target and result.mlperf_status == "success"
    assert keys.index("init_start") < keys.index("init_stop") <= keys.index("run_start")
    assert keys.index("run_start") < keys.index("eval_accuracy") < keys.index("run_stop")


def test_time_to_quality_is_run_start_to_run_stop(successful_run: Run) -> None:
    result, entries, _ = successful_run
    logged = (first(entries, "run_stop")["time_ms"] - first(entries, "run_start")["time_ms"]) / 1000
    assert result.time_to_quality_s == pytest.approx(logged, abs=0.002)
    last_eval = [e for e in entries if e["key"] == "eval_accuracy"][-1]
    assert last_eval["value"] == pytest.approx(result.quality)
    assert last_eval["value"] >= result.quality_target


def test_progress_is_also_reported_through_the_sdk(successful_run: Run) -> None:
    result, _, text = successful_run
    reports = [
        json.loads(line.removeprefix(":::SLICEBOX "))
        for line in text.splitlines()
        if line.startswith(":::SLICEBOX ")
    ]
    assert reports and reports[-1]["samples"] == result.train_samples
    assert reports[-1]["quality"] == pytest.approx(result.quality)


def test_a_run_that_misses_its_target_is_aborted(capsys: pytest.CaptureFixture[str]) -> None:
    result = image.train(TrainConfig(quick=True, quality_target=1.01, max_epochs=1))
    entries = mllog_entries(capsys.readouterr().out)
    assert first(entries, "run_stop")["metadata"]["status"] == "aborted"
    assert not result.reached_target and result.time_to_quality_s is None
    assert result.run_time_s is not None and result.samples_per_s is not None


def test_builtin_writer_matches_mlperf_logging(capsys: pytest.CaptureFixture[str]) -> None:
    if not mlperf_log.using_mlperf_logging():
        pytest.skip("mlperf-logging is not installed: nothing to compare with")
    for use_package in (True, False):
        mlperf_log.MLPerfLogger(use_package=use_package).event(
            "eval_accuracy", 0.5, metadata={"epoch_num": 1}, time_s=12.0
        )
    package, builtin = capsys.readouterr().out.splitlines()
    assert package == builtin  # same keys, order, caller file and line
    assert json.loads(package.removeprefix(":::MLLOG "))["metadata"]["file"] == __file__


def test_init_follows_mlperf_training_order(successful_run: Run) -> None:
    """cache_clear, then init_start, the submission_* lines and init_stop: the checker
    reads submission_division to know how long init may take, so it must come first."""
    _, entries, _ = successful_run
    keys = [e["key"] for e in entries]
    submission = [i for i, k in enumerate(keys) if k.startswith("submission_")]
    assert keys.index("cache_clear") < keys.index("init_start")
    assert submission and keys.index("init_start") < min(submission)
    assert max(submission) < keys.index("init_stop") < keys.index("run_start")
    assert first(entries, "cache_clear")["value"] is True
    # Training ruleset 6.1.0's disclosure keys, each once, before run_start.
    for key, value in (("lowest_numerical_precision_in_linear", "fp32"),
                       ("tensor_parallelism", 1), ("micro_batch_size", 48)):
        assert keys.count(key) == 1 and first(entries, key)["value"] == value
        assert keys.index(key) < keys.index("run_start")
