"""One trace through the live controller and through the simulator: the same starts, at
the same times, on the same devices and cores.

The controller is the real one (a sqlite ``Store`` in tmp_path, the in-memory backend);
both run on one notion of time: the simulator's event clock, and a ``ManualClock`` the
controller, its store and the backend read, moved from event to event by the driver
below (an arrival is a submit, an end is the backend's, each event is one round).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slicebox import policies
from slicebox.backends.memory import MemoryBackend
from slicebox.controller import Controller
from slicebox.placement.placer import Placer
from slicebox.pool.composition import Composition
from slicebox.pool.model import Pool
from slicebox.sim.clock import ManualClock
from slicebox.sim.engine import Engine, EngineOptions
from slicebox.spec import parse_spec
from slicebox.store import Store
from tests.sim.helpers import duration_job, pool, speeds

# (name, arrival s, duration s, GPUs): on two 4-GPU nodes, with a queue that forms, jobs
# that backfill around a blocked one, and gangs of 6 GPUs that need both nodes.
TRACE = [("a", 0, 500, 2), ("b", 10, 300, 4), ("c", 20, 200, 1), ("d", 30, 400, 6),
         ("e", 40, 100, 1), ("f", 50, 250, 2), ("g", 700, 100, 3), ("h", 710, 600, 1),
         ("i", 720, 50, 6), ("j", 730, 80, 2), ("k", 2000, 300, 8), ("l", 2010, 30, 1)]

Start = tuple[float, str, tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]]


def where(comp: Composition) -> tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]:
    return tuple((p.node, tuple(s.device for s in p.slices), p.cores) for p in comp.parts)


Row = tuple[str, float, float, int]


def simulated_starts(the_pool: Pool, policy: str, trace: Sequence[Row] = TRACE
                     ) -> list[Start]:
    jobs = [duration_job(name, arrival, duration, gpus=gpus)
            for name, arrival, duration, gpus in trace]
    engine = Engine(jobs, the_pool, policies.get(policy), speeds(the_pool),
                    EngineOptions(staging=False, timeline=False))
    result = engine.run()
    assert all(j.finished for j in result.jobs)
    return sorted((t, comp.job_id, where(comp)) for t, comp in engine.start_log)


def live_starts(the_pool: Pool, policy: str, state_dir: Path, trace: Sequence[Row] = TRACE
                ) -> list[Start]:
    clock = ManualClock()
    store = Store.open(state_dir, clock=clock)
    durations = {name: float(duration) for name, _, duration, _ in trace}
    backend = MemoryBackend(clock=clock, duration=lambda job: durations[job.spec.name])
    controller = Controller(store, the_pool, policies.get(policy), Placer(the_pool), backend,
                            state_dir, clock=clock)
    names: dict[str, str] = {}
    arrivals = sorted(trace, key=lambda row: row[1])
    nxt = 0
    try:
        while True:
            t_arrival = arrivals[nxt][1] if nxt < len(arrivals) else float("inf")
            t = min(t_arrival, backend.next_end())
            if t == float("inf"):
                break
            clock.advance_to(t)
            while nxt < len(arrivals) and arrivals[nxt][1] <= t:
                name, _, _, gpus = arrivals[nxt]
                job_id = store.submit(parse_spec({"name": name, "command": ["true"],
                                                  "resources": {"gpus": gpus}}))
                names[job_id] = name
                nxt += 1
            controller.run_once()
            while backend.stopping():
                # A stop takes effect when the backend reports the exit; the simulator
                # frees a preempted job's GPUs at once, so the driver runs the round that
                # hears of it at the same instant.
                controller.run_once()
    finally:
        controller.close()
        store.close()
    assert not backend.running()
    return sorted((launch.time, names[launch.job_id], where(launch.comp))
                  for launch in backend.launches)


@pytest.mark.parametrize("policy", ["fifo", "fgd"])
def test_the_controller_and_the_simulator_make_the_same_starts(policy: str,
                                                                tmp_path: Path) -> None:
    the_pool = pool(nodes=2, gpus=4)
    simulated = simulated_starts(the_pool, policy)
    live = live_starts(the_pool, policy, tmp_path / "state")
    assert len(simulated) == len(TRACE)
    assert any(len(parts) == 2 for _, _, parts in simulated)  # the gangs did span nodes
    assert live == simulated


@st.composite
def traces(draw: st.DrawFn) -> list[Row]:
    """Up to 8 jobs of 1-8 GPUs at distinct whole-second arrivals (FIFO orders by arrival;
    a tie would be broken by the store's job id on one side and input order on the other)."""
    count = draw(st.integers(1, 8))
    arrivals = draw(st.lists(st.integers(0, 600), min_size=count, max_size=count,
                             unique=True))
    return [(f"j{i}", float(arrival), float(draw(st.integers(1, 400))),
             draw(st.sampled_from([1, 1, 2, 3, 4, 6, 8])))
            for i, arrival in enumerate(sorted(arrivals))]


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace=traces())
def test_random_traces_start_alike_on_both(trace: list[Row]) -> None:
    the_pool = pool(nodes=2, gpus=4)
    simulated = simulated_starts(the_pool, "fifo", trace)
    with tempfile.TemporaryDirectory() as state:
        live = live_starts(the_pool, "fifo", Path(state) / "state", trace)
    assert live == simulated
