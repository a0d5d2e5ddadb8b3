"""How to run one workload: the knobs every reference workload takes."""

from __future__ import annotations

from dataclasses import dataclass

from slicebox.bench.results import Precision


@dataclass(frozen=True)
class TrainConfig:
    """One run of one workload. ``None`` means "the workload's default" (which differs
    between full and quick mode)."""

    seed: int = 0
    batch_size: int | None = None
    max_epochs: int | None = None
    max_seconds: float | None = None
    quality_target: float | None = None
    device: str = "cpu"
    precision: Precision = "fp32"
    quick: bool = False
    # A dataset file for workloads that read one (recsys: a click-log .npz).
    data_path: str | None = None
    # Inference only: LoadGen Server's arrival rate; None = half the measured Offline rate.
    server_qps: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.max_epochs is not None and self.max_epochs <= 0:
            raise ValueError(f"max_epochs must be positive, got {self.max_epochs}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.server_qps is not None and self.server_qps <= 0:
            raise ValueError(f"server_qps must be positive, got {self.server_qps}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
