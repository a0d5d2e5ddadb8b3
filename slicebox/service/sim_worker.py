"""One simulation, in a process of its own: ``python -m slicebox.service.sim_worker FOLDER``.

The service runs each simulation it is asked for (``POST /v1/simulations``) here rather
than on one of its threads: a simulation is minutes of pure-Python CPU, and beside a live
controller in the same process it would hold the interpreter's lock the controller's
rounds need. A process can also be stopped when it runs past its limit.

FOLDER holds ``request.json`` (what was asked, already checked by the service). The worker
lowers its own priority, writes ``progress.json`` as it goes, and leaves the same report
``slicebox simulate`` writes under ``FOLDER/report`` (``summary.json``, ``summary.md``,
``jobs.csv``, plots). A trace or pool the simulator refuses ends it with exit code 3 and
the reason in ``error.txt``; anything else is a bug (exit 1, traceback on stderr).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

USER_ERROR = 3


def _write(path: Path, text: str) -> None:
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)  # a reader never sees half a file


def run(folder: Path) -> int:
    from slicebox.errors import SliceboxError
    from slicebox.sim import report
    from slicebox.sim.api import simulate
    from slicebox.sim.traces import TraceError

    request = json.loads((folder / "request.json").read_text(encoding="utf-8"))
    last = [0.0]

    def progress(done: int, total: int, simulated: float) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or done == total:
            last[0] = now
            _write(folder / "progress.json", json.dumps(
                {"finished_jobs": done, "total_jobs": total, "simulated_seconds": simulated}))

    try:
        result = simulate(request["trace_file"], request["pool"], request["policy"],
                          round_seconds=request.get("round_seconds"),
                          trace_format=request.get("trace_format"),
                          skip_bad_lines=bool(request.get("skip_bad_lines")),
                          progress=progress)
    except TraceError as exc:
        _write(folder / "error.txt", f"bad trace: {exc}")
        return USER_ERROR
    except SliceboxError as exc:  # a pool or policy refused (InputError and the like)
        _write(folder / "error.txt", str(exc))
        return USER_ERROR
    report.write(result, folder / "report")
    return 0


def main() -> None:
    with contextlib.suppress(OSError):
        os.nice(10)  # the controller and the API come first
    sys.exit(run(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
