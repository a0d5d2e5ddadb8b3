"""Which seconds over the objective count as "right after a step": a fixed span after each
step's start, or, when the serving side took longer to settle, until shortly after it did."""

from __future__ import annotations

from slicebox.serving.loadramp import RampReport, Request, ramp

OBJECTIVE_MS = 100.0


def report_over_at(seconds_over: set[int]) -> RampReport:
    """Three 10 s steps, one request a second, slow in the seconds given."""
    requests = tuple(Request(due_s=s + 0.5, latency_ms=500.0 if s in seconds_over else 10.0,
                             status=200) for s in range(30))
    return RampReport(tuple(ramp((1.0, 2.0, 1.0), 10.0)), requests, 30.0)


def test_seconds_within_the_span_after_a_step_start_count_as_near() -> None:
    report = report_over_at({10, 11, 12, 15})
    assert report.seconds_over(OBJECTIVE_MS) == [10, 11, 12, 15]
    assert report.seconds_over_after_step(OBJECTIVE_MS, 3.0) == (3, 1)


def test_a_step_that_settled_late_stays_near_until_its_drain_span_ends() -> None:
    report = report_over_at({10, 11, 12, 15, 16, 18})
    # Step 2 (from 10 s) settled at 15.5 s: 16 is within its 1 s drain, 18 is not.
    near, rest = report.seconds_over_after_step(OBJECTIVE_MS, 3.0, [None, 15.5, None], 1.0)
    assert (near, rest) == (5, 1)
    # A step that settled early keeps the fixed span: settling never shortens it.
    assert report.seconds_over_after_step(OBJECTIVE_MS, 3.0, [None, 10.5, None], 1.0) == (3, 3)
