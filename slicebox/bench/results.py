"""What one benchmark run produces, and the MLPerf rule that combines several runs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

Precision = Literal["fp32", "bf16", "fp16", "sparse"]
PRECISIONS: Final[tuple[Precision, ...]] = ("fp32", "bf16", "fp16", "sparse")

# A run's status says whether its numbers are a measurement; whether the model reached
# its quality target is a separate field (an aborted MLPerf run is still a measurement
# of throughput).
STATUS_OK: Final = "ok"
STATUS_UNSUPPORTED: Final = "not supported here"
STATUS_FAILED: Final = "failed"
STATUS_SKIPPED: Final = "skipped"

# Marker of the summary line `python -m slicebox.bench.run` prints last, so a reader of
# the child's stdout can tell it from MLLOG/SLICEBOX lines and from stray prints.
RESULT_KIND: Final = "slicebox.bench.result"

# Cores' worth of other processes' CPU on a slice's cores above which a measurement is
# marked "shared": it understates what the slice does when it is the job's alone.
CONTENDED_CORES: Final = 0.25


def parse_precision(value: str) -> Precision:
    for precision in PRECISIONS:
        if value == precision:
            return precision
    raise ValueError(f"unknown precision {value!r}; valid: {', '.join(PRECISIONS)}")


@dataclass(frozen=True)
class RunResult:
    """One training (or serving) run of one workload, as `train(config)` returns it."""

    workload: str
    precision: str
    device: str
    status: str
    reason: str = ""
    seed: int = 0
    batch_size: int = 0
    threads: int = 0
    quality_metric: str = ""
    higher_is_better: bool = True
    quality_target: float | None = None
    quality: float | None = None
    reached_target: bool = False
    mlperf_status: str = ""  # MLPerf run_stop status: "success" or "aborted"
    time_to_quality_s: float | None = None  # run_start -> run_stop, success only
    run_time_s: float | None = None  # run_start -> run_stop, whatever the status
    samples_per_s: float | None = None  # training samples / time spent in training steps
    train_samples: int = 0  # samples processed during the run
    epochs: int = 0
    # 2:4 sparsity: the dense model's quality at the moment of pruning, and (only on a
    # GPU with semi-structured kernels) the measured forward speed-up of the sparse model.
    dense_quality: float | None = None
    sparse_speedup: float | None = None
    # Inference (MLPerf LoadGen scenarios).
    server_target_qps: float | None = None
    server_p99_latency_ms: float | None = None
    server_valid: bool | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["kind"] = RESULT_KIND
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class BenchResult:
    """One cell of the suite's table: a workload on a slice shape in a precision."""

    workload: str
    slice: str
    precision: str
    status: str  # "ok", "not supported here", "failed", "skipped"
    samples_per_s: float | None = None
    time_to_quality_s: float | None = None  # MLPerf rule over the runs when there are >= 3
    quality: float | None = None
    quality_target: float | None = None
    reached_target: bool = False
    reason: str = ""
    quality_metric: str = ""
    higher_is_better: bool = True
    device: str = "cpu"
    cores: int | None = None
    runs: int = 0
    server_target_qps: float | None = None
    server_p99_latency_ms: float | None = None
    dense_quality: float | None = None
    sparse_speedup: float | None = None
    note: str = ""
    wall_s: float = 0.0  # the whole child process, start-up included
    # Cores' worth of CPU other processes used on the slice's cores during the run
    # (slicebox.bench.cotenancy); None where it could not be measured.
    cotenant_cores: float | None = None
    # Where the cell's runs kept their output (stdout, MLLOG file, LoadGen logs), one
    # folder per seed; "" when nothing ran or the suite was not asked to keep output.
    log_dir: str = ""

    @property
    def contended(self) -> bool:
        """Measured while other processes used the slice's cores ("shared")."""
        return self.cotenant_cores is not None and self.cotenant_cores >= CONTENDED_CORES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def unsupported(workload: str, precision: str, device: str, reason: str) -> RunResult:
    return RunResult(
        workload=workload,
        precision=precision,
        device=device,
        status=STATUS_UNSUPPORTED,
        reason=reason,
    )


def mlperf_result(times: Sequence[float | None]) -> float:
    """MLPerf's rule for a training result: drop the fastest and slowest run, mean the rest.

    ``None`` or an infinite time is a run that did not reach its target. MLPerf lets one
    such run count as the slowest (it is the one dropped); with two or more the result
    is invalid, and so is one computed from fewer than three runs.
    """
    if len(times) < 3:
        raise ValueError(f"the MLPerf rule needs at least 3 runs, got {len(times)}")
    failed = [t for t in times if t is None or not math.isfinite(t)]
    if len(failed) > 1:
        raise ValueError(
            f"{len(failed)} of {len(times)} runs did not reach the target; MLPerf allows one"
        )
    finite = sorted(t for t in times if t is not None and math.isfinite(t))
    kept = finite[1:] if failed else finite[1:-1]
    return sum(kept) / len(kept)
