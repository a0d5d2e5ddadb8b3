"""Slicebox's plan for elastic jobs: GPU kind x count (and so batch size) per job, from
goodput, at every arrival and completion.

``plan_ilp`` (the default, ``PlanKnobs.method = "ilp"``) is Sia's formulation with what
Slicebox knows and Sia does not, solved at each event rather than every 60 s, exactly
(``choose_shapes``: dynamic programming over the GPUs used per kind where the pool is
small enough to tabulate, as Sia's 64 GPUs are; HiGHS otherwise):

- every job's goodput on every shape from its first second (no exploration ramp of
  1, 2, 4, ... GPUs with a restart at each step), on every kind it may use;
- every GPU count a kind can hold (``shapes = "every"``: 3, 5, 6, 12, ... as well as
  Sia's 1, 2, 4 and whole nodes), so a job gets the size its goodput calls for and the
  ILP packs a kind's GPUs exactly (the placer splits a count over nodes as it must);
- the utility of a shape is ``log`` of the job's goodput there over its smallest
  (``p = 0``; Sia: ``goodput ** -0.5``), weighted by the job's rank by best remaining
  time (``weights = "rank"``: ``(2 rank - 1) ** rank_exponent``, rank 1 the longest),
  with ``lambda_n`` for each job given GPUs so that everyone runs when the pool allows.
  The rank weights are heSRPT's (Berg et al., SIGMETRICS 2020): for speed-ups ``k ** p``
  the allocation that minimises mean completion time gives the i-th longest of m jobs
  the share ``(i / m) ** c - ((i - 1) / m) ** c``, ``c = 1 / (1 - p)``, which depends
  only on the jobs' order, not on how far apart their sizes are; weighting by rank keeps
  that (short jobs first, every job some GPUs) where a power of the remaining time
  (``weights = "time"``, ``** -beta``) swings with the sizes' spread;
- a running job's other shapes are worth less by the restart they cost, amortised over
  the time the new shape is likely to last (its remaining time, at most ``horizon``),
  and by ``switch_margin``; a job whose restore is under way keeps its shape. A resize
  must therefore pay for itself, and since decisions come only at arrivals and
  completions a job is not moved back and forth (``tests/sim/test_elastic.py``).

``plan`` is a greedy alternative kept for comparison (``method = "greedy"``): jobs in
order of remaining time get their smallest size, the rest goes by marginal goodput per
GPU, and a running job's change must save ``pay_back`` restarts plus ``min_gain`` of its
remaining time. On Pollux/Sia workload 1 it was 25-50 % worse than the ILP.

Goodput comes from ``snapshot.profiles.goodput(job, kind, gpus)`` (the simulator: Sia's
throughput x statistical efficiency at the best batch size in the job's current epoch);
where the profiles have none, measured throughput stands in for it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix

from slicebox.policies.sia import Config, gpu_counts, sized
from slicebox.snapshot import Assignment, ClusterSnapshot, JobState, JobView

DEFAULT_RESTART = 30.0


@dataclass(frozen=True, slots=True)
class PlanKnobs:
    hold_bonus: float = 2.0  # value of GPUs a running job already holds, relative
    pay_back: float = 2.0  # a voluntary resize saves >= pay_back x its restart
    min_gain: float = 0.05  # ... plus this share of the job's remaining time
    objective: str = "rate"  # "time": seconds saved per GPU; "rate": completions per GPU
    alpha: float = 1.0  # "rate": goodput gained / remaining work ** alpha
    keep_held: bool = True  # running jobs keep their size first; else all start at minimum
    method: str = "ilp"  # "ilp" (plan_ilp) or "greedy" (plan)
    p: float = 0.0  # fairness exponent on normalised goodput; 0: log (Sia: -0.5)
    lambda_n: float = 1.1  # Sia's penalty for a job left without GPUs
    beta: float = 0.2  # weight of a job ~ (its best remaining time) ** -beta
    switch_margin: float = 0.1  # a running job's other shapes are worth this much less
    horizon: float = 900.0  # seconds over which a change's restart is paid back
    gap: float = 1e-4  # HiGHS's relative MIP gap (as Sia; a looser one changes jobs for nothing)
    shapes: str = "every"  # "every": any GPU count a kind holds; "sia": Sia's configurations
    weights: str = "rank"  # "rank": (2 rank - 1) ** rank_exponent (heSRPT); "time": ** -beta;
    # "hesrpt": heSRPT's exact increments r ** c - (r - 1) ** c, c = 1 + rank_exponent, with
    # the makespan counted as ``makespan_weight`` more completions behind the longest job
    rank_exponent: float = 0.65
    makespan_weight: float = 1.0


@dataclass(slots=True)
class _Job:
    view: JobView
    remaining: float
    restart: float
    counts: dict[str, list[int]]  # kind -> sizes it may take there, ascending
    goodput: Callable[[str, int], float]
    kind: str | None = None
    step: int = -1  # index into counts[kind]; -1: not running
    held: tuple[str, int] | None = None  # (kind, gpus) it runs on now
    cache: dict[tuple[str, int], float] = field(default_factory=dict)

    def rate(self, kind: str, gpus: int) -> float:
        key = (kind, gpus)
        value = self.cache.get(key)
        if value is None:
            value = self.cache[key] = max(self.goodput(kind, gpus), 0.0)
        return value

    def base(self) -> float:
        """Goodput at its smallest size on its best kind."""
        return max(self.rate(kind, sizes[0]) for kind, sizes in self.counts.items())

    @property
    def gpus(self) -> int:
        return self.counts[self.kind][self.step] if self.kind and self.step >= 0 else 0


def plan(snapshot: ClusterSnapshot, elastic: Sequence[JobView],
         knobs: PlanKnobs = PlanKnobs()) -> tuple[list[Assignment], dict[str, int]]:
    """Assignments for the jobs of ``snapshot`` (elastic or whole-GPU rigid), and the
    GPUs per kind they use."""
    counts = gpu_counts(snapshot)
    budget = dict(snapshot.capacity.total_gpus)
    jobs = [_prepare(snapshot, view, counts) for view in elastic]
    jobs = [j for j in jobs if j.counts]
    order = sorted(jobs, key=lambda j: _key(j, knobs))
    running = [j for j in order if j.held is not None]
    if knobs.keep_held:
        for job in running:  # 1. running jobs keep what they hold (no restart) ...
            _hold(job, budget)
        for job in order:  # ... and waiting jobs start in what is left, shortest first
            if job.held is None:
                _admit(job, budget) or _make_room(job, running, budget, knobs)
    else:
        for job in order:  # 1. everyone gets its smallest size, shortest first
            if job.held is not None:
                _hold_min(job, budget)
            else:
                _admit(job, budget)
    _grow(order, budget, knobs)  # 2. the rest by marginal value
    for job in running:  # 3. a change to a running job must pay for its restart
        if job.step >= 0:
            _settle(job, budget, knobs)
    _grow([j for j in order if j.held is None], budget, knobs)  # what reverts freed
    out: list[Assignment] = []
    changed: list[tuple[int, Assignment]] = []
    for job in order:
        if job.kind is None or job.step < 0:
            continue
        view = job.view
        cur = view.current
        if cur is not None and (cur.kind, cur.gpus) == (job.kind, job.gpus):
            out.append(cur)
        else:
            changed.append((job.gpus, sized(view, job.kind, job.gpus)))
    changed.sort(key=lambda item: -item[0])
    used = {kind: snapshot.capacity.total_gpus[kind] - left for kind, left in budget.items()}
    return out + [a for _, a in changed], used


def _hold(job: _Job, budget: dict[str, int]) -> None:
    assert job.held is not None
    kind, gpus = job.held
    sizes = job.counts[kind]
    if gpus in sizes and budget.get(kind, 0) >= gpus:
        job.kind, job.step = kind, sizes.index(gpus)
        budget[kind] -= gpus
    elif budget.get(kind, 0) >= sizes[0]:
        job.kind, job.step = kind, 0
        budget[kind] -= sizes[0]


def _hold_min(job: _Job, budget: dict[str, int]) -> None:
    assert job.held is not None
    kind = job.held[0]
    if budget.get(kind, 0) >= job.counts[kind][0]:
        job.kind, job.step = kind, 0
        budget[kind] -= job.counts[kind][0]


def _make_room(job: _Job, running: Sequence[_Job], budget: dict[str, int],
               knobs: PlanKnobs) -> bool:
    """No free GPU fits a waiting job: the running jobs that are longest (and longer
    by the hold bonus) shrink one step at a time, or stop, until it fits."""
    mine = _key(job, knobs)
    for victim in reversed(running):  # longest first
        if victim.kind is None or victim.step < 0 or victim.kind not in job.counts:
            continue
        if _key(victim, knobs) <= mine:
            break
        kind = victim.kind
        need = job.counts[kind][0]
        while budget.get(kind, 0) < need and victim.step >= 0:
            sizes = victim.counts[kind]
            freed = sizes[victim.step] - (sizes[victim.step - 1] if victim.step > 0 else 0)
            budget[kind] += freed
            victim.step -= 1
        if victim.step < 0:
            victim.kind = None
        if budget.get(kind, 0) >= need:
            job.kind, job.step = kind, 0
            budget[kind] -= need
            return True
    return False


def _prepare(snapshot: ClusterSnapshot, view: JobView, counts: dict[str, list[int]]) -> _Job:
    profiles = snapshot.profiles
    goodput = getattr(profiles, "goodput", None)
    restart = getattr(profiles, "restart_seconds", None)

    def rate(kind: str, gpus: int) -> float:
        if goodput is not None:
            return float(goodput(view.id, kind, gpus))
        return float(profiles.rate(view.workload, kind, gpus, view.precision).samples_per_s)

    demand = view.demand
    allowed = set(demand.kinds) if demand.kinds else None
    if demand.max_gpus > demand.gpus:
        mine = {kind: [n for n in sizes if demand.gpus <= n <= demand.max_gpus]
                for kind, sizes in counts.items() if allowed is None or kind in allowed}
    else:  # a rigid job: its own size, on any kind it may use
        mine = {kind: [demand.gpus] for kind in counts if allowed is None or kind in allowed}
    job = _Job(view, max(view.remaining_work or 0.0, 0.0),
               float(restart(view.id)) if restart is not None else DEFAULT_RESTART,
               {}, rate)
    job.counts = {k: [n for n in sizes if job.rate(k, n) > 0] for k, sizes in mine.items()}
    job.counts = {k: v for k, v in job.counts.items() if v}
    cur = view.current
    if cur is not None and cur.kind in job.counts:
        job.held = (cur.kind, cur.gpus)
    return job


def _key(job: _Job, knobs: PlanKnobs) -> float:
    best = max(job.rate(kind, sizes[0]) for kind, sizes in job.counts.items())
    seconds = job.remaining / best if best > 0 else float("inf")
    return seconds / knobs.hold_bonus if job.held is not None else seconds


def _admit(job: _Job, budget: dict[str, int]) -> bool:
    best_kind, best_rate = None, 0.0
    for kind, sizes in job.counts.items():
        rate = job.rate(kind, sizes[0])
        if budget.get(kind, 0) >= sizes[0] and rate > best_rate:
            best_kind, best_rate = kind, rate
    if best_kind is None:
        return False
    job.kind, job.step = best_kind, 0
    budget[best_kind] -= job.counts[best_kind][0]
    return True


def _step_value(job: _Job, knobs: PlanKnobs) -> tuple[float, int] | None:
    """(value per added GPU, GPUs added) of the job's next size on its kind."""
    if job.kind is None or job.step < 0 or job.step + 1 >= len(job.counts[job.kind]):
        return None
    sizes = job.counts[job.kind]
    now, nxt = sizes[job.step], sizes[job.step + 1]
    holds = job.held is not None and job.held[0] == job.kind and nxt <= job.held[1]
    if knobs.objective == "time":
        # Seconds of this job's completion time the step saves (and the restart it
        # avoids when it brings a running job back to what it holds).
        before, after = job.rate(job.kind, now), job.rate(job.kind, nxt)
        if after <= before:
            return None
        gain = job.remaining / before - job.remaining / after
        if holds and job.held is not None and nxt == job.held[1]:
            gain += job.restart
    else:
        # Speed-up over the job's smallest size, over its time there ** alpha:
        # alpha 1 is completions per second (shortest first), alpha 0 speed-up alone.
        base = job.base()
        alone = max(job.remaining / base, 1.0) / 3600.0 if base > 0 else 1.0
        gain = (job.rate(job.kind, nxt) - job.rate(job.kind, now)) / max(base, 1e-12) \
            / alone ** knobs.alpha
    if holds:
        gain *= knobs.hold_bonus
    return gain / (nxt - now), nxt - now


