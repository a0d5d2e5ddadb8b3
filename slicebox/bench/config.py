"""How to run one workload: the knobs every reference workload takes."""

from __future__ import annotations

from dataclasses import dataclass

from slicebox import sdk
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
    # Where the run keeps files beyond its stdout (inference: LoadGen's logs); None: a
    # temporary directory, deleted after the run.
    output_dir: str | None = None
    # Training under Slicebox: steps between checkpoints (None: every resume.DEFAULT_SECONDS).
    checkpoint_every: int | None = None
    # An elastic job: the batch grows with the cores/GPUs Slicebox gives it, up to this
    # (``batch_and_lr``); None: the batch never changes.
    max_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.max_epochs is not None and self.max_epochs <= 0:
            raise ValueError(f"max_epochs must be positive, got {self.max_epochs}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.max_batch_size is not None and self.max_batch_size <= 0:
            raise ValueError(f"max_batch_size must be positive, got {self.max_batch_size}")
        if self.checkpoint_every is not None and self.checkpoint_every <= 0:
            raise ValueError(f"checkpoint_every must be positive, got {self.checkpoint_every}")
        if self.server_qps is not None and self.server_qps <= 0:
            raise ValueError(f"server_qps must be positive, got {self.server_qps}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")

    def batch_and_lr(self, default_batch: int, base_lr: float) -> tuple[int, float]:
        """This attempt's batch and learning rate. The requested (or default) batch is
        the one at the job's minimum size; with ``max_batch_size`` it grows in proportion
        to the size Slicebox gave this attempt (Pollux's rule, ``sdk.elastic_batch``) and
        the learning rate keeps step by the square-root rule (the workloads use Adam)."""
        base = self.batch_size or default_batch
        if self.max_batch_size is None:
            return base, base_lr
        batch = sdk.elastic_batch(base, min(base, self.max_batch_size), self.max_batch_size)
        return batch, sdk.scaled_learning_rate(base_lr, base, batch)
