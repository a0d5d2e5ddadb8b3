"""A test job that runs for a while, reports progress, and proves it never runs twice.

    sleeper.py SECONDS LOCK_DIR [--ignore-term]

On start it takes ``LOCK_DIR/<job id>.lock``; if a live process already holds it, the job
is running twice at once, which it records in ``LOCK_DIR/VIOLATIONS`` for the test to see.
SIGTERM writes a checkpoint marker and exits 0, unless ``--ignore-term``.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # slicebox.sdk from the checkout
from slicebox.sdk import report  # noqa: E402

_HELD: list[int] = []  # the lock's descriptor, open for the whole life of the process


def _take_lock(lock: Path, violations: Path) -> None:
    """An exclusive ``flock`` on the lock file: the kernel drops it when the holder dies,
    however it dies, and it works across pid namespaces (a pid would not: each job may
    see only its own processes, with its own numbering)."""
    fd = os.open(lock, os.O_CREAT | os.O_WRONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with open(violations, "a") as out:
            out.write(f"{lock.stem}: a second process while another holds the lock\n")
    _HELD.append(fd)


def main() -> None:
    seconds, lock_dir = float(sys.argv[1]), Path(sys.argv[2])
    job = os.environ["SLICEBOX_JOB_ID"]
    lock = lock_dir / f"{job}.lock"
    _take_lock(lock, lock_dir / "VIOLATIONS")

    def on_term(_signum: int, _frame: object) -> None:
        (lock_dir / f"{job}.checkpoint").write_text("checkpointed")
        lock.unlink(missing_ok=True)
        sys.exit(0)

    if "--ignore-term" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_term)
    end = time.monotonic() + seconds
    samples = 0
    while time.monotonic() < end:
        samples += 100
        report(samples=samples, quality=min(samples / 1000, 1.0))
        time.sleep(0.1)
    lock.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
