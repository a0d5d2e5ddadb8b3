"""Reading progress reports out of a job's log as it grows."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MAX_READ = 4 << 20  # per poll: a chatty job must not stall the control loop


@dataclass(frozen=True)
class Report:
    time: float | None
    samples: int | None
    quality: float | None


def _parser() -> Callable[[str], dict[str, Any] | None] | None:
    try:
        sdk = importlib.import_module("slicebox.sdk")
    except ImportError:
        return None
    return getattr(sdk, "parse_report_line", None)


def read_reports(path: Path, offset: int) -> tuple[list[Report], int]:
    """Reports in the complete lines after ``offset``, and the offset to read from next."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            chunk = log.read(_MAX_READ)
    except OSError:
        return [], offset
    end = chunk.rfind(b"\n")
    if end < 0:
        # A line longer than one read would stall us for ever: skip it once it is that long.
        return [], offset + len(chunk) if len(chunk) == _MAX_READ else offset
    parse = _parser()
    reports = []
    if parse is not None:
        for raw in chunk[: end + 1].splitlines():
            parsed = parse(raw.decode("utf-8", errors="replace"))
            if parsed and (parsed.get("samples") is not None or parsed.get("quality") is not None):
                reports.append(Report(parsed.get("time"), parsed.get("samples"),
                                      parsed.get("quality")))
    return reports, offset + end + 1


def tail(path: Path, lines: int = 50) -> list[str]:
    """The last ``lines`` lines of a log (what ``slicebox logs`` shows)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(size - 256 * 1024, 0))
            data = log.read()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]
