"""A simulated job: its demand, how much work it is, and which speed model runs it.

Frozen: a job's progress lives in the engine, so the same ``SimJob`` can be run by
several simulations (every policy of a benchmark) side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from slicebox.spec.demand import DatasetRef, Demand


class Family(StrEnum):
    DURATION = "duration"
    GAVEL = "gavel"
    SIA = "sia"


@dataclass(frozen=True, slots=True)
class SimJob:
    """One job as the simulator runs it (frozen: its progress lives in the engine)."""

    id: str
    arrival: float
    demand: Demand
    family: Family
    workload: str  # the profile key policies see (Gavel job type, 'cifar10@2048', 'philly')
    work: float  # total work, in the family's unit
    model: str  # the speed model's own name (Gavel job type, Sia application, trace name)
    batch_size: int | None = None
    startup_seconds: float = 0.0  # charged on every start (Sia's rescale_time on first start)
    restart_seconds: float = 0.0  # charged when a job restarts after a preemption or resize
    dataset: DatasetRef | None = None
    priority: int = 0
    weight: float = 1.0
    group: str | None = None
    cpu_model: str | None = None  # Synergy configuration whose CPU/memory sensitivity applies
    duration: float | None = None  # the trace's own run time, where it gives one
    # Elastic (Sia family): the GPU count is the policy's to choose between demand.gpus
    # and demand.max_gpus, the batch size follows it (best goodput), and ``work`` is
    # useful samples (Sia's progress: processed samples x statistical efficiency).
    elastic: bool = False
    epoch_samples: float = 0.0  # useful samples per epoch (efficiency changes by epoch)
