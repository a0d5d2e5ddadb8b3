"""MIG re-layout in the live controller, on the in-memory backend and a clock that moves
only when told, with the fake NVML module standing in for the cards.

The must-show queue: seven 1g.10gb jobs for an A100-80GB laid out 4g.40gb@0 + 3g.40gb@4
(examples/pools/a100-mig.yaml; the fake's ``a100_relayout`` scenario is that card). Without
``allow`` their wait reasons show the re-layout and no NVML call is made; with it the
controller carries the re-layout out and the jobs start in the same round. A card a job
runs on is never touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from slicebox import policies
from slicebox.backends import mig_reconfigure
from slicebox.backends.env import job_environment
from slicebox.backends.memory import MemoryBackend
from slicebox.controller import Controller
from slicebox.controller import mig as controller_mig
from slicebox.placement.placer import Placer
from slicebox.placement.search import PLANNED_MIG_PREFIX
from slicebox.policies.fifo import Fifo
from slicebox.pool import mig_layout
from slicebox.pool.files import load_pool
from slicebox.pool.gpus import discover_gpus
from slicebox.pool.kinds import get_kind
from slicebox.pool.mig_layout import Placement, layout_problem
from slicebox.pool.model import Pool
from slicebox.sim.clock import ManualClock
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store import Store
from tests.pool import fake_nvml

ROOT = Path(__file__).resolve().parents[2]
A100_MIG = ROOT / "examples/pools/a100-mig.yaml"
LAID_OUT = [("4g.40gb", 0), ("3g.40gb", 4)]
SEVEN_1G = [("1g.10gb", s) for s in range(7)]


class World:
    """A controller over ``pool`` (FIFO) with a fake NVML whose cards match it."""

    def __init__(self, root: Path, pool: Pool, nvml: fake_nvml.FakeNvml) -> None:
        self.clock = ManualClock()
        self.pool, self.nvml = pool, nvml
        self.store = Store.open(root / "state", clock=self.clock)
        self.backend = MemoryBackend(clock=self.clock)
        self.controller = Controller(self.store, pool, policies.get("fifo"), Placer(pool),
                                     self.backend, root / "state", clock=self.clock)
        self.pool_changes: list[str] = []

    def allow(self) -> None:
        self.controller.mig.allow(self.pool.nodes[0].name, lambda: self.nvml)

    def submit(self, name: str, mig: str, count: int = 1) -> list[str]:
        ids = []
        for i in range(count):
            self.clock.advance_to(self.clock.now + 0.001)  # FIFO: in the order submitted
            ids.append(self.store.submit(parse_spec({
                "name": f"{name}{i}", "command": ["true"],
                "resources": {"gpus": 1, "mig": mig, "cpus": 1, "memory_gib": 4}})))
        return ids

    def round(self, at: float) -> None:
        self.clock.advance_to(at)
        self.pool_changes += self.controller.run_once().pool_changes

    def state(self, job_id: str) -> JobState:
        return self.store.job(job_id).state

    def reason(self, job_id: str) -> str:
        return self.store.job(job_id).reason

    def calls(self) -> list[tuple[str, int, str]]:
        return list(self.nvml.mig_calls)

    def nvml_layout(self, card: int) -> list[tuple[str, int]]:
        """The card's instances as NVML reports them now (not as the controller thinks)."""
        return [(m.profile, m.start) for m in discover_gpus(self.nvml).devices[card].mig_instances]


@pytest.fixture()
def make_world(tmp_path: Path, monkeypatch):
    made: list[World] = []
    loads: list[int] = []

    def load() -> Any:  # the real pynvml must never be reached from these tests
        loads.append(1)
        raise AssertionError("the controller loaded NVML by itself")

    monkeypatch.setattr(mig_reconfigure, "load_nvml", load)

    def make(pool: Pool, nvml: fake_nvml.FakeNvml) -> World:
        made.append(World(tmp_path / str(len(made)), pool, nvml))
        return made[-1]

    yield make
    for world in made:
        world.controller.close()
        world.store.close()
    assert not loads


