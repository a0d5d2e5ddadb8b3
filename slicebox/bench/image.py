"""Image classification: a small ResNet on scikit-learn's bundled 8x8 handwritten digits.

The digits ship inside scikit-learn, so the workload needs no download. 1797 images:
a fixed stratified 80/20 split (the same for every seed, as MLPerf fixes its eval set).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from slicebox.bench.config import TrainConfig
from slicebox.bench.distributed import Gang, GangError, joined
from slicebox.bench.loop import Workload, run_training
from slicebox.bench.results import RunResult

NAME: Final = "image"
SPLIT_SEED: Final = 20240601  # fixed: every run is scored on the same eval set


@dataclass(frozen=True)
class ImageSize:
    width: int
    batch_size: int
    max_epochs: int
    target: float  # eval accuracy
    lr: float


FULL: Final = ImageSize(width=32, batch_size=32, max_epochs=40, target=0.99, lr=2e-3)
QUICK: Final = ImageSize(width=8, batch_size=32, max_epochs=30, target=0.95, lr=3e-3)


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convs and a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class DigitsResNet(nn.Module):
    """Stem, two stages (8x8 then 4x4), global pooling, linear classifier."""

    def __init__(self, width: int, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.stage1 = BasicBlock(width, width, 1)
        self.stage2 = BasicBlock(width, 2 * width, 2)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.stage1(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _digits_file() -> Path:
    # Located, not imported: importing sklearn costs ~2 s per run, the file is all we need.
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the image workload reads scikit-learn's bundled digits; install scikit-learn"
        )
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def stratified_split(
    labels: np.ndarray, eval_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, eval) with each class split in the same proportion."""
    rng = np.random.default_rng(seed)
    train, evaluation = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = round(len(members) * eval_fraction)
        evaluation.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(evaluation))


def load_digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, eval images, eval labels); images N x 1 x 8 x 8 in [0, 1]."""
    table = np.loadtxt(_digits_file(), delimiter=",", dtype=np.float32)
    images = (table[:, :64] / 16.0).reshape(-1, 1, 8, 8)
    labels = table[:, 64].astype(np.int64)
    train, evaluation = stratified_split(labels, 0.2, SPLIT_SEED)
    return (
        torch.from_numpy(images[train]),
        torch.from_numpy(labels[train]),
        torch.from_numpy(images[evaluation]),
        torch.from_numpy(labels[evaluation]),
    )


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model(images).argmax(dim=1) == labels).float().mean())


def gang_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  gang: Gang) -> float:
    """Accuracy on the whole eval set, each rank scoring its share: the counts are summed,
    so every rank gets the same number and takes the same stop decision."""
    gang.sync_buffers(model)
    mine = gang.shard(torch.arange(len(labels), device=labels.device))
    right = int((model(images[mine]).argmax(dim=1) == labels[mine]).sum())
    right, total = gang.sum(right, len(mine))
    return right / total


def build(config: TrainConfig, gang: Gang | None = None) -> Workload:
    """The workload; with ``gang``, this rank's part of it (see ``bench.distributed``)."""
    size = QUICK if config.quick else FULL
    batch_size, lr = config.batch_and_lr(size.batch_size, size.lr)
    x_train, y_train, x_eval, y_eval = (t.to(config.device) for t in load_digits_split())
    model = DigitsResNet(size.width).to(config.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(config.seed)

    def epoch_batches(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(x_train), generator=generator).to(config.device)
        return [(x_train[i], y_train[i]) for i in order.split(batch_size)]

    workload = Workload(
        model=model,
        optimizer=optimizer,
        epoch_batches=epoch_batches,
        loss=lambda m, b: F.cross_entropy(m(b[0]), b[1]),
        batch_samples=lambda b: len(b[1]),
        evaluate=lambda m: accuracy(m, x_eval, y_eval),
        quality_metric="accuracy",
        higher_is_better=True,
        quality_target=size.target if config.quality_target is None else config.quality_target,
        batch_size=batch_size,
        max_epochs=size.max_epochs,
        train_samples=len(x_train),
        eval_samples=len(x_eval),
        learning_rate=lr,
        probe_inputs=(x_eval,),
        generator=generator,  # the data position a checkpoint keeps
    )
    if gang is None:
        return workload
    return _one_rank(workload, gang, (x_train, y_train), (x_eval, y_eval), config.device)


def _one_rank(w: Workload, gang: Gang, train: tuple[torch.Tensor, torch.Tensor],
              evaluation: tuple[torch.Tensor, torch.Tensor], device: str) -> Workload:
    """``w`` as rank ``gang.rank`` trains it: the same model, optimizer, batch and data
    order, with its share of each global batch and DDP averaging the gradients."""
    if w.batch_size < gang.world_size:
        raise GangError(f"batch size {w.batch_size} is smaller than the gang's "
                        f"{gang.world_size} ranks: every rank needs a sample")
    if w.generator is None:
        raise GangError("a gang needs the data order's generator, to draw the same order")
    x_train, y_train = train
    x_eval, y_eval = evaluation
    generator, batch_size = w.generator, w.batch_size
    replica = gang.wrap(w.model)

    def epoch_batches(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        # The same order on every rank (same generator, same seed); each trains on its
        # share of every global batch. A last batch too small to share is dropped.
        order = torch.randperm(len(x_train), generator=generator).to(device)
        return [(x_train[gang.shard(i)], y_train[gang.shard(i)], len(i))
                for i in order.split(batch_size) if len(i) >= gang.world_size]

    def loss(_plain: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, int]) -> torch.Tensor:
        # Through the DDP replica, whose hooks all-reduce the gradients (the loop's model,
        # ``_plain``, is what checkpoints see). Summed over this rank's share and scaled
        # so that DDP's average over the ranks is the global batch's mean, as one process
        # would compute it.
        images, labels, global_batch = batch
        summed = F.cross_entropy(replica(images), labels, reduction="sum")
        return summed * (gang.world_size / global_batch)

    return dataclasses.replace(
        w, epoch_batches=epoch_batches, loss=loss,
        batch_samples=lambda b: b[2],  # the gang's samples: rank 0 reports all of them
        evaluate=lambda m: gang_accuracy(m, x_eval, y_eval, gang), gang=gang)


def train(config: TrainConfig) -> RunResult:
    """Train the digits ResNet to its eval accuracy target (0.99 full, 0.95 quick); as
    one rank of a DDP gang when the environment names one (``bench.distributed``)."""
    with joined() as gang:
        return run_training(NAME, config, lambda c: build(c, gang))
