"""MIG re-layout: the geometry per card that serves the MIG demand best, as pure functions.

A MIG-enabled card is carved into GPU instances, each a profile at a start. NVIDIA's
placement rules (the catalogue in :mod:`slicebox.pool.kinds` holds them per kind): a
profile may start only at its listed starts, it covers ``size`` consecutive memory slices
from there, instances never overlap, and their compute slices add up to at most 7.

When waiting jobs (and services) need instances the current layouts cannot give, the
layout of some cards has to change. :func:`plan_relayout` chooses which and how:

* a card that holds a running job is never touched (its instances, busy or not, stay),
  though its unused instances still count as supply;
* among idle cards, one card at a time is changed, always the change that serves the most
  still-unserved demand (jobs first, then compute slices), so few cards change; ties go
  to the change that destroys fewest instances, then creates fewest, then to the earliest
  card, so the plan is deterministic;
* a changed card keeps every instance the new layout does not need to move, and gets only
  instances of demanded profiles (free room is left free; a card with room and no
  instance of a wanted profile gets a change that only creates one: the live controller
  places jobs only on instances that exist).

The result is a :class:`RelayoutPlan`: the cards to change (each one must be drained:
nothing may start on it while it changes) with their target layout, and a
:class:`Shortfall` per profile the plan still cannot serve, saying why.
:mod:`slicebox.pool.mig_steps` turns it into NVML calls; executing them is
:mod:`slicebox.backends.mig_reconfigure`'s job.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from slicebox.pool.composition import Composition
from slicebox.pool.kinds import DeviceKind, MigProfile, get_kind
from slicebox.pool.model import MigInstance, Pool

MIG_COMPUTE_SLICES = 7  # compute slices of a MIG-capable card (A100, H100, H200)
RELAYOUT_UUID_PREFIX = "MIG-relayout:"  # an instance a re-layout will create


@dataclass(frozen=True, order=True)
class Placement:
    """One GPU instance: a profile at a start (memory slice)."""

    profile: str
    start: int

    def __str__(self) -> str:
        return f"{self.profile}@{self.start}"


@dataclass(frozen=True)
class CardLayout:
    """A MIG-enabled card as it is now: its instances and who holds what on it."""

    node: str
    device: int  # index of the device on its node (NVML's index when discovered)
    kind: str
    instances: tuple[Placement, ...]
    busy: tuple[Placement, ...] = ()  # instances running jobs hold
    running: tuple[str, ...] = ()  # ids of the jobs that hold anything on this card

    @property
    def name(self) -> str:
        return f"{self.node}/gpu{self.device}"

    @property
    def idle(self) -> bool:
        return not self.running


@dataclass(frozen=True)
class CardChange:
    """One card's move from its layout to ``target``. The card must be drained first."""

    card: CardLayout
    target: tuple[Placement, ...]

    @property
    def destroy(self) -> tuple[Placement, ...]:
        return tuple(p for p in self.card.instances if p not in self.target)

    @property
    def create(self) -> tuple[Placement, ...]:
        return tuple(p for p in self.target if p not in self.card.instances)

    @property
    def keep(self) -> tuple[Placement, ...]:
        return tuple(p for p in self.target if p in self.card.instances)

    def describe(self) -> str:
        def text(ps: Sequence[Placement]) -> str:
            return " + ".join(map(str, ps)) or "nothing"

        return (f"{self.card.name} ({self.card.kind}): {text(self.card.instances)} -> "
                f"{text(self.target)}")


@dataclass(frozen=True)
class Shortfall:
    """Demand for a profile the plan cannot serve, and why not."""

    profile: str
    wanted: int
    available: int  # instances free for this demand once the plan is carried out
    reason: str

    def __str__(self) -> str:
        return (f"{self.profile}: {self.wanted} wanted, {self.available} possible; "
                f"{self.reason}")


