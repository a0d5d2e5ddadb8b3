"""The in-memory backend, on its own and under the real controller."""

from __future__ import annotations

from pathlib import Path

from slicebox import policies
from slicebox.backends.base import Exited, Staged, StagingFailed
from slicebox.backends.memory import STOP_EXIT_CODE, MemoryBackend
from slicebox.controller import Controller
from slicebox.placement.placer import Placer
from slicebox.pool.composition import Composition, Plan, Staging
from slicebox.sim.clock import ManualClock
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import Store
from tests.sim.helpers import pool


def _started(store: Store, name: str, attempt_comp: Composition | None = None
             ) -> tuple[str, Composition]:
    job_id = store.submit(parse_spec({"name": name, "command": ["true"]}))
    comp = attempt_comp or Composition.on_node(job_id, "n-0", (), (0,), 1.0)
    store.start(job_id, JobState.RUNNING, comp, "test")
    return job_id, comp


def test_a_job_ends_after_its_duration_and_a_stopped_one_at_the_next_poll(
        tmp_path: Path) -> None:
    clock = ManualClock()
    store = Store.open(tmp_path, clock=clock)
    backend = MemoryBackend(clock=clock, duration=lambda job: 100.0 if job.name == "long"
                            else None)
    long_id, long_comp = _started(store, "long")
    open_id, open_comp = _started(store, "open")
    jobs = {j.id: j for j in store.jobs()}
    backend.apply(Plan(start=(long_comp, open_comp)), jobs)
    assert set(backend.running()) == {long_id, open_id}
    clock.advance_to(99.0)
    assert backend.poll() == []
    clock.advance_to(100.0)
    [ended] = backend.poll()
    assert isinstance(ended, Exited) and ended.job_id == long_id and ended.exit_code == 0
    assert backend.next_end() == float("inf")  # the other runs until told
    backend.stop(jobs[open_id])
    [stopped] = backend.poll()
    assert isinstance(stopped, Exited) and stopped.stopped
    assert stopped.exit_code == STOP_EXIT_CODE
    assert backend.running() == {}


def test_staging_takes_its_time_and_a_stop_aborts_it(tmp_path: Path) -> None:
    clock = ManualClock()
    store = Store.open(tmp_path, clock=clock)
    backend = MemoryBackend(clock=clock, stage_seconds=5.0)
    staging = Staging("ds", "/data/ds", "nvme", "/scratch/ds", 1.0, cached=False)
    first, comp = _started(store, "first")
    comp = Composition(first, comp.parts, staging=staging)
    backend.apply(Plan(start=(comp,)), {j.id: j for j in store.jobs()})
    assert backend.running() == {}  # staging first, nothing launched
    clock.advance_to(5.0)
    [staged] = backend.poll()
    assert isinstance(staged, Staged) and staged.bytes == 1 << 30
    second, comp2 = _started(store, "second")
    backend.stage(store.job(second), Composition(second, comp2.parts, staging=staging))
    backend.stop(store.job(second))
    [failed] = backend.poll()
    assert isinstance(failed, StagingFailed) and failed.error is None


def test_a_new_controller_adopts_running_jobs_and_finishes_ended_ones(tmp_path: Path) -> None:
    clock = ManualClock()
    the_pool = pool(nodes=1, gpus=2)
    store = Store.open(tmp_path / "state", clock=clock)
    durations = {"short": 10.0, "long": 1000.0}
    backend = MemoryBackend(clock=clock, duration=lambda job: durations[job.name])
    ids = {name: store.submit(parse_spec({"name": name, "command": ["true"],
                                          "resources": {"gpus": 1}}))
           for name in durations}

    def controller(ident: str) -> Controller:
        return Controller(store, the_pool, policies.get("fifo"), Placer(the_pool), backend,
                          tmp_path / "state", clock=clock, ident=ident)

    first = controller("first")
    first.run_once()
    assert {store.job(i).state for i in ids.values()} == {JobState.RUNNING}
    first.close()  # no controller watches while "short" ends
    clock.advance_to(50.0)
    second = controller("second")
    second.run_once()
    assert store.job(ids["short"]).state is JobState.SUCCEEDED
    assert store.job(ids["long"]).state is JobState.RUNNING
    assert len(backend.launches) == 2  # adopted, not started again
    clock.advance_to(1000.0)
    second.run_once()
    second.close()
    assert store.job(ids["long"]).state is JobState.SUCCEEDED