def test_without_the_flag_seven_1g_jobs_wait_for_the_relayout_and_nothing_is_called(
        make_world) -> None:
    world = make_world(load_pool(A100_MIG), fake_nvml.a100_relayout())
    jobs = world.submit("notebook", "1g.10gb", 7)
    world.round(1.0)
    world.round(2.0)
    for job_id in jobs:
        assert world.state(job_id) is JobState.QUEUED
        reason = world.reason(job_id)
        assert reason.startswith("waits for a MIG re-layout of a100/gpu0 (")
        assert "4g.40gb@0 + 3g.40gb@4 -> 1g.10gb@0 + 1g.10gb@1" in reason
        assert "1g.10gb@6" in reason and "--allow-mig-reconfigure" in reason
    # The plan in the reason is valid for the card and serves all seven.
    after = reason.split("-> ")[1].split(")")[0].split(" + ")
    placements = [Placement(p.split("@")[0], int(p.split("@")[1])) for p in after]
    assert layout_problem(get_kind("A100-80GB"), placements) is None
    assert world.calls() == [] and world.nvml_layout(0) == LAID_OUT
    assert world.pool_changes == [] and world.backend.launches == []
    card = world.controller.pool.node("a100").device(0)
    assert [(m.profile, m.start) for m in card.mig_instances] == LAID_OUT


def test_with_the_flag_the_controller_relays_out_the_card_and_the_jobs_start(make_world) -> None:
    world = make_world(load_pool(A100_MIG), fake_nvml.a100_relayout())
    world.allow()
    jobs = world.submit("notebook", "1g.10gb", 7)
    world.round(1.0)
    # The NVML calls, in order: compute instances, then GPU instances, then seven new ones.
    calls = [(name, where) for name, card, where in world.calls() if card == 0]
    assert len(calls) == len(world.calls())
    assert calls[:4] == [("nvmlComputeInstanceDestroy", "4g.40gb@0"),
                         ("nvmlComputeInstanceDestroy", "3g.40gb@4"),
                         ("nvmlGpuInstanceDestroy", "4g.40gb@0"),
                         ("nvmlGpuInstanceDestroy", "3g.40gb@4")]
    assert calls[4:] == [pair for s in range(7) for pair in (
        ("nvmlDeviceCreateGpuInstanceWithPlacement", f"1g.10gb@{s}"),
        ("nvmlGpuInstanceCreateComputeInstance", f"1g.10gb@{s}"))]
    assert world.nvml_layout(0) == SEVEN_1G
    # The jobs started in that same round, each on one of the new instances, by the uuid
    # NVML gave it (what CUDA_VISIBLE_DEVICES gets).
    new = {m.uuid: (m.profile, m.start)
           for m in discover_gpus(world.nvml).devices[0].mig_instances}
    held = []
    for job_id in jobs:
        job = world.store.job(job_id)
        assert job.state is JobState.RUNNING
        (piece,) = job.composition.slices
        assert new[piece.uuid] == (piece.mig_profile, piece.mig_start)
        held.append(piece.uuid)
        events = [(e.kind, e.reason) for e in world.store.events(job_id)]
        assert any(kind == "mig-relayout" and "4g.40gb@0 + 3g.40gb@4 -> 1g.10gb@0" in text
                   for kind, text in events)
    assert sorted(held) == sorted(new)  # seven jobs, seven instances, none shared
    card = world.controller.pool.node("a100").device(0)
    assert [(m.profile, m.start) for m in card.mig_instances] == SEVEN_1G
    (line,) = world.pool_changes
    assert line.startswith("MIG re-layout done: a100/gpu0") and "7 waiting MIG job" in line
    # Done once: later rounds change nothing more.
    world.round(2.0)
    world.round(3.0)
    assert len(world.calls()) == 18


