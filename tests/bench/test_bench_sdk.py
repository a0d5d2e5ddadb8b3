"""The progress SDK a job calls, and the parser the controller reads job logs with."""

from __future__ import annotations

import json
import time

import pytest

from slicebox import sdk


def test_report_prints_one_flushed_line_that_parses_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = time.time()
    sdk.report(samples=1280, quality=0.91, loss=0.25, phase="train")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(":::SLICEBOX {")
    parsed = sdk.parse_report_line(out)
    assert parsed is not None
    assert parsed["source"] == "slicebox"
    assert parsed["samples"] == 1280 and parsed["quality"] == 0.91
    assert parsed["loss"] == 0.25 and parsed["phase"] == "train"
    assert before <= parsed["time"] <= time.time()


def test_report_without_values_still_carries_every_key() -> None:
    payload = json.loads(sdk.format_report().removeprefix(sdk.SLICEBOX_PREFIX))
    assert payload["samples"] is None and payload["quality"] is None and "time" in payload


def test_non_finite_metrics_become_null_not_invalid_json() -> None:
    line = sdk.format_report(samples=1, quality=float("nan"), loss=float("inf"))
    payload = json.loads(line.removeprefix(sdk.SLICEBOX_PREFIX))  # strict JSON parses
    assert payload["quality"] is None and payload["loss"] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"samples": -1}, "samples"),
        ({"samples": 1.5}, "samples"),
        ({"quality": "high"}, "quality"),
        ({"time": 3}, "reserved"),
        ({"weights": [1, 2]}, "weights"),
    ],
)
def test_bad_reports_are_rejected_naming_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sdk.format_report(**kwargs)  # type: ignore[arg-type]


def test_mllog_eval_accuracy_gives_quality_and_samples() -> None:
    line = (
        ':::MLLOG {"namespace": "", "time_ms": 1700000000123, "event_type": "POINT_IN_TIME", '
        '"key": "eval_accuracy", "value": 0.757, "metadata": {"file": "x.py", "lineno": 3, '
        '"epoch_num": 2, "samples_count": 40960}}'
    )
    parsed = sdk.parse_report_line(line)
    assert parsed is not None
    assert parsed["source"] == "mllog" and parsed["key"] == "eval_accuracy"
    assert parsed["quality"] == 0.757 and parsed["samples"] == 40960
    assert parsed["time"] == pytest.approx(1700000000.123)
    assert parsed["metadata"]["epoch_num"] == 2


def test_mllog_train_samples_is_dataset_size_not_progress() -> None:
    line = (
        ':::MLLOG {"time_ms": 1, "event_type": "POINT_IN_TIME", "key": "train_samples", '
        '"value": 1437}'
    )
    parsed = sdk.parse_report_line(line)
    assert parsed is not None and parsed["samples"] is None and parsed["quality"] is None


def test_markers_after_a_launcher_prefix_are_found() -> None:
    parsed = sdk.parse_report_line('[rank0]: 12:00:01 :::SLICEBOX {"time": 5, "samples": 7}')
    assert parsed is not None and parsed["samples"] == 7 and parsed["quality"] is None


@pytest.mark.parametrize(
    "line",
    [
        "epoch 3 loss 0.2",
        ":::SLICEBOX {not json",
        ":::SLICEBOX [1, 2]",
        ':::MLLOG {"value": 3}',  # no key
        "",
    ],
)
def test_other_lines_are_not_reports(line: str) -> None:
    assert sdk.parse_report_line(line) is None
