"""Job dependencies (``after``, ``afterok``) through the live controller, on the in-memory
backend and a clock that moves only when told; and their admission."""

from __future__ import annotations

from pathlib import Path

import pytest

from slicebox import policies
from slicebox.backends.memory import MemoryBackend
from slicebox.controller import Controller
from slicebox.controller.submit import submit_files, submit_spec
from slicebox.placement.placer import Placer
from slicebox.policies.base import Policy
from slicebox.sim.clock import ManualClock
from slicebox.snapshot import ClusterSnapshot, Decision, JobState
from slicebox.spec import SpecError, parse_spec
from slicebox.store import Store
from tests.sim.helpers import pool


class Recording(Policy):
    """FIFO, remembering which jobs each decision was offered."""

    name = "recording-fifo"

    def __init__(self) -> None:
        self.inner = policies.get("fifo")
        self.offered: list[set[str]] = []

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        self.offered.append({j.id for j in snapshot.jobs})
        return self.inner.decide(snapshot)


class World:
    def __init__(self, root: Path, gpus: int = 2) -> None:
        self.clock = ManualClock()
        self.pool = pool(nodes=1, gpus=gpus)
        self.store = Store.open(root / "state", clock=self.clock)
        self.backend = MemoryBackend(clock=self.clock)
        self.policy = Recording()
        self.controller = Controller(self.store, self.pool, self.policy, Placer(self.pool),
                                     self.backend, root / "state", clock=self.clock)

    def submit(self, name: str, **fields: object) -> str:
        spec = parse_spec({"name": name, "command": ["true"], "resources": {"gpus": 1},
                           **fields})
        self.clock.advance_to(self.clock.now + 0.001)  # FIFO: in the order submitted
        return self.store.submit(spec)

    def round(self, at: float) -> None:
        self.clock.advance_to(at)
        self.controller.run_once()

    def state(self, job_id: str) -> JobState:
        return self.store.job(job_id).state

    def reason(self, job_id: str) -> str:
        return self.store.job(job_id).reason


@pytest.fixture()
def world(tmp_path: Path):
    made = World(tmp_path)
    yield made
    made.controller.close()
    made.store.close()


def test_after_waits_for_the_end_whatever_the_result_and_is_never_offered_meanwhile(world):
    first = world.submit("first")
    second = world.submit("second", after=[first])
    world.round(1.0)
    # A GPU is free, yet the dependent job waits, unseen by the policy.
    assert world.state(first) is JobState.RUNNING
    assert world.state(second) is JobState.QUEUED
    assert world.reason(second) == f"after {first}"
    assert all(second not in offered for offered in world.policy.offered)
    world.backend.finish(first, exit_code=3)  # fails: after does not care
    world.round(2.0)
    assert world.state(first) is JobState.FAILED
    assert world.state(second) is JobState.RUNNING
    assert second in world.policy.offered[-1]


def test_afterok_starts_after_success_and_is_cancelled_naming_a_failed_dependency(world):
    good = world.submit("good")
    bad = world.submit("bad")
    on_good = world.submit("on-good", afterok=[good])
    on_both = world.submit("on-both", afterok=[good, bad])
    world.round(1.0)
    assert {world.state(good), world.state(bad)} == {JobState.RUNNING}
    assert world.reason(on_both).startswith(f"afterok {good} and 1 more")
    world.backend.finish(bad, exit_code=1)
    world.round(2.0)
    # One failed dependency is enough: it can never start, even while the other runs.
    assert world.state(on_both) is JobState.CANCELLED
    assert world.reason(on_both) == f"cancelled: afterok job {bad} failed"
    assert world.state(on_good) is JobState.QUEUED
    world.backend.finish(good, exit_code=0)
    world.round(3.0)
    assert world.state(good) is JobState.SUCCEEDED
    assert world.state(on_good) is JobState.RUNNING
    assert all(on_both not in offered for offered in world.policy.offered)


