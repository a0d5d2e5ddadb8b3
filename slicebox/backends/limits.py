"""How a local job's memory limit is enforced: a cgroup v2 where we may make one, else an
rlimit. Detected once per backend; the reason for the choice is kept for the user."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ENV = "SLICEBOX_CGROUP_ROOT"  # a cgroup v2 directory to use, or "off"
_DEFAULT_PARENT = "slicebox"


@dataclass(frozen=True)
class MemoryLimiter:
    """``parent`` is the cgroup v2 directory job cgroups are made in (None: rlimits)."""

    parent: Path | None
    note: str

    def mode(self) -> str:
        if self.parent is not None:
            return "cgroup2"
        # RLIMIT_DATA, not RLIMIT_AS: the address space over-counts by far what a job uses
        # (PyTorch on CPU maps 1.2 GiB for 0.5 GiB resident; CUDA reserves terabytes at
        # initialisation, so an address-space cap stops every GPU job). The data limit
        # counts private writable memory (heap, anonymous mmaps), what a job allocates.
        return "rlimit-data"

    def cgroup_for(self, job_id: str, attempt: int) -> Path | None:
        return self.parent / f"{job_id}-{attempt}" if self.parent is not None else None


def detect(setting: str | Path | None = None) -> MemoryLimiter:
    """``setting``: None/"auto" (look), "off" (rlimits), or a cgroup v2 directory to use."""
    setting = str(setting) if setting is not None else os.environ.get(CGROUP_ENV, "auto")
    if setting == "off":
        return MemoryLimiter(None, "memory limit by rlimit (cgroups turned off)")
    if setting != "auto":
        return MemoryLimiter(Path(setting), f"memory limit by cgroup v2 under {setting}")
    mount = _cgroup2_mount()
    if mount is None:
        return MemoryLimiter(None, "memory limit by rlimit (no cgroup v2 mounted)")
    controllers = _read(mount / "cgroup.controllers").split()
    if "memory" not in controllers:
        return MemoryLimiter(None, f"memory limit by rlimit (cgroup v2 at {mount} has no "
                                   "memory controller; it is bound to cgroup v1 here)")
    parent = mount / _DEFAULT_PARENT
    problem = _prepare(mount, parent)
    if problem:
        return MemoryLimiter(None, f"memory limit by rlimit (cgroup v2 not writable: {problem})")
    return MemoryLimiter(parent, f"memory limit by cgroup v2 under {parent}")


def _cgroup2_mount() -> Path | None:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    mounts = [Path(line.split()[1]) for line in lines if line.split()[2:3] == ["cgroup2"]]
    return mounts[0] if mounts else None


def _prepare(mount: Path, parent: Path) -> str | None:
    """Make ``parent`` and delegate the memory controller to its children."""
    try:
        if "memory" not in _read(mount / "cgroup.subtree_control").split():
            (mount / "cgroup.subtree_control").write_text("+memory")
        parent.mkdir(exist_ok=True)
        if "memory" not in _read(parent / "cgroup.subtree_control").split():
            (parent / "cgroup.subtree_control").write_text("+memory")
    except OSError as exc:
        return f"{exc.strerror or exc}"
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
