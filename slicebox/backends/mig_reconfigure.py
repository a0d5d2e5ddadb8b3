"""Carrying out a MIG re-layout on this machine's cards, through NVML.

Only with an explicit ``allow`` (``--allow-mig-reconfigure`` on the CLI), and only on
cards where nothing runs: a card a Slicebox job holds is refused by name (card and job),
and so is a card where NVML sees a process on any of its MIG devices (someone else's
job). Before touching a card its layout is read back from NVML and must be what the plan
started from; otherwise the plan is stale and nothing is done to that card.

The NVML module is a parameter (``pynvml`` from nvidia-ml-py, or the test suite's fake)
as in :mod:`slicebox.pool.gpus`. GPU instances are found by id
(``nvmlDeviceGetGpuInstanceById`` over NVML's small id range) rather than with
``nvmlDeviceGetGpuInstances``, whose binding wants ctypes arrays: the same calls then
serve a fake and the real module, and a GPU instance left without a compute instance
(by an interrupted run) is still found.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slicebox.errors import SliceboxError
from slicebox.pool.kinds import get_kind
from slicebox.pool.mig_layout import CardChange, Placement, RelayoutPlan
from slicebox.pool.mig_steps import Action, MigStep, nvml_profiles, relayout_steps

MAX_GPU_INSTANCE_ID = 32  # NVML's GPU-instance ids are small (1..14 on A100/H100)
MAX_COMPUTE_INSTANCE_ID = 8  # compute-instance ids inside one GPU instance: 0..7


class MigReconfigureRefused(SliceboxError):
    """The re-layout was not started: not allowed, a card is busy, or the plan is stale."""


class MigReconfigureFailed(SliceboxError):
    """An NVML call failed part-way: the message says which card, which step, what is done."""


@dataclass(frozen=True)
class ExecutedStep:
    step: MigStep
    uuid: str | None = None  # the new MIG device's uuid, for a created compute instance


@dataclass(frozen=True)
class RelayoutResult:
    done: tuple[ExecutedStep, ...]

    @property
    def cards(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.step.card for e in self.done))


def refuse_unless_allowed(plan: RelayoutPlan, allow: bool) -> None:
    if plan.changes and not allow:
        raise MigReconfigureRefused(
            f"MIG re-layout not executed: it destroys and creates MIG instances on "
            f"{', '.join(plan.drain)}; pass --allow-mig-reconfigure to carry it out")


def refuse_busy_cards(plan: RelayoutPlan, running: Mapping[tuple[str, int], Sequence[str]]
                      ) -> None:
    """Refuse when a job holds any card the plan changes (``running``: (node, device) -> job
    ids now, which may be newer than what the plan was made from)."""
    for change in plan.changes:
        card = change.card
        jobs = tuple(running.get((card.node, card.device), ())) or card.running
        if jobs:
            raise MigReconfigureRefused(
                f"MIG re-layout refused: card {card.name} runs job {jobs[0]}"
                + (f" (and {len(jobs) - 1} more)" if len(jobs) > 1 else "")
                + "; re-layout only touches cards with nothing running")


def execute_relayout(plan: RelayoutPlan, nvml: Any, *, allow: bool, node: str,
                     running: Mapping[tuple[str, int], Sequence[str]] | None = None,
                     on_step: Callable[[ExecutedStep], None] | None = None) -> RelayoutResult:
    """Carry out ``plan`` on the cards of ``node`` (this machine) through ``nvml``.

    Every check runs for every card before the first change. A card of another node is
    refused: its NVML is not this process's to call.
    """
    refuse_unless_allowed(plan, allow)
    refuse_busy_cards(plan, running or {})
    others = [c.card.name for c in plan.changes if c.card.node != node]
    if others:
        raise MigReconfigureRefused(
            f"MIG re-layout refused: {', '.join(others)} are not on this machine ({node}); "
            "run it on each card's own node")
    try:
        nvml.nvmlInit()
    except (nvml.NVMLError, OSError) as exc:
        raise MigReconfigureRefused(f"MIG re-layout: NVML did not start ({exc})") from None
    try:
        runner = _Runner(nvml)
        cards = [(change, runner.read_card(change)) for change in plan.changes]
        steps = relayout_steps(plan)
        done: list[ExecutedStep] = []
        for change, found in cards:
            for step in (s for s in steps if (s.node, s.device) == (change.card.node,
                                                                      change.card.device)):
                try:
                    executed = runner.run(step, found)
                except nvml.NVMLError as exc:
                    raise MigReconfigureFailed(_failure(step, exc, done, steps)) from None
                done.append(executed)
                if on_step is not None:
                    on_step(executed)
        return RelayoutResult(tuple(done))
    finally:
        with contextlib.suppress(nvml.NVMLError):
            nvml.nvmlShutdown()


def _failure(step: MigStep, exc: Exception, done: Sequence[ExecutedStep],
             steps: Sequence[MigStep]) -> str:
    left = len(steps) - len(done)
    return (f"MIG re-layout stopped on {step.card} at '{step.action.value} {step.placement}' "
            f"(NVML: {exc}); {len(done)} of {len(steps)} steps done, {left} not done. "
            "The card is part-way: run the plan again (it starts from the layout NVML "
            "reports now)")


@dataclass
class _Card:
    handle: Any
    gpu_instances: dict[Placement, Any]  # placement -> GPU-instance handle
    profile_ids: dict[str, int]  # profile name -> the id NVML wants for it


class _Runner:
    def __init__(self, nvml: Any):
        self.nvml = nvml

    def read_card(self, change: CardChange) -> _Card:
        """The card's handle and GPU instances, after checking it may be changed."""
        nvml, card = self.nvml, change.card
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(card.device)
            mode = nvml.nvmlDeviceGetMigMode(handle)
        except nvml.NVMLError as exc:
            raise MigReconfigureRefused(f"{card.name}: NVML cannot reach it ({exc})") from None
        if mode[0] != nvml.NVML_DEVICE_MIG_ENABLE:
            raise MigReconfigureRefused(f"{card.name}: MIG mode is off; enabling it needs a "
                                        "GPU reset, which a re-layout does not do")
        kind = get_kind(card.kind)
        profile_ids: dict[str, int] = {}
        by_id: dict[int, str] = {}
        for profile in kind.mig_profiles:
            constant = getattr(nvml, nvml_profiles(profile)[0])
            with contextlib.suppress(nvml.NVMLError):  # a profile this card does not offer
                info = nvml.nvmlDeviceGetGpuInstanceProfileInfo(handle, constant)
                profile_ids[profile.name] = int(info.id)
                by_id[int(info.id)] = profile.name
        gpu_instances: dict[Placement, Any] = {}
        for gi_id in range(MAX_GPU_INSTANCE_ID + 1):
            try:
                gi = nvml.nvmlDeviceGetGpuInstanceById(handle, gi_id)
                info = nvml.nvmlGpuInstanceGetInfo(gi)
            except nvml.NVMLError:
                continue  # no instance with this id
            name = by_id.get(int(info.profileId), f"profile id {int(info.profileId)}")
            gpu_instances[Placement(name, int(info.placement.start))] = gi
        found = tuple(sorted(gpu_instances, key=lambda p: p.start))
        if set(found) != set(card.instances):
            raise MigReconfigureRefused(
                f"{card.name}: its MIG layout is now {' + '.join(map(str, found)) or 'empty'}, "
                f"not {' + '.join(map(str, card.instances)) or 'empty'} as planned; plan again")
        self.refuse_processes(card.name, handle)
        missing = [p.profile for p in change.create if p.profile not in profile_ids]
        if missing:
            raise MigReconfigureRefused(f"{card.name}: NVML does not offer {missing[0]} here")
        return _Card(handle, gpu_instances, profile_ids)

    def refuse_processes(self, name: str, handle: Any) -> None:
        """A process on any MIG device of the card (a job Slicebox does not know) refuses it."""
        nvml = self.nvml
        slots = 0
        with contextlib.suppress(nvml.NVMLError):
            slots = nvml.nvmlDeviceGetMaxMigDeviceCount(handle)
        for slot in range(slots):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except nvml.NVMLError:
                continue  # an empty slot
            try:
                procs = nvml.nvmlDeviceGetComputeRunningProcesses(mig)
            except nvml.NVMLError as exc:
                raise MigReconfigureRefused(f"{name}: cannot tell whether anything runs on "
                                            f"it ({exc}); not touching it") from None
            if procs:
                raise MigReconfigureRefused(
                    f"MIG re-layout refused: card {name} runs process {procs[0].pid} (not a "
                    "Slicebox job); re-layout only touches cards with nothing running")

    def run(self, step: MigStep, card: _Card) -> ExecutedStep:
        nvml = self.nvml
        if step.action is Action.DESTROY_COMPUTE:
            gi = card.gpu_instances[step.placement]
            for ci_id in range(MAX_COMPUTE_INSTANCE_ID):
                try:
                    ci = nvml.nvmlGpuInstanceGetComputeInstanceById(gi, ci_id)
                except nvml.NVMLError:
                    continue  # no compute instance with this id
                nvml.nvmlComputeInstanceDestroy(ci)
            return ExecutedStep(step)
        if step.action is Action.DESTROY_GPU:
            nvml.nvmlGpuInstanceDestroy(card.gpu_instances.pop(step.placement))
            return ExecutedStep(step)
        if step.action is Action.CREATE_GPU:
            placement = nvml.c_nvmlGpuInstancePlacement_t()
            placement.start = step.placement.start
            placement.size = step.size
            gi = nvml.nvmlDeviceCreateGpuInstanceWithPlacement(
                card.handle, card.profile_ids[step.placement.profile], placement)
            card.gpu_instances[step.placement] = gi
            return ExecutedStep(step)
        gi = card.gpu_instances[step.placement]
        info = nvml.nvmlGpuInstanceGetComputeInstanceProfileInfo(
            gi, getattr(nvml, step.compute_profile),
            nvml.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
        nvml.nvmlGpuInstanceCreateComputeInstance(gi, int(info.id))
        return ExecutedStep(step, self.new_uuid(card, step.placement))

    def new_uuid(self, card: _Card, placement: Placement) -> str | None:
        """The MIG device uuid of the instance just made (what CUDA_VISIBLE_DEVICES takes)."""
        nvml = self.nvml
        slots = 0
        with contextlib.suppress(nvml.NVMLError):
            slots = nvml.nvmlDeviceGetMaxMigDeviceCount(card.handle)
        for slot in range(slots):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(card.handle, slot)
                gi = nvml.nvmlDeviceGetGpuInstanceById(card.handle,
                                                       nvml.nvmlDeviceGetGpuInstanceId(mig))
                if int(nvml.nvmlGpuInstanceGetInfo(gi).placement.start) == placement.start:
                    uuid = nvml.nvmlDeviceGetUUID(mig)
                    return uuid.decode() if isinstance(uuid, bytes) else str(uuid)
            except nvml.NVMLError:
                continue
        return None


def load_nvml() -> Any | None:
    """The real ``pynvml`` module, or None (tests replace this to serve a fake)."""
    from slicebox.pool.gpus import load_nvml as load

    return load()
