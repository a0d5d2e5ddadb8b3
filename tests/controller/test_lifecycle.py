"""Cancel, time limits, failures and waiting, through the whole controller."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from slicebox.snapshot import JobState
from slicebox.store import IllegalTransition

from .helpers import CORES, Setup


@pytest.fixture()
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def _running(setup: Setup, job_id: str):
    """Running and reporting progress (so its signal handler is in place)."""
    return lambda: (setup.state_of(job_id) is JobState.RUNNING
                    and setup.store.job(job_id).samples is not None)


def test_cancel_a_queued_job_and_a_running_one(setup: Setup):
    running = setup.submit("long", setup.python_job("sleeper.py", "30", str(setup.locks)),
                           resources={"cpus": len(CORES)},
                           checkpoint={"grace_seconds": 5})
    queued = setup.submit("behind", ["true"], resources={"cpus": len(CORES)})
    setup.run_until(_running(setup, running))
    assert setup.state_of(queued) is JobState.QUEUED  # all cores are taken
    assert setup.store.request_cancel(queued).state is JobState.CANCELLED
    # As the CLI would, from another process: only a flag in the store.
    setup.store.request_cancel(running)
    began = time.monotonic()
    setup.run_until(setup.finished(running))
    job = setup.store.job(running)
    assert job.state is JobState.CANCELLED and job.reason == "cancelled by user"
    assert time.monotonic() - began < 5  # the job checkpointed on SIGTERM and left
    assert (setup.locks / f"{running}.checkpoint").exists()
    kinds = [k for k, _ in setup.reasons(running)]
    assert kinds[-3:] == ["cancel-requested", "stopping", "cancelled"]
    with pytest.raises(IllegalTransition):
        setup.store.request_cancel(running)


def test_time_limit_stops_a_job_that_ignores_the_signal(setup: Setup):
    # sh ignores SIGTERM within milliseconds of starting (a Python job needs longer than the
    # time limit to get there on a loaded machine), and `sleep` inherits the ignored signal.
    job_id = setup.submit("slow", ["sh", "-c", "trap '' TERM; sleep 30"],
                          time_limit_seconds=1.0, checkpoint={"grace_seconds": 0.3})
    setup.run_until(setup.finished(job_id), timeout=15)
    job = setup.store.job(job_id)
    assert job.state is JobState.FAILED
    assert job.reason == "time limit of 1s exceeded (killed after its grace period)"
    assert job.exit_code == -9 and job.run_seconds < 5


def test_exit_codes_decide_success_and_failure(setup: Setup):
    ok = setup.submit("ok", ["python3", "-c", "print('hi')"])
    bad = setup.submit("bad", ["python3", "-c", "import sys; sys.exit(3)"])
    setup.run_until(setup.finished(ok, bad))
    assert (setup.state_of(ok), setup.store.job(ok).exit_code) == (JobState.SUCCEEDED, 0)
    job = setup.store.job(bad)
    assert (job.state, job.exit_code, job.reason) == (JobState.FAILED, 3, "exit code 3")
    assert "hi" in Path(setup.store.job(ok).log_path).read_text()


def test_a_job_that_does_not_fit_now_waits_with_a_reason_then_runs(setup: Setup):
    big = setup.submit("big", setup.python_job("sleeper.py", "0.6", str(setup.locks)),
                       resources={"cpus": len(CORES)})
    waiter = setup.submit("waiter", ["true"], resources={"cpus": len(CORES)})
    setup.run_until(_running(setup, big))
    setup.run_until(lambda: setup.store.job(waiter).reason != "submitted")
    assert setup.state_of(waiter) is JobState.QUEUED
    assert "core" in setup.store.job(waiter).reason
    setup.run_until(setup.finished(big, waiter))
    assert setup.state_of(waiter) is JobState.SUCCEEDED
    assert setup.store.core_conflicts() == []
    # Progress reported by the sleeper reached the store, with a throughput.
    job = setup.store.job(big)
    assert job.samples and job.samples >= 300 and job.samples_per_s
    assert setup.store.progress(big)


def test_until_idle_returns_when_everything_finished(setup: Setup):
    a = setup.submit("a", ["true"])
    controller = setup.new_controller()
    controller.interval = 0.02
    rounds = []
    controller.run(until_idle=True, on_round=rounds.append)
    assert setup.state_of(a) is JobState.SUCCEEDED and rounds[-1].active == 0
    assert setup.store.lease() is None  # released on the way out


def test_one_controller_at_a_time(setup: Setup):
    from slicebox import policies
    from slicebox.backends.local import LocalBackend
    from slicebox.controller import Controller
    from slicebox.store import LeaseHeld

    def make(ident: str) -> Controller:
        return Controller(setup.store, setup.pool, policies.get("fifo"), setup.placer,
                          LocalBackend(setup.state), ident=ident)

    first = make("elsewhere:1:1.00")
    first.start()
    with pytest.raises(LeaseHeld, match="elsewhere:1:1.00 holds this store"):
        make("elsewhere:2:1.00").start()
    first.close()
    make("elsewhere:2:1.00").start()


class _NewestOnly:
    """A user's policy (loaded like one by dotted path would be): only the newest job runs,
    so a newcomer preempts whatever runs."""

    name = "newest-only"
    periodic = False

    def decide(self, snapshot):
        from slicebox.snapshot import Assignment, Decision

        newest = max(snapshot.jobs, key=lambda j: j.submitted_at)
        return Decision((newest.current or Assignment(newest.id, 0),))


def test_preemption_checkpoints_requeues_and_never_shares_a_core(setup: Setup):
    from slicebox.backends.local import LocalBackend
    from slicebox.controller import Controller

    setup.controller = Controller(setup.store, setup.pool, _NewestOnly(), setup.placer,
                                  LocalBackend(setup.state), setup.state)
    sleeper = setup.python_job("sleeper.py", "1", str(setup.locks))
    everything = {"cpus": len(CORES)}  # the two can never run side by side
    old = setup.submit("old", sleeper, checkpoint={"grace_seconds": 5}, resources=everything)
    setup.run_until(_running(setup, old))
    new = setup.submit("new", sleeper, resources=everything)
    setup.run_until(setup.finished(old, new), timeout=40)
    assert (setup.state_of(old), setup.state_of(new)) == (JobState.SUCCEEDED, JobState.SUCCEEDED)
    kinds = setup.reasons(old)
    assert ("stopping", "preempted by the newest-only policy") in kinds
    assert ("preempted", "preempted by the newest-only policy") in kinds
    assert ("queued", "requeued after preemption") in kinds
    assert (setup.locks / f"{old}.checkpoint").exists()  # it got its checkpoint signal
    job = setup.store.job(old)
    assert job.preemptions == 1 and job.attempt == 2
    assert setup.store.core_conflicts() == []
    assert not (setup.locks / "VIOLATIONS").exists()
    # The newcomer waited for the preempted job's cores instead of sharing them.
    assert any(k == "waiting" and "waits for jobs being stopped" in r
               for k, r in setup.reasons(new)), setup.reasons(new)
