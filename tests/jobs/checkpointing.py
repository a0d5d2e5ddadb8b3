"""A test job that checkpoints through ``slicebox.sdk`` and resumes where it stopped.

    checkpointing.py STEPS STEP_SECONDS EVERY RESULT_FILE

Each step adds the step number to a running sum (a tensor, so the checkpoint is a real
``torch.save``) and reports ``samples = step``. It saves every EVERY steps and, when
asked to stop, at the next step boundary, then exits with ``slicebox.CHECKPOINTED``. At
the end it writes ``{"steps", "sum", "attempts", "siblings"}`` to RESULT_FILE: the sum
is ``STEPS * (STEPS + 1) / 2`` exactly when no step was skipped or counted twice.
``SLOW_STOP_SAVE=S`` in the environment: wait S seconds before the save a stop asks for
(a window in which to kill the controller).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # slicebox from the checkout
import torch  # noqa: E402

import slicebox  # noqa: E402


def main() -> None:
    steps, pause, every = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    result = Path(sys.argv[4])
    slow_stop = float(os.environ.get("SLOW_STOP_SAVE", "0"))
    state = slicebox.restore() or {"step": 0, "sum": torch.zeros((), dtype=torch.int64),
                                   "attempts": []}
    step, total = int(state["step"]), state["sum"]
    attempts = [*state["attempts"], int(os.environ.get("SLICEBOX_ATTEMPT", "0"))]
    while step < steps:
        time.sleep(pause)
        step += 1
        total += step
        slicebox.report(samples=step)
        stopping = slicebox.stop_requested()
        if stopping or step % every == 0:
            if stopping and slow_stop:
                time.sleep(slow_stop)
            slicebox.checkpoint({"step": step, "sum": total, "attempts": attempts},
                                step=step, samples=step)
        if stopping:
            slicebox.exit_checkpointed()
    # What it can see beside its own checkpoint folder (other jobs' must stay hidden).
    folder = slicebox.checkpoint_dir()
    siblings = sorted(os.listdir(folder.parent)) if folder is not None else []
    result.write_text(json.dumps({"steps": step, "sum": int(total), "attempts": attempts,
                                  "siblings": siblings}))


if __name__ == "__main__":
    main()
