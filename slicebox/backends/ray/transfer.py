"""A dataset staged on a node that cannot read it itself: pulled from a node that can.

Which way a copy goes (``choose_route``):

* **Direct copy** when the chosen node sees the source path (its own disk, or a network
  share mounted there): its agent's ``LocalBackend`` stages it with the ``Stager``, as on
  one machine. Nothing crosses Ray; the file system (or the share's own protocol) is the
  fastest path there is, and the copy keeps every rule of ``backends/stager.py``.
* **Pull through Ray's object store** when only another node has the data (a local disk
  of that node, no shared volume showing it). The chosen node's agent asks the agent of
  the node that has it for a listing (``manifest``) and then for 8 MiB chunks
  (``read_chunk``), a few in flight at once, and writes them itself. Ray is already
  connected between every pair of nodes, authenticated as the cluster is, and moves
  large values between nodes' object stores without a copy through the controller; no
  other service (ssh, rsync, a share) has to exist on the nodes. Chunks of 8 MiB keep
  each object small next to even a small object store, and the byte limit is checked
  after each one.

A pulled copy follows the local copy's rules: only regular files and folders are read
(never ``/``, ``/dev``, ``/proc``, ``/sys``), the source side re-checks every file it is
asked for, the whole copy stops one chunk past ``stager.byte_limit`` of the measured
size, and it is written under a temporary name and renamed into place only when
complete. It lands at ``Staging.target`` (``DataCache``'s path for the dataset key on
that node), so the controller's ``DataCache`` records and reuses it per node exactly as
it does a local copy: a second job there gets ``cached=True`` and nothing is copied.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from slicebox.backends.base import Staged, StagingFailed
from slicebox.backends.stager import (
    MAX_DEPTH,
    MAX_ENTRIES,
    TMP_PREFIX,
    Stager,
    StageResult,
    StagingAborted,
    StagingRefused,
)
from slicebox.backends.stager import _remove as remove_tree
from slicebox.backends.stager import _replace as replace_into_place
from slicebox.errors import SliceboxError
from slicebox.pool.composition import Staging
from slicebox.untrusted import file_kind, in_system_tree, shown

CHUNK = 8 << 20  # bytes per object: one read, one object-store value
IN_FLIGHT = 4  # chunks requested ahead: the source reads while the target writes


class SourceRefused(SliceboxError):
    """The source node will not read what was asked (one line naming the path and why).
    One plain message argument, so it crosses Ray as itself."""


@dataclass(frozen=True)
class Entry:
    """One folder or regular file of a dataset, relative to its root ("" is the root)."""

    rel: str
    is_dir: bool
    size: int
    mode: int
    mtime_ns: int


@dataclass(frozen=True)
class Route:
    pull_from: str | None  # None: the chosen node copies it itself
    why: str


def choose_route(staging: Staging, target: str, sees: Mapping[str, bool]) -> Route:
    """How ``staging`` reaches node ``target``. ``sees``: for each live node (in order of
    preference), whether its agent sees ``staging.source`` (``visible``)."""
    if sees.get(target):
        return Route(None, f"{target} reads {shown(staging.source)} itself")
    for node, seen in sees.items():
        if seen and node != target:
            return Route(node, f"only {node} has {shown(staging.source)}; pulled through "
                               "Ray's object store")
    raise StagingRefused(staging.source, "no node of the pool has it")


def needs_copy(staging: Staging) -> bool:
    """False when the node already holds the copy ``DataCache`` reuses (``cached`` and
    still there); a cached copy that has vanished (a wiped disk) is made again."""
    return not (staging.cached and os.path.lexists(staging.target))


def visible(path: str) -> bool:
    """Whether this node sees ``path`` (its own disk or a share mounted here)."""
    with contextlib.suppress(OSError, ValueError):
        os.stat(path)
        return True
    return False


# -- the source side (run by the agent of the node that has the data) -------------------

def manifest(source: str, limit: int) -> list[Entry]:
    """Every folder and regular file of ``source``, parents before children; refused
    (``SourceRefused``) if it holds anything else, leads into a system tree, is too big,
    too deep or too many."""
    walk = _Walk(limit)
    handle = _open_path(source, source)
    try:
        walk.entry(handle, source, "", ())
    finally:
        os.close(handle)
    return walk.entries


def read_chunk(source: str, rel: str, offset: int, length: int) -> bytes:
    """At most ``length`` bytes of the regular file ``rel`` of ``source`` from ``offset``
    (fewer at its end). Checked again on every call: the request comes over the network,
    and the file may have been swapped since the listing."""
    if not (isinstance(offset, int) and isinstance(length, int)
            and offset >= 0 and 0 < length <= CHUNK):
        raise SourceRefused(f"chunk {offset}+{length}: chunks are at most {CHUNK} bytes")
    path = os.path.join(source, _checked_rel(rel)) if rel else source
    handle = _open_path(path, path)
    try:
        real = os.readlink(f"/proc/self/fd/{handle}")
        info = os.fstat(handle)
        if real == "/" or in_system_tree(real):
            raise SourceRefused(f"{shown(path)}: leads to {shown(real)}, not data")
        if not stat.S_ISREG(info.st_mode):
            raise SourceRefused(f"{shown(path)}: is {file_kind(info)}, not a regular file")
        fd = os.open(f"/proc/self/fd/{handle}",
                     os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    finally:
        os.close(handle)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceRefused(f"{shown(path)}: not a regular file")
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _checked_rel(rel: str) -> str:
    """A relative path inside the dataset: no ``..``, not absolute, no empty parts."""
    parts = PurePosixPath(rel).parts if isinstance(rel, str) and "\0" not in rel else ()
    if not parts or "/".join(parts) != rel or any(p in (".", "..", "/") for p in parts):
        raise SourceRefused(f"{shown(rel)}: not a path inside the dataset")
    return rel


def _open_path(path: str, shown_as: str) -> int:
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SourceRefused(f"{shown(shown_as)}: {why}") from None


class _Walk:
    def __init__(self, limit: int) -> None:
        self.limit, self.bytes = limit, 0
        self.entries: list[Entry] = []

    def entry(self, handle: int, path: str, rel: str,
              ancestors: tuple[tuple[int, int], ...]) -> None:
        if len(self.entries) >= MAX_ENTRIES:
            raise SourceRefused(f"{shown(path)}: more than {MAX_ENTRIES} files and folders")
        real = os.readlink(f"/proc/self/fd/{handle}")
        if real == "/" or in_system_tree(real):
            raise SourceRefused(f"{shown(path)}: leads to {shown(real)}; /, /dev, /proc "
                                "and /sys are not data")
        info = os.fstat(handle)
        if stat.S_ISREG(info.st_mode):
            self.bytes += info.st_size
            if self.bytes > self.limit:
                raise SourceRefused(f"{shown(path)}: the dataset holds more than {self.limit}"
                                    " bytes (its measured size plus slack)")
            self.entries.append(Entry(rel, False, info.st_size, stat.S_IMODE(info.st_mode),
                                      info.st_mtime_ns))
        elif stat.S_ISDIR(info.st_mode):
            here = (info.st_dev, info.st_ino)
            if here in ancestors:
                raise SourceRefused(f"{shown(path)}: contains itself (through a symlink)")
            if len(ancestors) >= MAX_DEPTH:
                raise SourceRefused(f"{shown(path)}: more than {MAX_DEPTH} folders deep")
            self.entries.append(Entry(rel, True, 0, stat.S_IMODE(info.st_mode),
                                      info.st_mtime_ns))
            folder = os.open(f"/proc/self/fd/{handle}",
                             os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                with os.scandir(folder) as listing:
                    names = sorted(item.name for item in listing)
                for name in names:
                    child_path = os.path.join(path, name)
                    try:
                        child = os.open(name, os.O_PATH | os.O_CLOEXEC, dir_fd=folder)
                    except OSError as exc:  # a loop, a dangling link, removed meanwhile
                        raise SourceRefused(f"{shown(child_path)}: {exc.strerror}") from None
                    try:
                        self.entry(child, child_path, f"{rel}/{name}" if rel else name,
                                   (*ancestors, here))
                    finally:
                        os.close(child)
            finally:
                os.close(folder)
        else:
            raise SourceRefused(f"{shown(path)}: is {file_kind(info)}; a dataset holds only "
                                "regular files and folders")


# -- the target side (run by the agent of the chosen node) ---------------------------------

class ChunkSource(Protocol):
    """Where a pulled copy reads from."""

    def manifest(self, source: str, limit: int) -> list[Entry]: ...

    def chunks(self, source: str, rel: str, most: int) -> Iterator[bytes]:
        """The file's bytes in order, in chunks, stopping at its end or once ``most``
        bytes have been handed out."""
        ...


class LocalSource:
    """This node's own files through the same calls (tests; and a fallback)."""

    def manifest(self, source: str, limit: int) -> list[Entry]:
        return manifest(source, limit)

    def chunks(self, source: str, rel: str, most: int) -> Iterator[bytes]:
        offset = 0
        while offset < most:
            data = read_chunk(source, rel, offset, min(CHUNK, most - offset))
            if data:
                yield data
            if len(data) < min(CHUNK, most - offset):
                return
            offset += len(data)


