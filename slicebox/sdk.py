"""The one-line progress SDK a running job calls, and the parser the controller uses.

A job run under Slicebox reports progress by printing one line to stdout::

    import slicebox
    slicebox.report(samples=12800, quality=0.91, loss=0.23)

which writes ``:::SLICEBOX {"time": ..., "samples": 12800, "quality": 0.91, "loss": 0.23}``.
Stdout is the channel because every backend (local process, Ray, a container) already
captures it; no socket, no credentials, nothing to configure inside the job.

The controller reads the job's log with :func:`parse_report_line`, which also understands
MLPerf's ``:::MLLOG`` lines, so an unmodified MLPerf reference implementation reports
progress too.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

SLICEBOX_PREFIX = ":::SLICEBOX "
MLLOG_PREFIX = ":::MLLOG "

# Keys every parsed report carries, whatever its source, so callers never need .get().
_RESERVED = frozenset({"time", "samples", "quality", "source"})

# MLLOG keys whose value is the run's quality (MLPerf logs every benchmark's quality
# metric, AUC and perplexity included, under eval_accuracy).
_MLLOG_QUALITY_KEYS = frozenset({"eval_accuracy"})
# MLLOG metadata fields that carry a cumulative sample count. Not ``train_samples``:
# MLPerf uses that key for the size of the training set, not for progress.
_MLLOG_SAMPLE_FIELDS = ("samples_count", "trained_samples")


def _finite_or_none(value: Any) -> Any:
    # json.dumps would write NaN/Infinity, which is not JSON; a diverged loss is still
    # worth a report, so it becomes null rather than crashing the user's job.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_report(samples: int | None = None, quality: float | None = None, **metrics: Any) -> str:
    """The ``:::SLICEBOX`` line :func:`report` prints (without the newline)."""
    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, int) or samples < 0
    ):
        raise ValueError(f"samples must be a non-negative int (cumulative), got {samples!r}")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int | float)):
        raise ValueError(f"quality must be a number, got {quality!r}")
    clashing = _RESERVED.intersection(metrics)
    if clashing:
        raise ValueError(f"metric names {sorted(clashing)} are reserved by slicebox.report")
    payload: dict[str, Any] = {
        "time": time.time(),
        "samples": samples,
        "quality": _finite_or_none(float(quality)) if quality is not None else None,
    }
    for name, value in metrics.items():
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise ValueError(
                f"metric {name!r} must be a number, string, bool or None, "
                f"got {type(value).__name__}"
            )
        payload[name] = _finite_or_none(value)
    return SLICEBOX_PREFIX + json.dumps(payload, allow_nan=False, separators=(",", ":"))


def report(samples: int | None = None, quality: float | None = None, **metrics: Any) -> None:
    """Report a running job's progress to Slicebox.

    Args:
        samples: cumulative number of training samples processed so far.
        quality: the job's current quality metric (accuracy, AUC, perplexity, ...).
        **metrics: any other scalar metrics (loss, learning rate, ...).
    """
    line = format_report(samples, quality, **metrics)
    # Flushed at once: the controller derives throughput from the report times, and a
    # block-buffered pipe would deliver them late and in bursts.
    print(line, file=sys.stdout, flush=True)


def _parse_slicebox(payload: dict[str, Any]) -> dict[str, Any]:
    parsed = dict(payload)
    parsed["source"] = "slicebox"
    parsed.setdefault("time", None)
    parsed.setdefault("samples", None)
    parsed.setdefault("quality", None)
    return parsed


def _parse_mllog(payload: dict[str, Any]) -> dict[str, Any] | None:
    key = payload.get("key")
    if not isinstance(key, str):
        return None
    metadata = payload.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    value = payload.get("value")
    time_ms = payload.get("time_ms")
    samples = None
    for field in _MLLOG_SAMPLE_FIELDS:
        candidate = value if key == field else metadata.get(field)
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            samples = candidate
            break
    quality = value if key in _MLLOG_QUALITY_KEYS and isinstance(value, int | float) else None
    return {
        "source": "mllog",
        "time": time_ms / 1000.0 if isinstance(time_ms, int | float) else None,
        "samples": samples,
        "quality": quality,
        "key": key,
        "value": value,
        "event_type": payload.get("event_type"),
        "metadata": metadata,
    }


def parse_report_line(line: str) -> dict[str, Any] | None:
    """Parse one log line; ``None`` when it is not a progress report.

    Understands ``:::SLICEBOX {...}`` (from :func:`report`) and MLPerf's ``:::MLLOG {...}``.
    The marker may follow a prefix (``[rank0]: :::MLLOG ...``, a logging timestamp),
    because launchers and loggers add one. The result always has ``source``
    (``"slicebox"`` or ``"mllog"``), ``time`` (unix seconds), ``samples`` (cumulative, or
    None) and ``quality`` (or None); MLLOG lines add ``key``, ``value``, ``event_type``
    and ``metadata``. Malformed lines give ``None``: a job's log is arbitrary text and
    one bad line must not stop the controller.
    """
    for prefix, parse in ((SLICEBOX_PREFIX, _parse_slicebox), (MLLOG_PREFIX, _parse_mllog)):
        start = line.find(prefix)
        if start < 0:
            continue
        try:
            payload = json.loads(line[start + len(prefix) :])
        except ValueError:
            return None
        if not isinstance(payload, dict):
            return None
        return parse(payload)
    return None
