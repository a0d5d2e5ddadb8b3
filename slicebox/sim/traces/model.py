"""The typed records every trace reader returns, and the error bad input raises.

One `TraceJob` type serves every trace so that the simulator, the policies and the
synthetic generator never branch on where a job came from; a field the trace does not
give is `None` (never a made-up default), so a consumer can tell "unknown" from "zero".
"""

from __future__ import annotations

import dataclasses
import os

from slicebox import untrusted
from slicebox.errors import InputError


@dataclasses.dataclass(frozen=True, slots=True)
class TraceJob:
    """One job (or pod) of a trace, in the units the simulator uses.

    Attributes:
        id: unique within its trace (the trace's own name where it has one).
        arrival: seconds since the start of the trace (>= 0).
        num_gpus: whole GPUs asked for; 1 for a job that asks for a fraction of one.
        gpu_fraction: share of one GPU in (0, 1) when the job asks for less than a
            whole one (Alibaba `gpu_milli` < 1000); None for whole-GPU jobs.
        cpus: CPU cores asked for; None where the trace does not say.
        memory_gib: host memory asked for, GiB; None where the trace does not say.
        duration: seconds the job ran on the GPUs the trace gave it (Philly, Alibaba);
            None where the length follows from `total_work` and a speed model.
        workload: the job class a speed model is keyed by: a Gavel job type
            ('ResNet-50 (batch size 64)'), a Sia application ('cifar10'), or the
            trace's name where it has no classes ('philly', 'alibaba').
        total_work: work to finish, in the unit of the workload's speed model
            (Gavel: steps); None where `duration` is given instead.
        batch_size: global batch size where the trace gives one.
        priority_weight: relative weight for weighted-fairness policies (1 = normal).
        gpu_spec: GPU kinds the job may run on; None means any.
        group: the tenant the job belongs to where the trace has one (Philly virtual
            cluster, Alibaba QoS class), for per-tenant fairness.
        slo: deadline in seconds after arrival where the trace gives one (Gavel).
    """

    id: str
    arrival: float
    num_gpus: int
    workload: str
    gpu_fraction: float | None = None
    cpus: float | None = None
    memory_gib: float | None = None
    duration: float | None = None
    total_work: float | None = None
    batch_size: int | None = None
    priority_weight: float = 1.0
    gpu_spec: tuple[str, ...] | None = None
    group: str | None = None
    slo: float | None = None

    @property
    def gpu_demand(self) -> float:
        """GPUs asked for, counting a fractional request as its fraction."""
        if self.gpu_fraction is not None:
            return self.gpu_fraction
        return float(self.num_gpus)


@dataclasses.dataclass(frozen=True, slots=True)
class TraceNode:
    """One machine of a trace's node list (pool conversion happens in `pool`)."""

    name: str
    cpus: float
    memory_gib: float
    gpus: int
    # None for a CPU-only node: the trace leaves the model empty there.
    gpu_model: str | None


class TraceError(InputError):
    """Bad trace input, located to the file and line so the user can fix it.

    `line` is the file's physical line (1 = the header, where there is one); 0 means the
    file as a whole (it cannot be opened, is not a regular file, is too big), and then
    the message is `path: reason`. `column` names the field at fault where one is.
    """

    def __init__(
        self, path: str | os.PathLike[str], line: int, reason: str, column: str | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.reason = reason
        self.column = column
        # shown(): a path with a newline or control character stays one printable line.
        shown_path = untrusted.shown(self.path, 200)
        where = f"{shown_path}:{line}" if line > 0 else shown_path
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type[TraceError], tuple[str, int, str, str | None]]:
        # Exceptions with a custom __init__ need this to survive pickling (the
        # simulator may read traces in worker processes).
        return (type(self), (self.path, self.line, self.reason, self.column))


@dataclasses.dataclass(frozen=True, slots=True)
class TraceReadResult:
    """The jobs read from one file, and what was skipped on the way.

    `skipped` and `first_errors` stay 0 / empty unless the reader was asked to
    `skip_bad_lines`; `first_errors` keeps only the first few so a CLI can show
    examples without holding thousands of exceptions.
    """

    path: str
    jobs: list[TraceJob]
    skipped: int = 0
    first_errors: tuple[TraceError, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class NodeReadResult:
    """The nodes read from one node list, and what was skipped on the way."""

    path: str
    nodes: list[TraceNode]
    skipped: int = 0
    first_errors: tuple[TraceError, ...] = ()
