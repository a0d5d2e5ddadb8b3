"""The quota policy on hand-made snapshots, and the pool file's ``quotas:`` section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from slicebox import policies
from slicebox.policies.quota import QuotaPolicy
from slicebox.pool.files import PoolFileError, parse_pool, parse_pool_and_quotas
from slicebox.pool.quotas import UNLISTED, Quotas
from slicebox.snapshot import Assignment, Capacity, ClusterSnapshot, JobState, JobView
from slicebox.spec.demand import Demand


def pool_data(quotas: Mapping[str, Any], cores: int = 2, gpus: int = 0) -> dict[str, Any]:
    node: dict[str, Any] = {"name": "n", "memory_gib": 64, "cores": cores}
    if gpus:
        node["gpus"] = [{"kind": "L4", "count": gpus}]
    return {"nodes": [node], "quotas": dict(quotas)}


def quotas(teams: Mapping[str, Any], cores: int = 2, gpus: int = 0) -> Quotas:
    return parse_pool_and_quotas(pool_data(teams, cores, gpus))[1]


def job(job_id: str, team: str, *, cpus: int = 1, gpus: int = 0, running: bool = False,
        submitted: float = 0.0, priority: int = 0, started: float | None = None,
        kind: str | None = None) -> JobView:
    current = (Assignment(job_id, gpus, kind or ("L4" if gpus else None), cpus, 1.0)
               if running else None)
    return JobView(job_id, Demand(gpus=gpus, max_gpus=gpus, cpus=cpus), submitted,
                   priority=priority, state=JobState.RUNNING if running else JobState.QUEUED,
                   current=current, started_at=started, team=team)


def snap(jobs: Sequence[JobView], cores: int = 2, gpus: int = 0, *,
         free_cpus: int | None = None, now: float = 100.0) -> ClusterSnapshot:
    used = sum(j.current.cpus or 0 for j in jobs if j.current is not None)
    free = cores - used if free_cpus is None else free_cpus
    total_gpus = {"L4": gpus} if gpus else {}
    used_gpus = sum(j.current.gpus for j in jobs if j.current is not None)
    return ClusterSnapshot(now, tuple(jobs), Capacity(
        total_gpus, {k: v - used_gpus for k, v in total_gpus.items()}, cores, free,
        64.0, 64.0))


def run_ids(policy: QuotaPolicy, snapshot: ClusterSnapshot) -> list[str]:
    return [a.job_id for a in policy.decide(snapshot).run]


TWO_TEAMS = {"a": {"cpus": 1}, "b": {"cpus": 1}}


# -- the policy -------------------------------------------------------------------------

def test_is_registered_and_without_quotas_is_fifo():
    assert isinstance(policies.get("quota"), QuotaPolicy)
    jobs = [job("x", "a", running=True), job("y", "b", submitted=1), job("z", "a", submitted=2)]
    s = snap(jobs, cores=2)
    assert run_ids(QuotaPolicy(), s) == run_ids(policies.get("fifo"), s)  # type: ignore[arg-type]


def test_a_team_borrows_idle_capacity():
    policy = QuotaPolicy(quotas(TWO_TEAMS))
    s = snap([job("a1", "a", submitted=1), job("a2", "a", submitted=2)])
    assert run_ids(policy, s) == ["a1", "a2"]


def test_the_owner_reclaims_the_newest_borrowed_job_in_the_same_decision():
    policy = QuotaPolicy(quotas(TWO_TEAMS))
    jobs = [job("a1", "a", running=True, submitted=1, started=10),
            job("a2", "a", running=True, submitted=2, started=20),
            job("b1", "b", submitted=30)]
    decision = policy.decide(snap(jobs))
    assert [a.job_id for a in decision.run] == ["a1", "b1"]
    assert "team a borrows beyond its quota" in decision.reasons["a2"]
    assert "b1" in decision.reasons["a2"]
    # Pure: the same snapshot, the same answer.
    assert policy.decide(snap(jobs)) == decision


def test_a_job_within_its_teams_quota_is_never_preempted():
    policy = QuotaPolicy(quotas(TWO_TEAMS))
    # Each team holds exactly its quota; b's second job would borrow: it waits.
    jobs = [job("a1", "a", running=True, submitted=5, priority=-5),
            job("b1", "b", running=True, submitted=1),
            job("b2", "b", submitted=10, priority=9)]
    assert run_ids(policy, snap(jobs)) == ["a1", "b1"]


def test_reclaim_picks_the_borrowed_job_not_a_team_owners():
    policy = QuotaPolicy(quotas({"a": {"cpus": 1}, "b": {"cpus": 1}, "c": {"cpus": 1}},
                                cores=3))
    # b's job is the newest and of the lowest priority, but b is within its quota; a
    # borrows c's core, so one of a's jobs goes, the newest of them.
    jobs = [job("a1", "a", running=True, submitted=1, started=10),
            job("a2", "a", running=True, submitted=2, started=11),
            job("b1", "b", running=True, submitted=3, started=50, priority=-9),
            job("c1", "c", submitted=60)]
    assert run_ids(policy, snap(jobs, cores=3)) == ["a1", "b1", "c1"]


def test_candidates_go_lowest_priority_first_then_most_recently_admitted():
    policy = QuotaPolicy(quotas({"a": {"cpus": 1}, "b": {"cpus": 2}}, cores=3))
    jobs = [job("old-low", "a", running=True, started=10, priority=-1),
            job("new-high", "a", running=True, started=30, priority=5),
            job("new-no-progress", "a", running=True, started=None),
            job("b1", "b", submitted=40)]
    decision = policy.decide(snap(jobs, cores=3))
    assert [a.job_id for a in decision.run] == ["new-high", "new-no-progress", "b1"]
    jobs[0] = job("old-low", "a", running=True, started=10, priority=0)
    jobs[1] = job("new-high", "a", running=True, started=30, priority=0)
    decision = policy.decide(snap(jobs, cores=3))
    # Equal priority: the one with no progress yet counts as admitted now.
    assert [a.job_id for a in decision.run] == ["old-low", "new-high", "b1"]


def test_just_enough_is_preempted_and_a_stopping_job_is_not_preempted_for_twice():
    policy = QuotaPolicy(quotas({"a": {"cpus": 1}, "b": {"cpus": 2}}, cores=3))
    jobs = [job("a1", "a", running=True, started=1), job("a2", "a", running=True, started=2),
            job("a3", "a", running=True, started=3), job("b1", "b", submitted=10)]
    assert run_ids(policy, snap(jobs, cores=3)) == ["a1", "a2", "b1"]
    # Next round: a3 is stopping (the controller hides it; its core is not free yet), a
    # still borrows one core; b1 waits for a3's core, nobody else is preempted.
    after = [jobs[0], jobs[1], jobs[3]]
    assert run_ids(policy, snap(after, cores=3, free_cpus=0)) == ["a1", "a2", "b1"]


def test_no_job_is_preempted_for_a_waiter_that_would_still_not_fit():
    # Only cores are governed; b1 also needs the one GPU, which a1 holds within a's quota.
    # Preempting a's borrowed a2 would free a core but not the GPU: nobody is preempted.
    policy = QuotaPolicy(quotas(TWO_TEAMS, cores=2, gpus=1))
    jobs = [job("a1", "a", gpus=1, running=True, started=1),
            job("a2", "a", running=True, started=2),
            job("b1", "b", gpus=1, submitted=5)]
    assert run_ids(policy, snap(jobs, cores=2, gpus=1)) == ["a1", "a2"]
    jobs[0] = job("a1", "a", running=True, started=1)  # the GPU is idle: a2 goes, b1 starts
    assert run_ids(policy, snap(jobs, cores=2, gpus=1)) == ["a1", "b1"]


def test_a_victim_made_unnecessary_by_a_later_one_keeps_running():
    policy = QuotaPolicy(quotas({"a": {"cpus": 1}, "b": {"cpus": 4}}, cores=5))
    # b1 needs 3 cores. The first candidate (lowest priority) holds 1, the next 3: once the
    # 3-core job is taken the 1-core one is not needed, and is not preempted.
    jobs = [job("a-own", "a", running=True, started=1, priority=5),
            job("small", "a", running=True, started=2, priority=-2),
            job("big", "a", cpus=3, running=True, started=3, priority=-1),
            job("b1", "b", cpus=3, submitted=9)]
    decision = policy.decide(snap(jobs, cores=5))
    assert [a.job_id for a in decision.run] == ["a-own", "small", "b1"]
    assert set(decision.reasons) == {"big"}


def test_owners_are_admitted_before_borrowers_even_when_later():
    policy = QuotaPolicy(quotas(TWO_TEAMS))
    # a2 was preempted and waits again (older), b1 is b's: b1 takes the free core.
    jobs = [job("a1", "a", running=True, started=1), job("a2", "a", submitted=1),
            job("b1", "b", submitted=5)]
    assert run_ids(policy, snap(jobs)) == ["a1", "b1"]


def test_the_borrowing_limit_is_respected():
    policy = QuotaPolicy(quotas({"a": {"cpus": 1, "borrowing_limit": {"cpus": 1}},
                                 "b": {"cpus": 1}}, cores=4))
    jobs = [job(f"a{i}", "a", submitted=i) for i in range(4)]
    decision = policy.decide(snap(jobs, cores=4))
    assert [a.job_id for a in decision.run] == ["a0", "a1"]  # nominal 1 + borrow 1
    assert decision.reasons["a2"] == "team a is at its borrowing limit"
    unlimited = QuotaPolicy(quotas({"a": {"cpus": 1}, "b": {"cpus": 1}}, cores=4))
    assert run_ids(unlimited, snap(jobs, cores=4)) == ["a0", "a1", "a2", "a3"]


def test_teams_without_a_quota_share_what_no_quota_claims():
    q = quotas({"a": {"cpus": 1}}, cores=3)
    assert q.queue_of("zeta") == q.queue_of("default") == UNLISTED
    assert q.quota(UNLISTED).nominal["cpus"] == 2
    policy = QuotaPolicy(q)
    # Two unlisted teams' jobs fill their shared 2 cores plus a's idle one (borrowing);
    # a reclaims its core from the newest of them.
    jobs = [job("x", "zeta", running=True, started=1), job("y", "default", running=True,
                                                           started=2),
            job("z", "zeta", running=True, started=3), job("a1", "a", submitted=9)]
    assert run_ids(policy, snap(jobs, cores=3)) == ["x", "y", "a1"]


def test_gpu_quotas_per_kind():
    q = quotas({"a": {"gpus": {"L4": 1}}, "b": {"gpus": {"L4": 1}}}, cores=8, gpus=2)
    assert q.quota("a").nominal == {"gpus": 1.0, "gpus:L4": 1.0}
    policy = QuotaPolicy(q)
    jobs = [job("a1", "a", gpus=1, running=True, started=1),
            job("a2", "a", gpus=1, running=True, started=2),
            job("b1", "b", gpus=1, submitted=5)]
    decision = policy.decide(snap(jobs, cores=8, gpus=2))
    assert [a.job_id for a in decision.run] == ["a1", "b1"]
    assert decision.run[-1].kind == "L4"  # a waiter of any kind is pinned to the one it counts


# -- the pool file ----------------------------------------------------------------------

@pytest.mark.parametrize("teams, field, reason", [
    ({"a": {"cpu": 1}}, "quotas.a.cpu", "unknown field"),
    ({"A!": {"cpus": 1}}, "quotas", "is not a team name"),
    ({"a": {"cpus": -1}}, "quotas.a.cpus", "greater than or equal to 0"),
    ({"a": {"cpus": 2}, "b": {"cpus": 1}}, "quotas", "claim 3 cpus; the pool has 2"),
    ({"a": {"gpus": {"Z9": 1}}}, "quotas.a.gpus", "Z9"),
    ({"a": {"gpus": True}}, "quotas.a.gpus", "GPU count"),
    ({"a": {"gpus": {"L4": 3}}}, "quotas", "claim 3 GPUs of kind L4; the pool has 2"),
    ({"a": {"memory_gib": float("inf")}}, "quotas.a.memory_gib", "finite"),
    ({"a": {"cpus": 1, "borrowing_limit": {"cpus": 1, "disks": 2}}},
     "quotas.a.borrowing_limit.disks", "unknown field"),
])
def test_bad_quotas_are_refused_naming_the_field(teams, field, reason):
    with pytest.raises(PoolFileError) as caught:
        parse_pool(pool_data(teams, cores=2, gpus=2), "teams.yaml")
    message = str(caught.value)
    assert message.startswith("teams.yaml: ") and field in message and reason in message, message


def test_too_many_teams_are_refused():
    teams = {f"t{i}": {} for i in range(1025)}
    with pytest.raises(PoolFileError, match="quotas"):
        parse_pool(pool_data(teams))


def test_only_listed_resources_are_governed_and_limits_parse():
    q = quotas({"a": {"cpus": 1, "borrowing_limit": {"cpus": 0}}, "b": {"gpus": 1}},
               cores=4, gpus=2)
    assert q.tracked == {"cpus", "gpus"}
    assert q.quota("a").nominal == {"cpus": 1.0, "gpus": 0.0}
    assert q.quota("a").borrowing_limit == {"cpus": 0.0}
    assert q.quota(UNLISTED).nominal == {"cpus": 3.0, "gpus": 1.0}
    assert parse_pool_and_quotas({"nodes": [{"name": "n", "memory_gib": 1, "cores": 1}]}
                                 )[1] == Quotas()


def test_the_example_teams_pool_loads_with_the_shares_it_describes():
    from pathlib import Path

    from slicebox.pool.files import load_pool_and_quotas

    example = Path(__file__).resolve().parents[2] / "examples/pools/teams.yaml"
    _, q = load_pool_and_quotas(example)
    assert set(q.teams) == {"vision", "nlp", "recsys", UNLISTED}
    assert q.quota(UNLISTED).nominal == {"cpus": 8.0, "gpus": 4.0, "gpus:A100-80GB": 0.0}
    assert q.quota("vision").borrowing_limit == {"gpus": 2.0}
