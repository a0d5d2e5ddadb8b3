"""The training loop every reference workload shares: MLPerf timing, precision, 2:4 masks.

A workload only says what its model, batches, loss and evaluation are (`Workload`);
this module runs it the MLPerf way: init, run_start, epochs with evaluation, stop at the
quality target (success) or at the epoch/time limit (aborted), run_stop. Time-to-quality
is run_start -> run_stop; throughput counts only time spent in training steps.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from slicebox import sdk
from slicebox.bench import mlperf_log as ml
from slicebox.bench.config import TrainConfig
from slicebox.bench.precision import autocast, device_type, grad_scaler, unsupported_reason
from slicebox.bench.results import STATUS_OK, RunResult, unsupported
from slicebox.bench.resume import Checkpointed, Keeper, Position
from slicebox.bench.sparsity import TwoFourMasks, semi_structured_speedup

if TYPE_CHECKING:
    from slicebox.bench.distributed import Gang

REPORT_EVERY_S = 1.0


@dataclass
class Workload:
    """What a workload hands the loop. Built between init_start and init_stop."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch_batches: Callable[[int], Iterable[Any]]  # epoch index -> batches on the device
    loss: Callable[[nn.Module, Any], torch.Tensor]
    batch_samples: Callable[[Any], int]
    evaluate: Callable[[nn.Module], float]  # called in eval mode under no_grad + autocast
    quality_metric: str
    higher_is_better: bool
    quality_target: float
    batch_size: int
    max_epochs: int
    train_samples: int  # size of the training set (MLPerf's train_samples)
    eval_samples: int
    learning_rate: float
    eval_every_steps: int | None = None  # also evaluate mid-epoch, for a finer time-to-quality
    # Inputs for timing the sparse model's forward pass on semi-structured kernels.
    probe_inputs: tuple[torch.Tensor, ...] | None = None
    # The generator epoch_batches draws the data order from: its state is the data
    # position a checkpoint keeps, so a resumed run sees the same batches (resume.py).
    generator: torch.Generator | None = None
    # One rank of a DDP gang (bench/distributed.py): decisions are taken for all ranks.
    gang: Gang | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _sync(device: str) -> None:
    # CUDA runs asynchronously; without a sync the clock would stop before the work.
    if device_type(device) == "cuda":
        torch.cuda.synchronize(torch.device(device))


def _reached(quality: float, target: float, higher_is_better: bool) -> bool:
    return quality >= target if higher_is_better else quality <= target