def test_a_cancelled_dependency_cancels_an_afterok_job_and_releases_an_after_job(world):
    blocker = world.submit("blocker", resources={"gpus": 2})
    waiting = world.submit("waiting", resources={"gpus": 2})
    on_ok = world.submit("on-ok", afterok=[waiting])
    on_any = world.submit("on-any", after=[waiting])
    world.round(1.0)
    assert world.state(waiting) is JobState.QUEUED  # the blocker holds both GPUs
    assert world.reason(on_any) == f"after {waiting}"
    world.store.request_cancel(waiting)
    world.round(2.0)
    assert world.state(on_ok) is JobState.CANCELLED
    assert world.reason(on_ok) == f"cancelled: afterok job {waiting} cancelled"
    # on-any may start now; it waits for the blocker's GPUs like any job.
    assert world.state(on_any) is JobState.QUEUED
    assert not world.reason(on_any).startswith("after")
    assert on_any in world.policy.offered[-1]
    world.backend.finish(blocker)
    world.round(3.0)
    assert world.state(on_any) is JobState.RUNNING


def test_a_chain_runs_in_order(world):
    a = world.submit("a")
    b = world.submit("b", afterok=[a])
    c = world.submit("c", after=[b])
    started: list[str] = []
    for t in range(1, 8):
        world.round(float(t))
        for job_id in world.backend.running():
            if job_id not in started:
                started.append(job_id)
                world.backend.finish(job_id)  # each ends by the next round
    assert started == [a, b, c]
    assert {world.state(j) for j in (a, b, c)} == {JobState.SUCCEEDED}


# ---- admission --------------------------------------------------------------------------


def _spec(name: str, **fields: object):
    return parse_spec({"name": name, "command": ["true"], **fields})


def test_admission_refuses_unknown_or_never_successful_dependencies(tmp_path: Path):
    the_pool = pool(nodes=1, gpus=1)
    placer = Placer(the_pool)
    store = Store.open(tmp_path / "state")
    try:
        with pytest.raises(SpecError, match=r"job spec: after: no job 'deadbeef'"):
            submit_spec(store, the_pool, placer, _spec("x", after=["deadbeef"]), cwd=tmp_path)
        failed = store.submit(_spec("failed"))
        store.transition(failed, JobState.FAILED, "test")
        with pytest.raises(SpecError, match=rf"afterok: job {failed} has already failed"):
            submit_spec(store, the_pool, placer, _spec("y", afterok=[failed]), cwd=tmp_path)
        assert [j.name for j in store.jobs()] == ["failed"]  # nothing queued
        # after: any end will do, even one that has already happened.
        ok = submit_spec(store, the_pool, placer, _spec("z", after=[failed]), cwd=tmp_path)
        assert store.job(ok).spec.after == (failed,)
    finally:
        store.close()


def test_submit_files_adds_after_to_each_job_and_checks_the_file_named(tmp_path: Path):
    the_pool = pool(nodes=1, gpus=1)
    placer = Placer(the_pool)
    store = Store.open(tmp_path / "state")
    try:
        first = store.submit(_spec("first"))
        job_file = tmp_path / "job.yaml"
        job_file.write_text("name: later\ncommand: ['true']\n")
        ids = submit_files(store, the_pool, placer, [job_file], cwd=tmp_path, array=[0, 1],
                           afterok=[first])
        assert [store.job(i).spec.afterok for i in ids] == [(first,), (first,)]
        bad = tmp_path / "bad.yaml"
        bad.write_text("name: bad\ncommand: ['true']\nafter: [cafe0000]\n")
        with pytest.raises(SpecError, match=r"bad.yaml: after: no job 'cafe0000'"):
            submit_files(store, the_pool, placer, [job_file, bad], cwd=tmp_path)
        assert len(store.jobs()) == 3  # the bad file queued nothing, its partner neither
    finally:
        store.close()


def test_the_spec_refuses_an_id_given_twice_and_what_is_not_an_id():
    with pytest.raises(SpecError, match=r"afterok: job ab12 is given twice"):
        _spec("x", after=["ab12"], afterok=["ab12"])
    with pytest.raises(SpecError, match=r"after\.0: String should match pattern"):
        _spec("x", after=["../etc"])
    with pytest.raises(SpecError, match=r"after: Tuple should have at most 64"):
        _spec("x", after=[f"j{i}" for i in range(65)])
