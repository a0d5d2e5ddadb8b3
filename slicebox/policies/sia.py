"""Sia (SOSP'23), re-implemented from its paper and artifact for the Pollux/Sia workloads.

Read from siasosp23/artifacts ``sia-simulator/sia.py`` (``SiaPolicy.optimize_mip``,
``__solve_mip_rescaled``), ``simulator_config.py`` (p = -0.5, lambda_n = 1.1, clip 3000,
60 s rounds) and ``cluster.py`` (``get_sia_multi_job_info``). Every round:

- **Configurations** per GPU type: 1, 2, 4 GPUs on one node, then whole nodes
  (``CONFIGS_4GPU`` / ``CONFIGS_8GPU``), no more nodes than the type has.
- **Goodput** of each job in each configuration, normalised so that the job's smallest
  known goodput is 1. A job knows a type only once it has run there (Sia learns its
  throughput model from what it observes): on a type it has not run on, only the 1-GPU
  configuration is offered, worth 1; on a type it has, configurations up to twice the
  most GPUs it ran with there (and at most 64, and its largest batch over its smallest
  per-GPU batch) are offered at their goodput with batch sizes up to the trace's.
- **Restart penalty**: every configuration but the current one is scaled by Pollux's
  re-allocation factor ``(age - restarts x penalty) / (age + penalty)`` (1 while the job
  is younger than its penalty); penalties by application (imagenet 250 s, bert 120 s,
  yolov3 45 s, cifar 30 s, deepspeech 25 s, others 30 s).
- **ILP**: minimise ``sum x * round(goodput ** p, 2) + lambda_n x (jobs - allocations)``
  over binary ``x[job, config]``, at most one configuration per job, at most the type's
  GPUs per type; a job in the middle of a checkpoint-restore keeps its configuration.
  Solved with HiGHS (``scipy.optimize.milp``, relative gap 1e-4 as Sia gives CBC).

What a policy cannot know from a snapshot (which types a job has run on, and with how
many GPUs) is kept in the instance, fed only by the snapshots' ``JobView.current``: use
one instance per run, like Gavel's round mechanism. Where the snapshot's profiles have
no goodput (a live pool), throughput stands in for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix

from slicebox.policies.base import Policy
from slicebox.policies.registry import POLICIES
from slicebox.snapshot import Assignment, ClusterSnapshot, Decision, JobState, JobView

ZERO_ALLOC_GAIN = 1e-4  # Sia's value for a configuration a job cannot use
CLIP = 3000.0  # sia_goodput_clip_val
# Restart penalties Sia's policy assumes, by application in the job's name
# (``get_restart_penalty``); the simulator charges its own rescale_time.
RESTART_PENALTIES = (("deepspeech", 25.0), ("imagenet", 250.0), ("cifar", 30.0),
                     ("bert", 120.0), ("yolov3", 45.0))
DEFAULT_PENALTY = 30.0


@dataclass(frozen=True, slots=True)
class Config:
    kind: str
    gpus: int


def configurations(per_node: int, nodes: int) -> list[int]:
    """Sia's GPU counts for a type: 1, 2, 4, ... up to one node, then whole nodes."""
    counts = []
    n = 1
    while n < per_node:
        counts.append(n)
        n *= 2
    counts.extend(per_node * k for k in range(1, nodes + 1))
    return counts


def restart_penalty(job_id: str) -> float:
    for name, seconds in RESTART_PENALTIES:
        if name in job_id:
            return seconds
    return DEFAULT_PENALTY


def realloc_factor(age: float, restarts: int, penalty: float) -> float:
    """Pollux's re-allocation factor: the share of its life a job did not spend
    restarting, counting the restart a change would add."""
    if age < penalty:
        return 1.0
    return max(age - restarts * penalty, 0.0) / (age + penalty)