def _grow(jobs: Sequence[_Job], budget: dict[str, int], knobs: PlanKnobs) -> None:
    heap: list[tuple[float, int]] = []
    for i, job in enumerate(jobs):
        value = _step_value(job, knobs)
        if value is not None and value[0] > 0:
            heapq.heappush(heap, (-value[0], i))
    while heap:
        _, i = heapq.heappop(heap)
        job = jobs[i]
        value = _step_value(job, knobs)
        if value is None or value[0] <= 0:
            continue
        assert job.kind is not None
        if budget.get(job.kind, 0) < value[1]:
            continue  # the kind is full: this job grows no more
        budget[job.kind] -= value[1]
        job.step += 1
        value = _step_value(job, knobs)
        if value is not None and value[0] > 0:
            heapq.heappush(heap, (-value[0], i))


def _settle(job: _Job, budget: dict[str, int], knobs: PlanKnobs) -> None:
    """A running job keeps what it holds unless the plan's change pays for its restart
    (or is forced: it can no longer hold its old size)."""
    assert job.held is not None
    if job.kind is None:
        return  # stopped to make room: forced
    old_kind, old_gpus = job.held
    if (job.kind, job.gpus) == job.held:
        return
    old_rate = job.rate(old_kind, old_gpus)
    new_rate = job.rate(job.kind, job.gpus)
    old_time = job.remaining / old_rate if old_rate > 0 else float("inf")
    new_time = job.remaining / new_rate if new_rate > 0 else float("inf")
    saves = old_time - new_time - job.restart
    if saves >= knobs.pay_back * job.restart + knobs.min_gain * old_time:
        return  # worth its restart
    if old_gpus not in job.counts[old_kind]:
        return
    # Not worth it: back to what it holds, if the GPUs are there.
    extra = old_gpus - (job.gpus if job.kind == old_kind else 0)
    if budget.get(old_kind, 0) >= extra:
        budget[old_kind] -= extra
        if job.kind != old_kind:
            budget[job.kind] += job.gpus
        job.kind = old_kind
        job.step = job.counts[old_kind].index(old_gpus)


