"""A round costs what changed: with nothing new, an event-driven policy is not asked again
(however long the queue); an arrival or an exit makes it decide once more. And the
controller can be confined to reserved cores that jobs never get."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slicebox.backends.local import LocalBackend
from slicebox.controller import Controller
from slicebox.controller.reserve import choose_reserved, without_cores
from slicebox.errors import InputError
from slicebox.policies.fifo import Fifo
from slicebox.snapshot import ClusterSnapshot, Decision, JobState

from .helpers import CORES, NODE, Setup


class CountingFifo(Fifo):
    """FIFO that counts how often it is asked."""

    decisions = 0

    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        self.decisions += 1
        return super().decide(snapshot)


def test_unchanged_rounds_do_not_ask_the_policy_again(tmp_path: Path):
    setup = Setup(tmp_path)
    hold = setup.submit("hold", ["sleep", "30"], resources={"cpus": len(CORES)})
    waiting = [setup.submit(f"w{i}", ["true"]) for i in range(5)]
    policy = CountingFifo()
    controller = Controller(setup.store, setup.pool, policy, setup.placer,
                            LocalBackend(setup.state, node=NODE), setup.state, interval=0.05)
    setup.controller = controller
    setup.run_until(lambda: setup.state_of(hold) is JobState.RUNNING)
    for _ in range(3):  # wait reasons settle (writing them is itself a change, once)
        controller.run_once()
    asked = policy.decisions
    for _ in range(5):
        report = controller.run_once()
        assert report.waiting == 5 and report.active == 1
    assert policy.decisions == asked  # nothing changed: nobody was asked
    late = setup.submit("late", ["true"])
    controller.run_once()
    assert policy.decisions == asked + 1  # an arrival is a change
    setup.store.request_cancel(hold)
    setup.run_until(setup.finished(hold, late, *waiting))
    assert all(setup.state_of(j) is JobState.SUCCEEDED for j in [late, *waiting])
    assert setup.store.core_conflicts() == []


def test_reserved_cores_are_taken_from_the_pool(tmp_path: Path):
    setup = Setup(tmp_path)
    node = setup.pool.nodes[0]
    if len(node.cores) < 2:
        pytest.skip("needs 2 cores")
    top = max(node.cores)
    assert choose_reserved(node, "1") == (top,)
    assert choose_reserved(node, f"{top}-{top}") == (top,)
    confined = without_cores(setup.pool, node.name, (top,))
    assert top not in confined.nodes[0].cores
    assert set(confined.nodes[0].cores) == set(node.cores) - {top}
    with pytest.raises(InputError, match="no core for jobs"):
        choose_reserved(node, str(len(node.cores)))
    with pytest.raises(InputError, match="not on node"):
        choose_reserved(node, "9999-9999")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_up_with_a_reserved_core_keeps_jobs_off_it(tmp_path: Path):
    setup = Setup(tmp_path)
    job_id = setup.submit("job", ["true"], resources={"cpus": 1})
    top = max(setup.pool.nodes[0].cores)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "slicebox"), "--state", str(setup.state), "up",
         "--pool", str(setup.pool_file), "--until-idle", "--no-mlflow", "--interval", "0.1",
         "--reserve-cores", "1"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"controller on core(s) {top}" in " ".join(result.stdout.split())  # rich wraps
    job = setup.store.job(job_id)
    assert job.state is JobState.SUCCEEDED and job.composition is not None
    assert top not in job.composition.cores
