"""The guard that runs every poll round, whatever the kernel enforces: is each process of
a job's tree on its cores, and is the tree within its memory?

Where a cpuset cgroup holds the cores and a memory cgroup holds the memory, the kernel
already enforces both and this finds nothing; where they are missing (no cgroups, or
turned off), it is the enforcement: an affinity widened by the job is reset within one
round, and a tree over its memory is killed.

Memory here is what the job makes the machine hold: private and file-backed resident
pages (proportional share, so a page shared inside the tree counts once), shared memory
it maps (``MAP_SHARED`` anonymous mappings, SysV), and the files in its private
``/dev/shm`` (counted once: mapped ``/dev/shm`` pages show in both, so the larger of the
two is taken).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from slicebox.backends import isolation


@dataclass(frozen=True)
class Usage:
    bytes: int
    how: str  # "cgroup" or "processes"


Children = dict[int, list[int]]


def tree(launcher: int, groups: Iterable[Path], children: Children | None = None) -> set[int]:
    """Every live process of a job: the launcher's descendants (it is their subreaper, so
    orphans stay below it) and whatever is in the job's cgroups. Walked down from the
    launcher through ``/proc/<pid>/task/<tid>/children`` (cost: the tree's size), or with
    ``children``, a ``children_map()`` of the whole machine, where the kernel lacks that."""
    if children is None and HAVE_CHILDREN_FILES:
        pids = _walk_down(launcher)
    else:
        pids = _descendants(launcher, children if children is not None else children_map())
    for group in groups:
        pids.update(isolation.read_pids(group))
    pids.discard(launcher)  # the launcher itself is ours, not the job's
    return pids


HAVE_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _walk_down(root: int) -> set[int]:
    found: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                    kids = [int(k) for k in f.read().split()]
            except (OSError, ValueError):
                continue
            for kid in kids:
                if kid not in found:
                    found.add(kid)
                    todo.append(kid)
    return found


def children_map() -> Children:
    """pid -> its live children, for every process on the machine (one pass over /proc;
    plain strings: this runs every round)."""
    children: Children = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return children
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
            if fields[0] not in (b"Z", b"X"):
                children.setdefault(int(fields[1]), []).append(int(name))
        except (OSError, IndexError, ValueError):
            continue
    return children


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks after boot): with the pid, its identity."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rpartition(b")")[2].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _descendants(root: int, children: Children) -> set[int]:
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def off_cores(pids: Iterable[int], allowed: set[int]) -> dict[int, set[int]]:
    """Threads (tid -> their cores) allowed to run outside ``allowed``; each is put back
    on ``allowed`` before this returns."""
    wide: dict[int, set[int]] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for tid_name in os.listdir(f"/proc/{pid}/task"):
                tid = int(tid_name)
                with contextlib.suppress(OSError):
                    cores = os.sched_getaffinity(tid)
                    if not cores <= allowed:
                        os.sched_setaffinity(tid, allowed)
                        wide[tid] = cores
    return wide


def memory(pids: Iterable[int], memory_group: Path | None) -> Usage:
    if memory_group is not None:
        used = isolation.memory_usage(memory_group)
        if used is not None:
            return Usage(used, "cgroup")
    private = shmem = 0
    namespaces: dict[str, int] = {}  # mount namespace -> a pid in it
    own_ns = _mount_ns("self")
    for pid in pids:
        rollup = _rollup(pid)
        private += rollup.get("Pss_Anon", 0) + rollup.get("Pss_File", 0)
        shmem += rollup.get("Pss_Shmem", 0)
        ns = _mount_ns(str(pid))
        if ns and ns != own_ns:
            namespaces.setdefault(ns, pid)
    files = sum(_shm_used(pid) for pid in namespaces.values())
    return Usage(private + max(shmem, files), "processes")


def _rollup(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
                values[key] = int(parts[0]) * 1024
    return values


def _mount_ns(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _shm_used(pid: int) -> int:
    """Bytes held by the files of a job's private /dev/shm (a tmpfs of its own)."""
    try:
        st = os.statvfs(f"/proc/{pid}/root/dev/shm")
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize
