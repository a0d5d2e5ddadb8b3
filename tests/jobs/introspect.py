"""A test job: prints, as one JSON line, what it sees of its composition from inside.

It trusts none of Slicebox's own variables for the limits: affinity comes from the kernel,
the memory limit from its cgroup or its rlimits.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path


def _rlimit(which: int) -> int | None:
    soft, _hard = resource.getrlimit(which)
    return None if soft == resource.RLIM_INFINITY else soft


def _cgroup_v1(controller: str, name: str) -> str | None:
    """A file of this process's own cgroup v1 ``controller`` (None: not in one)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, names, path = line.split(":", 2)
        if controller in names.split(",") and path != "/":
            try:
                return Path("/sys/fs/cgroup", controller, path.lstrip("/"), name).read_text()
            except OSError:
                return None
    return None


def _cgroup_memory_max() -> int | None:
    """The memory cap of this process's own cgroup, v2 or v1 (None: none, or "max")."""
    v1 = _cgroup_v1("memory", "memory.limit_in_bytes")
    if v1 is not None:
        return int(v1)
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    unified = next((line.split("::", 1)[1] for line in lines if line.startswith("0::")), None)
    mount = next((m.split()[1] for m in mounts if m.split()[2:3] == ["cgroup2"]), None)
    if unified is None or mount is None:
        return None
    try:
        value = Path(mount, unified.lstrip("/"), "memory.max").read_text().strip()
    except OSError:
        return None
    return None if value == "max" else int(value)


def main() -> None:
    data = os.environ.get("SLICEBOX_DATA")
    seen = {
        "pid": os.getpid(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "rlimit_as": _rlimit(resource.RLIMIT_AS),
        "rlimit_data": _rlimit(resource.RLIMIT_DATA),
        "cgroup_memory_max": _cgroup_memory_max(),
        "mechanism": os.environ.get("SLICEBOX_MEMORY_LIMIT_MECHANISM"),
        "data": data,
        "data_files": sorted(p.name for p in Path(data).iterdir()) if data else None,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "job_id": os.environ.get("SLICEBOX_JOB_ID"),
        "cwd": os.getcwd(),
        "argv": sys.argv[1:],
    }
    print("INTROSPECT " + json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