def mig_cards(root: Path, count: int = 2) -> Pool:
    """One node, ``count`` A100-80GB in MIG mode, each laid out 4g.40gb@0 + 3g.40gb@4."""
    path = root / f"a100-x{count}.yaml"
    path.write_text(yaml.safe_dump({"name": f"a100-x{count}", "nodes": [{
        "name": "a100", "memory_gib": 1024, "cores": {0: "0-63"},
        "gpus": [{"kind": "A100-80GB", "count": count, "numa": 0, "mig": True}],
        "mig_instances": [{"gpu": g, "profile": p, "start": s}
                          for g in range(count) for p, s in LAID_OUT]}]}))
    return load_pool(path)


def two_card_nvml() -> fake_nvml.FakeNvml:
    cards = [fake_nvml.a100_relayout().cards[0] for _ in range(2)]
    for i, card in enumerate(cards):  # distinct uuids and bus ids, as two real cards have
        card.uuid = f"GPU-{i:08x}-0000-0000-0000-000000000301"
        card.bus_id = f"00000000:{7 + 8 * i:02X}:00.0"
        for m in card.migs:
            m.uuid = f"MIG-{i:08x}-{m.start:04x}-0000-0000-000000000301"
    return fake_nvml.FakeNvml(cards)


def test_a_card_with_a_running_job_is_never_touched(make_world, tmp_path: Path) -> None:
    world = make_world(mig_cards(tmp_path), two_card_nvml())
    world.allow()
    (trainer,) = world.submit("train", "3g.40gb")
    world.round(1.0)
    assert world.state(trainer) is JobState.RUNNING
    busy = world.store.job(trainer).composition.slices[0].device
    idle = 1 - busy
    notebooks = world.submit("notebook", "1g.10gb", 7)
    world.round(2.0)
    # The idle card was re-laid out for the seven; the busy one got no call at all.
    assert world.calls() and {card for _, card, _ in world.calls()} == {idle}
    assert world.nvml_layout(idle) == SEVEN_1G
    assert world.nvml_layout(busy) == LAID_OUT
    assert all(world.state(j) is JobState.RUNNING for j in notebooks)
    assert world.state(trainer) is JobState.RUNNING
    # Seven more: the only card that could serve them runs the trainer (its 4g.40gb is
    # free, but the card is not touched while anything runs on it). They wait, told why.
    more = world.submit("more", "1g.10gb", 7)
    before = len(world.calls())
    world.round(3.0)
    world.round(4.0)
    assert len(world.calls()) == before and world.nvml_layout(busy) == LAID_OUT
    for job_id in more:
        assert world.state(job_id) is JobState.QUEUED
        assert world.reason(job_id).startswith("no MIG re-layout serves it: 1g.10gb: 7 wanted")
        assert f"a100/gpu{busy} runs {trainer}" in world.reason(job_id)
    # Once the trainer ends, its card is idle and is re-laid out for them.
    world.backend.finish(trainer)
    world.round(5.0)
    assert world.state(trainer) is JobState.SUCCEEDED
    assert world.nvml_layout(busy) == SEVEN_1G
    assert all(world.state(j) is JobState.RUNNING for j in more)


def test_a_refused_relayout_is_shown_and_tried_again_later(make_world) -> None:
    """NVML sees a process on the card (not a Slicebox job): nothing is changed, the jobs
    say why, and the re-layout is tried again after RETRY_SECONDS, not every round."""
    world = make_world(load_pool(A100_MIG), fake_nvml.a100_relayout())
    card = world.nvml.cards[0]
    card.processes = {card.migs[0].uuid: [4242]}
    inits = []
    real_init = world.nvml.nvmlInit
    world.nvml.nvmlInit = lambda: (inits.append(world.clock.now), real_init())[1]
    world.allow()
    jobs = world.submit("notebook", "1g.10gb", 7)
    world.round(1.0)
    assert world.calls() == [] and world.nvml_layout(0) == LAID_OUT
    assert "last try failed" in world.reason(jobs[0]) and "process 4242" in world.reason(jobs[0])
    reason, events, tries = world.reason(jobs[0]), len(world.store.events(jobs[0])), len(inits)
    for at in (2.0, 10.0, 30.0):
        world.round(at)
    assert len(inits) == tries  # not tried again yet
    assert world.reason(jobs[0]) == reason and len(world.store.events(jobs[0])) == events
    assert all(world.state(j) is JobState.QUEUED for j in jobs)
    card.processes = {}  # the other user's process ended
    world.round(1.0 + controller_mig.RETRY_SECONDS + 1)
    assert world.nvml_layout(0) == SEVEN_1G
    assert all(world.state(j) is JobState.RUNNING for j in jobs)


