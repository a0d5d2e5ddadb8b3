"""The suite runs each cell as a pinned child process and reports one result per cell."""

from __future__ import annotations

from pathlib import Path

import pytest

from slicebox.bench.report import plot_results, results_table
from slicebox.bench.results import BenchResult
from slicebox.bench.slices import SliceShape
from slicebox.bench.suite import (
    SuiteProgress,
    child_argv,
    results_from_json,
    results_to_json,
    run_suite,
)


def test_a_suite_cell_runs_pinned_and_reports_progress(tmp_path: Path) -> None:
    events: list[SuiteProgress] = []
    results = run_suite(
        ["image"], ["cpu:1"], ["fp32", "fp16"], quick=True, progress_callback=events.append
    )

    measured, unsupported = results
    assert measured.status == "ok" and measured.slice == "cpu-1c" and measured.cores == 1
    assert measured.reached_target and measured.time_to_quality_s is not None
    assert measured.samples_per_s is not None and measured.samples_per_s > 0
    assert unsupported.status == "not supported here"
    phases = [(e.index, e.phase) for e in events]
    assert phases[0] == (0, "start") and (0, "progress") in phases and phases[-1] == (1, "done")
    assert events[-1].result == unsupported

    assert results_from_json(results_to_json(results)) == results
    png = plot_results(results, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results_table(results).row_count == 2


def test_time_budget_skips_the_cells_it_cannot_start() -> None:
    results = run_suite(["image", "lm"], ["cpu:1"], ["fp16", "fp32"], quick=True, time_budget_s=-1)
    assert [r.status for r in results] == ["skipped"] * 4


def test_bad_names_fail_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="unknown workload 'imagenet'; valid: image, lm"):
        run_suite(["imagenet"], ["cpu:1"])
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        run_suite(["image"], ["cpu:1"], ["int8"])
    with pytest.raises(ValueError, match="bad slice 'tpu:0'"):
        run_suite(["image"], ["tpu:0"])


def test_slice_spellings() -> None:
    assert SliceShape.parse("cpu:1").cores == (0,)
    assert SliceShape.parse("cores:0-1").cores == (0, 1)
    half = SliceShape.parse("gpu:0@0.5")
    assert half.device == "cuda:0" and half.memory_fraction == 0.5 and half.name == "gpu0@0.5"
    mig = SliceShape.parse("mig:MIG-4f1c2a3b-aaaa-bbbb-cccc-123456789abc")
    assert mig.visible_devices.startswith("MIG-") and mig.device == "cuda:0"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="memory fraction"):
        SliceShape.parse("gpu:0@1.5")


def test_child_argv_carries_the_slice() -> None:
    argv = child_argv(
        "lm",
        SliceShape.parse("gpu:1@0.25"),
        "bf16",
        quick=True,
        seed=4,
        max_seconds=30,
        python="python",
    )
    assert argv == [
        "python",
        "-m",
        "slicebox.bench.run",
        "lm",
        "--precision",
        "bf16",
        "--seed",
        "4",
        "--device",
        "cuda:1",
        "--quick",
        "--max-seconds",
        "30",
        "--memory-fraction",
        "0.25",
    ]


def test_plot_leaves_out_cells_without_numbers(tmp_path: Path) -> None:
    results = [BenchResult("lm", "cpu-1c", "fp16", "not supported here", reason="no GPU")]
    assert plot_results(results, tmp_path / "empty.png").exists()


def test_progress_bars_count_finished_cells() -> None:
    import io

    from rich.console import Console

    from slicebox.bench.progress import SuiteProgressBars

    done = BenchResult("lm", "cpu-1c", "fp32", "ok")
    with SuiteProgressBars(Console(file=io.StringIO())) as bars:
        for index in range(2):
            base = SuiteProgress(index, 2, "lm", "cpu-1c", "fp32", "start")
            bars(base)
            bars(SuiteProgress(index, 2, "lm", "cpu-1c", "fp32", "progress", 640, 12.5))
            bars(SuiteProgress(index, 2, "lm", "cpu-1c", "fp32", "done", result=done))
    suite = bars.progress.tasks[0]
    assert suite.completed == 2 and suite.total == 2
    assert "ok" in str(bars.progress.tasks[1].description)