class _Run:
    """State of one run; its methods are the phases of the MLPerf timeline."""

    def __init__(self, workload: Workload, config: TrainConfig, log: ml.MLPerfLogger) -> None:
        self.w = workload
        self.config = config
        self.log = log
        self.scaler = grad_scaler(config.precision, config.device)
        self.masks: TwoFourMasks | None = None
        self.samples = 0
        self.steps = 0
        self.epoch = 0
        self.train_time = 0.0
        self.quality: float | None = None
        self.dense_quality: float | None = None
        self.last_report = 0.0
        self.last_loss: torch.Tensor | None = None  # a tensor: reading it syncs a GPU

    def train_step(self, batch: Any) -> None:
        model, optimizer = self.w.model, self.w.optimizer
        optimizer.zero_grad(set_to_none=True)
        with autocast(self.config.precision, self.config.device):
            loss = self.w.loss(model, batch)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if self.masks is not None:
            self.masks.apply()
        self.samples += self.w.batch_samples(batch)
        self.steps += 1
        self.last_loss = loss.detach()

    def evaluate(self, phase: str = "train") -> float:
        self.log.start(ml.EVAL_START, metadata={ml.EPOCH_NUM: self.epoch})
        self.w.model.eval()
        with torch.no_grad(), autocast(self.config.precision, self.config.device):
            quality = float(self.w.evaluate(self.w.model))
        self.w.model.train()
        metadata: dict[str, Any] = {
            ml.EPOCH_NUM: self.epoch,
            ml.SAMPLES_COUNT: self.samples,
            "metric": self.w.quality_metric,
        }
        if phase != "train":
            metadata["phase"] = phase
        self.log.event(ml.EVAL_ACCURACY, value=quality, metadata=metadata)
        self.log.end(ml.EVAL_STOP, metadata={ml.EPOCH_NUM: self.epoch})
        self.quality = quality
        self.report(force=True)
        return quality

    def report(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last_report < REPORT_EVERY_S:
            return
        self.last_report = now
        loss = float(self.last_loss) if self.last_loss is not None else None
        sdk.report(samples=self.samples, quality=self.quality, epoch=self.epoch, loss=loss,
                   quality_metric=self.w.quality_metric,
                   higher_is_better=self.w.higher_is_better)

    def on_target(self) -> bool:
        """The target was reached: True ends the run; sparse runs prune and go on."""
        if self.config.precision != "sparse" or self.masks is not None:
            return True
        self.dense_quality = self.quality
        self.masks = TwoFourMasks.prune(self.w.model)
        pruned = self.evaluate(phase="pruned_2_4")
        return _reached(pruned, self.w.quality_target, self.w.higher_is_better)


def _log_run_parameters(log: ml.MLPerfLogger, name: str, w: Workload, config: TrainConfig) -> None:
    """The run's hyperparameters, between init_start and init_stop (the submission_*
    lines came first, with init_start)."""
    log.event(ml.SEED, config.seed)
    log.event(ml.GLOBAL_BATCH_SIZE, w.batch_size)
    log.event(ml.TRAIN_SAMPLES, w.train_samples)
    log.event(ml.EVAL_SAMPLES, w.eval_samples)
    log.event(ml.OPT_NAME, type(w.optimizer).__name__.lower())
    log.event(ml.OPT_BASE_LR, w.learning_rate)
    log.event("precision", config.precision)
    ml.log_disclosure(log, config.precision, w.batch_size, f"slicebox/bench/{name}.py")


def run_training(
    name: str, config: TrainConfig, build: Callable[[TrainConfig], Workload]
) -> RunResult:
    """Train the workload ``build`` makes, MLPerf-style, and say how it went."""
    # Checked before init_start: a variant the device cannot run logs no MLPerf run.
    reason = unsupported_reason(config.precision, config.device)
    if reason is not None:
        return unsupported(name, config.precision, config.device, reason)

    log = ml.MLPerfLogger()
    ml.log_run_start_of_init(log, f"slicebox-{name}", config.device, config.data_path)
    seed_everything(config.seed)
    w = build(config)
    w.model.to(config.device).train()
    _log_run_parameters(log, name, w, config)
    log.end(ml.INIT_STOP)

    run = _Run(w, config, log)
    keeper = Keeper(name, config, w)  # inert unless run under Slicebox with a folder
    resume = keeper.restore(run)
    max_epochs = config.max_epochs or w.max_epochs
    run_start = time.time()
    log.start(ml.RUN_START, time_s=run_start)
    success = checkpointed = False
    try:
        success = _train_until_target(run, max_epochs, run_start, keeper, resume)
    except Checkpointed:
        checkpointed = True
        raise  # not the end of the run: the next attempt goes on from the checkpoint
    finally:
        run_stop = time.time()
        status = ml.SUCCESS if success else ml.ABORTED
        if not checkpointed:
            log.end(ml.RUN_STOP, time_s=run_stop,
                    metadata={ml.STATUS: status, ml.EPOCH_NUM: run.epoch})
            run.report(force=True)

    speedup, note = None, ""
    if config.precision == "sparse" and run.masks is not None and w.probe_inputs is not None:
        speedup, note = semi_structured_speedup(w.model, w.probe_inputs, config.device)
    return RunResult(
        workload=name,
        precision=config.precision,
        device=config.device,
        status=STATUS_OK,
        seed=config.seed,
        batch_size=w.batch_size,
        threads=torch.get_num_threads(),
        quality_metric=w.quality_metric,
        higher_is_better=w.higher_is_better,
        quality_target=w.quality_target,
        quality=run.quality,
        reached_target=success,
        mlperf_status=status,
        time_to_quality_s=(run_stop - run_start) if success else None,
        run_time_s=run_stop - run_start,
        samples_per_s=run.samples / run.train_time if run.train_time > 0 else None,
        train_samples=run.samples,
        epochs=run.epoch,
        dense_quality=run.dense_quality,
        sparse_speedup=speedup,
        note=note,
    )


def _train_until_target(run: _Run, max_epochs: int, run_start: float,
                        keeper: Keeper | None = None, resume: Position | None = None) -> bool:
    config, w = run.config, run.w
    deadline = run_start + config.max_seconds if config.max_seconds else None
    epochs_left = max_epochs
    skip = 0  # batches of the first epoch a restored checkpoint already trained
    if resume is not None:
        run.epoch, epochs_left, skip = resume.epoch - 1, resume.epochs_left + 1, \
            resume.batches_done
        if w.generator is not None and resume.generator_state is not None:
            w.generator.set_state(resume.generator_state)
    while epochs_left > 0:
        epochs_left -= 1
        run.epoch += 1
        run.log.start(ml.EPOCH_START, metadata={ml.EPOCH_NUM: run.epoch})
        _sync(config.device)
        segment_start = time.perf_counter()
        evaluated_at = resume.evaluated_at if resume is not None and skip else -1
        at_epoch = Position(run.epoch, 0, epochs_left, evaluated_at,
                            w.generator.get_state() if w.generator is not None else None)
        batches = itertools.islice(w.epoch_batches(run.epoch - 1), skip, None)
        at_epoch.batches_done, skip = skip, 0
        for batch in batches:
            run.train_step(batch)
            run.report()
            at_epoch.batches_done += 1
            mid_eval = w.eval_every_steps is not None and run.steps % w.eval_every_steps == 0
            timed_out = deadline is not None and time.time() >= deadline
            if deadline is not None and w.gang is not None:
                (timed_out,) = w.gang.any(timed_out)  # a rank that stopped alone hangs the rest
            if mid_eval or timed_out:
                _sync(config.device)
                run.train_time += time.perf_counter() - segment_start
                if mid_eval:
                    evaluated_at = run.steps
                    if _reached(run.evaluate(), w.quality_target, w.higher_is_better):
                        if run.on_target():
                            run.log.end(ml.EPOCH_STOP, metadata={ml.EPOCH_NUM: run.epoch})
                            return True
                        epochs_left = max_epochs  # sparse: a fresh budget to fine-tune
                if timed_out:
                    # No final evaluation: the limit is the limit, and on a starved slice an
                    # eval can take longer than the training did. The last quality stands.
                    run.log.end(ml.EPOCH_STOP, metadata={ml.EPOCH_NUM: run.epoch})
                    return False
                _sync(config.device)
                segment_start = time.perf_counter()
            if keeper is not None and keeper.due(run.steps):
                # After this step's evaluation, so a resumed run never skips or repeats one.
                _sync(config.device)
                run.train_time += time.perf_counter() - segment_start
                at_epoch.evaluated_at, at_epoch.epochs_left = evaluated_at, epochs_left
                keeper.save(run, at_epoch)
                if keeper.stopping:
                    raise Checkpointed
                segment_start = time.perf_counter()
        _sync(config.device)
        run.train_time += time.perf_counter() - segment_start
        run.log.end(ml.EPOCH_STOP, metadata={ml.EPOCH_NUM: run.epoch})
        if evaluated_at != run.steps and _reached(
            run.evaluate(), w.quality_target, w.higher_is_better
        ):
            if run.on_target():
                return True
            epochs_left = max_epochs
    return False