@POLICIES.register("sia")
class SiaPolicy(Policy):
    name = "sia"
    periodic = True
    default_round_seconds = 60.0
    resizes_jobs = True
    reads_progress = False
    p_fairness: ClassVar[float] = -0.5
    lambda_no_alloc: ClassVar[float] = 1.1
    gap: ClassVar[float] = 1e-4
    # run_experiment.sh: --project_throughputs --share_max_replicas
    project_throughputs: ClassVar[bool] = True
    share_max_replicas: ClassVar[bool] = True

    def __init__(self) -> None:
        # job -> kind -> most GPUs it has run with there (what Sia has profiled)
        self._profiled: dict[str, dict[str, int]] = {}
        self._last_now = -np.inf

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        if snapshot.now < self._last_now:
            self._profiled.clear()  # a new run on the same instance
        self._last_now = snapshot.now
        jobs = [j for j in snapshot.jobs if j.waiting or j.state.active]
        self._observe(jobs)
        if not jobs:
            return Decision(())
        configs = self._configs(snapshot)
        if not configs:
            return Decision(())
        kinds = sorted({c.kind for c in configs})
        values = np.full((len(jobs), len(configs)), ZERO_ALLOC_GAIN)
        fixed: list[tuple[int, int]] = []
        for j, job in enumerate(jobs):
            values[j] = self._row(snapshot, job, configs)
            prev = self._current_index(job, configs)
            if prev is not None:
                keep = values[j, prev]
                age = snapshot.now - job.submitted_at
                values[j] *= realloc_factor(age, job.preemptions, restart_penalty(job.id))
                values[j, prev] = keep
                if job.state is JobState.STAGING:
                    fixed.append((j, prev))  # checkpoint-restore under way: keep it
        chosen = self._solve(values, configs, kinds, snapshot, fixed)
        return Decision(tuple(self._assignments(jobs, configs, chosen)))

    # -- what Sia knows of each job ----------------------------------------------------

    def _observe(self, jobs: Sequence[JobView]) -> None:
        alive = {j.id for j in jobs}
        for job_id in [k for k in self._profiled if k not in alive]:
            del self._profiled[job_id]
        for job in jobs:
            cur = job.current
            if cur is not None and cur.kind is not None:
                seen = self._profiled.setdefault(job.id, {})
                seen[cur.kind] = max(seen.get(cur.kind, 0), cur.gpus)

    @staticmethod
    def _configs(snapshot: ClusterSnapshot) -> list[Config]:
        return [Config(kind, n) for kind, sizes in sorted(gpu_counts(snapshot).items())
                for n in sizes]

    def _row(self, snapshot: ClusterSnapshot, job: JobView, configs: list[Config]
             ) -> np.ndarray:
        """The job's normalised goodput in each configuration (ZERO_ALLOC_GAIN where
        it may not use one)."""
        demand = job.demand
        allowed = set(demand.kinds) if demand.kinds else None
        row = np.full(len(configs), ZERO_ALLOC_GAIN)
        if demand.max_gpus <= demand.gpus:
            return self._rigid_row(snapshot, job, configs, allowed)
        goodput = getattr(snapshot.profiles, "goodput", None)
        limit = getattr(snapshot.profiles, "batch_limit", None)
        max_batch = limit(job.id) if limit is not None else None
        seen = self._profiled.get(job.id, {})
        shared_most = max(seen.values(), default=0)
        ratio = getattr(snapshot.profiles, "throughput_ratio", None)
        # Sia projects a type the job has not run on from the first type (in the
        # cluster's order) it has run on, times the one-GPU throughput ratio.
        order = [n.kind for n in snapshot.nodes if n.kind is not None]
        source = next((k for k in dict.fromkeys(order) if k in seen), None)
        unknown: set[str] = set()
        for i, config in enumerate(configs):
            kind = config.kind
            if allowed is not None and kind not in allowed:
                continue
            # With Sia's published flags (--project_throughputs --share_max_replicas) a
            # job that has run anywhere is offered every type, up to twice the most GPUs
            # it ran with on any; before its first run, one GPU of each type.
            ran = (shared_most if self.share_max_replicas else seen.get(kind, 0))
            if not ran or (kind not in seen and not self.project_throughputs):
                unknown.add(kind)
                continue
            most = min(max(2 * ran, 1), demand.max_gpus)
            if not demand.gpus <= config.gpus <= most:
                continue
            if goodput is not None and kind not in seen and source is not None \
                    and ratio is not None:
                factor = ratio(job.id, kind, source)
                if factor is None:
                    continue
                value = factor * goodput(job.id, source, config.gpus, None, max_batch)
            elif goodput is not None:
                value = goodput(job.id, kind, config.gpus, None, max_batch)
            else:
                value = snapshot.profiles.rate(job.workload, kind, config.gpus,
                                               job.precision).samples_per_s
            if value > 0:
                row[i] = value
        known = row > ZERO_ALLOC_GAIN
        row = row / (row[known].min() if known.any() else 1.0)
        for i, config in enumerate(configs):
            if config.kind in unknown and config.gpus == 1:
                row[i] = 1.0
        row[row <= ZERO_ALLOC_GAIN] = ZERO_ALLOC_GAIN
        return row

    @staticmethod
    def _rigid_row(snapshot: ClusterSnapshot, job: JobView, configs: list[Config],
                   allowed: set[str] | None) -> np.ndarray:
        """Sia's rigid jobs: one configuration per type (their own GPU count), worth
        their throughput there scaled so the slowest type is worth the GPU count."""
        row = np.full(len(configs), ZERO_ALLOC_GAIN)
        want = job.demand.gpus
        for i, config in enumerate(configs):
            if config.gpus != want or (allowed is not None and config.kind not in allowed):
                continue
            rate = snapshot.profiles.rate(job.workload, config.kind, want, job.precision)
            row[i] = rate.samples_per_s if rate.samples_per_s > 0 else ZERO_ALLOC_GAIN
        known = row > ZERO_ALLOC_GAIN
        if known.any():
            row[known] *= want / row[known].min()
        return row

    @staticmethod
    def _current_index(job: JobView, configs: list[Config]) -> int | None:
        cur = job.current
        if cur is None:
            return None
        for i, config in enumerate(configs):
            if config.kind == cur.kind and config.gpus == cur.gpus:
                return i
        return None

    # -- the ILP ---------------------------------------------------------------------

    def _solve(self, values: np.ndarray, configs: list[Config], kinds: list[str],
               snapshot: ClusterSnapshot, fixed: list[tuple[int, int]]) -> dict[int, int]:
        powered = np.round(np.power(values, self.p_fairness), 2)
        powered = np.minimum(powered, CLIP)
        # minimise sum x*A + lambda_n*(J - sum x) == minimise sum x*(A - lambda_n) + const
        return choose(powered - self.lambda_no_alloc, values > ZERO_ALLOC_GAIN, configs,
                      snapshot.capacity.total_gpus, fixed, self.gap)

    @staticmethod
    def _assignments(jobs: list[JobView], configs: list[Config], chosen: dict[int, int]
                     ) -> list[Assignment]:
        kept: list[Assignment] = []
        changed: list[tuple[int, Assignment]] = []
        for j, c in chosen.items():
            job, config = jobs[j], configs[c]
            cur = job.current
            if cur is not None and cur.kind == config.kind and cur.gpus == config.gpus:
                kept.append(cur)
                continue
            changed.append((config.gpus, sized(job, config.kind, config.gpus)))
        # Like Sia's placement: the biggest allocations first.
        changed.sort(key=lambda item: -item[0])
        return kept + [a for _, a in changed]