class EveryRound(Fifo):
    """FIFO that decides every round, so every round reaches the wait reasons."""

    name = "fifo-every-round"
    periodic = True


def test_the_relayout_is_planned_only_when_mig_jobs_wait_and_once_per_change(
        make_world, monkeypatch) -> None:
    planned: list[dict[str, str]] = []
    real = mig_layout.relayout_wait_reasons

    def counting(pool, held, waiting):
        planned.append(dict(waiting))
        return real(pool, held, waiting)

    monkeypatch.setattr(mig_layout, "relayout_wait_reasons", counting)
    world = make_world(load_pool(A100_MIG), fake_nvml.a100_relayout())
    world.controller.policy = EveryRound()
    # A job that waits for cores (more than the node has): not a MIG wait.
    cpu = world.store.submit(parse_spec({"name": "cpu", "command": ["true"],
                                         "resources": {"cpus": 64, "memory_gib": 4}}))
    for at in (1.0, 2.0, 3.0):
        world.round(at)
    assert world.state(cpu) is JobState.QUEUED and "cores" in world.reason(cpu)
    assert planned == []
    jobs = world.submit("notebook", "1g.10gb", 3)
    for at in (4.0, 5.0, 6.0):
        world.round(at)
    assert len(planned) == 1 and list(planned[0]) == jobs  # once, in queue order
    assert all(world.reason(j).startswith("waits for a MIG re-layout") for j in jobs)
    jobs += world.submit("more", "1g.10gb", 1)
    world.round(7.0)
    world.round(8.0)
    assert len(planned) == 2 and list(planned[1]) == jobs


def test_no_relayout_for_jobs_that_no_longer_wait(make_world) -> None:
    """A re-layout refused once is not carried out later for jobs cancelled meanwhile."""
    world = make_world(load_pool(A100_MIG), fake_nvml.a100_relayout())
    card = world.nvml.cards[0]
    card.processes = {card.migs[0].uuid: [4242]}
    world.allow()
    jobs = world.submit("notebook", "1g.10gb", 7)
    world.round(1.0)
    world.round(2.0)  # the plan is found again (and not tried: too soon)
    assert "last try failed" in world.reason(jobs[0])
    for job_id in jobs:
        world.store.request_cancel(job_id)
    card.processes = {}
    for at in (1.0 + controller_mig.RETRY_SECONDS + 1, 200.0):
        world.round(at)
    assert world.calls() == [] and world.nvml_layout(0) == LAID_OUT
    assert all(world.state(j) is JobState.CANCELLED for j in jobs)