@dataclass(frozen=True)
class RelayoutPlan:
    demand: tuple[tuple[str, int], ...]  # (profile, instances wanted), sorted
    changes: tuple[CardChange, ...]
    served: tuple[tuple[str, int], ...]  # (profile, instances of the demand served after)
    served_before: int  # instances of the demand the layouts as they are already serve
    shortfalls: tuple[Shortfall, ...] = ()

    @property
    def drain(self) -> tuple[str, ...]:
        """The cards the plan changes: nothing may start on them until it is done."""
        return tuple(c.card.name for c in self.changes)

    @property
    def complete(self) -> bool:
        return not self.shortfalls

    @property
    def served_after(self) -> int:
        return sum(n for _, n in self.served)

    @property
    def creates_only(self) -> bool:
        """The plan destroys nothing: it only creates instances in free room."""
        return bool(self.changes) and not any(c.destroy for c in self.changes)

    @property
    def created(self) -> int:
        return sum(len(c.create) for c in self.changes)

    def describe(self) -> str:
        lines = [c.describe() for c in self.changes] or ["no card needs to change"]
        lines += [f"cannot serve {s}" for s in self.shortfalls]
        return "\n".join(lines)


# -- the placement rules -------------------------------------------------------------------

def _mask(profile: MigProfile, start: int) -> int:
    return ((1 << profile.size) - 1) << start


def memory_slices(kind: DeviceKind) -> int:
    """Memory slices of the card: the widest profile's size (8 on A100/H100/H200)."""
    return max(p.size for p in kind.mig_profiles)


def layout_problem(kind: DeviceKind, placements: Iterable[Placement]) -> str | None:
    """None when ``placements`` is a valid layout for ``kind`` by NVIDIA's rules, else why
    not (the first rule broken, naming the instance)."""
    if not kind.supports_mig:
        return f"{kind.name} has no MIG mode"
    width = memory_slices(kind)
    taken = compute = 0
    for placement in placements:
        try:
            profile = kind.mig_profile(placement.profile)
        except KeyError as exc:
            return str(exc.args[0])
        if placement.start not in profile.starts:
            return (f"{placement}: {profile.name} may start only at "
                    f"{', '.join(map(str, profile.starts))} on a {kind.name}")
        mask = _mask(profile, placement.start)
        if mask >> width:
            return f"{placement}: runs past the card's {width} memory slices"
        if taken & mask:
            return f"{placement}: overlaps another instance's memory slices"
        taken |= mask
        compute += profile.compute
    if compute > MIG_COMPUTE_SLICES:
        return f"the instances need {compute} compute slices; a {kind.name} has " \
               f"{MIG_COMPUTE_SLICES}"
    return None


@lru_cache(maxsize=4096)
def _layouts(kind_name: str, candidates: tuple[Placement, ...]
             ) -> tuple[tuple[Placement, ...], ...]:
    """Every valid layout made of ``candidates`` (subsets; the empty one included)."""
    kind = get_kind(kind_name)
    width = memory_slices(kind)
    options = []
    for c in candidates:
        p = kind.mig_profile(c.profile)
        if c.start in p.starts and not _mask(p, c.start) >> width:
            options.append((c, _mask(p, c.start), p.compute))
    found: list[tuple[Placement, ...]] = []

    def grow(i: int, chosen: list[Placement], taken: int, compute: int) -> None:
        if i == len(options):
            found.append(tuple(sorted(chosen, key=lambda c: c.start)))
            return
        grow(i + 1, chosen, taken, compute)
        placement, mask, need = options[i]
        if not taken & mask and compute + need <= MIG_COMPUTE_SLICES:
            chosen.append(placement)
            grow(i + 1, chosen, taken | mask, compute + need)
            chosen.pop()

    grow(0, [], 0, 0)
    return tuple(found)


@lru_cache(maxsize=4096)
def _counted_layouts(kind_name: str, candidates: tuple[Placement, ...]
                     ) -> tuple[tuple[tuple[Placement, ...], dict[str, int]], ...]:
    """``_layouts`` with each layout's instances counted per profile (read-only dicts)."""
    return tuple((layout, dict(Counter(p.profile for p in layout)))
                 for layout in _layouts(kind_name, candidates))


