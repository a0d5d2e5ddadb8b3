"""Issue 8: one line a job prints must not crash the controller. The parser the backend
reads logs with returns bounded, typed values, or nothing; it never raises."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from slicebox import sdk
from slicebox.backends.logs import read_reports

HUGE_SAMPLES = ':::SLICEBOX {"samples": 100000000000000000000000000}'
WRONG_TYPES = ':::SLICEBOX {"samples":[1],"time":"x"}'


def _reports_from_log(tmp_path: Path, lines: list[str]) -> tuple[list[object], int, int]:
    log = tmp_path / "job.log"
    log.write_text("".join(line + "\n" for line in lines))
    reports, offset = read_reports(log, 0)
    return list(reports), offset, log.stat().st_size


@pytest.mark.parametrize("line", [HUGE_SAMPLES, WRONG_TYPES])
def test_the_two_repro_lines_are_bad_lines(line: str) -> None:
    assert sdk.parse_report_line(line) is None


@pytest.mark.parametrize("line", [HUGE_SAMPLES, WRONG_TYPES])
def test_the_backend_skips_them_and_reads_on(tmp_path: Path, line: str) -> None:
    good = sdk.format_report(samples=10, quality=0.5)
    reports, offset, size = _reports_from_log(tmp_path, [line, good])
    assert offset == size  # the read position moves past the bad line
    assert [(r.samples, r.quality) for r in reports] == [(10, 0.5)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("line", [
    ':::SLICEBOX {"samples": -1}',
    ':::SLICEBOX {"samples": 4611686018427387905}',  # 2**62 + 1
    ':::SLICEBOX {"samples": 1.5}',
    ':::SLICEBOX {"samples": true}',
    ':::SLICEBOX {"time": 1e400}',
    ':::SLICEBOX {"time": -5}',
    ':::SLICEBOX {"quality": NaN}',
    ':::SLICEBOX {"quality": Infinity}',
    ':::SLICEBOX {"quality": "0.9"}',
    ':::SLICEBOX {"samples": 1, "loss": [1, 2]}',
    ':::SLICEBOX {"samples": 1, "note": "a\\u0000b"}',
    ':::SLICEBOX {"samples": 1, "note": "\\ud800"}',
    ':::SLICEBOX {"samples": ' + "9" * 5000 + '}',
    ':::SLICEBOX ' + "[" * 100_000 + "]" * 100_000,
    ':::SLICEBOX {"samples": 1, "pad": "' + "x" * 70_000 + '"}',
    ':::MLLOG {"key": "eval_accuracy", "value": 1e999, "time_ms": 1}',
    ':::MLLOG {"key": "x", "time_ms": "soon"}',
    ':::MLLOG {"key": "samples_count", "value": 100000000000000000000000000}',
])
def test_out_of_range_or_mistyped_values_are_bad_lines(line: str) -> None:
    assert sdk.parse_report_line(line) is None


def test_a_good_line_gives_typed_values() -> None:
    parsed = sdk.parse_report_line(':::SLICEBOX {"time": 1700000000, "samples": 4611686018427387904'
                                   ', "quality": 1, "loss": 0.5, "phase": "train"}')
    assert parsed is not None
    assert parsed["samples"] == 2**62 and isinstance(parsed["time"], float)
    assert isinstance(parsed["quality"], float) and math.isfinite(parsed["quality"])
    assert parsed["loss"] == 0.5 and parsed["phase"] == "train"


def test_report_refuses_what_the_parser_would() -> None:
    with pytest.raises(ValueError, match="samples"):
        sdk.format_report(samples=2**62 + 1)
