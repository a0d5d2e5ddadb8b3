"""Fencing: a node agent's job ends once its agent is cut off (its keepalive file goes
stale) or dies, so a controller that starts it elsewhere never has it running twice.
Without a keepalive, or for a local controller, nothing of this applies."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from slicebox.backends import procs
from slicebox.backends.launch import Fence
from slicebox.backends.launch import __file__ as LAUNCHER
from slicebox.backends.local import LocalBackend
from slicebox.store import Store

from .helpers import composition, job_argv, started_job, wait_for

FENCE_S = 1.5
# Generous: six helpers share two cores. The launcher looks every 0.5 s; the rest is a
# loaded machine's scheduling delay.
LATE_S = 6.0


class Toucher:
    """The agent's side: touches the keepalive while it is "in touch"."""

    def __init__(self, path: Path, every: float = 0.2) -> None:
        self.path, self.every = path, every
        self.last = time.monotonic()
        self._stop = threading.Event()
        path.touch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            os.utime(self.path)
            self.last = time.monotonic()

    def cut_off(self) -> float:
        """Stop touching; when it was last touched (monotonic)."""
        self._stop.set()
        self._thread.join()
        return self.last


@pytest.fixture()
def keepalive(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "agent.keepalive"


def _leftovers(job_id: str) -> list[psutil.Process]:
    """Live processes of the job, by the id in their environment or their argv (the
    escape job's daemon has no environment)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("SLICEBOX_JOB_ID") == job_id or \
                    any(job_id in arg for arg in proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _no_leftovers(job_id: str) -> None:
    end = time.monotonic() + 5
    while _leftovers(job_id) and time.monotonic() < end:
        time.sleep(0.05)
    assert _leftovers(job_id) == []


def _wait_line(log: Path, marker: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.exists() and marker in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"no {marker!r} in {log}:\n{log.read_text(errors='replace')}")


# ---- the rule, on a fake clock ---------------------------------------------------------------

def test_the_fence_rule(tmp_path: Path) -> None:
    path, now = tmp_path / "keepalive", [100.0]
    path.touch()
    fence = Fence(str(path), 10.0, None, clock=lambda: now[0])
    now[0] = 109.9
    assert fence.reason() is None
    os.utime(path, ns=(1, 1))  # a change of any kind, even to an old time, is a touch
    assert fence.reason() is None
    now[0] = 119.8
    assert fence.reason() is None  # 9.8 s since the change was seen
    now[0] = 120.0
    assert "keepalive went stale for 10.1 s" in (fence.reason() or "")
    path.unlink()  # gone counts as unchanged, never as a touch
    fresh = Fence(str(path), 10.0, None, clock=lambda: now[0])
    assert fresh.reason() is None
    now[0] = 130.5
    assert "fenced so that it cannot run twice" in (fresh.reason() or "")


def test_the_parent_rule(tmp_path: Path) -> None:
    assert Fence(None, 10.0, os.getppid()).reason() is None
    assert not Fence(None, 10.0, None).active
    assert "node agent (pid 1) died" in (Fence(None, 10.0, 1).reason() or "")


# ---- the launcher alone -----------------------------------------------------------------

def test_the_launcher_fences_a_job_whose_keepalive_is_missing(tmp_path: Path) -> None:
    exit_file = tmp_path / "exit"
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-I", LAUNCHER, "--job-id", "j1", "--attempt", "1",
         "--exit-file", str(exit_file), "--keepalive", str(tmp_path / "none"),
         "--fence-seconds", "1", "--", "sleep", "60"],
        capture_output=True, timeout=60)
    assert time.monotonic() - began < 1 + LATE_S
    record = json.loads(exit_file.read_text())
    assert record["fenced"] is True and record["exit_code"] == -signal.SIGKILL
    assert "keepalive went stale" in record["error"]
    assert b"fenced" in done.stderr


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_the_launcher_refuses_a_fence_that_is_not_positive(tmp_path: Path, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-I", LAUNCHER, "--job-id", "j1", "--attempt", "1",
         "--exit-file", str(tmp_path / "exit"), "--keepalive", str(tmp_path / "k"),
         "--fence-seconds", value, "--", "true"], capture_output=True, timeout=60)
    assert done.returncode == 2 and b"--fence-seconds must be positive" in done.stderr
    assert not (tmp_path / "exit").exists()


def test_a_backend_refuses_a_fence_that_is_not_positive(state: Path, keepalive: Path) -> None:
    with pytest.raises(ValueError, match="fence_seconds"):
        LocalBackend(state, keepalive=keepalive, fence_seconds=0)


# ---- the backend ------------------------------------------------------------------------

@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "no-namespaces"])
def test_a_cut_off_agent_s_job_is_fenced_whole(store: Store, state: Path, keepalive: Path,
                                               tmp_path: Path, namespaces: bool) -> None:
    backend = LocalBackend(state, keepalive=keepalive, fence_seconds=FENCE_S,
                           namespaces=namespaces)
    toucher = Toucher(keepalive)
    # A job with a child in a group of its own and an orphaned daemon with no environment.
    job, comp = started_job(store, composition,
                            job_argv("hostile.py", "escape", str(tmp_path / "escape.json")))
    started = backend.launch(job, comp)
    _wait_line(Path(started.log_path), "READY")
    backend.poll()
    last_touch = toucher.cut_off()
    exited, _ = wait_for(backend, job.id, timeout=FENCE_S + LATE_S + 10)
    ended_after = time.monotonic() - last_touch
    assert FENCE_S <= ended_after < FENCE_S + LATE_S
    assert exited.exit_code == -signal.SIGKILL and exited.node_lost
    assert "keepalive went stale" in (exited.error or "")
    assert "cannot run twice" in (exited.error or "")
    assert "memory" not in (exited.error or "")
    _no_leftovers(job.id)
    assert backend.fenced(job.id, job.attempt) == exited.error
    # A controller that comes later (after a restart) finds it ended, and why.
    store.set_process(job.id, started.pid, started.start_time, started.log_path)
    fresh = LocalBackend(state)
    assert fresh.adopt(store.job(job.id)) is None
    record = fresh.exit_record(store.job(job.id))
    assert record is not None and record.node_lost and "fenced" in (record.error or "")


def test_a_job_whose_agent_keeps_touching_runs_to_its_end(store: Store, state: Path,
                                                          keepalive: Path, tmp_path: Path):
    fence_s = 3.0  # 5 s of work: longer than the fence, so only the touches keep it alive
    backend = LocalBackend(state, keepalive=keepalive, fence_seconds=fence_s)
    toucher = Toucher(keepalive)
    try:
        job, comp = started_job(store, composition, job_argv("sleeper.py", "5", str(tmp_path)))
        backend.launch(job, comp)
        exited, _ = wait_for(backend, job.id, timeout=60)
    finally:
        toucher.cut_off()
    assert (exited.exit_code, exited.error, exited.node_lost) == (0, None, False)
    assert backend.fenced(job.id, job.attempt) is None


def test_without_a_keepalive_a_job_is_never_fenced(store: Store, state: Path, tmp_path: Path):
    backend = LocalBackend(state)
    job, comp = started_job(store, composition, job_argv("sleeper.py", "2", str(tmp_path)))
    started = backend.launch(job, comp)
    launcher = psutil.Process(started.pid).cmdline()
    assert not {"--keepalive", "--parent-pid"} & set(launcher)
    exited, _ = wait_for(backend, job.id)
    assert (exited.exit_code, exited.node_lost) == (0, False)
    record = backend.exit_record(store.job(job.id))
    assert record is not None and not record.node_lost


# ---- the agent dies ---------------------------------------------------------------------

# A stand-in for a node agent: launches the job, says so, and waits to be killed.
AGENT = """
import json, pickle, sys, time
from slicebox.backends.local import LocalBackend
state, die_with_parent, handed = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
job, comp = pickle.load(open(handed, "rb"))
started = LocalBackend(state, die_with_parent=die_with_parent).launch(job, comp)
print(json.dumps({"pid": started.pid, "start_time": started.start_time,
                  "log_path": started.log_path}), flush=True)
time.sleep(600)
"""


def _agent_launches(store: Store, state: Path, tmp_path: Path, die_with_parent: bool
                    ) -> tuple[str, dict, subprocess.Popen[str]]:
    job, comp = started_job(store, composition, job_argv("sleeper.py", "60", str(tmp_path)))
    handed = tmp_path / "handed.pickle"
    handed.write_bytes(pickle.dumps((job, comp)))
    agent = subprocess.Popen([sys.executable, "-c", AGENT, str(state),
                              "1" if die_with_parent else "0", str(handed)],
                             stdout=subprocess.PIPE, text=True)
    assert agent.stdout is not None
    started = json.loads(agent.stdout.readline())
    store.set_process(job.id, started["pid"], started["start_time"], started["log_path"])
    _wait_line(Path(started["log_path"]), ":::SLICEBOX")  # the job runs
    return job.id, started, agent


def test_a_job_ends_with_its_agent_when_asked(store: Store, state: Path, tmp_path: Path):
    job_id, started, agent = _agent_launches(store, state, tmp_path, die_with_parent=True)
    agent.kill()
    agent.wait()
    died = time.monotonic()
    while procs.alive(started["pid"], started["start_time"]) and \
            time.monotonic() - died < LATE_S:
        time.sleep(0.05)
    assert not procs.alive(started["pid"], started["start_time"])
    _no_leftovers(job_id)
    fresh = LocalBackend(state)  # the next agent, or controller
    job = store.job(job_id)
    assert fresh.adopt(job) is None  # ended, not adopted
    assert f"node agent (pid {agent.pid}) died" in (fresh.fenced(job_id, job.attempt) or "")
    record = fresh.exit_record(job)
    assert record is not None and record.node_lost


def test_a_local_controller_s_job_survives_its_death(store: Store, state: Path, tmp_path: Path):
    job_id, started, agent = _agent_launches(store, state, tmp_path, die_with_parent=False)
    agent.kill()
    agent.wait()
    time.sleep(1.5)  # three of the launcher's looks, had it been told to look
    assert procs.alive(started["pid"], started["start_time"])
    fresh = LocalBackend(state)
    job = store.job(job_id)
    assert fresh.adopt(job) is not None
    fresh.stop(job)
    exited, _ = wait_for(fresh, job_id)
    assert exited.stopped and exited.exit_code == 0 and not exited.node_lost


def test_an_agent_that_fenced_a_job_reports_it_ended_to_a_new_controller(
        store: Store, state: Path, keepalive: Path, tmp_path: Path):
    """The agent outlives its controller and fences the job while no controller polls it:
    the new controller's adopt finds it ended, the exit record says why, and the agent
    does not report the exit a second time."""
    agent = LocalBackend(state, keepalive=keepalive, fence_seconds=1.0)  # never touched
    job, comp = started_job(store, composition, job_argv("sleeper.py", "60", str(tmp_path)))
    started = agent.launch(job, comp)
    store.set_process(job.id, started.pid, started.start_time, started.log_path)
    end = time.monotonic() + 1.0 + LATE_S
    while procs.alive(started.pid, started.start_time) and time.monotonic() < end:
        time.sleep(0.05)  # nobody polls meanwhile
    assert not procs.alive(started.pid, started.start_time)
    job = store.job(job.id)
    assert agent.adopt(job) is None
    assert agent.running() == set()
    assert not [e for e in agent.poll() if getattr(e, "job_id", None) == job.id]
    record = agent.exit_record(job)
    assert record is not None and record.exit_code == -signal.SIGKILL and record.node_lost
    assert "keepalive went stale" in (record.error or "")
    assert agent.fenced(job.id, job.attempt) == record.error
    _no_leftovers(job.id)
