"""Recommendation: a DLRM-style click-through model on synthetic click logs.

DLRM's shape: a bottom MLP embeds the dense features, one embedding table per
categorical field, pairwise dot products between all those vectors, a top MLP on the
dot products and the dense embedding. The data is `clicklog`'s: read from a file given
by ``--data`` / ``$SLICEBOX_DATA`` (so a job can be pointed at a staged volume), or
generated in memory. Quality is eval AUC.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from slicebox.bench import clicklog
from slicebox.bench.config import TrainConfig
from slicebox.bench.loop import Workload, run_training
from slicebox.bench.results import RunResult

NAME: Final = "recsys"


@dataclass(frozen=True)
class RecsysSize:
    rows: int  # generated in memory when no file is given
    eval_rows: int
    embedding_dim: int
    hidden: int
    batch_size: int
    max_epochs: int
    target: float  # eval AUC; the hidden model's own AUC is ~0.866
    lr: float
    eval_every_steps: int


FULL: Final = RecsysSize(
    rows=400_000,
    eval_rows=50_000,
    embedding_dim=16,
    hidden=128,
    batch_size=512,
    max_epochs=10,
    target=0.82,
    lr=5e-3,
    eval_every_steps=100,
)
QUICK: Final = RecsysSize(
    rows=100_000,
    eval_rows=20_000,
    embedding_dim=8,
    hidden=64,
    batch_size=512,
    max_epochs=10,
    target=0.75,
    lr=1e-2,
    eval_every_steps=20,
)


def mlp(sizes: list[int], last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(cin, cout))
        if last_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    pairs: torch.Tensor  # (2, n_pairs) upper-triangle indices of the dot-product matrix

    def __init__(
        self, dense_features: int, cardinalities: tuple[int, ...], dim: int, hidden: int
    ) -> None:
        super().__init__()
        self.bottom = mlp([dense_features, hidden, dim], last_activation=True)
        self.tables = nn.ModuleList(nn.Embedding(n, dim) for n in cardinalities)
        vectors = len(cardinalities) + 1
        # A buffer, so it follows the model to its device.
        self.register_buffer(
            "pairs", torch.triu_indices(vectors, vectors, offset=1), persistent=False
        )
        interactions = vectors * (vectors - 1) // 2
        self.top = mlp([dim + interactions, hidden, hidden // 2, 1], last_activation=False)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        bottom = self.bottom(dense)
        vectors = torch.stack(
            [bottom] + [table(sparse[:, i]) for i, table in enumerate(self.tables)], dim=1
        )
        dots = torch.bmm(vectors, vectors.transpose(1, 2))[:, self.pairs[0], self.pairs[1]]
        return self.top(torch.cat([bottom, dots], dim=1)).squeeze(1)


def load_log(config: TrainConfig, size: RecsysSize) -> clicklog.ClickLog:
    if config.data_path:
        return clicklog.ClickLog.load(config.data_path)
    # The data seed is fixed, not the run's: MLPerf varies the model's seed, not the data.
    return clicklog.generate(size.rows, seed=0)


def build(config: TrainConfig) -> Workload:
    size = QUICK if config.quick else FULL
    batch_size, lr = config.batch_and_lr(size.batch_size, size.lr)
    log = load_log(config, size)
    eval_rows = min(size.eval_rows, log.rows // 5)
    train, held_out = log.split(eval_rows)
    device = config.device
    dense, sparse, labels = (
        torch.from_numpy(a).to(device) for a in (train.dense, train.sparse, train.labels)
    )
    eval_dense = torch.from_numpy(held_out.dense).to(device)
    eval_sparse = torch.from_numpy(held_out.sparse).to(device)
    eval_labels = held_out.labels
    model = DLRM(
        clicklog.DENSE_FEATURES, clicklog.CARDINALITIES, size.embedding_dim, size.hidden
    ).to(config.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(config.seed)

    def epoch_batches(epoch: int) -> list[tuple[torch.Tensor, ...]]:
        order = torch.randperm(train.rows, generator=generator).to(device)
        return [(dense[i], sparse[i], labels[i]) for i in order.split(batch_size)]

    def auc(m: nn.Module) -> float:
        scores = m(eval_dense, eval_sparse).float().cpu().numpy()
        return clicklog.roc_auc(eval_labels, scores.astype(np.float64))

    return Workload(
        model=model,
        optimizer=optimizer,
        epoch_batches=epoch_batches,
        loss=lambda m, b: F.binary_cross_entropy_with_logits(m(b[0], b[1]).float(), b[2]),
        batch_samples=lambda b: len(b[2]),
        evaluate=auc,
        quality_metric="auc",
        higher_is_better=True,
        quality_target=size.target if config.quality_target is None else config.quality_target,
        batch_size=batch_size,
        max_epochs=size.max_epochs,
        train_samples=train.rows,
        eval_samples=held_out.rows,
        learning_rate=lr,
        eval_every_steps=size.eval_every_steps,
        probe_inputs=(eval_dense[:4096], eval_sparse[:4096]),
        generator=generator,  # the data position a checkpoint keeps
    )


def train(config: TrainConfig) -> RunResult:
    """Train the DLRM-style model to its eval AUC target."""
    return run_training(NAME, config, build)