def test_a_relayout_that_fails_part_way_leaves_the_pool_as_nvml_reports_it(
        make_world, caplog) -> None:
    world = make_world(load_pool(A100_MIG), fake_nvml.a100_relayout())
    real = world.nvml.nvmlDeviceCreateGpuInstanceWithPlacement
    made: list[int] = []

    def flaky(device, profile_id, placement):  # the fourth creation fails
        if len(made) == 3:
            raise fake_nvml.NVMLError(fake_nvml.NVML_ERROR_INSUFFICIENT_RESOURCES)
        made.append(placement.start)
        return real(device, profile_id, placement)

    world.nvml.nvmlDeviceCreateGpuInstanceWithPlacement = flaky
    world.allow()
    jobs = world.submit("notebook", "1g.10gb", 7)
    world.round(1.0)  # does not raise: the controller goes on
    assert world.nvml_layout(0) == [("1g.10gb", s) for s in range(3)]
    card = world.controller.pool.node("a100").device(0)
    assert [(m.profile, m.start) for m in card.mig_instances] == [("1g.10gb", s)
                                                                  for s in range(3)]
    assert "stopped on a100/gpu0 at 'create GPU instance 1g.10gb@3'" in caplog.text
    real_uuids = {m.uuid for m in card.mig_instances}
    running = [j for j in jobs if world.state(j) is JobState.RUNNING]
    assert {world.store.job(j).composition.slices[0].uuid for j in running} == real_uuids
    assert len(running) == 3  # the three instances that were made run jobs at once
    # The other four wait: the room left on the card is no device yet, and the card now
    # runs jobs, so it is not touched. Nothing was launched on an instance that does not
    # exist, and nothing recorded as started on one.
    assert [launch.comp.slices[0].uuid in real_uuids
            for launch in world.backend.launches] == [True] * 3
    rest = [j for j in jobs if j not in running]
    for job_id in rest:
        assert world.state(job_id) is JobState.QUEUED
        assert world.store.job(job_id).composition is None
        assert world.reason(job_id).startswith("no MIG re-layout serves it: 1g.10gb: 4 wanted")
        assert "a100/gpu0 runs" in world.reason(job_id)
    # The three done: three of the four take the three real instances (no NVML call); the
    # card runs them, so the last still waits, and then takes a real one too.
    world.nvml.nvmlDeviceCreateGpuInstanceWithPlacement = real
    for job_id in running:
        world.backend.finish(job_id)
    before = len(world.calls())
    world.round(1.0 + controller_mig.RETRY_SECONDS + 1)
    assert_started_on_real_instances(world, rest[:3], 0)
    assert world.state(rest[3]) is JobState.QUEUED
    world.backend.finish(rest[0])
    world.round(1.0 + controller_mig.RETRY_SECONDS + 2)
    assert_started_on_real_instances(world, rest[3:], 0)
    assert len(world.calls()) == before


def test_a_reason_spells_out_a_few_cards_and_counts_the_rest(make_world, tmp_path) -> None:
    world = make_world(mig_cards(tmp_path, 6), fake_nvml.a100_relayout())
    jobs = world.submit("notebook", "1g.10gb", 6 * 7)
    world.round(1.0)
    reason = world.reason(jobs[-1])
    assert reason.startswith("waits for a MIG re-layout of a100/gpu0, a100/gpu1, a100/gpu2 "
                             "and 3 more card(s) (a100/gpu0 (A100-80GB): 4g.40gb@0")
    assert "a100/gpu3" not in reason and len(reason) < 1000
    assert all(world.reason(j) == reason for j in jobs) and world.calls() == []


# ---- a MIG card with room and no instance: the instance is created first ------------------

def empty_mig_card(root: Path) -> Pool:
    """One A100-80GB in MIG mode with no instance yet (as after `nvidia-smi -mig 1`)."""
    path = root / "a100-empty.yaml"
    path.write_text(yaml.safe_dump({"name": "a100-empty", "nodes": [{
        "name": "a100", "memory_gib": 512, "cores": {0: "0-31"},
        "gpus": [{"kind": "A100-80GB", "count": 1, "numa": 0, "mig": True}]}]}))
    return load_pool(path)


def empty_nvml() -> fake_nvml.FakeNvml:
    nvml = fake_nvml.a100_relayout()
    nvml.cards[0].migs = []
    return nvml


def assert_started_on_real_instances(world: World, jobs: list[str], card: int) -> None:
    """Every job runs on an instance NVML has, one each; the store's composition and what
    the backend launched (CUDA_VISIBLE_DEVICES) name its uuid, never a placeholder."""
    real = {m.uuid: (m.profile, m.start)
            for m in discover_gpus(world.nvml).devices[card].mig_instances}
    launched = {launch.job_id: launch.comp for launch in world.backend.launches}
    held = []
    for job_id in jobs:
        job = world.store.job(job_id)
        assert job.state is JobState.RUNNING
        (piece,) = job.composition.slices
        assert real[piece.uuid] == (piece.mig_profile, piece.mig_start)
        assert launched[job_id].slices == job.composition.slices
        env = job_environment({}, job_id, job.attempt, job.spec, launched[job_id])
        assert env["CUDA_VISIBLE_DEVICES"] == piece.uuid
        held.append(piece.uuid)
    assert len(set(held)) == len(held)
    assert not any(s.uuid.startswith(PLANNED_MIG_PREFIX)
                   for launch in world.backend.launches for s in launch.comp.slices)