class RaySource:
    """The agent actor of the node that has the data; chunks come through Ray's object
    store, ``IN_FLIGHT`` requested ahead of the one being written."""

    def __init__(self, agent: Any, timeout_s: float = 120.0) -> None:
        self.agent, self.timeout_s = agent, timeout_s

    def manifest(self, source: str, limit: int) -> list[Entry]:
        return list(self._get(self.agent.transfer_manifest.remote(source, limit)))

    def chunks(self, source: str, rel: str, most: int) -> Iterator[bytes]:
        pending: deque[tuple[int, Any]] = deque()
        asked = 0

        def ask() -> None:
            nonlocal asked
            while len(pending) < IN_FLIGHT and asked < most:
                length = min(CHUNK, most - asked)
                pending.append((length, self.agent.transfer_chunk.remote(source, rel, asked,
                                                                         length)))
                asked += length

        ask()
        while pending:
            length, ref = pending.popleft()
            data = self._get(ref)
            if data:
                yield data
            if len(data) < length:  # the file's end: what is still in flight is empty
                return
            ask()

    def _get(self, ref: Any) -> Any:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        try:
            return ray.get(ref, timeout=self.timeout_s)
        except RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            raise SourceRefused(str(cause)) from None
        except (RayActorError, GetTimeoutError) as exc:
            raise SourceRefused(f"the node that has the data is not answering: "
                                f"{type(exc).__name__}") from None


