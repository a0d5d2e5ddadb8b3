"""MIG re-layout geometry: every plan is a valid layout per NVIDIA's placement rules, busy
cards are never touched, few cards change, and what cannot be served says why."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slicebox.pool.kinds import DeviceKind, MigProfile, get_kind
from slicebox.pool.mig_layout import (
    CardLayout,
    Placement,
    _layouts,
    layout_problem,
    plan_relayout,
)
from slicebox.pool.mig_steps import Action, relayout_steps

A100 = "A100-80GB"
FULL = (Placement("4g.40gb", 0), Placement("3g.40gb", 4))


def card(instances=FULL, *, device: int = 0, kind: str = A100, running=(), busy=()
         ) -> CardLayout:
    return CardLayout("a100", device, kind, tuple(instances), tuple(busy), tuple(running))


def p(text: str) -> Placement:
    profile, start = text.split("@")
    return Placement(profile, int(start))


# -- the rules -----------------------------------------------------------------------------

def test_valid_layouts_pass_the_rules() -> None:
    kind = get_kind(A100)
    assert layout_problem(kind, FULL) is None
    assert layout_problem(kind, [p(f"1g.10gb@{s}") for s in range(7)]) is None
    assert layout_problem(kind, [p("3g.40gb@0"), p("3g.40gb@4")]) is None
    assert layout_problem(kind, [p("2g.20gb@0"), p("2g.20gb@2"), p("2g.20gb@4"),
                                 p("1g.10gb@6")]) is None


def test_each_rule_broken_is_named() -> None:
    kind = get_kind(A100)
    assert "may start only at 0, 4" in layout_problem(kind, [p("3g.40gb@2")])
    assert "overlaps" in layout_problem(kind, [p("4g.40gb@0"), p("1g.10gb@3")])
    assert "does not exist" in layout_problem(kind, [p("1g.5gb@0")])  # a 40 GB profile
    assert "no MIG mode" in layout_problem(get_kind("L4"), [])
    # Compute slices: a made-up kind whose 2-compute profile needs one memory slice.
    odd = DeviceKind("odd", 80, {"fp32": 1}, mig_profiles=(
        MigProfile("2g.10gb", 2, 10, 1, tuple(range(8))), MigProfile("7g.80gb", 7, 80, 8, (0,))))
    problem = layout_problem(odd, [Placement("2g.10gb", s) for s in range(4)])
    assert problem is not None and "8 compute slices" in problem


# -- the must-show case --------------------------------------------------------------------

def test_seven_1g_on_a_full_3g_plus_4g_card_get_a_relayout() -> None:
    plan = plan_relayout([card()], {"1g.10gb": 7})
    (change,) = plan.changes
    assert change.target == tuple(p(f"1g.10gb@{s}") for s in range(7))
    assert layout_problem(get_kind(A100), change.target) is None
    assert set(change.destroy) == set(FULL) and len(change.create) == 7
    assert plan.drain == ("a100/gpu0",) and plan.complete
    assert (plan.served_before, plan.served_after) == (0, 7)
    steps = relayout_steps(plan)
    actions = [s.action for s in steps]
    # compute instances go before their GPU instances, all removals before any creation,
    # and each new GPU instance is followed by its compute instance
    assert actions == [Action.DESTROY_COMPUTE] * 2 + [Action.DESTROY_GPU] * 2 + \
        [Action.CREATE_GPU, Action.CREATE_COMPUTE] * 7
    creates = [s for s in steps if s.action is Action.CREATE_GPU]
    assert [(s.placement.start, s.size, s.gpu_profile) for s in creates] == \
        [(i, 1, "NVML_GPU_INSTANCE_PROFILE_1_SLICE") for i in range(7)]
    assert {s.compute_profile for s in steps if s.action is Action.CREATE_COMPUTE} == \
        {"NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE"}


# -- preferences ---------------------------------------------------------------------------

def test_a_card_with_a_running_job_is_never_touched_but_its_free_instances_count() -> None:
    busy = card(device=0, running=("train-1",), busy=(p("4g.40gb@0"),))
    idle = card([p("7g.80gb@0")], device=1)
    plan = plan_relayout([busy, idle], {"3g.40gb": 1, "1g.10gb": 3})
    assert [c.card.device for c in plan.changes] == [1]
    assert plan.complete  # the 3g.40gb is the busy card's unused one
    assert Counter(x.profile for x in plan.changes[0].target) == {"1g.10gb": 3}


def test_few_cards_change_and_a_changed_card_keeps_what_it_can() -> None:
    two = [card(device=0), card(device=1)]
    assert len(plan_relayout(two, {"1g.10gb": 7}).changes) == 1
    plan = plan_relayout(two, {"1g.10gb": 8})
    assert len(plan.changes) == 2 and plan.complete
    second = plan.changes[1]
    assert len(second.destroy) == 1 and len(second.create) == 1  # one instance moves
    keep = plan_relayout([card()], {"3g.40gb": 1, "1g.10gb": 1}).changes[0]
    assert keep.keep == (p("3g.40gb@4"),) and keep.destroy == (p("4g.40gb@0"),)


def test_nothing_changes_when_the_layout_already_serves_the_demand() -> None:
    plan = plan_relayout([card()], {"3g.40gb": 1, "4g.40gb": 1})
    assert plan.changes == () and plan.complete and plan.served_before == 2


def test_what_cannot_be_served_says_why() -> None:
    plan = plan_relayout([card()], {"1g.10gb": 8})
    (short,) = plan.shortfalls
    assert (short.profile, short.wanted, short.available) == ("1g.10gb", 8, 7)
    busy = card(running=("train-1",), busy=(p("4g.40gb@0"),))
    (short,) = plan_relayout([busy], {"1g.10gb": 1}).shortfalls
    assert "a100/gpu0 runs train-1" in str(short)
    (short,) = plan_relayout([card()], {"1g.5gb": 1}).shortfalls  # an A100-40GB profile
    assert "no MIG-enabled card of a kind with the 1g.5gb profile" in short.reason


def test_an_invalid_current_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="a100/gpu0.*overlaps"):
        plan_relayout([card([p("4g.40gb@0"), p("3g.40gb@0")])], {"1g.10gb": 1})


# -- properties ----------------------------------------------------------------------------

KINDS = ("A100-80GB", "A100-40GB", "H100")


def _all_placements(kind: str) -> tuple[Placement, ...]:
    return tuple(Placement(pr.name, s) for pr in get_kind(kind).mig_profiles for s in pr.starts)


@st.composite
def pools(draw):
    cards = []
    for device in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(KINDS))
        layout = draw(st.sampled_from(_layouts(kind, _all_placements(kind))))
        running = draw(st.booleans()) and bool(layout)
        busy = tuple(x for x in layout if running and draw(st.booleans()))
        cards.append(CardLayout("n", device, kind, layout, busy,
                                ("job",) if running else ()))
    names = sorted({pr.name for k in KINDS for pr in get_kind(k).mig_profiles})
    demand = draw(st.dictionaries(st.sampled_from(names), st.integers(0, 9), max_size=4))
    return cards, demand


def _served(cards, layouts, demand) -> int:
    supply: Counter[str] = Counter()
    for c in cards:
        supply.update(x.profile for x in layouts[c.device] if x not in c.busy)
    return sum(min(supply[k], n) for k, n in demand.items())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pools())
def test_every_plan_is_valid_and_never_worse(case) -> None:
    cards, demand = case
    plan = plan_relayout(cards, demand)
    layouts = {c.device: c.instances for c in cards}
    changed = [c.card.device for c in plan.changes]
    assert len(changed) == len(set(changed))
    for change in plan.changes:
        assert change.card.idle  # a card with a running job is never touched
        assert layout_problem(get_kind(change.card.kind), change.target) is None
        assert all(x.profile in demand for x in change.create)  # nothing unasked is made
        layouts[change.card.device] = change.target
    after = _served(cards, layouts, demand)
    assert after == plan.served_after >= plan.served_before
    assert plan.served_before == _served(cards, {c.device: c.instances for c in cards}, demand)
    assert plan.complete == (after == sum(demand.values()))
    for short in plan.shortfalls:
        assert short.available < short.wanted == demand[short.profile]
    # The steps, run in order on each card, never put two instances on one memory slice.
    for change in plan.changes:
        kind = get_kind(change.card.kind)
        live = set(change.card.instances)
        for step in relayout_steps(plan):
            if (step.node, step.device) != (change.card.node, change.card.device):
                continue
            if step.action is Action.DESTROY_GPU:
                live.remove(step.placement)
            elif step.action is Action.CREATE_GPU:
                live.add(step.placement)
                assert layout_problem(kind, live) is None
        assert live == set(change.target)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(KINDS).flatmap(lambda k: st.tuples(
    st.just(k), st.sampled_from(_layouts(k, _all_placements(k))),
    st.dictionaries(st.sampled_from([pr.name for pr in get_kind(k).mig_profiles]),
                    st.integers(0, 8), max_size=3))))
def test_one_idle_card_is_laid_out_as_well_as_any_layout_could(case) -> None:
    kind, layout, demand = case
    plan = plan_relayout([CardLayout("n", 0, kind, layout)], demand)
    best = max(sum(min(Counter(x.profile for x in target)[k], n) for k, n in demand.items())
               for target in _layouts(kind, _all_placements(kind)))
    assert plan.served_after == best


# -- wait reasons (what `ps` will say) -----------------------------------------------------

def test_wait_reasons_name_the_relayout_or_the_shortfall() -> None:
    from pathlib import Path

    from slicebox.pool.files import load_pool
    from slicebox.pool.mig_layout import relayout_wait_reasons

    pool = load_pool(Path(__file__).resolve().parents[2] / "examples/pools/a100-mig.yaml")
    waiting = {f"nb-{i}": "1g.10gb" for i in range(8)}
    reasons = relayout_wait_reasons(pool, (), waiting)
    assert all("waits for a MIG re-layout of a100/gpu0" in reasons[f"nb-{i}"]
               for i in range(7))
    assert "--allow-mig-reconfigure" in reasons["nb-0"]
    assert reasons["nb-7"].startswith("no MIG re-layout serves it: 1g.10gb: 8 wanted, 7")
    # Served as laid out already: nothing to say.
    assert relayout_wait_reasons(pool, (), {"ft": "3g.40gb"}) == {}
