"""The gang rules without Ray: bundles, strategies, rank environments, all-or-none
launches and how the ranks' events become one job's (fake agents, fake reservations)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from slicebox.backends.base import Breached, Exited, LaunchError, Progress, Started
from slicebox.backends.ray import gang
from slicebox.backends.ray.gang import GangHandle, GangLauncher
from slicebox.pool.composition import Composition, Part, Staging
from slicebox.pool.slices import Slice, SliceType
from slicebox.snapshot import JobState
from slicebox.spec import parse_spec
from slicebox.store.records import JobRecord


def job(resources: dict[str, Any] | None = None, attempt: int = 1) -> JobRecord:
    spec = parse_spec({"name": "g", "command": ["true"], "resources": resources or {},
                       "checkpoint": {"grace_seconds": 30}})
    return JobRecord("j1", "g", spec, JobState.RUNNING, "", 0, 0.0, attempt=attempt)


def whole(node: str, device: int) -> Slice:
    return Slice(node, device, "H100", SliceType.WHOLE, 1.0, 80.0, f"GPU-{node}-{device}")


def comp(*nodes: str, gpus: int = 0) -> Composition:
    parts = tuple(Part(n, tuple(whole(n, d) for d in range(gpus)), (0, 1, 2), 4.0)
                  for n in nodes)
    return Composition("j1", parts, data_path="/data/x")


class FakeAgent:
    def __init__(self, node: str, fail: str | None = None, barrier: threading.Barrier | None
                 = None) -> None:
        self.node, self.node_id, self.address = node, f"id-{node}", f"10.0.0.{len(node)}"
        self.fail, self.barrier = fail, barrier
        self.launched: list[tuple[Composition, dict[str, str]]] = []
        self.stops: list[JobRecord] = []

    def free_port(self) -> int:
        return 29500

    def launch(self, job: JobRecord, comp: Composition, env: Mapping[str, str]) -> Started:
        if self.barrier is not None:
            self.barrier.wait(timeout=5)  # every rank's launch is under way at once
        if self.fail:
            raise LaunchError(f"cannot start job {job.id}: {self.fail}")
        self.launched.append((comp, dict(env)))
        return Started(job.id, job.attempt, 100 + len(self.node), 1.0, f"/logs/{self.node}")

    def stop(self, job: JobRecord) -> None:
        self.stops.append(job)


class FakeReservation:
    def __init__(self) -> None:
        self.removed = 0

    def remove(self) -> None:
        self.removed += 1


class FakeReserver:
    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.asked: list[tuple[str, list[dict[str, float]], str, list[str]]] = []
        self.reservations: list[FakeReservation] = []

    def reserve(self, name: str, bundles: Sequence[Mapping[str, float]], strategy: str,
                node_ids: Sequence[str], node_names: Sequence[str],
                timeout_s: float) -> FakeReservation:
        self.asked.append((name, [dict(b) for b in bundles], strategy, list(node_ids)))
        if self.refuse:
            raise LaunchError(f"could not reserve the gang's nodes: {self.refuse}")
        self.reservations.append(FakeReservation())
        return self.reservations[-1]

    def find(self, name: str) -> FakeReservation | None:
        return self.reservations[-1] if self.reservations else None


def agents(*names: str, **kw: Any) -> dict[str, FakeAgent]:
    return {n: FakeAgent(n, **kw) for n in names}


# -- mapping --------------------------------------------------------------------------------

@pytest.mark.parametrize(("spread", "strategy"), [("pack", "PACK"), ("spread", "SPREAD"),
                                                  ("one_node", "STRICT_PACK")])
def test_strategy_follows_the_spread_rule(spread: str, strategy: str):
    one = Composition.on_node("j1", "a", (), (0,), 1.0)
    assert gang.strategy_for(job({"spread": spread}).spec, one) == strategy


def test_cpu_gang_of_nodes_is_strict_spread_and_one_node_cannot_span():
    assert gang.strategy_for(job({"nodes": 2}).spec, comp("a", "b")) == "STRICT_SPREAD"
    with pytest.raises(LaunchError, match="one_node.*spans 2 nodes"):
        gang.strategy_for(job({"spread": "one_node"}).spec, comp("a", "b"))


def test_a_bundle_is_the_parts_cores_and_whole_gpus_only():
    mig = Slice("a", 1, "A100", SliceType.MIG, 3 / 7, 40.0, "MIG-x", "3g.40gb", 0)
    part = Part("a", (whole("a", 0), whole("a", 2), mig), (0, 1, 2, 3), 8.0)
    assert gang.bundle_for(part) == {"CPU": 4.0, "GPU": 2.0}
    assert gang.bundle_for(Part("b", (), (5,), 1.0)) == {"CPU": 1.0}


def test_each_rank_runs_its_own_part_and_only_rank_zero_stages():
    staging = Staging("ds", "/src", "nvme", "/nvme/slicebox-cache/ds", 1.0, cached=False)
    c = Composition("j1", comp("a", "b").parts, "/d", staging=staging)
    r0, r1 = gang.rank_composition(c, 0), gang.rank_composition(c, 1)
    assert (r0.node, r1.node) == ("a", "b")
    assert r0.staging is not None and r1.staging is None
    assert r1.data_path == "/d"


def test_unreservable_nodes_are_named_with_what_they_lack():
    bundles = [{"CPU": 2.0}, {"CPU": 4.0, "GPU": 1.0}, {"CPU": 1.0}]
    reasons = gang.short_nodes(bundles, ["i-a", "i-b", "i-c"], ["a", "b", "c"],
                               {"i-a": {"CPU": 2.0}, "i-b": {"CPU": 8.0}})
    assert reasons == ["b (GPU 1 wanted, 0 free)", "c (Ray node i-c is not in the cluster)"]
    # Two bundles on one node need their sum.
    assert gang.short_nodes([{"CPU": 2.0}, {"CPU": 1.0}], ["i-a", "i-a"], ["a", "a"],
                            {"i-a": {"CPU": 2.0}}) == ["a (CPU 3 wanted, 2 free)"]


# -- all or none ------------------------------------------------------------------------

def test_a_gang_starts_every_rank_at_once_with_its_environment():
    barrier = threading.Barrier(3)  # would time out if launches ran one after another
    team = agents("a", "b", "c", barrier=barrier)
    reserver = FakeReserver()
    handle = GangLauncher(reserver=reserver).start(job({"spread": "spread"}), comp(
        "a", "b", "c", gpus=1), team)
    name, bundles, strategy, ids = reserver.asked[0]
    assert (name, strategy, ids) == ("slicebox-j1-a1", "SPREAD", ["id-a", "id-b", "id-c"])
    assert bundles == [{"CPU": 3.0, "GPU": 1.0}] * 3
    for rank, node in enumerate("abc"):
        (part_comp, env), = team[node].launched
        assert part_comp.nodes == (node,)
        assert env["RANK"] == str(rank) and env["WORLD_SIZE"] == "3"
        assert env["LOCAL_RANK"] == "0" and env["SLICEBOX_RANK"] == str(rank)
        assert env["SLICEBOX_WORLD_SIZE"] == "3"  # the gang's processes, not one node's
        assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == (team["a"].address, "29500")
    assert handle.started.log_path == "/logs/a"


def test_a_gang_whose_nodes_cannot_be_reserved_starts_no_rank():
    team = agents("a", "b")
    with pytest.raises(LaunchError, match="could not reserve"):
        GangLauncher(reserver=FakeReserver(refuse="b (CPU 3 wanted, 1 free)")).start(
            job(), comp("a", "b"), team)
    assert not team["a"].launched and not team["b"].launched


def test_one_rank_failing_to_launch_kills_the_others_and_frees_the_reservation():
    team = agents("a", "b", "c")
    team["b"].fail = "no such program"
    reserver = FakeReserver()
    with pytest.raises(LaunchError) as info:
        GangLauncher(reserver=reserver).start(job(), comp("a", "b", "c"), team)
    assert str(info.value) == "job j1: rank 1 on b could not start: no such program; no rank runs"
    for node in ("a", "c"):
        (stopped,) = team[node].stops
        assert stopped.spec.checkpoint.grace_seconds == 0  # killed, not asked to save
    assert reserver.reservations[0].removed == 1


def test_a_node_without_an_agent_is_refused_before_anything_is_reserved():
    reserver = FakeReserver()
    with pytest.raises(LaunchError, match="no agent on node"):
        GangLauncher(reserver=reserver).start(job(), comp("a", "b"), agents("a"))
    assert reserver.asked == []


# -- one job out of several ranks -------------------------------------------------------

def running(*nodes: str) -> tuple[GangHandle, dict[str, FakeAgent], FakeReserver]:
    team = agents(*nodes)
    reserver = FakeReserver()
    return GangLauncher(reserver=reserver).start(job(), comp(*nodes), team), team, reserver


def exited(code: int | None, **kw: Any) -> Exited:
    return Exited("j1", 1, code, **kw)


def test_rank_zero_ending_ends_the_attempt_once_every_rank_has_ended():
    handle, team, reserver = running("a", "b")
    assert handle.observe("a", exited(0)) == []  # rank 1 still holds its cores
    assert len(team["b"].stops) == 1
    assert handle.observe("b", exited(85, stopped=True)) == [exited(0)]
    assert handle.done and reserver.reservations[0].removed == 1
    assert handle.observe("b", exited(1)) == []  # nothing more after the one exit


def test_a_worker_failing_fails_the_job_and_stops_rank_zero():
    handle, team, _ = running("a", "b", "c")
    assert handle.observe("c", exited(0)) == []  # a worker may finish first
    assert handle.observe("b", exited(3)) == []
    assert len(team["a"].stops) == 1 and team["c"].stops == []
    (final,) = handle.observe("a", exited(-15, stopped=True))
    assert final.exit_code == 3 and final.error == "rank 1 on b: exit code 3"


def test_only_rank_zero_progress_reaches_the_controller_and_breaches_all_do():
    handle, _, _ = running("a", "b")
    progress = Progress("j1", 1.0, 10, None, 5)
    breach = Breached("j1", 1, "memory", "2 GiB", "1 GiB", "killed")
    assert handle.observe("a", progress) == [progress]
    assert handle.observe("b", progress) == []
    assert handle.observe("b", breach) == [breach]
    assert handle.observe("b", Exited("j1", 0, 1)) == []  # another attempt's


def test_a_lost_node_is_the_jobs_node_loss_even_after_a_peer_crashed():
    handle, team, _ = running("a", "b", "c")
    # The peers notice first (their gloo connection breaks) ...
    assert handle.observe("a", exited(1)) == []
    assert handle.observe("c", exited(1)) == []
    # ... and only then is the node known to be gone: requeued, not failed.
    (final,) = handle.node_lost("b")
    assert final.node_lost and final.exit_code is None and "node b" in (final.error or "")


def test_a_node_lost_while_running_stops_every_other_rank():
    handle, team, _ = running("a", "b")
    assert handle.node_lost("b") == []
    assert len(team["a"].stops) == 1
    (final,) = handle.observe("a", exited(85, stopped=True))
    assert final.node_lost


def test_a_finished_job_stays_finished_when_a_node_goes_later():
    handle, _, _ = running("a", "b")
    handle.observe("a", exited(0))
    assert handle.node_lost("b") == [exited(0)]


def test_the_controllers_stop_reaches_every_rank_and_rank_zero_decides():
    handle, team, _ = running("a", "b")
    handle.stop()
    assert len(team["a"].stops) == len(team["b"].stops) == 1
    assert handle.observe("b", exited(1)) == []  # its peer went: not the job's failure
    assert handle.observe("a", exited(85, stopped=True)) == [exited(85, stopped=True)]


# -- after a controller restart ---------------------------------------------------------

def test_an_adopted_gang_is_one_job_again_and_frees_its_reservation():
    _, team, reserver = running("a", "b")
    found = [Started("j1", 1, 7, 1.0, "/logs/a"), Started("j1", 1, 8, 1.0, "/logs/b")]
    adopted = gang.adopt_gang(job(), comp("a", "b"), team, found, reserver)
    assert adopted is not None and adopted.started.pid == 7
    assert adopted.observe("a", exited(0)) == []
    assert adopted.observe("b", exited(85, stopped=True)) == [exited(0)]
    assert reserver.reservations[0].removed == 1


def test_a_gang_missing_a_rank_is_not_adopted():
    found = [Started("j1", 1, 7, 1.0, "/logs/a"), None]
    assert gang.adopt_gang(job(), comp("a", "b"), agents("a", "b"), found,
                           FakeReserver()) is None


def test_ranks_are_stopped_in_parallel_and_a_failed_stop_is_asked_again():
    handle, team, _ = running("a", "b", "c")
    barrier = threading.Barrier(2)
    calls = {"c": 0}

    def stop_b(job: JobRecord) -> None:
        barrier.wait(timeout=5)  # returns only if c's stop runs at the same time
        team["b"].stops.append(job)

    def stop_c(job: JobRecord) -> None:
        calls["c"] += 1
        if calls["c"] == 1:
            barrier.wait(timeout=5)
            raise TimeoutError("agent on c is not answering")
        team["c"].stops.append(job)

    team["b"].stop, team["c"].stop = stop_b, stop_c
    assert handle.observe("a", exited(0)) == []
    assert len(team["b"].stops) == 1 and team["c"].stops == []
    assert handle.observe("b", exited(85, stopped=True)) == []
    assert len(team["c"].stops) == 1  # asked again, and this time it was heard
    assert handle.observe("c", exited(85, stopped=True)) == [exited(0)]
