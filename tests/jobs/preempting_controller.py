"""A controller in its own process that checkpoint-stops one job once it has reported
enough samples (for the kill -9 during a checkpoint test): state dir, pool file, job id,
samples.

    preempting_controller.py STATE_DIR POOL_YAML JOB_ID SAMPLES
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from slicebox import policies  # noqa: E402
from slicebox.backends.local import LocalBackend  # noqa: E402
from slicebox.controller import Controller  # noqa: E402
from slicebox.controller.actions import RoundReport  # noqa: E402
from slicebox.placement.placer import Placer  # noqa: E402
from slicebox.pool.files import load_pool  # noqa: E402
from slicebox.snapshot import JobState  # noqa: E402
from slicebox.store import Store  # noqa: E402


def main() -> None:
    state, pool_file, job_id, samples = (Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3],
                                         int(sys.argv[4]))
    pool = load_pool(pool_file)
    store = Store.open(state)
    controller = Controller(store, pool, policies.get("fifo"), Placer(pool),
                            LocalBackend(state, node=pool.nodes[0].name), state,
                            interval=0.1)

    def preempt(report: RoundReport) -> None:
        job = store.job(job_id)
        if job.state is JobState.RUNNING and job.stop is None and (job.samples or 0) >= samples:
            controller.actions.checkpoint_stop(job, "preempted by the test controller", report)

    controller.run(on_round=preempt)


if __name__ == "__main__":
    main()
