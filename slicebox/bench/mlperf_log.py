"""``:::MLLOG`` lines in MLPerf's format, through the ``mlperf-logging`` package when present.

Both paths print the same JSON (namespace, time_ms, event_type, key, value, metadata
with the caller's file and line), so MLPerf's compliance checker and Slicebox's own
parser read either.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sys
import time
from typing import Any, Final

try:
    from mlperf_logging.mllog.mllog import MLLogger as _PackageLogger
except ImportError:  # the package is optional: the fallback writes identical lines
    _PackageLogger = None

# MLPerf's keys (mlperf_logging.mllog.constants), spelled out so the fallback needs no package.
INIT_START: Final = "init_start"
INIT_STOP: Final = "init_stop"
RUN_START: Final = "run_start"
RUN_STOP: Final = "run_stop"
EPOCH_START: Final = "epoch_start"
EPOCH_STOP: Final = "epoch_stop"
EVAL_START: Final = "eval_start"
EVAL_STOP: Final = "eval_stop"
EVAL_ACCURACY: Final = "eval_accuracy"
SEED: Final = "seed"
GLOBAL_BATCH_SIZE: Final = "global_batch_size"
TRAIN_SAMPLES: Final = "train_samples"
EVAL_SAMPLES: Final = "eval_samples"
OPT_NAME: Final = "opt_name"
OPT_BASE_LR: Final = "opt_base_learning_rate"
SUBMISSION_BENCHMARK: Final = "submission_benchmark"
SUBMISSION_DIVISION: Final = "submission_division"
SUBMISSION_ORG: Final = "submission_org"
SUBMISSION_PLATFORM: Final = "submission_platform"
SUBMISSION_STATUS: Final = "submission_status"
STATUS: Final = "status"
SUCCESS: Final = "success"
ABORTED: Final = "aborted"
EPOCH_NUM: Final = "epoch_num"
SAMPLES_COUNT: Final = "samples_count"
CACHE_CLEAR: Final = "cache_clear"
# Disclosure keys training ruleset 6.1.0 added (precision, parallelism, run config).
LOWEST_PRECISION_LINEAR: Final = "lowest_numerical_precision_in_linear"
LOWEST_PRECISION_ATTN: Final = "lowest_numerical_precision_in_attn"
LOWEST_PRECISION_COMM: Final = "lowest_numerical_precision_in_comm"
TENSOR_PARALLELISM: Final = "tensor_parallelism"
PIPELINE_PARALLELISM: Final = "pipeline_parallelism"
CONTEXT_PARALLELISM: Final = "context_parallelism"
EXPERT_PARALLELISM: Final = "expert_parallelism"
MICRO_BATCH_SIZE: Final = "micro_batch_size"
CONFIG_FILENAME: Final = "config_filename"
# Our workloads are not MLPerf benchmarks, so their name is not logged as
# submission_benchmark: no name on the ruleset's list would be true, and the checker
# (mlperf-logging 4.1.68) stops with a FileNotFoundError on a name it has no rules for,
# before reporting anything. The name goes under this key, which the checker ignores.
SLICEBOX_BENCHMARK: Final = "slicebox_benchmark"

INTERVAL_START: Final = "INTERVAL_START"
INTERVAL_END: Final = "INTERVAL_END"
POINT_IN_TIME: Final = "POINT_IN_TIME"


class _StdoutHandler(logging.Handler):
    """Writes to whatever sys.stdout is *now*, flushed per line.

    logging.StreamHandler binds the stream at creation, which would keep writing to a
    stdout that has since been redirected (pytest's capture, a caller's redirect).
    """

    def emit(self, record: logging.LogRecord) -> None:
        sys.stdout.write(self.format(record) + "\n")
        sys.stdout.flush()


def using_mlperf_logging() -> bool:
    return _PackageLogger is not None


class MLPerfLogger:
    """start / end / event, as mlperf_logging's MLLogger, always to the current stdout."""

    def __init__(self, use_package: bool = True) -> None:
        """``use_package=False`` forces the built-in writer (tests compare the two)."""
        self._mllogger: Any = None
        if use_package and _PackageLogger is not None:
            # A private logging.Logger, not logging.getLogger(): the package's default
            # logger is process-global and would pile up handlers across runs.
            logger = logging.Logger("slicebox.bench.mllog", level=logging.INFO)
            logger.addHandler(_StdoutHandler())
            # Stack offset 3 skips this wrapper's two frames, so "file"/"lineno" name
            # the code that logged, as they would without the wrapper.
            self._mllogger = _PackageLogger(logger=logger, default_stack_offset=3)

    def start(
        self,
        key: str,
        value: Any = None,
        metadata: dict[str, Any] | None = None,
        time_s: float | None = None,
    ) -> None:
        self._log(INTERVAL_START, key, value, metadata, time_s)

    def end(
        self,
        key: str,
        value: Any = None,
        metadata: dict[str, Any] | None = None,
        time_s: float | None = None,
    ) -> None:
        self._log(INTERVAL_END, key, value, metadata, time_s)

    def event(
        self,
        key: str,
        value: Any = None,
        metadata: dict[str, Any] | None = None,
        time_s: float | None = None,
    ) -> None:
        self._log(POINT_IN_TIME, key, value, metadata, time_s)

    def _log(
        self,
        event_type: str,
        key: str,
        value: Any,
        metadata: dict[str, Any] | None,
        time_s: float | None,
    ) -> None:
        # Callers pass the time they also use for their own arithmetic, so the
        # time-to-quality in the log and in the result are the same number.
        time_ms = int((time.time() if time_s is None else time_s) * 1000)
        if self._mllogger is not None:
            method = {INTERVAL_START: "start", INTERVAL_END: "end", POINT_IN_TIME: "event"}
            getattr(self._mllogger, method[event_type])(
                key=key, value=value, metadata=metadata, time_ms=time_ms
            )
            return
        caller = sys._getframe(2)  # 0: _log, 1: start/end/event, 2: the workload
        full_metadata: dict[str, Any] = {
            "file": caller.f_code.co_filename,
            "lineno": caller.f_lineno,
        }
        full_metadata.update(metadata or {})
        payload = collections.OrderedDict(
            namespace="",
            time_ms=time_ms,
            event_type=event_type,
            key=key,
            value=value,
            metadata=full_metadata,
        )
        sys.stdout.write(":::MLLOG " + json.dumps(payload) + "\n")
        sys.stdout.flush()


