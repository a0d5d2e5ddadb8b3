"""The reference workloads by name. Modules load on first use: each pulls in torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from slicebox.bench.config import TrainConfig
from slicebox.bench.results import RunResult


@dataclass(frozen=True)
class WorkloadInfo:
    name: str
    module: str
    description: str
    reads_data_file: bool = False  # takes --data / $SLICEBOX_DATA

    def train_function(self) -> Callable[[TrainConfig], RunResult]:
        train: Callable[[TrainConfig], RunResult] = importlib.import_module(self.module).train
        return train


WORKLOADS: Final[dict[str, WorkloadInfo]] = {
    info.name: info
    for info in (
        WorkloadInfo(
            "image",
            "slicebox.bench.image",
            "ResNet-style CNN on scikit-learn's 8x8 digits, target accuracy",
        ),
        WorkloadInfo(
            "lm", "slicebox.bench.lm", "byte-level GPT on Python's bundled docs, target perplexity"
        ),
        WorkloadInfo(
            "recsys",
            "slicebox.bench.recsys",
            "DLRM-style model on synthetic click logs, target AUC",
            reads_data_file=True,
        ),
        WorkloadInfo(
            "inference",
            "slicebox.bench.inference",
            "the CNN served under MLPerf LoadGen Offline + Server",
        ),
    )
}


def get(name: str) -> WorkloadInfo:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; valid: {', '.join(WORKLOADS)}") from None


def train(name: str, config: TrainConfig) -> RunResult:
    """Run workload ``name`` once with ``config``."""
    return get(name).train_function()(config)