def plan_ilp(snapshot: ClusterSnapshot, views: Sequence[JobView],
             knobs: PlanKnobs = PlanKnobs()) -> list[Assignment]:
    """The same choice as one ILP over (job, kind, GPU count), Sia's formulation with
    what Slicebox knows and Sia does not: every job's goodput on every shape from its
    first second (no exploration ramp), the restart a change costs each job
    (amortised over its remaining time), and its remaining time (shorter jobs weigh
    more, ``beta``)."""
    counts = gpu_counts(snapshot)
    if knobs.shapes == "every":
        counts = every_count(snapshot, counts)
    configs = [Config(kind, n) for kind in sorted(counts) for n in counts[kind]]
    jobs = [_prepare(snapshot, view, counts) for view in views]
    jobs = [j for j in jobs if j.counts]
    if not jobs or not configs:
        return []
    # Columns of each kind (in config order) and their GPU counts: the matrices below
    # are filled a kind at a time with numpy instead of a Python loop per (job, shape).
    columns = {kind: np.array([c for c, config in enumerate(configs) if config.kind == kind],
                              dtype=int)
               for kind in counts}
    sizes_of = {kind: np.array([configs[c].gpus for c in cols]) for kind, cols in columns.items()}
    goodput = np.zeros((len(jobs), len(configs)))
    for j, job in enumerate(jobs):
        for kind, sizes in job.counts.items():
            cols, gpus = columns[kind], sizes_of[kind]
            offered = np.isin(gpus, sizes)
            goodput[j, cols[offered]] = [job.rate(kind, int(n)) for n in gpus[offered]]
    usable = goodput > 0
    # A shape no faster than a smaller one of the same kind is never worth its GPUs:
    # left out, the ILP is smaller (the job's current shape always stays in).
    for cols in columns.values():
        if not len(cols):
            continue
        rates = goodput[:, cols]
        best = np.zeros_like(rates)  # the best goodput of the smaller shapes before each
        best[:, 1:] = np.maximum(np.maximum.accumulate(rates, axis=1)[:, :-1], 0.0)
        usable[:, cols] &= rates > best * (1.0 + 1e-3)
    where = {(config.kind, config.gpus): c for c, config in reversed(list(enumerate(configs)))}
    held_at = np.full(len(jobs), -1)
    for j, job in enumerate(jobs):
        if job.held is not None:
            c = where.get(job.held, -1)
            held_at[j] = c
            if c >= 0 and goodput[j, c] > 0:
                usable[j, c] = True
    smallest = np.where(usable, goodput, np.inf).min(axis=1, keepdims=True)
    speedup = np.where(usable, goodput / smallest, 1.0)
    remaining = np.array([j.remaining for j in jobs])[:, None]
    with np.errstate(divide="ignore"):
        seconds = np.where(usable, remaining / np.maximum(goodput, 1e-12), np.inf)
    fixed: list[tuple[int, int]] = []
    for j, job in enumerate(jobs):
        if job.view.current is None or job.held is None:
            continue
        now = int(held_at[j]) if held_at[j] >= 0 else None
        # The restart is paid back over the time the new shape is likely to last: the
        # job's remaining time, at most ``horizon`` (other arrivals and completions
        # change the plan again).
        lasting = np.minimum(seconds[j], knobs.horizon)
        amortised = lasting / (lasting + job.restart)
        keep = speedup[j, now] if now is not None else None
        speedup[j] *= amortised * (1.0 - knobs.switch_margin)
        if now is not None and keep is not None:
            speedup[j, now] = keep
            if job.view.state is JobState.STAGING:
                fixed.append((j, now))  # its restart is under way: let it finish
    best_hours = np.maximum(seconds.min(axis=1), 60.0) / 3600.0
    weight = rank_weights(best_hours, knobs)
    weight = weight / weight.mean()
    # Utility of a shape: Sia's speedup ** p (p < 0: minimised), log speedup (p = 0)
    # or speedup ** p maximised (p > 0); lambda_n makes any shape beat none.
    if knobs.p < 0:
        utility = -np.power(speedup, knobs.p)
    elif knobs.p == 0:
        utility = np.log(speedup)
    else:
        utility = np.power(speedup, knobs.p)
    cost = -weight[:, None] * (utility + knobs.lambda_n)
    chosen = choose_shapes(cost, usable, configs, snapshot.capacity.total_gpus, fixed,
                           knobs.gap)
    kept: list[Assignment] = []
    changed: list[tuple[int, Assignment]] = []
    for j, c in chosen.items():
        job, config = jobs[j], configs[c]
        cur = job.view.current
        if cur is not None and (cur.kind, cur.gpus) == (config.kind, config.gpus):
            kept.append(cur)
        else:
            changed.append((config.gpus, sized(job.view, config.kind, config.gpus)))
    changed.sort(key=lambda item: -item[0])
    return kept + [a for _, a in changed]


