"""The one-line progress SDK a running job calls, and the parser the controller uses.

A job run under Slicebox reports progress by printing one line to stdout::

    import slicebox
    slicebox.report(samples=12800, quality=0.91, loss=0.23)

which writes ``:::SLICEBOX {"time": ..., "samples": 12800, "quality": 0.91, "loss": 0.23}``.
Stdout is the channel because every backend (local process, Ray, a container) already
captures it; no socket, no credentials, nothing to configure inside the job.

The controller reads the job's log with :func:`parse_report_line`, which also understands
MLPerf's ``:::MLLOG`` lines, so an unmodified MLPerf reference implementation reports
progress too. A job's output is untrusted: the parser returns bounded, typed values or
nothing, and never raises, so no line a job prints can stop the controller.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from typing import Any

SLICEBOX_PREFIX = ":::SLICEBOX "
MLLOG_PREFIX = ":::MLLOG "

# Bounds on what a parsed report may hold. Samples fit SQLite's signed 64-bit INTEGER with
# room to add; times are unix seconds before the year 5000; a payload is one short line.
MAX_SAMPLES = 2**62
MAX_TIME = 1e11
MAX_ABS_VALUE = 1e300  # quality and other float metrics: finite, and far from overflow
MAX_INT_METRIC = 2**62
MAX_PAYLOAD_CHARS = 64 * 1024
MAX_METRICS = 64
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 1024
MAX_JSON_DEPTH = 16
_UNSAFE = re.compile("[\x00\ud800-\udfff]")  # nothing with these can be stored or printed

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
        isinstance(samples, bool) or not isinstance(samples, int)
        or not 0 <= samples <= MAX_SAMPLES
    ):
        raise ValueError(f"samples must be an int in 0..2**62 (cumulative), got {samples!r}")
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


class _BadLine(Exception):
    """A progress line that does not hold what it claims; the line is ignored."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _samples(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SAMPLES:
        raise _BadLine
    return value


def _finite(value: Any, low: float, high: float) -> float | None:
    if value is None:
        return None
    if not _number(value):
        raise _BadLine
    number = float(value)  # an int too large for a float raises OverflowError: caught
    if not (math.isfinite(number) and low <= number <= high):
        raise _BadLine
    return number


def _text(value: Any, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or _UNSAFE.search(value):
        raise _BadLine
    return value


def _metric(value: Any) -> Any:
    """A scalar metric of :func:`report` (str, int, float, bool or None), bounded."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_INT_METRIC:
            raise _BadLine
        return value
    if isinstance(value, float):
        return _finite(value, -MAX_ABS_VALUE, MAX_ABS_VALUE)
    return _text(value, MAX_TEXT_CHARS)


def _json_value(value: Any, depth: int = 0) -> Any:
    """Any JSON value whose strings are safe and whose numbers are finite (MLLOG's value
    and metadata are free-form)."""
    if depth > MAX_JSON_DEPTH:
        raise _BadLine
    if isinstance(value, dict):
        return {_text(k, MAX_TEXT_CHARS): _json_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v, depth + 1) for v in value]
    return _metric(value)


def _parse_slicebox(payload: dict[str, Any]) -> dict[str, Any]:
    if len(payload) > MAX_METRICS + len(_RESERVED):
        raise _BadLine
    parsed: dict[str, Any] = {
        "source": "slicebox",
        "time": _finite(payload.get("time"), 0.0, MAX_TIME),
        "samples": _samples(payload.get("samples")),
        "quality": _finite(payload.get("quality"), -MAX_ABS_VALUE, MAX_ABS_VALUE),
    }
    for name, value in payload.items():
        if name not in _RESERVED:
            parsed[_text(name, MAX_NAME_CHARS)] = _metric(value)
    return parsed


def _parse_mllog(payload: dict[str, Any]) -> dict[str, Any]:
    key = _text(payload.get("key"), MAX_NAME_CHARS)
    metadata = payload.get("metadata")
    metadata = _json_value(metadata) if isinstance(metadata, dict) else {}
    value = _json_value(payload.get("value"))
    time_ms = _finite(payload.get("time_ms"), 0.0, MAX_TIME * 1000)
    event_type = payload.get("event_type")
    samples = None
    for field in _MLLOG_SAMPLE_FIELDS:
        candidate = value if key == field else metadata.get(field)
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            samples = _samples(candidate)
            break
    quality = None
    if key in _MLLOG_QUALITY_KEYS and _number(value):
        quality = _finite(value, -MAX_ABS_VALUE, MAX_ABS_VALUE)
    return {
        "source": "mllog",
        "time": time_ms / 1000.0 if time_ms is not None else None,
        "samples": samples,
        "quality": quality,
        "key": key,
        "value": value,
        "event_type": _text(event_type, MAX_NAME_CHARS) if event_type is not None else None,
        "metadata": metadata,
    }


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's json would allow them


def parse_report_line(line: str) -> dict[str, Any] | None:
    """Parse one log line; ``None`` when it is not a (valid) progress report. Never raises.

    Understands ``:::SLICEBOX {...}`` (from :func:`report`) and MLPerf's ``:::MLLOG {...}``.
    The marker may follow a prefix (``[rank0]: :::MLLOG ...``, a logging timestamp),
    because launchers and loggers add one. The result always has ``source``
    (``"slicebox"`` or ``"mllog"``) and, each None or within bounds:

    * ``time``: float, unix seconds, finite, in [0, 1e11];
    * ``samples``: int (never bool), cumulative, in [0, 2**62];
    * ``quality``: float, finite, |quality| <= 1e300.

    Other ``:::SLICEBOX`` keys are metrics: at most 64, names of at most 64 characters,
    values None, bool, int within ±2**62, finite float or a string of at most 1024
    characters. MLLOG lines add ``key`` (str), ``value`` and ``metadata`` (JSON, finite
    numbers) and ``event_type`` (str or None). No string holds a NUL or a surrogate.

    Anything else (malformed JSON, NaN, a number out of range, a wrong type, a payload
    over 64 KiB) gives ``None``: a job's log is arbitrary text, and one bad line must not
    stop the controller.
    """
    if not isinstance(line, str):
        return None
    for prefix, parse in ((SLICEBOX_PREFIX, _parse_slicebox), (MLLOG_PREFIX, _parse_mllog)):
        start = line.find(prefix)
        if start < 0:
            continue
        text = line[start + len(prefix):]
        if len(text) > MAX_PAYLOAD_CHARS:
            return None
        try:
            payload = json.loads(text, parse_constant=_no_constants)
            if not isinstance(payload, dict):
                return None
            return parse(payload)
        except (ValueError, RecursionError, OverflowError, _BadLine):
            # ValueError: not JSON (or an int of more than 4300 digits); RecursionError:
            # nested deeper than the interpreter's stack; OverflowError: a float("1e999"-
            # sized int). A bad line is skipped, whatever is wrong with it.
            return None
    return None
