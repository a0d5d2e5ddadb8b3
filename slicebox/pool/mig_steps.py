"""The NVML calls that carry out a MIG re-layout, in the order they must run.

Per card (each one drained first): every compute instance of a GPU instance that goes is
destroyed, then those GPU instances; then each new GPU instance is created at its planned
start, followed by one compute instance spanning it (what ``nvidia-smi mig -cgi ... -C``
makes, and what a job's ``MIG-…`` device is). Destroying
first frees the memory slices the new instances need; NVML refuses to destroy a GPU
instance that still has compute instances (``NVML_ERROR_IN_USE``).

The names are those of ``pynvml`` (nvidia-ml-py), which the executor calls
(:mod:`slicebox.backends.mig_reconfigure`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from slicebox.pool.kinds import MigProfile, get_kind
from slicebox.pool.mig_layout import Placement, RelayoutPlan

# GPU-instance profile constant per (compute slices, memory slices). A 1g instance with two
# memory slices (1g.20gb on an A100-80GB) is NVML's "1 slice, revision 2" profile.
GPU_INSTANCE_PROFILES: dict[tuple[int, int], str] = {
    (1, 1): "NVML_GPU_INSTANCE_PROFILE_1_SLICE",
    (1, 2): "NVML_GPU_INSTANCE_PROFILE_1_SLICE_REV2",
    (2, 2): "NVML_GPU_INSTANCE_PROFILE_2_SLICE",
    (3, 4): "NVML_GPU_INSTANCE_PROFILE_3_SLICE",
    (4, 4): "NVML_GPU_INSTANCE_PROFILE_4_SLICE",
    (7, 8): "NVML_GPU_INSTANCE_PROFILE_7_SLICE",
}
# The compute instance that spans a whole GPU instance of that many compute slices.
COMPUTE_INSTANCE_PROFILES: dict[int, str] = {
    1: "NVML_COMPUTE_INSTANCE_PROFILE_1_SLICE",
    2: "NVML_COMPUTE_INSTANCE_PROFILE_2_SLICE",
    3: "NVML_COMPUTE_INSTANCE_PROFILE_3_SLICE",
    4: "NVML_COMPUTE_INSTANCE_PROFILE_4_SLICE",
    7: "NVML_COMPUTE_INSTANCE_PROFILE_7_SLICE",
}
ENGINE_PROFILE = "NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED"


class Action(StrEnum):
    DESTROY_COMPUTE = "destroy compute instances"
    DESTROY_GPU = "destroy GPU instance"
    CREATE_GPU = "create GPU instance"
    CREATE_COMPUTE = "create compute instance"


# What each action calls, in order (lookups first).
NVML_CALLS: dict[Action, tuple[str, ...]] = {
    Action.DESTROY_COMPUTE: ("nvmlDeviceGetGpuInstanceById",
                             "nvmlGpuInstanceGetComputeInstanceById",
                             "nvmlComputeInstanceDestroy"),
    Action.DESTROY_GPU: ("nvmlGpuInstanceDestroy",),
    Action.CREATE_GPU: ("nvmlDeviceGetGpuInstanceProfileInfo",
                        "nvmlDeviceCreateGpuInstanceWithPlacement"),
    Action.CREATE_COMPUTE: ("nvmlGpuInstanceGetComputeInstanceProfileInfo",
                            "nvmlGpuInstanceCreateComputeInstance"),
}


@dataclass(frozen=True)
class MigStep:
    action: Action
    node: str
    device: int
    placement: Placement
    size: int  # memory slices (the placement's ``size`` NVML wants)
    gpu_profile: str  # NVML_GPU_INSTANCE_PROFILE_* constant name
    compute_profile: str  # NVML_COMPUTE_INSTANCE_PROFILE_* constant name

    @property
    def card(self) -> str:
        return f"{self.node}/gpu{self.device}"

    @property
    def nvml_calls(self) -> tuple[str, ...]:
        return NVML_CALLS[self.action]

    def describe(self) -> str:
        """One line: the card, what happens, and the NVML call that does it."""
        if self.action is Action.CREATE_GPU:
            profile = self.gpu_profile.removeprefix("NVML_")
            how = (f"nvmlDeviceCreateGpuInstanceWithPlacement({profile}, "
                   f"start {self.placement.start}, size {self.size})")
        elif self.action is Action.CREATE_COMPUTE:
            how = (f"nvmlGpuInstanceCreateComputeInstance("
                   f"{self.compute_profile.removeprefix('NVML_')})")
        else:
            how = self.nvml_calls[-1]
        return f"{self.card} {self.action.value} {self.placement}: {how}"


def nvml_profiles(profile: MigProfile) -> tuple[str, str]:
    """(GPU-instance profile constant, compute-instance profile constant) names."""
    try:
        return (GPU_INSTANCE_PROFILES[(profile.compute, profile.size)],
                COMPUTE_INSTANCE_PROFILES[profile.compute])
    except KeyError:
        raise ValueError(f"MIG profile {profile.name} has no NVML profile constant "
                         "known to Slicebox") from None


def relayout_steps(plan: RelayoutPlan) -> tuple[MigStep, ...]:
    """Every NVML step of ``plan``, card by card, in the order they must run."""
    steps: list[MigStep] = []
    for change in plan.changes:
        card, kind = change.card, get_kind(change.card.kind)
        # All removals first (compute instances before their GPU instance); then each new
        # GPU instance with its compute instance right after it.
        phases: tuple[tuple[tuple[Action, ...], tuple[Placement, ...]], ...] = (
            ((Action.DESTROY_COMPUTE,), change.destroy),
            ((Action.DESTROY_GPU,), change.destroy),
            ((Action.CREATE_GPU, Action.CREATE_COMPUTE), change.create))
        for actions, placements in phases:
            for placement in placements:
                profile = kind.mig_profile(placement.profile)
                gpu, compute = nvml_profiles(profile)
                steps += [MigStep(action, card.node, card.device, placement, profile.size,
                                  gpu, compute) for action in actions]
    return tuple(steps)
