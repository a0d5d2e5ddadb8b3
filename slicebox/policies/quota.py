"""Team quotas with borrowing and reclaim: Kueue's ClusterQueue model on one pool.

Each team has a nominal (guaranteed) quota of the governed resources and may borrow what
other teams leave idle, up to its ``borrowing_limit`` (``slicebox.pool.quotas`` reads them
from the pool file's ``quotas:`` section). The rules follow Kueue
(https://kueue.sigs.k8s.io/docs/concepts/cluster_queue/ and
https://kueue.sigs.k8s.io/docs/concepts/preemption/):

- **Order.** Waiting jobs that fit in their team's nominal quota are admitted first, then
  jobs that borrow (Kueue's scheduler tries workloads that do not borrow before those that
  do); within each pass, priority then arrival (``fifo``'s order), with backfill.
- **Borrowing.** A job beyond its team's nominal quota starts only into idle capacity and
  only while its team stays within ``nominal + borrowing_limit`` of each governed resource
  (no limit given: unlimited, as Kueue's nil ``borrowingLimit``).
- **Reclaim** (``reclaimWithinCohort: Any``): when a team's waiting job would fit in the
  team's nominal quota but not in the idle capacity, jobs of teams using more than their
  nominal quota of a short resource are preempted, in Kueue's candidate order (lowest
  priority first, then the most recently admitted: a job that has not reported progress
  yet counts as just admitted), re-checked after each one so that a team is never pushed
  below what it is guaranteed on its own account, and only as many as make the job fit
  (then, as Kueue's fill-back, an early victim a later one made unnecessary is kept).
  When they cannot make it fit, nobody is preempted. A job within its team's quota is
  never preempted. The preemption and the admission are in the same decision: the
  preempted job is checkpoint-stopped, and the owner's job is placed in the first round
  after the slices are released (a starting job never takes what a stopping one holds).
- A job stopping from an earlier decision is invisible to the policy; what it holds is
  counted as about to be idle (total minus what visible running jobs use), so the next
  round does not preempt a second job for the same waiter.

Capacity is counted in aggregate (cores, memory, GPUs by kind); placement decides where,
and a reclaim happens only when the waiter then fits in every resource, governed or not;
a job the aggregate admits but no node fits waits as with any policy. Jobs of teams
without a quota (and simulated jobs, all of team "default") share the unlisted queue.
The policy is pure and deterministic.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from slicebox.policies import common
from slicebox.policies.base import Policy
from slicebox.policies.fifo import Fifo
from slicebox.policies.registry import POLICIES
from slicebox.pool.quotas import CPUS, GPUS, MEMORY, NO_QUOTAS, Quotas, gpu_kind_key
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobView

EPS = 1e-9
Vector = dict[str, float]


@POLICIES.register("quota", "kueue")
class QuotaPolicy(Policy):
    """Teams' nominal quotas first, borrowing of idle capacity, reclaim by preemption (see
    the module docstring). Without quotas it is ``fifo``."""

    name = "quota"
    reads_progress = False

    def __init__(self, quotas: Quotas | None = None) -> None:
        self.quotas = quotas or NO_QUOTAS

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        if not self.quotas.tracked:
            return Fifo().decide(snapshot)
        return _Round(snapshot, self.quotas).decide()


def configure(policy: Policy, pool_file: str | Path | None) -> Policy:
    """``policy`` with the pool file's quotas when it is the quota policy (what
    ``slicebox up --policy quota --pool FILE`` calls); any other policy unchanged."""
    if not isinstance(policy, QuotaPolicy) or pool_file is None:
        return policy
    from slicebox.pool.files import load_pool_and_quotas

    return type(policy)(load_pool_and_quotas(pool_file)[1])


class _Round:
    def __init__(self, snapshot: ClusterSnapshot, quotas: Quotas) -> None:
        self.snapshot, self.quotas = snapshot, quotas
        self.tracked = quotas.tracked
        self.kinds_tracked = any(k.startswith("gpus:") for k in self.tracked)
        self.usage: dict[str, Vector] = {}
        self.vectors: dict[str, Vector] = {}
        # A caller that does not count memory (total 0) leaves it out of the accounting.
        self.memory_known = snapshot.capacity.total_memory_gib > 0
        self.running = [j for j in snapshot.jobs if j.state.active and j.current is not None]
        self.free = self._totals()
        for job in self.running:
            vector = self._vector(job, job.current.kind if job.current else None)
            self.vectors[job.id] = vector
            self._take(self._queue(job), vector)
        self.preempted: dict[str, str] = {}  # job id -> why
        self.why: dict[str, str] = {}

    # -- accounting -----------------------------------------------------------------------
    def _totals(self) -> Vector:
        cap = self.snapshot.capacity
        totals = {CPUS: float(cap.total_cpus), MEMORY: float(cap.total_memory_gib),
                  GPUS: float(sum(cap.total_gpus.values()))}
        for kind, count in cap.total_gpus.items():
            totals[gpu_kind_key(kind)] = float(count)
        return totals

    def _queue(self, job: JobView) -> str:
        return self.quotas.queue_of(job.team)

    def _vector(self, job: JobView, kind: str | None) -> Vector:
        d, cur = job.demand, job.current
        if cur is not None:
            cpus = cur.cpus if cur.cpus is not None else d.cpus * d.nodes
            memory = cur.memory_gib if cur.memory_gib is not None else d.memory_gib * d.nodes
            gpus = cur.fraction if cur.fraction is not None else (
                d.gpu_share if d.mig is not None else float(cur.gpus))
        else:
            cpus, memory, gpus = d.cpus * d.nodes, d.memory_gib * d.nodes, d.gpu_share
        full = {CPUS: float(cpus), GPUS: float(gpus)}
        if self.memory_known:
            full[MEMORY] = float(memory)
        if kind is not None and gpus > 0:
            full[gpu_kind_key(kind)] = float(gpus)
        # Every resource, governed or not: a reclaim must also make room in what quotas do
        # not govern, or it would restart a job for a waiter that still cannot start.
        return {k: v for k, v in full.items() if v > 0}

    def _take(self, queue: str, vector: Vector, sign: float = 1.0) -> None:
        used = self.usage.setdefault(queue, {})
        for key, amount in vector.items():
            used[key] = used.get(key, 0.0) + sign * amount
            self.free[key] = self.free.get(key, 0.0) - sign * amount

    def _fits(self, vector: Vector) -> bool:
        return all(self.free.get(k, 0.0) + EPS >= v for k, v in vector.items())

    def _within_nominal(self, queue: str, vector: Vector) -> bool:
        nominal = self.quotas.quota(queue).nominal
        used = self.usage.get(queue, {})
        return all(used.get(k, 0.0) + v <= nominal.get(k, 0.0) + EPS
                   for k, v in vector.items() if k in self.tracked)

    def _within_limit(self, queue: str, vector: Vector) -> bool:
        quota = self.quotas.quota(queue)
        used = self.usage.get(queue, {})
        return all(used.get(k, 0.0) + v
                   <= quota.nominal.get(k, 0.0) + quota.borrowing_limit[k] + EPS
                   for k, v in vector.items() if k in quota.borrowing_limit)

    def _borrowing(self, queue: str, keys: set[str]) -> bool:
        nominal = self.quotas.quota(queue).nominal
        used = self.usage.get(queue, {})
        return any(used.get(k, 0.0) > nominal.get(k, 0.0) + EPS
                   for k in keys if k in self.tracked)

    # -- the decision ---------------------------------------------------------------------
    def decide(self) -> Decision:
        waiting = sorted(self.snapshot.waiting, key=common.fifo_key)
        admitted: list[Assignment] = []
        borrowers: list[JobView] = []
        for job in waiting:  # pass 1: within the team's nominal quota (reclaiming)
            want = self._admit(job, borrowing=False)
            if want is None:
                borrowers.append(job)
            else:
                admitted.append(want)
        for job in borrowers:  # pass 2: borrowing idle capacity
            want = self._admit(job, borrowing=True)
            if want is not None:
                admitted.append(want)
        run = tuple(common.keep_or_request(j) for j in self.running
                    if j.id not in self.preempted) + tuple(admitted)
        reasons = {**self.why, **self.preempted}
        return Decision(run, MappingProxyType(reasons))

    def _kinds(self, job: JobView) -> tuple[str | None, ...]:
        """The GPU kinds to count a waiting job against: its one kind, or (per-kind quotas
        governing GPUs) each kind it may use, tried in order; else none in particular."""
        d = job.demand
        if d.gpu_share <= 0:
            return (None,)
        if len(d.kinds) == 1:
            return (d.kinds[0],)
        if not self.kinds_tracked:
            return (None,)
        return tuple(sorted(d.kinds or self.snapshot.capacity.total_gpus))

    def _admit(self, job: JobView, borrowing: bool) -> Assignment | None:
        queue = self._queue(job)
        for kind in self._kinds(job):
            vector = self._vector(job, kind)
            if not borrowing:
                if not self._within_nominal(queue, vector):
                    continue
                if not self._fits(vector) and not self._reclaim(job, queue, vector):
                    continue
            elif not self._within_limit(queue, vector):
                self.why[job.id] = f"team {job.team} is at its borrowing limit"
                continue
            elif not self._fits(vector):
                continue
            self._take(queue, vector)
            self.why.pop(job.id, None)
            pinned = kind if self.kinds_tracked else None  # the kind it was counted as
            return Assignment(job.id, job.demand.gpus, kind=pinned)
        return None

    def _reclaim(self, job: JobView, queue: str, vector: Vector) -> bool:
        """Preempt borrowed jobs of other teams, just enough for ``vector`` to fit; True
        when it then fits (nothing is preempted when it would not)."""
        taken: list[tuple[JobView, str, Vector]] = []
        for victim in self._candidates(queue):
            if self._fits(vector):
                break
            short = {k for k, v in vector.items() if self.free.get(k, 0.0) + EPS < v}
            owner = self._queue(victim)
            held = self.vectors[victim.id]
            if not self._borrowing(owner, short) or not short.intersection(held):
                continue  # its team is within its quota where it matters, or it frees none
            self._take(owner, held, -1.0)
            taken.append((victim, owner, held))
        if not self._fits(vector):
            for _, owner, held in taken:
                self._take(owner, held)
            return False
        # Kueue's fill-back: a victim taken early whose room turned out not to be needed
        # (a larger one taken later covered it) keeps running.
        for victim, owner, held in reversed(taken[:-1]):
            self._take(owner, held)
            if self._fits(vector):
                taken.remove((victim, owner, held))
            else:
                self._take(owner, held, -1.0)
        for victim, _, _ in taken:
            self.preempted[victim.id] = (
                f"preempted: team {victim.team} borrows beyond its quota; "
                f"reclaimed for {job.id} of team {job.team}")
        return True

    def _candidates(self, queue: str) -> list[JobView]:
        """Running jobs of other queues in Kueue's order: lowest priority, then the most
        recently admitted (a job with no progress yet counts as admitted now)."""
        now = self.snapshot.now
        found = [j for j in self.running
                 if j.id not in self.preempted and self._queue(j) != queue]
        found.sort(key=lambda j: (j.priority, -(j.started_at if j.started_at is not None
                                                else now), -j.submitted_at, j.id))
        return found
