"""Checkpoint and resume for the reference workloads, through ``slicebox.sdk``.

Under Slicebox (``SLICEBOX_CHECKPOINT_PATH`` set) a training run saves every
``--checkpoint-every`` steps (``TrainConfig.checkpoint_every``; without it, every
``DEFAULT_SECONDS`` of wall time) and when it is asked to stop (the checkpoint signal),
then exits with ``sdk.CHECKPOINTED``. A new attempt
restores the model, optimizer, loss scaler, counters, every RNG (Python, NumPy, torch, CUDA) and the
data position: the data generator's state at the start of the epoch in progress and how
many of that epoch's batches were done. So a resumed run draws the same batches and the
same random numbers as one that was never stopped, and ends where it would have.

A checkpoint holds a fingerprint of the run (workload, seed, precision, batch size, ...):
one made by a different configuration is ignored, never loaded into the wrong model.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from slicebox import sdk
from slicebox.bench.config import TrainConfig

if TYPE_CHECKING:
    from slicebox.bench.loop import Workload, _Run

# Without --checkpoint-every: a save at the first step boundary this long after the last.
# A stop request saves anyway, so periodic saves only bound what a kill (no grace, a
# lost node) redoes; saving every few steps would cost a fast job a fifth of its speed
# (recsys: ~30 steps/s, each save a few MB with fsync).
DEFAULT_SECONDS = 30.0
FORMAT = 1


class Checkpointed(SystemExit):
    """Saved on request; the process exits with ``sdk.CHECKPOINTED`` (requeue me)."""

    def __init__(self) -> None:
        super().__init__(sdk.CHECKPOINTED)


@dataclass
class Position:
    """Where in the data a run is: epoch ``epoch`` (1-based) is in progress with
    ``batches_done`` of its batches trained; the generator was in ``generator_state``
    before the epoch's order was drawn."""

    epoch: int = 0
    batches_done: int = 0
    epochs_left: int = 0
    evaluated_at: int = -1
    generator_state: torch.Tensor | None = None


def _rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": _plain_tuple(random.getstate()),
        # Lists and tensors only: a checkpoint must load with torch.load(weights_only=True).
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos),
                  int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _plain_tuple(value: Any) -> Any:
    return [_plain_tuple(v) for v in value] if isinstance(value, tuple | list) else value


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(_as_tuple(states["python"]))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class Keeper:
    """Saves and restores one run; inert when the job has no checkpoint directory."""

    def __init__(self, name: str, config: TrainConfig, workload: Workload) -> None:
        # Sparse runs prune mid-run; their masks are not part of the state (yet).
        self.enabled = sdk.checkpoint_dir() is not None and config.precision != "sparse"
        self.every = config.checkpoint_every  # None: every DEFAULT_SECONDS
        self._saved_at = time.monotonic()
        self.fingerprint = {"format": FORMAT, "workload": name, "seed": config.seed,
                            "precision": config.precision, "quick": config.quick,
                            # The batch asked for, not the one used: an elastic job's
                            # batch follows its size, and a resize must still resume.
                            "batch_size": config.batch_size,
                            "data": config.data_path or ""}
        self.workload = workload
        self.gang = workload.gang
        if self.gang is not None:
            # Rank 0 saves for the gang; the others follow its choice.
            self.enabled = self.gang.share(self.enabled)
        self._gang_stop = False
        if self.enabled:
            sdk.watch_stop()

    def due(self, steps: int) -> bool:
        if not self.enabled:
            return False
        if self.every is not None:
            periodic = steps % self.every == 0
        else:
            periodic = time.monotonic() - self._saved_at >= DEFAULT_SECONDS
        if self.gang is None:
            return periodic or sdk.stop_requested()
        # One decision for the gang, kept until `stopping` is read: a rank that stopped
        # alone would leave the others waiting in the next step's all-reduce.
        periodic, self._gang_stop = self.gang.any(periodic, sdk.stop_requested())
        return periodic or self._gang_stop

    @property
    def stopping(self) -> bool:
        if self.gang is not None:
            return self.enabled and self._gang_stop
        return self.enabled and sdk.stop_requested()

    def save(self, run: _Run, position: Position) -> None:
        w = self.workload
        if self.gang is not None and not self.gang.primary:
            self._saved_at = time.monotonic()  # rank 0 saves: every rank holds this model
            return
        state = {
            "fingerprint": self.fingerprint,
            "model": w.model.state_dict(),
            "optimizer": w.optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "counters": {"samples": run.samples, "steps": run.steps,
                         "train_time": run.train_time, "quality": run.quality},
            "position": {"epoch": position.epoch, "batches_done": position.batches_done,
                         "samples_done": position.batches_done * w.batch_size,
                         "batch_size": w.batch_size,
                         "epochs_left": position.epochs_left,
                         "evaluated_at": position.evaluated_at,
                         "generator": position.generator_state},
            "rng": _rng_states(),
        }
        sdk.checkpoint(state, step=run.steps, samples=run.samples)
        self._saved_at = time.monotonic()

    def restore(self, run: _Run) -> Position | None:
        """Load the latest checkpoint into ``run``; where to go on (None: start fresh)."""
        if not self.enabled:
            return None
        state = None
        if self.gang is None or self.gang.primary:
            state = sdk.restore(map_location=run.config.device,
                                accept=lambda s: s.get("fingerprint") == self.fingerprint)
        if self.gang is not None:
            state = self.gang.share(state)  # every rank resumes from rank 0's checkpoint
        if not state:
            return None
        w = self.workload
        w.model.load_state_dict(state["model"])
        w.optimizer.load_state_dict(state["optimizer"])
        where = state["position"]
        saved_batch = int(where.get("batch_size") or w.batch_size)
        if saved_batch != w.batch_size:
            # Resized: this attempt's learning rate goes with its batch; the saved one went
            # with the old batch.
            for group in w.optimizer.param_groups:
                group["lr"] = w.learning_rate
        if run.scaler is not None and state.get("scaler"):
            run.scaler.load_state_dict(state["scaler"])
        counters = state["counters"]
        run.samples, run.steps = int(counters["samples"]), int(counters["steps"])
        run.train_time = float(counters["train_time"])
        run.quality = counters["quality"]
        _set_rng_states(state["rng"])
        # The epoch's order is the same whatever the batch; at most one batch of the new
        # size is redone where the batch changed.
        done = int(where.get("samples_done", saved_batch * int(where["batches_done"])))
        return Position(int(where["epoch"]), done // w.batch_size,
                        int(where["epochs_left"]), int(where["evaluated_at"]),
                        where["generator"])
