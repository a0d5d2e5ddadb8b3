"""What this machine lets us confine a job with, measured once per backend.

From strongest to weakest, each used where the kernel allows it:

- **cgroups**: a cgroup per job under a ``slicebox`` child of the cgroup the controller
  runs in. cgroup v2 with the memory controller, or v1 ``cpuset`` + ``memory`` (the kernel
  then keeps the job on its cores and counts ``/dev/shm`` and shared mappings against its
  memory).
- **namespaces**: a private mount and pid namespace per job (``unshare``, root only). The
  job sees its own processes only, a ``/proc`` of its own, a private ``/dev/shm``, and
  none of the state directory (store, logs, other jobs' exit files) or cgroupfs.
- **subreaper**: the launcher adopts every orphan of its job, so nothing escapes its tree.
- **monitor**: every poll round the backend checks the tree's affinity and memory anyway
  (the only guard where neither of the above is available).

The launcher (standard library only, run as a file) makes, joins and empties the
cgroups; this module only finds where they go and reads them.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ENV = "SLICEBOX_CGROUP_ROOT"  # "off", "auto" or a cgroup v2 directory
NAMESPACES_ENV = "SLICEBOX_NAMESPACES"  # "off" turns the private namespaces off
PARENT = "slicebox"
V1_ROOT = Path("/sys/fs/cgroup")

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
PR_SET_CHILD_SUBREAPER = 36
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18


@dataclass(frozen=True)
class Isolation:
    """``memory_parent``/``cpuset_parent``: where job cgroups are made (None: not used);
    ``version``: "v2", "v1" or None. ``notes``: why something is missing."""

    version: str | None = None
    memory_parent: Path | None = None
    cpuset_parent: Path | None = None
    namespaces: bool = False
    subreaper: bool = False
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        parts = []
        if self.version == "v2":
            parts.append("cgroup-v2 memory")
        elif self.version == "v1":
            ctl = [n for n, p in (("cpuset", self.cpuset_parent),
                                  ("memory", self.memory_parent)) if p is not None]
            parts.append("cgroup-v1 " + "+".join(ctl))
        else:
            parts.append("no cgroups (rlimit)")
        if self.subreaper:
            parts.append("subreaper")
        if self.namespaces:
            parts.append("private mount+pid namespaces")
        parts.append("monitor")
        return ", ".join(parts)

    def memory_mode(self) -> str:
        if self.version == "v2" and self.memory_parent is not None:
            return "cgroup2"
        if self.version == "v1" and self.memory_parent is not None:
            return "cgroup1"
        return "rlimit-data"

    def cgroups_for(self, job_id: str, attempt: int) -> tuple[Path | None, Path | None]:
        """(memory cgroup, cpuset cgroup) directories for this attempt."""
        name = f"{job_id}-{attempt}"
        return (self.memory_parent / name if self.memory_parent else None,
                self.cpuset_parent / name if self.cpuset_parent else None)


def detect(cgroup: str | Path | None = None, namespaces: bool | None = None) -> Isolation:
    """``cgroup``: None/"auto" (look), "off", or a cgroup v2 directory to use as parent."""
    setting = str(cgroup) if cgroup is not None else os.environ.get(CGROUP_ENV, "auto")
    if namespaces is None:
        namespaces = os.environ.get(NAMESPACES_ENV, "auto") != "off"
    notes: list[str] = []
    version, memory, cpuset = None, None, None
    if setting == "off":
        notes.append("cgroups turned off")
    elif setting != "auto":
        version, memory = "v2", Path(setting)
    else:
        version, memory, cpuset = _detect_cgroups(notes)
    private = namespaces and _can_unshare(notes)
    return Isolation(version, memory, cpuset, private, _can_subreap(), tuple(notes))


def _detect_cgroups(notes: list[str]) -> tuple[str | None, Path | None, Path | None]:
    from slicebox.backends import limits  # v2 logic lives there (kept for its callers)

    v2 = limits.detect("auto")
    if v2.parent is not None:
        return "v2", v2.parent, None
    v1_notes: list[str] = []
    memory = _v1_child("memory", v1_notes)
    cpuset = _v1_child("cpuset", v1_notes)
    notes.extend(v1_notes)
    if memory is None and cpuset is None:
        notes.append(v2.note.removeprefix("memory limit by rlimit (").rstrip(")"))
        return None, None, None
    return "v1", memory, cpuset


def own_v1_cgroup(controller: str) -> str | None:
    """This process's cgroup path in the v1 hierarchy of ``controller``."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if controller in names.split(","):
                return path
    except (OSError, ValueError):
        pass
    return None


def _v1_child(controller: str, notes: list[str]) -> Path | None:
    """``<mount>/<our cgroup>/slicebox`` for a writable v1 controller (made if needed)."""
    own = own_v1_cgroup(controller)
    mount = V1_ROOT / controller
    if own is None or not (mount / "tasks").exists():
        notes.append(f"no cgroup v1 {controller} hierarchy")
        return None
    parent = mount / own.lstrip("/") / PARENT
    try:
        parent.mkdir(exist_ok=True)
        if controller == "cpuset":  # a cpuset child is empty until given cores and nodes
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not (parent / name).read_text().strip():
                    (parent / name).write_text((parent.parent / name).read_text())
    except OSError as exc:
        notes.append(f"cgroup v1 {controller} not writable: {exc.strerror or exc}")
        return None
    return parent


def _can_unshare(notes: list[str]) -> bool:
    """Can a child make private mount + pid namespaces? Tried in a throwaway child."""
    if not hasattr(os, "fork") or os.geteuid() != 0:
        notes.append("private namespaces need root")
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(_trial_namespace())
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        notes.append("unshare(mount, pid) refused by the kernel" if code == 1 else
                     "mounts in a private namespace refused (e.g. a locked-down container)")
        return False
    return True


def _trial_namespace() -> int:  # pragma: no cover - runs in a throwaway child
    """What the launcher does for a job, minus the job: 0 when it all works."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNS | CLONE_NEWPID) != 0:
        return 1
    private = ctypes.c_ulong(MS_REC | MS_PRIVATE)
    if libc.mount(None, b"/", None, private, None) != 0:
        return 2
    init = os.fork()
    if init == 0:  # pid 1 of the new namespace: its own /proc, a private /dev/shm
        flags = ctypes.c_ulong(MS_NOSUID | MS_NODEV | MS_NOEXEC)
        ok = libc.mount(b"proc", b"/proc", b"proc", flags, None) == 0 and \
            libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", flags, None) == 0
        os._exit(0 if ok else 2)
    _, status = os.waitpid(init, 0)
    return os.waitstatus_to_exitcode(status)


def _can_subreap() -> bool:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os._exit(0 if _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


# ---- reading a job's cgroup (the launcher makes, joins and empties it) ----

def read_pids(group: Path) -> list[int]:
    try:
        pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
    # Never 0 or our own: kill(0) would signal our whole process group.
    return [p for p in pids if p > 0 and p != os.getpid()]


def memory_usage(group: Path) -> int | None:
    for name in ("memory.current", "memory.usage_in_bytes"):
        try:
            return int((group / name).read_text())
        except (OSError, ValueError):
            continue
    return None


def oom_kills(group: Path) -> int:
    """How many processes the kernel killed in this cgroup for its memory limit."""
    for name in ("memory.events", "memory.oom_control"):
        try:
            for line in (group / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return 0
