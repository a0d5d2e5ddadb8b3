"""One benchmark run as a child process: its argv, its environment, reading its output."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from slicebox import sdk
from slicebox.bench.results import RESULT_KIND, RunResult
from slicebox.bench.slices import SliceShape

MLLOG_PREFIX = ":::MLLOG "


def child_argv(
    workload: str,
    shape: SliceShape,
    precision: str,
    *,
    quick: bool,
    seed: int,
    max_seconds: float | None,
    python: str = sys.executable,
    output_dir: Path | None = None,
) -> list[str]:
    """The job argv that runs one benchmark on one slice shape."""
    argv = [
        python,
        "-m",
        "slicebox.bench.run",
        workload,
        "--precision",
        precision,
        "--seed",
        str(seed),
        "--device",
        shape.device,
    ]
    if quick:
        argv.append("--quick")
    if max_seconds is not None:
        argv += ["--max-seconds", f"{max_seconds:g}"]
    if shape.cores is not None:
        argv += ["--cores", ",".join(map(str, shape.cores))]
    if shape.memory_fraction is not None:
        argv += ["--memory-fraction", f"{shape.memory_fraction:g}"]
    if output_dir is not None:
        argv += ["--output-dir", str(output_dir)]
    return argv


def child_env(shape: SliceShape) -> dict[str, str]:
    env = dict(os.environ)
    if shape.cores is not None:
        # OpenMP sizes its pool before torch can be told; start it at the slice's size.
        env["OMP_NUM_THREADS"] = str(len(shape.cores))
    if shape.visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = shape.visible_devices
    env["PYTHONUNBUFFERED"] = "1"
    return env


STDOUT_LOG = "stdout.log"
STDERR_LOG = "stderr.log"
MLLOG_FILE = "mllog.txt"  # the run's :::MLLOG lines: what MLPerf's compliance checker reads


def run_child(
    argv: list[str],
    env: dict[str, str],
    timeout_s: float,
    on_report: Callable[[dict[str, Any]], None] | None = None,
    keep_dir: Path | None = None,
) -> RunResult | str:
    """Run one benchmark process; its RunResult, or why there is none.

    With ``keep_dir``, its output stays there: ``stdout.log`` and ``stderr.log`` whole,
    and ``mllog.txt`` with just the ``:::MLLOG`` lines.
    """
    with contextlib.ExitStack() as files:
        if keep_dir is not None:
            keep_dir.mkdir(parents=True, exist_ok=True)
            stderr = files.enter_context(open(keep_dir / STDERR_LOG, "w+"))
            stdout_copy: TextIO | None = files.enter_context(open(keep_dir / STDOUT_LOG, "w"))
            mllog: TextIO | None = files.enter_context(open(keep_dir / MLLOG_FILE, "w"))
        else:
            stderr = files.enter_context(tempfile.TemporaryFile(mode="w+"))
            stdout_copy = mllog = None
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            process.kill()

        # A watchdog, because a hung child would block the readline loop forever.
        watchdog = threading.Timer(timeout_s, kill)
        watchdog.start()
        result: RunResult | None = None
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if stdout_copy is not None:
                    stdout_copy.write(line)
                if mllog is not None and line.startswith(MLLOG_PREFIX):
                    mllog.write(line if line.endswith("\n") else line + "\n")
                if line.startswith("{"):
                    try:
                        data = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(data, dict) and data.get("kind") == RESULT_KIND:
                        result = RunResult.from_dict(data)
                    continue
                report = sdk.parse_report_line(line)
                if report is not None and report["source"] == "slicebox" and on_report:
                    on_report(report)
            returncode = process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
        if result is not None:
            return result
        stderr.flush()
        stderr.seek(0)
        tail = stderr.read().strip().splitlines()[-3:]
        if killed.is_set():
            return f"killed after {timeout_s:.0f} s without a result"
        return f"exit status {returncode}: {' | '.join(tail) or 'no output'}"
