"""Synthetic click logs with a learnable signal, shaped like Criteo's (dense + categorical).

Labels come from a hidden logistic model: a linear term in the dense features, one
effect per categorical value, and a low-rank interaction between pairs of categorical
fields, which is exactly what DLRM's dot interaction can learn. The hidden model is
fixed (``SIGNAL_SEED``) and only the rows depend on the caller's seed, so every file
and every in-memory log poses the same problem and the same quality target holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

# Imported with the module, not in roc_auc: its ~2 s load then falls before a training run
# starts its clock, not into the first evaluation's time-to-quality.
from sklearn.metrics import roc_auc_score

DENSE_FEATURES: Final = 16
CARDINALITIES: Final = (1000, 1000, 500, 200, 100, 50, 20, 10)
SIGNAL_SEED: Final = 7
INTERACTION_RANK: Final = 4
# Pairs of categorical fields whose latent vectors interact in the hidden model.
INTERACTING_PAIRS: Final = ((0, 1), (2, 3), (0, 4))


@dataclass(frozen=True)
class ClickLog:
    dense: np.ndarray  # float32 [rows, DENSE_FEATURES], log-transformed counts
    sparse: np.ndarray  # int64 [rows, len(CARDINALITIES)], category ids
    labels: np.ndarray  # float32 [rows], 0/1 clicks
    click_probability: np.ndarray  # float32 [rows], the hidden model's P(click)

    @property
    def rows(self) -> int:
        return len(self.labels)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path,
            dense=self.dense,
            sparse=self.sparse,
            labels=self.labels,
            click_probability=self.click_probability,
            cardinalities=np.array(CARDINALITIES, dtype=np.int64),
        )

    @classmethod
    def load(cls, path: str | Path) -> ClickLog:
        with np.load(path) as data:
            missing = {"dense", "sparse", "labels", "cardinalities"} - set(data.files)
            if missing:
                raise ValueError(
                    f"{path}: not a Slicebox click log, missing arrays {sorted(missing)}"
                )
            if tuple(data["cardinalities"]) != CARDINALITIES:
                raise ValueError(
                    f"{path}: cardinalities {tuple(data['cardinalities'])} differ from "
                    f"this version's {CARDINALITIES}; regenerate it with make_clicklog"
                )
            probability = (
                data["click_probability"]
                if "click_probability" in data.files
                else np.full(len(data["labels"]), np.nan, dtype=np.float32)
            )
            return cls(data["dense"], data["sparse"], data["labels"], probability)

    def split(self, eval_rows: int) -> tuple[ClickLog, ClickLog]:
        """(train, eval): the last ``eval_rows`` rows are held out, as in Criteo's day split."""
        if not 0 < eval_rows < self.rows:
            raise ValueError(f"eval_rows must be in 1..{self.rows - 1}, got {eval_rows}")
        cut = self.rows - eval_rows
        parts = (self.dense, self.sparse, self.labels, self.click_probability)
        return (ClickLog(*(p[:cut] for p in parts)), ClickLog(*(p[cut:] for p in parts)))


@dataclass(frozen=True)
class _HiddenModel:
    dense_weights: np.ndarray
    value_effects: tuple[np.ndarray, ...]
    latents: tuple[np.ndarray, ...]
    bias: float


def _hidden_model() -> _HiddenModel:
    rng = np.random.default_rng(SIGNAL_SEED)
    return _HiddenModel(
        dense_weights=rng.normal(0.0, 0.35, DENSE_FEATURES),
        value_effects=tuple(rng.normal(0.0, 0.6, n) for n in CARDINALITIES),
        latents=tuple(rng.normal(0.0, 0.5, (n, INTERACTION_RANK)) for n in CARDINALITIES),
        bias=-1.2,  # about one click in four
    )


def _zipf_ids(rng: np.random.Generator, cardinality: int, rows: int) -> np.ndarray:
    # Real categorical features are heavy-tailed: a few ids are most of the traffic.
    weights = 1.0 / np.arange(1, cardinality + 1) ** 1.05
    ids = rng.choice(cardinality, size=rows, p=weights / weights.sum())
    return rng.permutation(cardinality)[ids]  # hot ids scattered over the table


def generate(rows: int, seed: int = 0) -> ClickLog:
    """``rows`` click-log rows; the same (rows, seed) always gives the same log."""
    if rows < 2:
        raise ValueError(f"rows must be at least 2, got {rows}")
    hidden = _hidden_model()
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(1.5, 4.0, (rows, DENSE_FEATURES)))
    dense = np.log1p(counts).astype(np.float32)
    sparse = np.stack([_zipf_ids(rng, n, rows) for n in CARDINALITIES], axis=1).astype(np.int64)
    centred = dense - dense.mean(axis=0)
    logit = centred @ hidden.dense_weights + hidden.bias
    for field, effects in enumerate(hidden.value_effects):
        logit += effects[sparse[:, field]]
    for a, b in INTERACTING_PAIRS:
        logit += np.sum(hidden.latents[a][sparse[:, a]] * hidden.latents[b][sparse[:, b]], axis=1)
    probability = 1.0 / (1.0 + np.exp(-logit))
    labels = (rng.random(rows) < probability).astype(np.float32)
    return ClickLog(dense, sparse, labels, probability.astype(np.float32))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half): scikit-learn's ``roc_auc_score``,
    with a message that says what a one-class eval set means here."""
    positives = labels > 0.5
    if positives.all() or not positives.any():
        raise ValueError("AUC needs both clicks and non-clicks in the eval set")
    return float(roc_auc_score(positives, scores))