def every_count(snapshot: ClusterSnapshot, counts: dict[str, list[int]]
                ) -> dict[str, list[int]]:
    """Per kind of ``counts``, every GPU count from 1 to the kind's total."""
    return {kind: list(range(1, snapshot.capacity.total_gpus.get(kind, 0) + 1))
            for kind in counts}


def rank_weights(best_hours: np.ndarray, knobs: PlanKnobs) -> np.ndarray:
    """Each job's weight from its best remaining hours: heSRPT's by rank
    (``(2 rank - 1) ** rank_exponent``, rank 1 the longest job; equal times share a
    rank's order by position), ``best_hours ** -beta``, or (``"hesrpt"``) heSRPT's
    shares themselves, ``W(r) ** c - W(r - 1) ** c`` with ``W(r)`` the completions that
    wait on the r longest jobs: ``r`` of them, plus ``makespan_weight`` for the end of the
    schedule, which only the longest job's completion moves (so ``Σ JCT + makespan``
    with weight 1)."""
    if knobs.weights == "time":
        return np.asarray(best_hours ** -knobs.beta, dtype=float)
    order = np.argsort(-best_hours, kind="stable")
    rank = np.empty(len(best_hours))
    rank[order] = np.arange(1, len(best_hours) + 1)
    if knobs.weights == "hesrpt":
        c = 1.0 + knobs.rank_exponent
        # Completions that wait on rank r: itself and the longer ones, plus the end
        # of the schedule (the makespan, counted as ``makespan_weight`` completions).
        upto = rank + knobs.makespan_weight
        before = np.where(rank > 1, rank - 1 + knobs.makespan_weight, 0.0)
        return np.asarray(upto ** c - before ** c, dtype=float)
    return np.asarray((2.0 * rank - 1.0) ** knobs.rank_exponent, dtype=float)


