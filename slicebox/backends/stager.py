"""Copying a job's dataset to the fast volume placement chose, off the control loop.

A copy goes to a hidden temporary name next to the target and is renamed into place only
when complete, so a half-finished copy (crash, cancel, full disk) is never used.

The dataset is the user's and may have changed since admission measured it: a file
swapped for a symlink to ``/dev/zero``, a FIFO dropped in, a file that keeps growing. So
the copy reads only regular files and folders, never anything in ``/dev``, ``/proc`` or
``/sys``, and stops once it has copied more than the measured size plus a little slack
(``byte_limit``). Without that, ``/dev/zero`` staged to ``/dev/shm`` fills the machine's RAM.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import queue
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from slicebox.backends.base import Staged, StagingFailed
from slicebox.errors import SliceboxError
from slicebox.pool.composition import CACHE_DIR, Staging
from slicebox.untrusted import file_kind, in_system_tree, shown

TMP_PREFIX = ".slicebox-tmp-"
GIB = 1 << 30
# What a copy may exceed the measured size by: file systems round, metadata changes.
SLACK_FRACTION = 0.01
SLACK_MIN_BYTES = 64 << 20
# As admission's measure: past these a dataset is refused, not walked for ever.
MAX_ENTRIES = 2_000_000
MAX_DEPTH = 64
_CHUNK = 8 << 20  # bytes per read: also how often an abort or the limit is checked


class StagingAborted(Exception):
    pass


class StagingRefused(SliceboxError):
    """The dataset holds something a copy must not read, or more than it may: one line
    naming the path and what is wrong with it."""

    def __init__(self, path: str, reason: str, copied: int = 0) -> None:
        super().__init__(f"{shown(path, 200)}: {reason}")
        self.path, self.reason = path, reason
        self.copied = copied  # bytes of the whole dataset copied before it stopped


def byte_limit(size_gib: float) -> int:
    """The most bytes a copy of a dataset measured at ``size_gib`` may take."""
    size = int(size_gib * GIB) if math.isfinite(size_gib) and size_gib > 0 else 0
    return size + max(int(size * SLACK_FRACTION), SLACK_MIN_BYTES)


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

    def event(self) -> Staged | StagingFailed:
        """The finished copy as the backend event the controller records."""
        if self.ok:
            return Staged(self.job_id, self.staging, self.bytes, self.seconds)
        return StagingFailed(self.job_id, self.staging, self.error)


# How one copy is made: (staging, abort flag, byte limit) -> bytes copied; raises
# StagingAborted or StagingRefused.
CopyFunction = Callable[[Staging, threading.Event, int], int]


def _copy_local(staging: Staging, abort: threading.Event, limit: int) -> int:
    return copy_into_place(Path(staging.source), Path(staging.target), abort, limit=limit)


class Stager:
    """Runs copies on worker threads; ``poll`` hands back the finished ones. A copy is
    local (``start``) unless a subclass makes it otherwise (the Ray agent's pulls from
    another node: ``backends/ray/transfer.py``); either way the same evictions first, the
    same byte limit, and the same results."""

    def __init__(self, workers: int = 2, name: str = "slicebox-stage") -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._done: queue.Queue[StageResult] = queue.Queue()
        self._abort: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, job_id: str, staging: Staging) -> None:
        self._start(job_id, staging, _copy_local)

    def _start(self, job_id: str, staging: Staging, copy: CopyFunction) -> None:
        flag = threading.Event()
        with self._lock:
            self._abort[job_id] = flag
        self._pool.submit(self._run, job_id, staging, copy, flag)

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

    def _run(self, job_id: str, staging: Staging, copy: CopyFunction,
             flag: threading.Event) -> None:
        began = time.monotonic()
        try:
            for path in staging.evict:
                evict(Path(path))
            size = copy(staging, flag, byte_limit(staging.size_gib))
            result = StageResult(job_id, staging, size, time.monotonic() - began)
        except StagingAborted:
            result = StageResult(job_id, staging, aborted=True)
        except StagingRefused as exc:  # its message names the path and the reason
            result = StageResult(job_id, staging, error=str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure is the job's, not the loop's
            result = StageResult(job_id, staging, error=f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._abort.pop(job_id, None)
        self._done.put(result)


def copy_into_place(source: Path, target: Path, abort: threading.Event | None = None,
                    limit: int | None = None) -> int:
    """Copy a file or folder to ``target`` through a temporary name; the bytes copied.

    Only regular files and folders are copied (symlinks followed, but never into ``/``,
    ``/dev``, ``/proc`` or ``/sys``); anything else, or more than ``limit`` bytes, stops
    the copy with ``StagingRefused`` and leaves nothing behind."""
    root = os.open(source, os.O_PATH | os.O_CLOEXEC)  # a missing source: FileNotFoundError
    try:
        real = Path(os.readlink(f"/proc/self/fd/{root}"))
        target = target.absolute()
        if target == real or real in target.parents or target in real.parents:
            raise ValueError(f"staging target {target} overlaps its source {real}")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{TMP_PREFIX}{target.name}-{secrets.token_hex(4)}")
        copy = _Copy(str(tmp), (str(tmp), str(target)), limit, abort)
        try:
            copy.entry(root, os.fspath(source), str(real), os.fstat(root), str(tmp), ())
            _replace(tmp, target)
        except BaseException:
            _remove(tmp)
            raise
    finally:
        os.close(root)
    return copy.bytes


class _Copy:
    """One copy of an untrusted tree, through descriptors: each entry is resolved by the
    kernel once (``O_PATH``: nothing opened, no FIFO blocks, no driver runs), checked, and
    then read through that descriptor, so a path swapped after the check changes nothing."""

    def __init__(self, tmp: str, ours: tuple[str, ...], limit: int | None,
                 abort: threading.Event | None) -> None:
        self.tmp, self.ours, self.limit, self.abort = tmp, ours, limit, abort
        self.bytes = 0
        self.entries = 0

    def entry(self, handle: int, path: str, real: str, info: os.stat_result, dst: str,
              ancestors: tuple[tuple[int, int], ...]) -> None:
        """Copy what the ``O_PATH`` descriptor ``handle`` (``path``, really ``real``) is."""
        if self.abort is not None and self.abort.is_set():
            raise StagingAborted()
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise StagingRefused(path, f"the dataset has more than {MAX_ENTRIES} files and "
                                 "folders")
        if real == "/" or in_system_tree(real):
            raise StagingRefused(path, f"leads to {shown(real)}; /, /dev, /proc and /sys "
                                 "are not data")
        if any(real == mine or real.startswith(mine + "/") for mine in self.ours):
            raise StagingRefused(path, f"leads to {shown(real)}, into the copy itself")
        if stat.S_ISREG(info.st_mode):
            self._file(handle, path, dst)
        elif stat.S_ISDIR(info.st_mode):
            self._folder(handle, path, info, dst, ancestors)
        else:
            raise StagingRefused(path, f"is {file_kind(info)}; a dataset holds only regular "
                                 "files and folders")

    def _folder(self, handle: int, path: str, info: os.stat_result, dst: str,
                ancestors: tuple[tuple[int, int], ...]) -> None:
        here = (info.st_dev, info.st_ino)
        if here in ancestors:
            raise StagingRefused(path, "contains itself (through a symlink)")
        if len(ancestors) >= MAX_DEPTH:
            raise StagingRefused(path, f"is more than {MAX_DEPTH} folders deep")
        folder = os.open(f"/proc/self/fd/{handle}",
                         os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.mkdir(dst, 0o700)
            with os.scandir(folder) as listing:  # lazily: a folder may hold millions
                for item in listing:
                    self._child(folder, item.name, os.path.join(path, item.name),
                                os.path.join(dst, item.name), (*ancestors, here))
        finally:
            os.close(folder)
        # The owner keeps rwx: a read-only folder would stop eviction deleting the copy.
        os.chmod(dst, stat.S_IMODE(info.st_mode) | stat.S_IRWXU)
        os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns))

    def _child(self, folder: int, name: str, path: str, dst: str,
               ancestors: tuple[tuple[int, int], ...]) -> None:
        try:
            # Relative to the folder's descriptor; symlinks followed by the kernel.
            handle = os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=folder)
        except OSError as exc:  # a loop, a dangling link, a name removed meanwhile
            raise StagingRefused(path, exc.strerror or str(exc)) from None
        try:
            real = os.readlink(f"/proc/self/fd/{handle}")
            self.entry(handle, path, real, os.fstat(handle), dst, ancestors)
        finally:
            os.close(handle)

    def _file(self, handle: int, path: str, dst: str) -> None:
        # Reopened through the descriptor: the very file checked, whatever the path is now.
        src = os.open(f"/proc/self/fd/{handle}",
                      os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            info = os.fstat(src)
            if not stat.S_ISREG(info.st_mode):  # cannot happen; never read one that is not
                raise StagingRefused(path, f"is {file_kind(info)}, not a regular file")
            out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600)
            try:
                self._transfer(src, out, path)
                os.fchmod(out, stat.S_IMODE(info.st_mode))
                os.utime(out, ns=(info.st_atime_ns, info.st_mtime_ns))
            finally:
                os.close(out)
        finally:
            os.close(src)

    def _transfer(self, src: int, out: int, path: str) -> None:
        """Copy ``src`` to ``out`` in chunks, stopping one byte past the limit: a file
        that grew, or never ends, is refused after at most ``limit + 1`` bytes."""
        use_sendfile = True
        while True:
            if self.abort is not None and self.abort.is_set():
                raise StagingAborted()
            want = _CHUNK if self.limit is None else min(_CHUNK, self.limit - self.bytes + 1)
            moved = 0
            if use_sendfile:
                try:
                    moved = os.sendfile(out, src, None, want)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    use_sendfile = False  # a file system sendfile cannot read
            if not use_sendfile:
                data = os.read(src, want)
                moved = len(data)
                _write_all(out, data)
            if moved == 0:
                return
            self.bytes += moved
            if self.limit is not None and self.bytes > self.limit:
                raise StagingRefused(path, f"stopped after {self.bytes} bytes: the dataset "
                                     f"may have {self.limit} (its measured size plus slack); "
                                     "it grew after submit, or never ends", self.bytes)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