def _compute_of(profile: str) -> int:
    return int(profile.split("g.")[0])


# -- reading the pool ----------------------------------------------------------------------

def cards_of(pool: Pool, held: Iterable[Composition] = ()) -> tuple[CardLayout, ...]:
    """The MIG-enabled cards of ``pool`` with what the compositions in ``held`` (running
    jobs') take on them."""
    running: dict[tuple[str, int], set[str]] = {}
    busy: dict[tuple[str, int], set[Placement]] = {}
    for comp in held:
        for part in comp.parts:
            for s in part.slices:
                key = (s.node, s.device)
                running.setdefault(key, set()).add(comp.job_id)
                if s.mig_profile is not None and s.mig_start is not None:
                    busy.setdefault(key, set()).add(Placement(s.mig_profile, s.mig_start))
    cards = []
    for node in pool.nodes:
        for dev in node.devices:
            if not dev.mig_enabled:
                continue
            key = (node.name, dev.index)
            instances = tuple(sorted((Placement(m.profile, m.start) for m in dev.mig_instances),
                                     key=lambda p: p.start))
            cards.append(CardLayout(node.name, dev.index, dev.kind.name, instances,
                                    tuple(sorted(busy.get(key, ()), key=lambda p: p.start)),
                                    tuple(sorted(running.get(key, ())))))
    return tuple(cards)


def mig_demand(profiles: Iterable[str | None]) -> dict[str, int]:
    """Counts per profile of the MIG profiles given (None: not a MIG demand)."""
    return dict(Counter(p for p in profiles if p is not None))


# -- the search ----------------------------------------------------------------------------

def _served(supply: Mapping[str, int], demand: Mapping[str, int]) -> tuple[int, int]:
    """(jobs served, compute slices served): the demand ``supply`` covers."""
    jobs = compute = 0
    for profile, wanted in demand.items():
        got = min(supply.get(profile, 0), wanted)
        jobs += got
        compute += got * _compute_of(profile)
    return jobs, compute


def _free(layout: Iterable[Placement], busy: Iterable[Placement]) -> Counter[str]:
    taken = set(busy)
    return Counter(p.profile for p in layout if p not in taken)


def plan_relayout(cards: Sequence[CardLayout], demand: Mapping[str, int]) -> RelayoutPlan:
    """The layout changes that serve ``demand`` best (see the module's docstring).

    ``demand``: instances wanted per profile on top of those running jobs hold (waiting
    jobs' profiles plus services' replicas). Raises ValueError for a card whose current
    layout breaks the rules (a pool that says so is wrong, and planning on it would be too).
    """
    for card in cards:
        problem = layout_problem(get_kind(card.kind), card.instances)
        if problem is not None:
            raise ValueError(f"{card.name}: its current MIG layout is not valid: {problem}")
    wanted = {p: n for p, n in sorted(demand.items()) if n > 0}
    supply: Counter[str] = Counter()
    for card in cards:
        supply += _free(card.instances, card.busy)
    before = score = _served(supply, wanted)
    # Idle cards of one kind and layout score the same: weigh one of each (the earliest
    # not yet changed), so a round costs the number of shapes, not of cards.
    alike: dict[tuple[str, tuple[Placement, ...]], deque[int]] = {}
    for i, card in enumerate(cards):
        if card.idle:
            alike.setdefault((card.kind, card.instances), deque()).append(i)
    targets: dict[int, tuple[Placement, ...]] = {}
    while score[0] < sum(wanted.values()):
        heads = sorted(queue[0] for queue in alike.values() if queue)
        best = _best_change([cards[i] for i in heads], supply, wanted, score)
        if best is None:
            break
        pick, target, score = best
        i = heads[pick]
        alike[(cards[i].kind, cards[i].instances)].popleft()
        supply -= _free(cards[i].instances, ())
        supply += _free(target, ())
        targets[i] = target
    changes = tuple(CardChange(cards[i], targets[i]) for i in sorted(targets))
    served = tuple((p, min(supply.get(p, 0), n)) for p, n in wanted.items())
    return RelayoutPlan(tuple(wanted.items()), changes, served, before[0],
                        _shortfalls(cards, wanted, supply))


