"""`python -m slicebox.bench.run` and `make_clicklog` as a job would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slicebox import sdk
from slicebox.bench import clicklog

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "slicebox.bench.run", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=180,
    )
    return done.returncode, done.stdout.splitlines()


def summary(lines: list[str]) -> dict[str, Any]:
    last = json.loads(lines[-1])
    assert last["kind"] == "slicebox.bench.result"
    return last


def test_a_run_pinned_to_one_core_uses_one_thread_and_reports_progress() -> None:
    code, lines = run_cli("lm", "--quick", "--cores", "0", "--seed", "2")
    result = summary(lines)
    assert code == 0 and result["status"] == "ok" and result["reached_target"]
    assert result["threads"] == 1 and result["seed"] == 2
    reports = [r for r in map(sdk.parse_report_line, lines) if r is not None]
    assert {r["source"] for r in reports} == {"slicebox", "mllog"}
    assert any(r["key"] == "run_stop" for r in reports if r["source"] == "mllog")


def test_unsupported_variant_exits_3_with_a_reason() -> None:
    code, lines = run_cli("image", "--precision", "fp16")
    assert code == 3 and summary(lines)["status"] == "not supported here"


def test_recsys_trains_on_the_click_log_named_by_slicebox_data(tmp_path: Path) -> None:
    data = tmp_path / "clicks.npz"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "slicebox.bench.make_clicklog",
            str(data),
            "--rows",
            "5000",
            "--seed",
            "4",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert made.returncode == 0, made.stderr
    env = dict(os.environ, SLICEBOX_DATA=str(data))
    code, lines = run_cli(
        "recsys", "--quick", "--epochs", "1", "--target", "0.99", "--cores", "0", env=env
    )
    result = summary(lines)
    # 5000 rows, a fifth held out for eval: one epoch is the 4000 training rows.
    assert code == 0 and result["train_samples"] == 4000
    assert result["mlperf_status"] == "aborted"


def test_click_logs_are_deterministic_and_round_trip(tmp_path: Path) -> None:
    log = clicklog.generate(2000, seed=5)
    again = clicklog.generate(2000, seed=5)
    assert np.array_equal(log.sparse, again.sparse) and np.array_equal(log.labels, again.labels)
    log.save(tmp_path / "c.npz")
    loaded = clicklog.ClickLog.load(tmp_path / "c.npz")
    assert np.array_equal(loaded.dense, log.dense) and loaded.rows == 2000


def test_a_file_that_is_not_a_click_log_is_refused_by_name(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="missing arrays"):
        clicklog.ClickLog.load(tmp_path / "other.npz")


def test_the_hidden_signal_is_learnable_and_auc_matches_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    log = clicklog.generate(20000, seed=1)
    oracle = clicklog.roc_auc(log.labels, log.click_probability.astype(np.float64))
    assert oracle > 0.8  # the quality targets (0.75 quick, 0.82 full) sit below this
    tied = np.round(log.click_probability, 1).astype(np.float64)  # many ties
    assert clicklog.roc_auc(log.labels, tied) == pytest.approx(roc_auc_score(log.labels, tied))
