"""Copying a job's dataset to the fast volume placement chose, off the control loop.

A copy goes to a hidden temporary name next to the target and is renamed into place only
when complete, so a half-finished copy (crash, cancel, full disk) is never used.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from slicebox.pool.composition import CACHE_DIR, Staging

TMP_PREFIX = ".slicebox-tmp-"


class StagingAborted(Exception):
    pass


@dataclass(frozen=True)
class StageResult:
    job_id: str
    staging: Staging
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    aborted: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.aborted


class Stager:
    """Runs copies on worker threads; ``poll`` hands back the finished ones."""

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="slicebox-stage")
        self._done: queue.Queue[StageResult] = queue.Queue()
        self._abort: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, job_id: str, staging: Staging) -> None:
        flag = threading.Event()
        with self._lock:
            self._abort[job_id] = flag
        self._pool.submit(self._run, job_id, staging, flag)

    def abort(self, job_id: str) -> bool:
        with self._lock:
            flag = self._abort.get(job_id)
        if flag is not None:
            flag.set()
        return flag is not None

    def busy(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._abort

    def poll(self) -> list[StageResult]:
        results = []
        while True:
            try:
                results.append(self._done.get_nowait())
            except queue.Empty:
                return results

    def close(self) -> None:
        with self._lock:
            for flag in self._abort.values():
                flag.set()
        self._pool.shutdown(wait=True)

    def _run(self, job_id: str, staging: Staging, flag: threading.Event) -> None:
        began = time.monotonic()
        try:
            for path in staging.evict:
                evict(Path(path))
            size = copy_into_place(Path(staging.source), Path(staging.target), flag)
            result = StageResult(job_id, staging, size, time.monotonic() - began)
        except StagingAborted:
            result = StageResult(job_id, staging, aborted=True)
        except Exception as exc:  # noqa: BLE001 - any failure is the job's, not the loop's
            result = StageResult(job_id, staging, error=f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._abort.pop(job_id, None)
        self._done.put(result)


def copy_into_place(source: Path, target: Path, abort: threading.Event | None = None) -> int:
    """Copy a file or folder to ``target`` through a temporary name; the bytes copied."""
    source, target = source.resolve(), target.absolute()
    if target == source or source in target.parents or target in source.parents:
        raise ValueError(f"staging target {target} overlaps its source {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{TMP_PREFIX}{target.name}-{secrets.token_hex(4)}")
    copied = 0

    def copy_file(src: str, dst: str) -> str:
        nonlocal copied
        if abort is not None and abort.is_set():
            raise StagingAborted()
        result = shutil.copy2(src, dst)
        copied += os.path.getsize(dst)
        return result

    try:
        if source.is_dir():
            shutil.copytree(source, tmp, copy_function=copy_file)
        else:
            copy_file(str(source), str(tmp))
        _replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise
    return copied


def evict(path: Path) -> None:
    """Delete a cached copy placement chose to evict; only ever inside a cache folder."""
    if path.parent.name != CACHE_DIR:
        raise ValueError(f"refusing to evict {path}: not inside a {CACHE_DIR} folder")
    _remove(path)


def _replace(tmp: Path, target: Path) -> None:
    if target.exists() or target.is_symlink():
        # A copy from an attempt that died before it was recorded: ours, and not trusted.
        old = target.with_name(f"{TMP_PREFIX}{target.name}-old-{secrets.token_hex(4)}")
        os.rename(target, old)
        _remove(old)
    os.rename(tmp, target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_partial_copies(folder: Path) -> int:
    """Delete leftovers of copies a dead controller never finished; how many."""
    count = 0
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            if entry.name.startswith(TMP_PREFIX):
                _remove(entry)
                count += 1
    return count