def _best_change(candidates: Sequence[CardLayout], supply: Counter[str],
                 wanted: Mapping[str, int], score: tuple[int, int]
                 ) -> tuple[int, tuple[Placement, ...], tuple[int, int]] | None:
    """(which of ``candidates``, its new layout, the score after) for the change that
    serves most, or None when no change serves more than ``score``."""
    best: tuple[tuple[int, int, int, int], int, tuple[Placement, ...], tuple[int, int]] | None
    best = None
    for i, card in enumerate(candidates):
        without = supply - _free(card.instances, ())
        base = _served(without, wanted)
        # What the card adds depends only on the demand the other cards leave, and a card
        # holds at most 8 instances of a profile: cap it, and the answer can be reused.
        left = tuple((p, min(max(n - without[p], 0), 8)) for p, n in wanted.items())
        target, gain, destroyed, created = _best_layout(card.kind, card.instances, left)
        after = (base[0] + gain[0], base[1] + gain[1])
        if after <= score:
            continue
        key = (after[0], after[1], -destroyed, -created)
        if best is None or key > best[0]:  # strictly: on a tie the earlier card stays
            best = (key, i, target, after)
    return None if best is None else (best[1], best[2], best[3])


@lru_cache(maxsize=65536)
def _best_layout(kind_name: str, instances: tuple[Placement, ...],
                 left: tuple[tuple[str, int], ...]
                 ) -> tuple[tuple[Placement, ...], tuple[int, int], int, int]:
    """The layout of a card (kind, ``instances`` now) that serves most of ``left`` (profile,
    instances still wanted): (layout, (jobs, compute) it serves, destroyed, created).
    Candidates are its own instances plus every placement of a profile still wanted."""
    kind = get_kind(kind_name)
    placements = set(instances)
    for profile in kind.mig_profiles:
        if any(profile.name == name and n > 0 for name, n in left):
            placements.update(Placement(profile.name, s) for s in profile.starts)
    best_key: tuple[int, int, int, int] | None = None
    best: tuple[tuple[Placement, ...], tuple[int, int], int, int] = (instances, (0, 0), 0, 0)
    for target, counts in _counted_layouts(kind_name, tuple(sorted(placements))):
        jobs = compute = 0
        for name, n in left:
            got = min(counts.get(name, 0), n)
            jobs += got
            compute += got * _compute_of(name)
        destroyed = sum(1 for p in instances if p not in target)
        created = len(target) - (len(instances) - destroyed)
        key = (jobs, compute, -destroyed, -created)
        if best_key is None or key > best_key:
            best_key, best = key, (target, (jobs, compute), destroyed, created)
    return best


def _shortfalls(cards: Sequence[CardLayout],
                wanted: Mapping[str, int], supply: Mapping[str, int]) -> tuple[Shortfall, ...]:
    out = []
    for profile, n in wanted.items():
        have = min(supply.get(profile, 0), n)
        if have >= n:
            continue
        able = [c for c in cards if any(p.name == profile for p in get_kind(c.kind).mig_profiles)]
        busy = [c for c in able if not c.idle]
        if not able:
            reason = (f"no MIG-enabled card of a kind with the {profile} profile "
                      "(MIG mode is switched on by an administrator: it needs a GPU reset, "
                      "which a re-layout does not do)")
        else:
            reason = (f"every idle MIG-enabled card with {profile} is already laid out for "
                      "the demand")
            if busy:
                shown = "; ".join(f"{c.name} runs {', '.join(c.running[:3])}"
                                  + (" …" if len(c.running) > 3 else "") for c in busy[:4])
                reason += (f"; {len(busy)} card(s) with running jobs are left as they are "
                           f"({shown}{'; …' if len(busy) > 4 else ''})")
        out.append(Shortfall(profile, n, have, reason))
    return tuple(out)


