"""A job that tries to escape its slice: the containment tests run it.

    hostile.py escape OUT     fork a child into its own process group and a setsid'd
                              daemon that drops its environment, widen every affinity to
                              all cores, write what the kernel then says to OUT, sleep
    hostile.py shm MIB        write a MIB file in /dev/shm, then sleep
    hostile.py map MIB        touch a MIB shared anonymous mapping, then sleep
    hostile.py snoop PATH...  try to open each PATH, the folder its own stdout lives in,
                              and its cgroup; print what worked as one JSON line

Every process it starts carries the job id in its argv, so a test can find leftovers
even when their environment is gone.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import sys
import time
from pathlib import Path

ALL = set(range(os.cpu_count() or 1))


def _widen() -> list[int]:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, ALL)
    return sorted(os.sched_getaffinity(0))


def _sleeper(tag: str) -> list[str]:
    return [sys.executable, "-c", "import time; time.sleep(120)", tag]


def escape(out: Path) -> None:
    tag = f"hostile-{os.environ['SLICEBOX_JOB_ID']}"
    if os.fork() == 0:  # a child in a process group of its own
        os.setpgid(0, 0)
        _widen()
        os.execv(sys.executable, _sleeper(tag))
    if os.fork() == 0:  # a daemon: new session, orphaned, no environment
        os.setsid()
        if os.fork() == 0:
            _widen()
            os.execve(sys.executable, _sleeper(tag), {})
        os._exit(0)
    seen = _widen()
    out.write_text(json.dumps({"affinity": seen}))
    print("READY", flush=True)
    time.sleep(120)


def shm(mib: int) -> None:
    with open("/dev/shm/hostile", "wb") as f:
        for _ in range(mib):
            f.write(b"\1" * (1 << 20))
    print("WROTE", flush=True)
    time.sleep(60)


def shared_map(mib: int) -> None:
    area = mmap.mmap(-1, mib << 20, flags=mmap.MAP_SHARED)
    for offset in range(0, mib << 20, 4096):
        area[offset] = 1
    print("MAPPED", flush=True)
    time.sleep(60)


def _try_open(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.read(16)
        return "opened"
    except OSError as exc:
        return type(exc).__name__


def snoop(paths: list[str]) -> None:
    found: dict[str, object] = {p: _try_open(p) for p in paths}
    log = os.readlink("/proc/self/fd/1")
    try:
        found["log_folder"] = sorted(os.listdir(Path(log).parent))
    except OSError as exc:
        found["log_folder"] = type(exc).__name__
    try:
        found["state_folder"] = sorted(os.listdir(Path(log).parent.parent))
    except OSError as exc:
        found["state_folder"] = type(exc).__name__
    found["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    try:  # leave its memory cgroup for the root one
        Path("/sys/fs/cgroup/memory/cgroup.procs").write_text(str(os.getpid()))
        found["cgroup_escape"] = "moved"
    except OSError as exc:
        found["cgroup_escape"] = type(exc).__name__
    print("SNOOP " + json.dumps(found), flush=True)


def main() -> None:
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "escape":
        escape(Path(rest[0]))
    elif mode == "shm":
        shm(int(rest[0]))
    elif mode == "map":
        shared_map(int(rest[0]))
    elif mode == "snoop":
        snoop(rest)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
