"""MIG re-layout in the live controller: why MIG jobs wait, and (when allowed) the re-layout.

A waiting job whose placement ``NoFit`` is about MIG (field ``mig``, not ``never``: the
pool has cards of a kind with its profile, but no unused instance of it) may wait only
because the cards are laid out for yesterday's jobs, or because the instance it needs is
not created yet: the live controller places MIG jobs only on instances that exist (its
placer has ``mig_free_room`` off; a job placed in free room would launch on a placeholder
uuid no device has), so free room is used through a re-layout that only creates. Each
round that has such jobs, :meth:`MigRelayouts.wait_reasons` works out the re-layout that
would serve them (:func:`slicebox.pool.mig_layout.relayout_wait_reasons`, on the cards
running jobs leave alone) and that becomes their wait reason, which ``ps`` and the API
show. It is memoised on
what it depends on (the pool, the MIG slices running jobs hold, the waiting jobs and their
profiles): a round in which none of that changed only builds and compares that key (one
pass over the waiting jobs and the active ones' compositions), and a round with no MIG job
waiting costs one pass over placement's waiting ``NoFit``\\ s.

With ``slicebox up --allow-mig-reconfigure`` (:meth:`MigRelayouts.allow`), the controller
also carries the re-layout out (:meth:`MigRelayouts.carry_out`), between two placements of
the same round: the plan is made from the cards nothing runs or starts on *after* that
round's starts were allocated, and nothing else starts before it is carried out, so a card
that is planned to change is drained by construction. :mod:`slicebox.backends.mig_reconfigure`
makes the NVML calls (the NVML module is injected; it refuses a card where NVML sees a
process, or whose layout is not the one planned). The changed cards' instances are then read
back from NVML, the controller places on the new pool (``use_pool``: the placer and the
kept ``PoolState`` are rebuilt, as when a live pool changes), the jobs it served get a
``mig-relayout`` event, the controller log and ``up`` say what was done, and the waiting
jobs start in that same round. A refused or failed re-layout is logged, shown in the
waiting jobs' reasons, and tried again after ``RETRY_SECONDS``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from slicebox.pool.composition import Composition, NoFit
from slicebox.pool.model import MigInstance, Pool

from .actions import CONTROLLER_FATAL, RoundReport
from .views import WAITING

if TYPE_CHECKING:
    from slicebox.placement.state import PoolState
    from slicebox.pool.mig_layout import RelayoutPlan
    from slicebox.store import JobRecord, Store

RETRY_SECONDS = 60.0  # after a refused or failed re-layout, before the same plan is tried
EVENT_KIND = "mig-relayout"
log = logging.getLogger("slicebox.controller")

Card = tuple[str, int]  # (node, device index)
NvmlSource = Callable[[], Any]  # returns the NVML module (pynvml or a fake), or None


@dataclass(frozen=True)
class _Pending:
    """A re-layout this round found, waiting to be carried out (only when allowed)."""

    plan: RelayoutPlan
    served: tuple[str, ...]  # the waiting jobs it serves, in queue order
    running: dict[Card, tuple[str, ...]]  # MIG cards -> the jobs holding them now


class MigRelayouts:
    """The controller's MIG re-layout: wait reasons always, execution once ``allow``\\ ed.

    ``use_pool``: the controller's way to place on a new pool (rebuilds its placer and kept
    state, and decides again)."""

    def __init__(self, store: Store, clock: Callable[[], float],
                 use_pool: Callable[[Pool], None]) -> None:
        self.store, self._clock, self._use_pool = store, clock, use_pool
        self._nvml: NvmlSource | None = None  # set: re-layouts are carried out
        self._node: str | None = None  # the node whose cards this process's NVML reaches
        self._pool: Pool | None = None  # the pool _mig_cards was computed for
        self._mig_cards: frozenset[Card] = frozenset()
        self._key: tuple[object, ...] | None = None
        self._memo: tuple[dict[str, str], _Pending | None] = ({}, None)
        self._pending: _Pending | None = None
        self._failure: str | None = None
        self._retry_at = 0.0

    # ---- set-up -------------------------------------------------------------------------

    def allow(self, node: str, nvml: NvmlSource) -> None:
        """Carry re-layouts out on ``node``'s cards (this machine's) through ``nvml()``."""
        self._node, self._nvml = node, nvml
        self._key = None
        log.info("MIG re-layout allowed on %s's idle cards", node)

    @property
    def allowed(self) -> bool:
        return self._nvml is not None

    # ---- each round: why MIG jobs wait ----------------------------------------------------

    def wait_reasons(self, pool: Pool, waiting: Mapping[str, NoFit],
                     jobs: Mapping[str, JobRecord], state: PoolState) -> dict[str, str]:
        """Reasons for the waiting jobs whose ``NoFit`` is about MIG, in terms of a
        re-layout (no entry: placement's reason stands). ``jobs`` is in queue order;
        ``state`` holds what active jobs hold, this round's starts included."""
        if not any(why.field == "mig" and not why.never for why in waiting.values()):
            self._pending = None
            return {}
        mig = {job_id: profile for job_id, job in jobs.items()
               if (why := waiting.get(job_id)) is not None and why.field == "mig"
               and not why.never and (profile := job.spec.resources.mig) is not None}
        if not mig:
            self._pending = None
            return {}
        if pool is not self._pool:
            self._pool = pool
            self._mig_cards = frozenset((n.name, d.index) for n in pool.nodes
                                        for d in n.devices if d.mig_enabled)
        held = [c for c in state.compositions().values() if self._on_mig_card(c)]
        key = (pool, _held_key(held), tuple(mig.items()), self.allowed, self._failure)
        if key != self._key:
            self._key, self._memo = key, self._compute(pool, held, mig)
        reasons, self._pending = self._memo
        return reasons

    def _on_mig_card(self, comp: Composition) -> bool:
        return any((s.node, s.device) in self._mig_cards for p in comp.parts for s in p.slices)

    def _compute(self, pool: Pool, held: list[Composition], mig: dict[str, str]
                 ) -> tuple[dict[str, str], _Pending | None]:
        from slicebox.pool.mig_layout import (
            cards_of,
            mig_demand,
            plan_relayout,
            relayout_wait_reasons,
        )

        try:
            reasons = relayout_wait_reasons(pool, held, mig)
            if not self.allowed:
                return reasons, None
            # Only this machine's cards: NVML here reaches no other node's.
            cards = tuple(c for c in cards_of(pool, held) if c.node == self._node)
            plan = plan_relayout(cards, mig_demand(mig.values()))
        except ValueError as exc:  # a card whose layout (as the pool says) breaks the rules
            log.warning("MIG re-layout not planned: %s", exc)
            return {}, None
        if not plan.changes:
            return reasons, None
        served = _served_jobs(plan, mig)
        reasons.update(dict.fromkeys(served, _allowed_reason(plan, self._failure)))
        return reasons, _Pending(plan, served, _running(held))

    # ---- with --allow-mig-reconfigure: carry it out ----------------------------------------

    def carry_out(self, pool: Pool, report: RoundReport) -> bool:
        """Carry out the re-layout this round found, if allowed and due. True when the pool
        changed (the controller then places again, on the new pool)."""
        pending, now = self._pending, self._clock()
        if pending is None or self._nvml is None or self._node is None or now < self._retry_at:
            return False
        from slicebox.backends.mig_reconfigure import (
            MigReconfigureFailed,
            MigReconfigureRefused,
            execute_relayout,
        )

        if any(self.store.job(j).state not in WAITING for j in pending.served):
            # Found in a round that placed nothing since (a job was cancelled or started
            # meanwhile): plan again in the next round that places.
            self._pending, self._key = None, None
            return False
        plan = pending.plan
        cards = ", ".join(plan.drain)
        nvml = self._nvml()
        if nvml is None:
            self._failed(pending, "NVML is not installed here (pip install nvidia-ml-py)", now)
            return False
        try:
            result = execute_relayout(plan, nvml, allow=True, node=self._node,
                                      running=pending.running)
        except MigReconfigureRefused as exc:
            self._failed(pending, str(exc), now)
            return False
        except MigReconfigureFailed as exc:  # part-way: the cards are as NVML says now
            self._failed(pending, str(exc), now)
            self._use_pool(relaid_pool(pool, plan, nvml, self._node, None))
            return True
        except CONTROLLER_FATAL:
            raise
        except Exception as exc:  # noqa: BLE001 - NVML trouble must not stop the loop
            log.exception("MIG re-layout of %s failed", cards)
            self._failed(pending, f"{type(exc).__name__}: {exc}", now)
            return False
        uuids = {(e.step.node, e.step.device, e.step.placement.profile,
                  e.step.placement.start): e.uuid for e in result.done if e.uuid}
        self._use_pool(relaid_pool(pool, plan, nvml, self._node, uuids))
        self._pending, self._failure, self._key = None, None, None
        for change in plan.changes:
            line = (f"MIG re-layout done: {change.describe()} "
                    f"({sum(1 for e in result.done if e.step.card == change.card.name)} "
                    f"NVML steps) for {len(pending.served)} waiting MIG job(s)")
            log.warning("%s", line)
            report.pool_changes.append(line)
        what = "; ".join(c.describe() for c in plan.changes)
        for job_id in pending.served:
            self.store.note(job_id, EVENT_KIND, f"MIG re-layout carried out for it: {what}",
                            cards=cards, steps=len(result.done))
        return True

    def _failed(self, pending: _Pending, why: str, now: float) -> None:
        log.warning("MIG re-layout of %s not done: %s (tried again within %g s)",
                    ", ".join(pending.plan.drain), why, RETRY_SECONDS)
        self._failure, self._retry_at, self._key = why, now + RETRY_SECONDS, None
        self._pending = None
        self.store.set_reasons(dict.fromkeys(pending.served, _allowed_reason(pending.plan, why)))


# ---- helpers ------------------------------------------------------------------------------

def local_nvml() -> Any | None:
    """This machine's NVML module (``pynvml``), or None when nvidia-ml-py is missing. Looked
    up through :mod:`slicebox.backends.mig_reconfigure` at each call, where tests put a fake."""
    from slicebox.backends import mig_reconfigure

    return mig_reconfigure.load_nvml()


def _allowed_reason(plan: RelayoutPlan, failure: str | None) -> str:
    """Why a job the plan serves waits, when the controller may carry the plan out."""
    from slicebox.pool.mig_layout import relayout_summary

    if plan.creates_only:
        head = f"waits for {plan.created} MIG instance(s) to be created on {relayout_summary(plan)}"
    else:
        head = f"waits for a MIG re-layout of {relayout_summary(plan)}"
    if failure is None:
        return f"{head}, which the controller carries out (--allow-mig-reconfigure)"
    return f"{head}; the last try failed: {failure}; tried again within {RETRY_SECONDS:g} s"


def _held_key(held: Iterable[Composition]) -> frozenset[tuple[object, ...]]:
    """What of ``held`` a re-layout depends on: each job's slices on MIG-enabled cards."""
    return frozenset((c.job_id, s.node, s.device, s.mig_profile, s.mig_start)
                     for c in held for p in c.parts for s in p.slices)


def _running(held: Iterable[Composition]) -> dict[Card, tuple[str, ...]]:
    out: dict[Card, list[str]] = {}
    for comp in held:
        for part in comp.parts:
            for s in part.slices:
                out.setdefault((s.node, s.device), []).append(comp.job_id)
    return {card: tuple(dict.fromkeys(ids)) for card, ids in out.items()}


def _served_jobs(plan: RelayoutPlan, mig: Mapping[str, str]) -> tuple[str, ...]:
    """The waiting jobs (queue order) the plan's instances serve: per profile, as many of
    the first jobs as it serves."""
    served = dict(plan.served)
    seen: Counter[str] = Counter()
    out = []
    for job_id, profile in mig.items():
        seen[profile] += 1
        if seen[profile] <= served.get(profile, 0):
            out.append(job_id)
    return tuple(out)


def relaid_pool(pool: Pool, plan: RelayoutPlan, nvml: Any, node: str,
                uuids: Mapping[tuple[str, int, str, int], str] | None) -> Pool:
    """``pool`` with the instances of the cards ``plan`` changed on ``node`` as NVML reports
    them now (discovery through the same NVML module). A card discovery does not find (or
    finds as another kind) gets the plan's layout with the uuids the executed steps
    returned (``uuids``: (node, device, profile, start) -> uuid), or, after a failure
    (``uuids`` None), stays as it was."""
    from slicebox.pool.gpus import discover_gpus
    from slicebox.pool.mig_layout import apply_plan

    changed = {c.card.device for c in plan.changes if c.card.node == node}
    if not changed:
        return pool
    try:
        found = {d.index: d for d in discover_gpus(nvml).devices}
    except Exception:  # noqa: BLE001 - an NVML error here must not stop the controller
        log.exception("reading the MIG cards back after a re-layout failed")
        found = {}
    planned = apply_plan(pool, plan)
    nodes = []
    for n, after in zip(pool.nodes, planned.nodes, strict=True):
        if n.name != node:
            nodes.append(n)
            continue
        devices = []
        for dev, dev_after in zip(n.devices, after.devices, strict=True):
            seen = found.get(dev.index)
            if dev.index not in changed:
                devices.append(dev)
            elif seen is not None and seen.kind_name == dev.kind_name and seen.mig_enabled:
                devices.append(replace(dev, mig_instances=seen.mig_instances))
            elif uuids is None:  # failed part-way and not read back: nothing to go by
                devices.append(dev)
            else:
                devices.append(replace(dev_after, mig_instances=tuple(
                    MigInstance(m.profile, m.start,
                                uuids.get((n.name, dev.index, m.profile, m.start), m.uuid))
                    for m in dev_after.mig_instances)))
        nodes.append(replace(n, devices=tuple(devices)))
    return replace(pool, nodes=tuple(nodes))