def pull_into_place(src: ChunkSource, source: str, target: Path,
                    abort: threading.Event | None = None, limit: int | None = None) -> int:
    """Copy ``source`` (a file or folder on the node ``src`` reads) to ``target`` here,
    through a temporary name; the bytes copied. Refused (``StagingRefused``, nothing left
    behind) past ``limit`` bytes or when the source refuses."""
    most = limit if limit is not None else 1 << 62
    try:
        entries = src.manifest(source, most)
    except SourceRefused as exc:
        raise StagingRefused(source, str(exc)) from None
    _check_listing(source, entries)
    target = target.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{TMP_PREFIX}{target.name}-{secrets.token_hex(4)}")
    copied = 0
    try:
        for e in entries:
            dst = tmp / e.rel if e.rel else tmp
            if e.is_dir:
                os.mkdir(dst, 0o700)
                continue
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            try:
                # One byte past what is left: a file that grew since the listing is
                # caught after at most one more chunk.
                for data in src.chunks(source, e.rel, most - copied + 1):
                    if abort is not None and abort.is_set():
                        raise StagingAborted()
                    _write_all(fd, data)
                    copied += len(data)
                    if copied > most:
                        raise StagingRefused(source, f"stopped after {copied} bytes: the "
                                             f"dataset may have {most} (its measured size "
                                             "plus slack); it grew after submit",
                                             copied)
                os.fchmod(fd, e.mode)
            finally:
                os.close(fd)
            os.utime(dst, ns=(e.mtime_ns, e.mtime_ns))
        for e in reversed(entries):  # deepest first: a read-only folder is filled already
            if e.is_dir:
                dst = tmp / e.rel if e.rel else tmp
                os.chmod(dst, e.mode | stat.S_IRWXU)  # rwx kept: eviction must delete it
                os.utime(dst, ns=(e.mtime_ns, e.mtime_ns))
        replace_into_place(tmp, target)
    except SourceRefused as exc:
        remove_tree(tmp)
        raise StagingRefused(source, str(exc), copied) from None
    except BaseException:
        remove_tree(tmp)
        raise
    return copied


def _check_listing(source: str, entries: list[Entry]) -> None:
    """The listing came from another node: every path must stay inside the copy, and
    each folder come before what it holds (so nothing is written through a link)."""
    if not entries or entries[0].rel != "":
        raise StagingRefused(source, "the source node sent a listing without its root")
    folders = {""} if entries[0].is_dir else set()
    for e in entries[1:]:
        try:
            _checked_rel(e.rel)
        except SourceRefused as exc:
            raise StagingRefused(source, f"the source node sent {exc}") from None
        parent = e.rel.rpartition("/")[0]
        if parent not in folders:
            raise StagingRefused(source, f"the source node listed {shown(e.rel)} before "
                                 "its folder")
        if e.is_dir:
            folders.add(e.rel)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class PullStager(Stager):
    """``Stager`` whose copies are pulled from another node (``start`` takes the source)."""

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers, name="slicebox-pull")

    def start(self, job_id: str, staging: Staging, src: ChunkSource) -> None:  # type: ignore[override]
        def pull(staging: Staging, abort: threading.Event, limit: int) -> int:
            return pull_into_place(src, staging.source, Path(staging.target), abort,
                                   limit=limit)

        self._start(job_id, staging, pull)


def event_of(result: StageResult) -> Staged | StagingFailed:
    """A finished copy as the backend event the controller records."""
    return result.event()
