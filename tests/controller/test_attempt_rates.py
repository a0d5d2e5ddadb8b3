"""Profiles are refined with an attempt's average rate, not one report's."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from slicebox.controller.loop import AttemptRates
from slicebox.controller.progress import CleanProgress


def _job(attempt: int) -> Any:
    return SimpleNamespace(id="j1", attempt=attempt)


def test_a_report_after_an_evaluation_does_not_make_the_rate_collapse() -> None:
    rates = AttemptRates()
    assert rates.observe(_job(1), CleanProgress(100.0, 0, None)) is None  # the baseline
    assert rates.observe(_job(1), CleanProgress(101.0, 1000, None)) == 1000.0
    # 9 s of evaluation, then 1 s of training: one report's rate would be 100/s.
    assert rates.observe(_job(1), CleanProgress(111.0, 2000, None)) == 2000 / 11


def test_a_new_attempt_or_a_restored_count_starts_a_new_average() -> None:
    rates = AttemptRates()
    rates.observe(_job(1), CleanProgress(0.0, 0, None))
    rates.observe(_job(1), CleanProgress(10.0, 5000, None))
    # Attempt 2 restored from 4000 samples: its rate is measured from its own first report.
    assert rates.observe(_job(2), CleanProgress(50.0, 4000, None)) is None
    assert rates.observe(_job(2), CleanProgress(52.0, 4400, None)) == 200.0
    rates.forget("j1")
    assert rates.observe(_job(2), CleanProgress(53.0, 4500, None)) is None