def choose_shapes(cost: np.ndarray, usable: np.ndarray, configs: Sequence[Config],
                  capacity: Mapping[str, int], fixed: Sequence[tuple[int, int]] = (),
                  gap: float = 1e-4) -> dict[int, int]:
    """The plan's ILP (``_choose_usable``'s): at most one usable shape per job, at most a
    kind's GPUs per kind, ``fixed`` pairs kept, ``sum cost`` minimised. Solved exactly by
    ``_choose_exact`` when the GPUs per kind are few enough to tabulate (a pool the size
    of Sia's: ~10,000 states), else by HiGHS. Returns {job row: config column}."""
    exact = _choose_exact(cost, usable, configs, capacity, fixed)
    if exact is not None:
        return exact
    return _choose_usable(cost, usable, configs, capacity, fixed, gap)


# The exact solver's limits: states (GPU counts per kind, all combinations) times the
# (job, shape) pairs it relaxes, and states times jobs (the tables it keeps). Beyond
# them (a pool with many kinds or thousands of GPUs) HiGHS's branch and bound is cheaper.
EXACT_WORK = 4e7
EXACT_CELLS = 4e6


def _choose_exact(cost: np.ndarray, usable: np.ndarray, configs: Sequence[Config],
                  capacity: Mapping[str, int], fixed: Sequence[tuple[int, int]]
                  ) -> dict[int, int] | None:
    """The same ILP by dynamic programming over the GPUs used per kind: ``best[u]``, the
    most value (``-cost``) jobs so far get from at most ``u[k]`` GPUs of each kind k,
    one job at a time (a multiple-choice knapsack with one dimension per kind); then
    back from the full pool, each job's shape is the one its table says reaches that
    value. Exact: the optimum HiGHS approaches within its gap, in ~1/10 of its time on
    Sia's pool, where HiGHS spends most of a decision proving near-ties apart. Among
    equal optima it prefers leaving a job out, then the lower column. None when the
    tables would be too large (see ``EXACT_WORK``)."""
    jobs = cost.shape[0]
    kinds = sorted({c.kind for c in configs})
    axis_of = {kind: k for k, kind in enumerate(kinds)}
    caps = np.array([int(capacity.get(kind, 0)) for kind in kinds])
    kind_of = np.array([axis_of[c.kind] for c in configs], dtype=int)
    gpus_of = np.array([c.gpus for c in configs], dtype=int)
    out: dict[int, int] = {}
    for j, c in fixed:  # kept as they are: their GPUs are not the others'
        caps[kind_of[c]] -= gpus_of[c]
        out[int(j)] = int(c)
    if (caps < 0).any():  # fixed jobs overfill a kind (as _choose_usable: keep them)
        return {int(j): int(c) for j, c in fixed}
    value = np.where(usable & (gpus_of <= caps[kind_of])[None, :], -cost, 0.0)
    # Only shapes worth more than none can be in an optimum that prefers none on ties.
    worth = value > 0
    worth[list(out)] = False
    order = [j for j in range(jobs) if worth[j].any()]
    shape = tuple(int(c) + 1 for c in caps)
    states = float(np.prod(shape))
    if states * float(worth.sum()) > EXACT_WORK or states * len(order) > EXACT_CELLS:
        return None
    ndim = len(kinds)

    def shifted(k: int, g: int, start: bool) -> tuple[slice, ...]:
        index = [slice(None)] * ndim
        index[k] = slice(g, None) if start else slice(0, -g)
        return tuple(index)

    # tables[i]: best value of the jobs order[:i] for each GPU budget (the last job needs
    # no table: only the full pool is asked of it).
    tables = [np.zeros(shape)]
    for j in order[:-1]:
        before = tables[-1]
        best = before.copy()
        for col in np.flatnonzero(worth[j]):
            k, g = int(kind_of[col]), int(gpus_of[col])
            target = best[shifted(k, g, True)]
            np.maximum(target, before[shifted(k, g, False)] + value[j, col], out=target)
        tables.append(best)
    left = caps.copy()
    for i in range(len(order) - 1, -1, -1):
        j, before = order[i], tables[i]
        # The same sums as the forward pass, so the best is found again exactly.
        chosen, most = -1, before[tuple(left)]
        for col in np.flatnonzero(worth[j] & (gpus_of <= left[kind_of])):
            rest = left.copy()
            rest[kind_of[col]] -= gpus_of[col]
            total = before[tuple(rest)] + value[j, col]
            if total > most:
                chosen, most = int(col), total
        if chosen >= 0:
            out[j] = chosen
            left[kind_of[chosen]] -= gpus_of[chosen]
    return dict(sorted(out.items()))  # by job row, as HiGHS's answer (placement order)


