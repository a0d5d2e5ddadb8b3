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
import os
import re
import signal
import stat
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

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


# ---- checkpoint and resume ------------------------------------------------------------
#
# A job run under Slicebox is told where to keep checkpoints (SLICEBOX_CHECKPOINT_PATH, a
# directory) and which signal asks it to stop (SLICEBOX_CHECKPOINT_SIGNAL). The pattern:
#
#     state = slicebox.restore()                 # None on a fresh start
#     if state: model.load_state_dict(state["model"]); step = state["step"]
#     for ...:
#         train_step()
#         if step % 100 == 0 or slicebox.stop_requested():
#             slicebox.checkpoint({"model": model.state_dict(), "step": step}, step=step,
#                                 samples=samples)
#         if slicebox.stop_requested():
#             slicebox.exit_checkpointed()       # exit code CHECKPOINTED: requeue me
#
# The controller reads only the small JSON manifest (never the checkpoint itself, which a
# job wrote and torch.load would execute): it records where the next attempt resumes.

CHECKPOINTED = 85  # the exit code that means "saved on request; requeue, do not fail"
CHECKPOINT_PATH_ENV = "SLICEBOX_CHECKPOINT_PATH"
CHECKPOINT_SIGNAL_ENV = "SLICEBOX_CHECKPOINT_SIGNAL"
ATTEMPT_ENV = "SLICEBOX_ATTEMPT"
MANIFEST = "latest.json"
RESTORED = "restored.json"
_CHECKPOINT_PREFIX = "ckpt-"

_stop = threading.Event()
_handler_installed = False


def checkpoint_dir() -> Path | None:
    """Where this job keeps its checkpoints (None: not run under Slicebox, no path set)."""
    value = os.environ.get(CHECKPOINT_PATH_ENV)
    return Path(value) if value else None


def _on_stop(_signum: int, _frame: object) -> None:
    _stop.set()


def watch_stop() -> None:
    """Catch the checkpoint signal (default SIGTERM) from now on: it sets
    :func:`stop_requested` instead of killing the job. Called by :func:`restore` and
    :func:`stop_requested`; call it earlier to cover a long start-up. Main thread only."""
    global _handler_installed
    if _handler_installed or threading.current_thread() is not threading.main_thread():
        return
    name = os.environ.get(CHECKPOINT_SIGNAL_ENV, "SIGTERM")
    try:
        signum = signal.Signals[name]
    except KeyError:
        signum = signal.SIGTERM
    signal.signal(signum, _on_stop)
    _handler_installed = True


def stop_requested() -> bool:
    """True once Slicebox asked this job to checkpoint and stop (at a step boundary: save
    with :func:`checkpoint`, then :func:`exit_checkpointed`)."""
    watch_stop()
    return _stop.is_set()


def exit_checkpointed() -> NoReturn:
    """End the job with :data:`CHECKPOINTED`: Slicebox requeues it and it resumes."""
    raise SystemExit(CHECKPOINTED)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, write: Any) -> None:
    """``write(file)`` into a temporary file beside ``path``, fsync, rename over ``path``,
    fsync the directory: a kill at any instant leaves the old file or the new, whole."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _json_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, allow_nan=False, separators=(",", ":")).encode()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The latest checkpoint's manifest, checked (None: no valid one). Never raises: the
    directory is the job's, and whatever it holds must not stop the controller."""
    data = _read_small_json(folder / MANIFEST)
    if data is None:
        return None
    name = data.get("file")
    if not (isinstance(name, str) and name.startswith(_CHECKPOINT_PREFIX)
            and "/" not in name and len(name) < 128):
        return None
    out: dict[str, Any] = {"file": name, "path": str(folder / name)}
    try:
        out["step"] = _samples(data.get("step"))
        out["samples"] = _samples(data.get("samples"))
        out["saved_at"] = _finite(data.get("saved_at"), 0.0, MAX_TIME)
        out["save_seconds"] = _finite(data.get("save_seconds"), 0.0, MAX_TIME)
        out["attempt"] = _samples(data.get("attempt"))
    except _BadLine:
        return None
    return out


def read_restored(folder: Path) -> dict[str, Any] | None:
    """What the latest attempt restored (attempt, step, samples, restore_seconds), checked."""
    data = _read_small_json(folder / RESTORED)
    if data is None:
        return None
    try:
        return {"attempt": _samples(data.get("attempt")), "step": _samples(data.get("step")),
                "samples": _samples(data.get("samples")),
                "restore_seconds": _finite(data.get("restore_seconds"), 0.0, MAX_TIME)}
    except _BadLine:
        return None


