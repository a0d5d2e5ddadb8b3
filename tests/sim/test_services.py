"""Services with diurnal load next to training in the simulator: rate curves, replica
sizing, and static slicing against re-slicing on one pool."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slicebox import policies
from slicebox.pool.files import parse_pool
from slicebox.pool.model import Pool
from slicebox.sim import services as svc
from slicebox.sim.api import make_speeds
from slicebox.sim.engine import Engine
from slicebox.sim.job import SimJob
from slicebox.sim.rate_curves import (
    DAY_SECONDS,
    RateCurveError,
    RecordedRate,
    SineRate,
    read_rate_curve,
)
from slicebox.sim.traces.model import TraceError
from tests.sim.helpers import duration_job

HOUR = 3600.0
A100 = "A100-40GB"


def a100_pool(nodes: int = 1, gpus: int = 8, mig_cards: int = 0) -> Pool:
    groups: list[dict[str, Any]] = [{"kind": A100, "count": gpus - mig_cards}]
    if mig_cards:
        groups.append({"kind": A100, "count": mig_cards, "mig": True})
    return parse_pool({"name": "a100", "nodes": [
        {"name": "n", "replicas": nodes, "memory_gib": 512, "cores": 64, "gpus": groups}]},
        "test pool")


# -- rate curves ---------------------------------------------------------------------

def test_sine_peaks_at_its_hour_and_bottoms_out_half_a_day_later() -> None:
    curve = SineRate(min_rps=100.0, max_rps=1000.0, peak_at_s=14 * HOUR)
    rates = curve.rates(np.array([14 * HOUR, 2 * HOUR, 14 * HOUR + DAY_SECONDS, 8 * HOUR]))
    assert rates[0] == pytest.approx(1000.0)
    assert rates[1] == pytest.approx(100.0)
    assert rates[2] == pytest.approx(1000.0)  # the next day repeats it
    assert rates[3] == pytest.approx(550.0)  # a quarter period away: halfway
    assert curve.peak() == 1000.0


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"min_rps": 500.0, "max_rps": 100.0}, "min_rps"),
    ({"min_rps": -1.0, "max_rps": 100.0}, "min_rps"),
    ({"min_rps": 1.0, "max_rps": math.nan}, "max_rps"),
    ({"min_rps": 1.0, "max_rps": 1e12}, "max_rps"),
    ({"min_rps": 1.0, "max_rps": 2.0, "period_s": 0.0}, "period_s"),
])
def test_sine_refuses_values_it_cannot_simulate(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(RateCurveError, match=field):
        SineRate(**kwargs)


def test_recorded_curve_interpolates_holds_and_repeats(tmp_path: Path) -> None:
    path = tmp_path / "rate.csv"
    path.write_text("time_s,rate_rps,note\n0,100,night\n3600,300,\n7200,100,\n")
    held = read_rate_curve(path)
    assert held.rates(np.array([1800.0, 3600.0, 9000.0])).tolist() == [200.0, 300.0, 100.0]
    assert held.peak() == 300.0
    daily = read_rate_curve(path, period_s=10_800.0)
    # 9000 s: halfway from the last point (100 at 7200) back round to the first
    # (100 at 10800); 12600 s is 1800 s into the next period.
    assert daily.rates(np.array([9000.0, 12_600.0])).tolist() == [100.0, 200.0]


@pytest.mark.parametrize(("text", "line", "column"), [
    ("time_s,rate_rps\n0,100\n10,-5\n", 3, "rate_rps"),
    ("time_s,rate_rps\n0,100\n10,nan\n", 3, "rate_rps"),
    ("time_s,rate_rps\n0,100\n0,200\n", 3, "time_s"),
    ("time_s,rate_rps\n0,100\n1e300,200\n", 3, "time_s"),
    ("time_s\n0\n", 1, "rate_rps"),
])
def test_recorded_curve_errors_name_line_and_column(tmp_path: Path, text: str, line: int,
                                                     column: str) -> None:
    path = tmp_path / "rate.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as caught:
        read_rate_curve(path)
    assert caught.value.line == line
    assert caught.value.column == column


def test_recorded_curve_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read"):
        read_rate_curve(tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("time_s,rate_rps\n")
    with pytest.raises(TraceError, match="no rows"):
        read_rate_curve(empty)


def test_recorded_curve_in_code_is_checked_too() -> None:
    with pytest.raises(RateCurveError, match="increase"):
        RecordedRate((0.0, 10.0, 5.0), (1.0, 2.0, 3.0))
    with pytest.raises(RateCurveError, match="period_s"):
        RecordedRate((0.0, 7200.0), (1.0, 2.0), period_s=3600.0)


# -- replica sizing ------------------------------------------------------------------

def _service(curve: Any = None, **kwargs: Any) -> svc.Service:
    return svc.Service("web", curve or SineRate(10.0, 100.0), svc.ReplicaShape(A100),
                       **{"replica_rps": 10.0, **kwargs})


def test_replicas_cover_the_rate_with_headroom_within_bounds() -> None:
    service = _service(headroom=0.1, min_replicas=1, max_replicas=8)
    assert service.replicas_for(0.0) == 1  # the minimum
    assert service.replicas_for(50.0) == 6  # 55 rps of capacity: 6 x 10
    assert service.replicas_for(95.0) == 8  # 104.5 rps would need 11: capped at 8
    exact = _service(headroom=0.0)
    assert exact.replicas_for(30.0) == 3  # an exact multiple needs no extra replica
    assert exact.replicas_for(30.5) == 4


def test_replica_rates_come_from_the_table_and_scale_with_a_share() -> None:
    whole = svc.replica_rps("resnet50", svc.ReplicaShape(A100))
    mig = svc.replica_rps("resnet50", svc.ReplicaShape(A100, mig="1g.5gb"))
    half = svc.replica_rps("resnet50", svc.ReplicaShape(A100, fraction=0.5))
    assert mig < whole / 7 * 1.2 and half == whole / 2
    with pytest.raises(svc.ServiceError, match="no measured rate"):
        svc.replica_rps("gpt", svc.ReplicaShape(A100))


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"kind": "nope"}, "kind"),
    ({"kind": A100, "fraction": 1.5}, "fraction"),
    ({"kind": A100, "mig": "9g.99gb"}, "mig"),
    ({"kind": A100, "fraction": 0.5, "mig": "1g.5gb"}, "fraction or mig"),
])
def test_replica_shape_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(svc.ServiceError, match=field):
        svc.ReplicaShape(**kwargs)


def test_shape_share_follows_the_slice() -> None:
    assert svc.ReplicaShape(A100).gpu_share == 1.0
    assert svc.ReplicaShape(A100, fraction=0.25).gpu_share == 0.25
    assert svc.ReplicaShape(A100, mig="3g.20gb").gpu_share == pytest.approx(3 / 7)


def test_service_errors_name_the_field() -> None:
    with pytest.raises(svc.ServiceError, match="replica_rps"):
        _service(replica_rps=0.0)
    with pytest.raises(svc.ServiceError, match="min_replicas"):
        _service(min_replicas=5, max_replicas=2)
    with pytest.raises(svc.ServiceError, match="unique"):
        svc.ServiceSlicing([_service(), _service()], svc.Slicing.STATIC)


# -- services next to training -------------------------------------------------------

def _day_of_jobs(count: int = 24, gpus: int = 2, hours: float = 3.0) -> list[SimJob]:
    """One rigid job an hour through a day: each needs ``gpus`` GPUs for ``hours``."""
    return [duration_job(f"j{i:02d}", i * HOUR, hours * HOUR, gpus, restart=60.0,
                         cpus=4, memory=16.0) for i in range(count)]


def _diurnal() -> svc.Service:
    # 10 rps a replica, 10 % headroom: at the 14:00 peak (50 rps) the service needs 6 of
    # the 8 GPUs, in the night (8 rps) 1.
    return svc.Service("web", SineRate(8.0, 50.0), svc.ReplicaShape(A100),
                       replica_rps=10.0, headroom=0.1, max_replicas=8)


def test_reslicing_beats_static_on_jct_at_the_same_objective() -> None:
    pool, jobs, service = a100_pool(), _day_of_jobs(), _diurnal()
    static = svc.simulate(jobs, pool, "fifo", [service], "static")
    reslice = svc.simulate(jobs, pool, "fifo", [service], "reslice")
    for run in (static, reslice):
        assert run.result.metrics.finished == len(jobs)
        assert run.services.short_seconds == 0.0
        assert run.services.services[0].unplaced == 0
    # Static holds the peak's 6 replicas all day (2 GPUs left: one 2-GPU job at a time);
    # re-slicing holds 1 at night and 6 at the peak.
    static_out, reslice_out = static.services.services[0], reslice.services.services[0]
    assert static_out.min_ready == static_out.max_ready == 6
    assert (reslice_out.min_ready, reslice_out.max_ready) == (1, 6)
    assert reslice.result.metrics.avg_jct < 0.8 * static.result.metrics.avg_jct
    assert reslice.training_utilisation() > static.training_utilisation()
    assert reslice.service_share() < static.service_share()
    # The rate rose while training held the GPUs: re-slicing took them back.
    assert reslice.services.preempted > 0
    assert sum(j.preemptions for j in reslice.result.jobs) == reslice.services.preempted


def test_reslicing_sizes_to_the_rate_at_each_reslice_and_never_shares_a_gpu() -> None:
    pool, jobs, service = a100_pool(), _day_of_jobs(count=12), _diurnal()
    seen: list[tuple[int, int]] = []  # (replicas held, replicas the rate needs)

    class Watched(svc.ServiceSlicing):
        def apply(self, engine: Engine) -> bool:
            changed = super().apply(engine)
            held = list(engine.placement.state.compositions().values())
            devices = [(s.node, s.device) for c in held for s in c.slices]
            assert len(devices) == len(set(devices)), "a GPU held twice"
            replicas = sum(1 for c in held if c.job_id.startswith(svc.REPLICA_PREFIX))
            seen.append((replicas, service.replicas_for(service.rate(engine.now))))
            return changed

    watched = Watched([service], svc.Slicing.RESLICE)
    Engine(jobs, pool, policies.get("fifo"), make_speeds(pool), changes=watched).run()
    assert all(held >= needed for held, needed in seen)  # never below the need
    assert {held for held, _ in seen} >= {1, 6}  # down to the night's, up to the peak's
    assert watched.preempted > 0


def test_hysteresis_keeps_replicas_until_the_lower_need_has_lasted() -> None:
    # 50 rps until 1 h, then 10 rps: 5 replicas, then 1, but only 30 min after the drop.
    curve = RecordedRate((0.0, 3599.0, 3600.0, 20_000.0), (50.0, 50.0, 10.0, 10.0))
    service = svc.Service("web", curve, svc.ReplicaShape(A100), replica_rps=10.0,
                          headroom=0.0)
    jobs = [duration_job("j", 0.0, 4 * HOUR, 1, cpus=4, memory=16.0)]
    options = svc.SlicingOptions(interval_s=900.0, down_after_s=1800.0)
    run = svc.simulate(jobs, a100_pool(), "fifo", [service], "reslice", options=options)
    removed = sorted(r.removed for r in run.services.replicas if r.removed < math.inf)
    # Seen low at 3600 s; removed once it has lasted 1800 s: at the 5400 s re-slice.
    assert removed == [5400.0] * 4
    assert run.services.short_seconds == 0.0


def test_a_replica_that_starts_late_is_counted_short() -> None:
    # A step from 10 to 30 rps at 1000 s: re-slicing sees it at the 1800 s re-slice, and
    # the new replicas serve 60 s later, so 1000 .. 1860 s are short (860 s).
    curve = RecordedRate((0.0, 999.0, 1000.0, 50_000.0), (10.0, 10.0, 30.0, 30.0))
    service = svc.Service("web", curve, svc.ReplicaShape(A100), replica_rps=10.0,
                          headroom=0.0)
    jobs = [duration_job("j", 0.0, 2 * HOUR, 1, cpus=4, memory=16.0)]
    options = svc.SlicingOptions(interval_s=900.0, replica_start_s=60.0, sample_s=10.0)
    reslice = svc.simulate(jobs, a100_pool(), "fifo", [service], "reslice", options=options)
    assert reslice.services.short_seconds == pytest.approx(860.0, abs=10.0)
    outcome = reslice.services.services[0]
    assert outcome.unserved_requests == pytest.approx(20.0 * 860.0, rel=0.02)
    static = svc.simulate(jobs, a100_pool(), "fifo", [service], "static", options=options)
    assert static.services.short_seconds == 0.0


def test_services_on_shares_and_mig_instances_hold_what_their_shape_says() -> None:
    pool = a100_pool(mig_cards=2)
    web = svc.Service("web", SineRate(100.0, 100.0), svc.ReplicaShape(A100, fraction=0.5),
                      replica_rps=50.0, headroom=0.0)
    qa = svc.Service("qa", SineRate(30.0, 30.0), svc.ReplicaShape(A100, mig="1g.5gb"),
                     replica_rps=10.0, headroom=0.0)
    jobs = [duration_job("j", 0.0, HOUR, 5, cpus=4, memory=16.0)]
    run = svc.simulate(jobs, pool, "fifo", [web, qa], "static")
    web_out, qa_out = run.services.services
    assert (web_out.max_ready, qa_out.max_ready) == (2, 3)
    span = run.span
    assert web_out.held_gpu_seconds == pytest.approx(2 * 0.5 * span)
    assert qa_out.held_gpu_seconds == pytest.approx(3 / 7 * span)
    # Both halves share one card; the 5-GPU job fits on the 5 plain cards left.
    assert run.result.metrics.finished == 1
    assert run.result.jobs[0].jct == pytest.approx(HOUR)


def test_a_job_no_trough_makes_room_for_is_reported_not_looped_on() -> None:
    service = svc.Service("web", SineRate(10.0, 10.0), svc.ReplicaShape(A100),
                          replica_rps=10.0, headroom=0.0, min_replicas=2)
    jobs = [duration_job("big", 0.0, HOUR, 8, cpus=4, memory=16.0)]
    options = svc.SlicingOptions(idle_limit_s=6 * HOUR)
    run = svc.simulate(jobs, a100_pool(), "fifo", [service], "reslice", options=options)
    assert run.result.metrics.finished == 0
    assert any("never started" in note for note in run.result.notes)


def test_training_is_not_preempted_when_that_would_not_make_room() -> None:
    # The MIG card holds 7 1g instances; the 8th cannot go anywhere, and stopping the
    # training job on the plain cards would not change that: it keeps running.
    pool = a100_pool(mig_cards=1)
    curve = RecordedRate((0.0, 999.0, 1000.0), (10.0, 10.0, 80.0))
    qa = svc.Service("qa", curve, svc.ReplicaShape(A100, mig="1g.5gb"), replica_rps=10.0,
                     headroom=0.0, max_replicas=8)
    jobs = [duration_job("j", 0.0, 2 * HOUR, 7, cpus=4, memory=16.0)]
    run = svc.simulate(jobs, pool, "fifo", [qa], "reslice")
    outcome = run.services.services[0]
    assert outcome.max_ready == 7 and outcome.unplaced >= 1
    assert run.services.preempted == 0 and run.result.jobs[0].preemptions == 0
    assert run.services.short_seconds > 0  # 70 of 80 rps: short, and counted
