"""Elastic CPU jobs: grown into idle cores when the measured gain pays for the restart,
shrunk for waiting jobs of no lower priority, never resized back and forth."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from slicebox import policies
from slicebox.policies.elastic import ElasticRules, resize_cores
from slicebox.profiles.base import Estimate
from slicebox.profiles.table import ProfileEntry, ProfileTable
from slicebox.snapshot import (
    Assignment,
    Capacity,
    ClusterSnapshot,
    Decision,
    JobState,
    JobView,
)
from slicebox.spec.demand import Demand

RULES = ElasticRules(restart_seconds=5.0, min_gain=0.03, payback=1.0, min_interval=10.0)


class CoreProfiles:
    """Measured samples/s by core count; other sizes are linear estimates."""

    def __init__(self, curve: Mapping[int, float]) -> None:
        self.curve = dict(curve)

    def rate(self, workload: str, kind: str, gpus: float, precision: str = "fp32") -> Estimate:
        assert kind == "cpu"
        if int(gpus) in self.curve:
            return Estimate(self.curve[int(gpus)], True, "test")
        return Estimate(self.curve[1] * gpus, False, "scaled")


def elastic(job_id: str, *, lo: int = 1, hi: int = 2, holds: int | None = None,
            started: float | None = None, priority: int = 0, submitted: float = 0.0,
            remaining: float | None = None) -> JobView:
    current = Assignment(job_id, 0, None, holds, 1.0) if holds is not None else None
    return JobView(job_id, Demand(cpus=lo, max_cpus=hi), submitted, workload="recsys",
                   priority=priority, state=JobState.RUNNING if current else JobState.QUEUED,
                   current=current, started_at=started if current else None,
                   remaining_work=remaining)


def rigid(job_id: str, cpus: int = 1, *, holds: bool = False, priority: int = 0,
          submitted: float = 0.0) -> JobView:
    current = Assignment(job_id, 0, None, cpus, 1.0) if holds else None
    return JobView(job_id, Demand(cpus=cpus), submitted, workload="other", priority=priority,
                   state=JobState.RUNNING if holds else JobState.QUEUED, current=current,
                   started_at=0.0 if holds else None)


def snap(jobs: list[JobView], *, cores: int = 2, now: float = 100.0,
         curve: Mapping[int, float] | None = None) -> ClusterSnapshot:
    used = sum(j.current.cpus or 0 for j in jobs if j.current is not None)
    profiles = CoreProfiles(curve if curve is not None else {1: 100.0, 2: 110.0})
    return ClusterSnapshot(now, tuple(jobs), Capacity({}, {}, cores, cores - used),
                           profiles)  # type: ignore[arg-type]


def cores(decision: Decision) -> dict[str, int | None]:
    return {a.job_id: a.cpus for a in decision.run}


def fifo_then_resize(s: ClusterSnapshot) -> Decision:
    return resize_cores(s, policies.get("fifo").decide(s), RULES)


# -- growing ----------------------------------------------------------------------------------

def test_starting_job_takes_idle_cores_when_the_profile_shows_a_gain() -> None:
    s = snap([elastic("e")])
    assert cores(fifo_then_resize(s)) == {"e": 2}


def test_starting_job_stays_small_without_a_gain_or_without_room() -> None:
    flat = snap([elastic("e")], curve={1: 100.0, 2: 101.0})  # 1 % is not worth a core
    assert cores(fifo_then_resize(flat)) == {"e": None}
    busy = snap([rigid("b", holds=True), elastic("e")])
    assert cores(fifo_then_resize(busy))["e"] is None  # the one free core is its minimum


def test_idle_cores_go_to_waiting_jobs_before_an_elastic_job_grows() -> None:
    s = snap([elastic("e", submitted=0.0), rigid("r", submitted=1.0)])
    assert cores(fifo_then_resize(s)) == {"e": None, "r": None}


def test_running_job_grows_when_the_gain_pays_for_the_restart() -> None:
    # 1.10x measured: over 100 s of expected remaining time it saves ~9 s > a 5 s restart.
    s = snap([elastic("e", holds=1, started=0.0)], now=100.0)
    d = fifo_then_resize(s)
    assert cores(d) == {"e": 2}
    assert d.reasons["e"].startswith("resize 1\u21922 cores")


def test_running_job_does_not_grow_when_the_gain_does_not_pay() -> None:
    # Run 30 s: ~2.7 s saved over as long again, less than the 5 s restart.
    young = snap([elastic("e", holds=1, started=70.0)], now=100.0)
    assert cores(fifo_then_resize(young)) == {"e": 1}
    # Known remaining work wins over the job's age: 10 s of work left pays nothing.
    nearly_done = snap([elastic("e", holds=1, started=0.0, remaining=1000.0)], now=100.0)
    assert cores(fifo_then_resize(nearly_done)) == {"e": 1}
    # Much work left pays even for a job that started recently (after the min interval).
    long_left = snap([elastic("e", holds=1, started=85.0, remaining=100_000.0)], now=100.0)
    assert cores(fifo_then_resize(long_left)) == {"e": 2}
    # ... but not within the minimum interval after its start.
    just_started = snap([elastic("e", holds=1, started=95.0, remaining=100_000.0)], now=100.0)
    assert cores(fifo_then_resize(just_started)) == {"e": 1}


def test_an_estimated_gain_is_discounted() -> None:
    # No measurement at 2 cores: the table's linear 2x is believed as 1.25x; at 1.25x a job
    # that ran 20 s saves 4 s (< 5 s restart) and is left alone, one that ran 40 s grows.
    curve = {1: 100.0}
    assert cores(fifo_then_resize(snap([elastic("e", holds=1, started=80.0)], curve=curve))) \
        == {"e": 1}
    assert cores(fifo_then_resize(snap([elastic("e", holds=1, started=60.0)], curve=curve))) \
        == {"e": 2}


def test_growth_is_bounded_by_max_cpus_and_takes_the_best_worthwhile_size() -> None:
    s = snap([elastic("e", lo=1, hi=3, holds=1, started=0.0)], cores=8, now=1000.0,
             curve={1: 100.0, 2: 150.0, 3: 150.0})  # a third core buys nothing
    assert cores(fifo_then_resize(s)) == {"e": 2}


# -- shrinking --------------------------------------------------------------------------------

def test_shrinks_for_a_higher_priority_waiter() -> None:
    s = snap([elastic("e", holds=2, started=0.0), rigid("hi", priority=5, submitted=50.0)])
    d = fifo_then_resize(s)
    assert cores(d) == {"e": 1, "hi": None}
    assert d.reasons["e"].startswith("resize 2\u21921 cores")
    assert "hi" in d.reasons["e"]


def test_no_shrink_for_a_lower_priority_waiter_or_one_that_would_not_fit() -> None:
    low = snap([elastic("e", holds=2, started=0.0, priority=3), rigid("lo", priority=0)])
    assert cores(fifo_then_resize(low))["e"] == 2
    too_big = snap([elastic("e", holds=2, started=0.0), rigid("big", 2, priority=5)])
    assert cores(fifo_then_resize(too_big))["e"] == 2  # 1 core back would not seat it


def test_shrinks_only_as_much_as_the_waiter_needs() -> None:
    s = snap([elastic("e", lo=1, hi=4, holds=4, started=0.0), rigid("w", 2, priority=1)],
             cores=4)
    assert cores(fifo_then_resize(s)) == {"e": 2, "w": None}


def test_no_back_and_forth() -> None:
    """Grow, restart, then nothing for a while; a shrink only with a waiter; after the
    waiter leaves, growing again waits until it pays."""
    grown = fifo_then_resize(snap([elastic("e", holds=1, started=0.0)], now=100.0))
    assert cores(grown) == {"e": 2}
    # Restarted on 2 cores at t=105: nothing changes in the following rounds.
    for now in (106.0, 130.0, 500.0):
        d = fifo_then_resize(snap([elastic("e", holds=2, started=105.0)], now=now))
        assert cores(d) == {"e": 2}
    # Shrunk for a waiter at t=500 and restarted at 505; the waiter ends at t=520: too
    # soon for growing again to pay (15 s run, ~1.4 s saved).
    d = fifo_then_resize(snap([elastic("e", holds=1, started=505.0)], now=520.0))
    assert cores(d) == {"e": 1}


# -- the policies that do and do not resize -----------------------------------------------------

def test_fifo_never_resizes_and_fifo_elastic_equals_it_on_rigid_jobs() -> None:
    jobs = [elastic("e", holds=1, started=0.0), rigid("r", 1, submitted=3.0)]
    s = snap(jobs, cores=4, now=1000.0)
    fifo = policies.get("fifo").decide(s)
    assert cores(fifo) == {"e": 1, "r": None}  # the default policy leaves the job alone
    assert cores(policies.get("fifo-elastic").decide(s))["e"] == 2
    only_rigid = snap([rigid("a", holds=True), rigid("b", submitted=2.0)], cores=4)
    assert policies.get("fifo-elastic").decide(only_rigid) == \
        policies.get("fifo").decide(only_rigid)


def test_same_decision_object_when_no_job_is_elastic() -> None:
    s = snap([rigid("a", holds=True), rigid("b")], cores=4)
    d = policies.get("fifo").decide(s)
    assert resize_cores(s, d) is d


def test_gpu_jobs_are_left_alone() -> None:
    view = JobView("g", Demand(gpus=1, max_gpus=1, cpus=1, max_cpus=4), 0.0, workload="w")
    s = ClusterSnapshot(0.0, (view,), Capacity({"a100": 1}, {"a100": 1}, 8, 8))
    d = Decision((Assignment("g", 1),))
    assert resize_cores(s, d) is d


@pytest.mark.parametrize("measured_two", [105.0, 112.0])
def test_works_with_a_profile_table_from_bench(measured_two: float) -> None:
    table = ProfileTable([ProfileEntry("recsys", "cpu", 1.0, "fp32", 100.0, "bench"),
                          ProfileEntry("recsys", "cpu", 2.0, "fp32", measured_two, "bench")])
    s = ClusterSnapshot(0.0, (elastic("e"),), Capacity({}, {}, 2, 2), table)
    assert cores(resize_cores(s, policies.get("fifo").decide(s))) == {"e": 2}


def test_a_resized_job_restarts_at_its_new_size_despite_a_changed_profile() -> None:
    from slicebox.policies.elastic import honour_resizes
    # Grown because 2 cores paid; by the time it restarts the profile says they do not.
    s = snap([elastic("e")], curve={1: 100.0, 2: 101.0})
    plain = fifo_then_resize(s)
    assert cores(plain) == {"e": None}
    assert cores(honour_resizes(s, plain, {"e": 2})) == {"e": 2}
    # ... but never at the cost of a waiter the decision starts first.
    busy = snap([rigid("w", submitted=-1.0), elastic("e")], curve={1: 100.0, 2: 101.0})
    assert cores(honour_resizes(busy, fifo_then_resize(busy), {"e": 2})) == \
        {"w": None, "e": None}
    assert honour_resizes(s, plain, {"other": 2}) is plain