# How each precision appears in MLPerf's list of numerical precisions.
_MLPERF_PRECISION = {"fp32": "fp32", "bf16": "bfloat16", "fp16": "fp16", "sparse": "fp32"}


def clear_caches(data_path: str | None) -> str:
    """Drop what this run could find warm, before init_start; says what was cleared.

    MLPerf's rules ask that data caches be cleared before each run. Each run is a fresh
    process (no allocator, kernel or dataset state carried over); a dataset file the run
    reads is evicted from the page cache (``posix_fadvise`` DONTNEED needs no privilege).
    Built-in datasets are generated in memory and have no cache to drop.
    """
    cleared = ["fresh process"]
    if data_path:
        try:
            fd = os.open(data_path, os.O_RDONLY)
        except OSError:
            pass  # the workload reports a missing file itself, by name
        else:
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                cleared.append("page cache of the data file")
            finally:
                os.close(fd)
    return ", ".join(cleared)


def log_run_start_of_init(log: MLPerfLogger, benchmark: str, platform: str,
                          data_path: str | None = None) -> None:
    """cache_clear, init_start and the submission_* lines, in the order MLPerf's training
    rules check: submission_division sets the time init may take, so it comes before
    init_stop (the caller logs init_stop when its model is built)."""
    log.event(CACHE_CLEAR, True, metadata={"cleared": clear_caches(data_path)})
    log.start(INIT_START)
    log.event(SLICEBOX_BENCHMARK, benchmark)
    log.event(SUBMISSION_DIVISION, "open")  # not an official MLPerf benchmark
    log.event(SUBMISSION_ORG, "slicebox")
    log.event(SUBMISSION_PLATFORM, platform)
    log.event(SUBMISSION_STATUS, "research")


def log_disclosure(log: MLPerfLogger, precision: str, micro_batch_size: int,
                   config_filename: str) -> None:
    """The precision, parallelism and run-config keys of training ruleset 6.1.0.

    One process on one slice: no tensor, pipeline, context or expert parallelism, and no
    gradient communication (its precision is that of the model's tensors).
    """
    lowest = _MLPERF_PRECISION.get(precision, "fp32")
    log.event(LOWEST_PRECISION_LINEAR, lowest)
    log.event(LOWEST_PRECISION_ATTN, lowest)
    log.event(LOWEST_PRECISION_COMM, lowest, metadata={"note": "one process: no communication"})
    for key in (TENSOR_PARALLELISM, PIPELINE_PARALLELISM, CONTEXT_PARALLELISM,
                EXPERT_PARALLELISM):
        log.event(key, 1)
    log.event(MICRO_BATCH_SIZE, micro_batch_size)
    log.event(CONFIG_FILENAME, config_filename)


def mllog_lines(text: str) -> list[str]:
    """The ``:::MLLOG`` lines of a run's output (what MLPerf's checker reads)."""
    return [line for line in text.splitlines() if line.startswith(":::MLLOG ")]
