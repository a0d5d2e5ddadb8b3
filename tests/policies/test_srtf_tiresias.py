"""SRTF orders by remaining time and preempts; Tiresias demotes by attained service."""

from __future__ import annotations

from slicebox.policies.srtf import Srtf
from slicebox.policies.tiresias import Tiresias
from tests.policies.helpers import by_id, ids, job, snapshot


def test_srtf_runs_shortest_remaining_first_while_gpus_last() -> None:
    jobs = [job("a", remaining=100), job("b", remaining=10), job("c", remaining=50)]
    decision = Srtf().decide(snapshot(jobs, {"V100": 2}))
    assert ids(decision) == ["b", "c"]


def test_srtf_remaining_time_counts_gpus_and_speed() -> None:
    # 100 units on 4 GPUs at 1/s per GPU is 25 s; 60 units on 1 GPU is 60 s.
    jobs = [job("wide", gpus=4, remaining=100), job("narrow", remaining=60)]
    decision = Srtf().decide(snapshot(jobs, {"V100": 4}))
    assert ids(decision) == ["wide"]


def test_srtf_preempts_a_longer_running_job() -> None:
    running = job("long", remaining=1000, running_on="V100")
    short = job("short", remaining=10, submitted=5.0)
    decision = Srtf().decide(snapshot([running, short], {"V100": 1}, now=5.0))
    assert ids(decision) == ["short"]  # "long" left out: preempted


def test_srtf_keeps_everyone_when_the_queue_fits() -> None:
    running = job("r", remaining=1000, running_on="V100")
    jobs = [running, job("a", remaining=30), job("b", remaining=20)]
    decision = Srtf().decide(snapshot(jobs, {"V100": 4}))
    assert ids(decision) == ["r", "b", "a"]
    assert by_id(decision)["r"] is running.current  # kept as it is


def test_tiresias_demotes_a_job_past_its_threshold() -> None:
    old = job("old", running_on="V100", attained=Tiresias.thresholds[0] + 1, submitted=0.0)
    new = job("new", submitted=100.0)
    decision = Tiresias().decide(snapshot([old, new], {"V100": 1}, now=200.0))
    assert ids(decision) == ["new"]


def test_tiresias_keeps_first_come_first_served_inside_a_queue() -> None:
    # Remaining time is not Tiresias' business: the earlier job goes first.
    first = job("first", remaining=1e6, submitted=0.0)
    second = job("second", remaining=1.0, submitted=1.0)
    decision = Tiresias().decide(snapshot([first, second], {"V100": 1}, now=2.0))
    assert ids(decision) == ["first"]


def test_tiresias_promotes_a_starving_job() -> None:
    attained = Tiresias.thresholds[0] * 2  # queue 1, ran 7,200 s on one GPU
    starving = job("starving", attained=attained, submitted=0.0)
    fresh = job("fresh", submitted=100_000.0)
    now = 100_000.0  # waited 92,800 s > 8 x 7,200 s: back to queue 0, and older
    decision = Tiresias().decide(snapshot([starving, fresh], {"V100": 1}, now=now))
    assert ids(decision) == ["starving"]