def choose(cost: np.ndarray, usable: np.ndarray, configs: list[Config],
           capacity: Mapping[str, int], fixed: Sequence[tuple[int, int]] = (),
           gap: float = 1e-4) -> dict[int, int]:
    """The ILP: binary ``x[job, config]`` minimising ``sum x * cost``, at most one
    configuration per job, at most ``capacity`` GPUs per kind, ``fixed`` (job, config)
    pairs kept; only ``usable`` pairs may be chosen. Solved with HiGHS. Returns
    {job row: config column} for the jobs given one."""
    jobs, n_configs = cost.shape
    kinds = sorted({c.kind for c in configs})
    lower = np.zeros(jobs * n_configs)
    upper = usable.ravel().astype(float)
    for j, c in fixed:
        lower[j * n_configs + c] = upper[j * n_configs + c] = 1.0
    kind_row = {kind: jobs + k for k, kind in enumerate(kinds)}
    gpus = np.array([c.gpus for c in configs], dtype=float)
    which = np.array([kind_row[c.kind] for c in configs])
    columns = np.arange(jobs * n_configs)
    rows = np.concatenate([np.repeat(np.arange(jobs), n_configs), np.tile(which, jobs)])
    data = np.concatenate([np.ones(jobs * n_configs), np.tile(gpus, jobs)])
    matrix = csr_matrix((data, (rows, np.concatenate([columns, columns]))),
                        shape=(jobs + len(kinds), jobs * n_configs))
    limits = np.array([1.0] * jobs + [float(capacity.get(kind, 0)) for kind in kinds])
    result = milp(cost.ravel(), integrality=np.ones(jobs * n_configs),
                  bounds=Bounds(lower, upper),
                  constraints=LinearConstraint(matrix, np.zeros(jobs + len(kinds)), limits),
                  options={"mip_rel_gap": gap, "disp": False})
    if result.x is None:  # infeasible only if fixed jobs overfill a kind: keep them
        return dict(fixed)
    x = np.round(result.x).reshape(jobs, n_configs)
    return {int(j): int(np.argmax(x[j])) for j in np.flatnonzero(x.sum(axis=1) > 0.5)}


def sized(job: JobView, kind: str, gpus: int) -> Assignment:
    """An assignment of ``gpus`` of ``kind``, with cores and memory in proportion to the
    GPUs when the job is elastic (its demand is for its smallest size)."""
    demand = job.demand
    if demand.max_gpus <= demand.gpus or demand.gpus <= 0:
        return Assignment(job.id, gpus, kind)
    scale = gpus / demand.gpus
    return Assignment(job.id, gpus, kind, max(1, int(demand.cpus * scale)),
                      demand.memory_gib * scale)


def gpu_counts(snapshot: ClusterSnapshot) -> dict[str, list[int]]:
    """Per GPU kind, the GPU counts a job may be given: Sia's configurations for the
    kind's node size and node count (``configurations``), capped at the kind's total."""
    per_node: dict[str, int] = {}
    nodes: dict[str, int] = {}
    for node in snapshot.nodes:
        if node.kind is None or not node.free_gpu:
            continue
        per_node[node.kind] = max(per_node.get(node.kind, 0), len(node.free_gpu))
        nodes[node.kind] = nodes.get(node.kind, 0) + 1
    out = {}
    for kind, total in snapshot.capacity.total_gpus.items():
        if total > 0:
            sizes = configurations(per_node.get(kind, total), nodes.get(kind, 1))
            out[kind] = [n for n in sizes if n <= total]
    return out