def _read_small_json(path: Path) -> dict[str, Any] | None:
    try:
        # O_NOFOLLOW: a job may have put a link there to make the controller read elsewhere.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device would block or flood
            return None
        raw = os.read(fd, MAX_PAYLOAD_CHARS + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(raw) > MAX_PAYLOAD_CHARS:
        return None
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _attempt() -> int | None:
    try:
        return int(os.environ.get(ATTEMPT_ENV, ""))
    except ValueError:
        return None


def checkpoint(state: dict[str, Any], *, step: int, samples: int | None = None) -> Path:
    """Save ``state`` (a dict of state_dicts and counters) with ``torch.save``, atomically:
    the previous checkpoint stays loadable until this one is whole and named in the
    manifest. Prints a progress report with ``samples`` so the controller knows exactly
    how far the checkpoint reaches. Returns the checkpoint file.

    Raises ``RuntimeError`` when the job has no checkpoint directory."""
    import torch  # here, not at import: ``import slicebox`` stays light

    folder = checkpoint_dir()
    if folder is None:
        raise RuntimeError(f"no checkpoint directory: {CHECKPOINT_PATH_ENV} is not set")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_SAMPLES:
        raise ValueError(f"step must be an int in 0..2**62, got {step!r}")
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.tmp"):  # what a save killed half-way left behind
        stale.unlink(missing_ok=True)
    began = time.perf_counter()
    target = folder / f"{_CHECKPOINT_PREFIX}{step:012d}.pt"
    _write_atomically(target, lambda out: torch.save(state, out))
    seconds = time.perf_counter() - began
    manifest = {"version": 1, "file": target.name, "step": step, "samples": samples,
                "saved_at": time.time(), "save_seconds": seconds, "attempt": _attempt()}
    _write_atomically(folder / MANIFEST, lambda out: out.write(_json_bytes(manifest)))
    # Only now is the older checkpoint no longer the one to resume from.
    for old in folder.glob(f"{_CHECKPOINT_PREFIX}*.pt"):
        if old.name != target.name:
            old.unlink(missing_ok=True)
    if samples is not None:
        report(samples=samples, checkpoint_step=step, checkpoint_seconds=round(seconds, 6))
    return target


def restore(map_location: Any = None,
            accept: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
    """The latest checkpoint's state (None: nothing to resume from). Also starts watching
    for the checkpoint signal, and records how long the restore took for Slicebox.
    ``accept``: a check of the loaded state (e.g. that it is this run's); when it says
    no, the result is None and no restore is recorded."""
    watch_stop()
    folder = checkpoint_dir()
    if folder is None:
        return None
    manifest = read_manifest(folder)
    if manifest is None:
        return None
    import torch

    began = time.perf_counter()
    # weights_only: a checkpoint is state_dicts, tensors and numbers, nothing executable.
    state = torch.load(manifest["path"], map_location=map_location, weights_only=True)
    seconds = time.perf_counter() - began
    if not isinstance(state, dict):
        state = {"state": state}
    if accept is not None and not accept(state):
        return None
    record = {"attempt": _attempt(), "step": manifest["step"], "samples": manifest["samples"],
              "restore_seconds": seconds, "time": time.time()}
    _write_atomically(folder / RESTORED, lambda out: out.write(_json_bytes(record)))
    return state


# ---- elastic jobs: the batch follows the size of each attempt ------------------------------

_ELASTIC_SIZES = (("SLICEBOX_GPUS", "SLICEBOX_MIN_GPUS"), ("SLICEBOX_CPUS", "SLICEBOX_MIN_CPUS"))


def _env_count(name: str) -> int | None:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value > 0 else None


def elastic_batch(base_batch: int, min_batch: int | None = None,
                  max_batch: int | None = None) -> int:
    """The batch size for the size this attempt was given (Pollux's rule: the batch grows
    with the resources, so the work per GPU or core stays the same).

    ``base_batch`` is the batch at the job's minimum size; it is scaled by GPUs over the
    minimum GPUs (``SLICEBOX_GPUS``/``SLICEBOX_MIN_GPUS``) for a GPU job, else by cores
    (``SLICEBOX_CPUS``/``SLICEBOX_MIN_CPUS``), and kept within ``[min_batch, max_batch]``
    (the bounds the job declares). Outside Slicebox it is ``base_batch``. Pair it with
    :func:`scaled_learning_rate`."""
    for name, value in (("base_batch", base_batch), ("min_batch", min_batch),
                        ("max_batch", max_batch)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    low = min_batch if min_batch is not None else 1
    high = max_batch if max_batch is not None else base_batch
    if low > high:
        raise ValueError(f"min_batch ({low}) is larger than max_batch ({high})")
    batch = base_batch
    for have_env, least_env in _ELASTIC_SIZES:
        have, least = _env_count(have_env), _env_count(least_env)
        if have is not None and least is not None:
            batch = base_batch * have // least
            break
    return max(low, min(high, batch))


def scaled_learning_rate(base_lr: float, base_batch: int, batch: int,
                         rule: str = "sqrt") -> float:
    """The learning rate that keeps step with a batch scaled from ``base_batch``:
    ``sqrt`` (adaptive optimizers such as Adam; Pollux's default) or ``linear`` (SGD,
    Goyal et al.'s rule)."""
    if base_batch < 1 or batch < 1:
        raise ValueError(f"batch sizes must be positive, got {base_batch} and {batch}")
    ratio = batch / base_batch
    if rule == "sqrt":
        return base_lr * math.sqrt(ratio)
    if rule == "linear":
        return base_lr * ratio
    raise ValueError(f"rule must be 'sqrt' or 'linear', got {rule!r}")