def _choose_usable(cost: np.ndarray, usable: np.ndarray, configs: Sequence[Config],
                   capacity: Mapping[str, int], fixed: Sequence[tuple[int, int]],
                   gap: float) -> dict[int, int]:
    """``sia.choose``'s ILP with a variable only for each usable (job, shape) pair (and
    each fixed one): with every GPU count offered most pairs are unusable, and leaving
    them out keeps an event's ILP as small as Sia's. Returns {job row: config column}."""
    jobs = cost.shape[0]
    rows, cols = np.nonzero(usable)
    pinned = {(int(j), int(c)) for j, c in fixed}
    extra = [(j, c) for j, c in pinned if not usable[j, c]]
    if extra:
        rows = np.concatenate([rows, [j for j, _ in extra]]).astype(int)
        cols = np.concatenate([cols, [c for _, c in extra]]).astype(int)
    n = len(rows)
    if n == 0:
        return {}
    kinds = sorted({c.kind for c in configs})
    kind_row = {kind: jobs + k for k, kind in enumerate(kinds)}
    lower = np.zeros(n)
    if pinned:
        index = {(int(j), int(c)): i for i, (j, c) in enumerate(zip(rows, cols, strict=True))}
        lower[[index[pair] for pair in pinned]] = 1.0
    gpus = np.array([float(c.gpus) for c in configs])[cols]
    which = np.array([kind_row[c.kind] for c in configs])[cols]
    variables = np.arange(n)
    matrix = csr_matrix((np.concatenate([np.ones(n), gpus]),
                         (np.concatenate([rows, which]), np.concatenate([variables, variables]))),
                        shape=(jobs + len(kinds), n))
    limits = np.array([1.0] * jobs + [float(capacity.get(kind, 0)) for kind in kinds])
    result = milp(cost[rows, cols], integrality=np.ones(n), bounds=Bounds(lower, np.ones(n)),
                  constraints=LinearConstraint(matrix, np.zeros(jobs + len(kinds)), limits),
                  options={"mip_rel_gap": gap, "disp": False})
    if result.x is None:  # infeasible only if fixed jobs overfill a kind: keep them
        return {int(j): int(c) for j, c in fixed}
    x = np.round(result.x)
    return {int(rows[i]): int(cols[i]) for i in np.flatnonzero(x > 0.5)}
