"""Nothing one job does stops the controller: the repros of issue 8 in the controller.

Each job here is launched by the real local backend; the bad ones end failed (or have
their junk dropped) with a reason, and a good job submitted beside them still runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from slicebox.backends.local import LocalBackend
from slicebox.snapshot import JobState
from slicebox.spec.job import JobSpec

from .helpers import NODE, Setup


def _bypassing_admission(setup: Setup, name: str, **bad: object) -> str:
    """A job record as if admission had let it through (or an older version wrote it)."""
    spec = JobSpec.model_validate({"name": name, "command": [sys.executable, "-c", "pass"]})
    return setup.store.submit(spec.model_copy(update=bad), workdir=str(setup.root))


def test_a_job_that_cannot_be_launched_fails_alone(tmp_path: Path):
    setup = Setup(tmp_path)
    nul = _bypassing_admission(setup, "nul-env", env={"A": "x\0y"})
    surrogate = _bypassing_admission(setup, "surrogate",
                                     command=[sys.executable, "-c", "pass", "\ud800"])
    good = setup.submit("good", [sys.executable, "-c", "pass"])
    setup.run_until(setup.finished(nul, surrogate, good))
    for bad in (nul, surrogate):
        job = setup.store.job(bad)
        assert job.state is JobState.FAILED
        assert "could not start the job" in job.reason or "invalid" in job.reason, job.reason
    assert setup.state_of(good) is JobState.SUCCEEDED
    # A restart finds nothing to crash on: the failed jobs stay failed.
    setup.new_controller().run_once()
    assert setup.state_of(nul) is JobState.FAILED


def test_progress_that_would_overflow_the_store_is_dropped_and_never_reread(tmp_path: Path):
    setup = Setup(tmp_path)
    flag = tmp_path / "go"
    script = (
        "import json, os, pathlib, time\n"
        "print(':::SLICEBOX ' + json.dumps({'samples': 10**26}), flush=True)\n"
        "print(':::SLICEBOX {\"samples\":[1],\"time\":\"x\"}', flush=True)\n"
        "print(':::SLICEBOX ' + json.dumps({'samples': 5, 'quality': 0.5}), flush=True)\n"
        f"while not pathlib.Path({str(flag)!r}).exists(): time.sleep(0.05)\n")
    job_id = setup.submit("loud", [sys.executable, "-c", script])
    setup.run_until(lambda: setup.store.job(job_id).samples == 5)
    job = setup.store.job(job_id)
    assert job.state is JobState.RUNNING and job.log_offset > 0
    notes = [r for k, r in setup.reasons(job_id) if k == "bad-progress"]
    assert len(notes) <= 1  # noted once (a newer parser may drop the junk before us)
    # A new controller adopts the job and reads on from the durable offset.
    assert setup.controller is not None
    setup.controller.close()
    setup.new_controller().run_once()
    assert [k for k, _ in setup.reasons(job_id)].count("bad-progress") == len(notes)
    flag.write_text("")
    setup.run_until(setup.finished(job_id))
    assert setup.state_of(job_id) is JobState.SUCCEEDED
    assert setup.store.job(job_id).samples == 5


def test_a_cancel_survives_a_requeue(tmp_path: Path):
    setup = Setup(tmp_path)
    job_id = setup.submit("sleepy", [sys.executable, "-c", "import time; time.sleep(60)"])
    setup.run_until(lambda: setup.store.job(job_id).pid is not None)
    pid = setup.store.job(job_id).pid
    assert pid is not None and setup.controller is not None
    setup.controller.close()  # the controller goes away; the job runs on
    setup.store.request_cancel(job_id)
    os.killpg(pid, signal.SIGKILL)  # and its process dies before anyone stops it
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    setup.new_controller().start()  # would requeue a job whose process is gone
    job = setup.store.job(job_id)
    assert job.state is JobState.CANCELLED, setup.reasons(job_id)
    assert "cancelled by user" in job.reason


def test_store_level_cancel_wins_over_preemption(tmp_path: Path):
    setup = Setup(tmp_path)
    job_id = setup.submit("sleepy", [sys.executable, "-c", "import time; time.sleep(60)"])
    setup.run_until(lambda: setup.store.job(job_id).pid is not None)
    setup.store.request_cancel(job_id)
    pid = setup.store.job(job_id).pid
    record = setup.store.requeue(job_id, "preempted by a test")
    assert record.state is JobState.CANCELLED
    assert [k for k, _ in setup.reasons(job_id)][-1] == "cancelled"
    os.killpg(pid, signal.SIGKILL)  # type: ignore[arg-type]


class _NewerBackend(LocalBackend):
    """The local backend plus an event type this controller has never heard of."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.extra: list[object] = []

    def poll(self):  # type: ignore[no-untyped-def]
        events = super().poll()
        extra, self.extra = self.extra, []
        return [*extra, *events]


def test_an_unknown_event_type_is_recorded_not_fatal(tmp_path: Path):
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Breached:
        job_id: str
        attempt: int
        limit: str

        def describe(self) -> str:
            return f"{self.limit} limit breached; reverted"

    setup = Setup(tmp_path)
    job_id = setup.submit("ok", [sys.executable, "-c", "import time; time.sleep(0.5)"])
    backend = _NewerBackend(setup.state, node=NODE)
    from slicebox import policies
    from slicebox.controller import Controller

    setup.controller = Controller(setup.store, setup.pool, policies.get("fifo"), setup.placer,
                                  backend, setup.state, interval=0.05)
    setup.controller.run_once()
    backend.extra = [Breached(job_id, 1, "cores"), object(), ("not", "an event")]
    setup.run_until(setup.finished(job_id))
    assert setup.state_of(job_id) is JobState.SUCCEEDED
    assert ("breach", "cores limit breached; reverted") in setup.reasons(job_id)
    details = [e.details for e in setup.store.events(job_id) if e.kind == "breach"]
    assert json.loads(json.dumps(details))[0]["limit"] == "cores"