# -- the pool after a plan -----------------------------------------------------------------

def apply_plan(pool: Pool, plan: RelayoutPlan) -> Pool:
    """``pool`` with each changed card laid out as the plan says (kept instances keep
    their uuid; new ones get a ``MIG-relayout:`` placeholder), e.g. to place jobs on it."""
    targets = {(c.card.node, c.card.device): c for c in plan.changes}
    nodes = []
    for node in pool.nodes:
        devices = []
        for dev in node.devices:
            change = targets.get((node.name, dev.index))
            if change is None:
                devices.append(dev)
                continue
            old = {Placement(m.profile, m.start): m for m in dev.mig_instances}
            instances = tuple(
                old.get(p) or MigInstance(p.profile, p.start,
                                          f"{RELAYOUT_UUID_PREFIX}{node.name}/gpu{dev.index}/{p}")
                for p in change.target)
            devices.append(replace(dev, mig_instances=instances))
        nodes.append(replace(node, devices=tuple(devices)))
    return replace(pool, nodes=tuple(nodes))


# -- why a MIG job waits (the controller's ``ps`` reasons) ---------------------------------

SHOWN_CHANGES = 3  # cards a wait reason spells out (the rest are counted)


def relayout_summary(plan: RelayoutPlan, limit: int = SHOWN_CHANGES) -> str:
    """"cards (each card's change)" for a wait reason, at most ``limit`` cards spelt out,
    so a plan that changes a thousand cards does not make a reason of a thousand lines."""
    shown = plan.changes[:limit]
    rest = len(plan.changes) - len(shown)
    cards = ", ".join(c.card.name for c in shown) + (f" and {rest} more card(s)" if rest else "")
    return f"{cards} ({'; '.join(c.describe() for c in shown)}{'; …' if rest else ''})"


def relayout_wait_reasons(pool: Pool, held: Iterable[Composition],
                          waiting: Mapping[str, str]) -> dict[str, str]:
    """Why each waiting MIG job waits, in terms of a re-layout.

    ``held``: running jobs' compositions (their cards are left alone); ``waiting``: job id
    -> MIG profile, in queue order. A job the plan serves is told which cards would change
    (and that it takes ``--allow-mig-reconfigure``; a plan that only creates instances in
    free room says so); one it cannot serve gets the shortfall. Jobs the current layouts
    already serve get no entry.
    """
    plan = plan_relayout(cards_of(pool, tuple(held)), mig_demand(waiting.values()))
    served = dict(plan.served)
    short = {s.profile: s for s in plan.shortfalls}
    if not plan.changes and not short:
        return {}
    # One text for every job it serves (built once: a big plan changes many cards).
    if plan.creates_only:
        waits = (f"waits for {plan.created} MIG instance(s) to be created on "
                 f"{relayout_summary(plan)}: a re-layout that only creates; "
                 "`slicebox up --allow-mig-reconfigure` has the controller create them, or "
                 "`slicebox plan JOB --allow-mig-reconfigure` creates them now (then restart "
                 "`up` so it reads the cards)")
    else:
        waits = (f"waits for a MIG re-layout of {relayout_summary(plan)}; it is carried out "
                 "only with --allow-mig-reconfigure, on idle cards")
    reasons: dict[str, str] = {}
    seen: Counter[str] = Counter()
    for job_id, profile in waiting.items():
        seen[profile] += 1
        if seen[profile] <= served.get(profile, 0):
            if plan.changes:
                reasons[job_id] = waits
        elif profile in short:
            reasons[job_id] = f"no MIG re-layout serves it: {short[profile]}"
    return reasons