def test_without_the_flag_jobs_for_free_room_wait_for_the_instances_to_be_created(
        make_world, tmp_path: Path) -> None:
    world = make_world(empty_mig_card(tmp_path), empty_nvml())
    small = world.submit("notebook", "1g.10gb", 2)
    (big,) = world.submit("train", "3g.40gb")
    for at in (1.0, 2.0):
        world.round(at)
    # Nothing launched, nothing recorded as started: the room is no device yet.
    assert world.backend.launches == [] and world.calls() == []
    for job_id in [*small, big]:
        job = world.store.job(job_id)
        assert job.state is JobState.QUEUED and job.composition is None
        reason = world.reason(job_id)
        assert reason.startswith("waits for 3 MIG instance(s) to be created on a100/gpu0 "
                                 "(a100/gpu0 (A100-80GB): nothing -> ")
        assert "a re-layout that only creates" in reason
        assert "slicebox up --allow-mig-reconfigure" in reason
        assert "slicebox plan JOB --allow-mig-reconfigure" in reason
    # The layout the reason names is valid and holds what the three jobs want.
    after = reason.split("nothing -> ")[1].split(")")[0].split(" + ")
    placements = [Placement(p.split("@")[0], int(p.split("@")[1])) for p in after]
    assert layout_problem(get_kind("A100-80GB"), placements) is None
    assert sorted(p.profile for p in placements) == ["1g.10gb", "1g.10gb", "3g.40gb"]
    assert world.nvml_layout(0) == []


def test_with_the_flag_the_controller_creates_the_instances_and_the_jobs_start_on_them(
        make_world, tmp_path: Path) -> None:
    world = make_world(empty_mig_card(tmp_path), empty_nvml())
    world.allow()
    small = world.submit("notebook", "1g.10gb", 2)
    (big,) = world.submit("train", "3g.40gb")
    world.round(1.0)
    # Only creations (nothing to destroy), each GPU instance then its compute instance.
    names = [name for name, _, _ in world.calls()]
    assert names == ["nvmlDeviceCreateGpuInstanceWithPlacement",
                     "nvmlGpuInstanceCreateComputeInstance"] * 3
    created = sorted((p.split("@")[0], int(p.split("@")[1])) for _, _, p in world.calls()[::2])
    assert sorted(world.nvml_layout(0)) == created
    assert sorted(p for p, _ in created) == ["1g.10gb", "1g.10gb", "3g.40gb"]
    # The jobs started in that round, on the created instances' uuids.
    assert_started_on_real_instances(world, [*small, big], 0)
    for job_id in [*small, big]:
        assert any(e.kind == "mig-relayout" for e in world.store.events(job_id))
    (line,) = world.pool_changes
    assert line.startswith("MIG re-layout done: a100/gpu0 (A100-80GB): nothing -> ")
    # A later job finds room on the card, but the card runs jobs and is not touched (no
    # instance is created beside running ones): it waits, told why, and is not launched.
    (late,) = world.submit("late", "1g.10gb")
    before = len(world.calls())
    world.round(2.0)
    assert len(world.calls()) == before and world.state(late) is JobState.QUEUED
    assert world.store.job(late).composition is None
    assert world.reason(late).startswith("no MIG re-layout serves it: 1g.10gb")
    assert all(launch.job_id != late for launch in world.backend.launches)
    # Once a 1g job ends, its instance (a real one) serves the late job: no NVML call.
    world.backend.finish(small[0])
    world.round(3.0)
    assert len(world.calls()) == before
    assert_started_on_real_instances(world, [late], 0)
