"""``:::MLLOG`` lines in MLPerf's format, through the ``mlperf-logging`` package when present.

Both paths print the same JSON (namespace, time_ms, event_type, key, value, metadata
with the caller's file and line), so MLPerf's compliance checker and Slicebox's own
parser read either.
"""

from __future__ import annotations

import collections
import json
import logging
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
