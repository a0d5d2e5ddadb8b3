"""A test job that runs for a while, reports progress, and proves it never runs twice.

    sleeper.py SECONDS LOCK_DIR [--ignore-term]

On start it takes ``LOCK_DIR/<job id>.lock``; if a live process already holds it, the job
is running twice at once, which it records in ``LOCK_DIR/VIOLATIONS`` for the test to see.
SIGTERM writes a checkpoint marker and exits 0, unless ``--ignore-term``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # slicebox.sdk from the checkout
from slicebox.sdk import report  # noqa: E402


def _alive(pid: int) -> bool:
    """Running, not merely not yet reaped: a killed process stays a zombie until its
    (new) parent collects it, and a zombie runs nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _take_lock(lock: Path, violations: Path) -> None:
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and _alive(holder):
                with open(violations, "a") as out:
                    out.write(f"{lock.stem}: {os.getpid()} while {holder} runs\n")
                return
            lock.unlink(missing_ok=True)  # left by a killed attempt
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return


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
