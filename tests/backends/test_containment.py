"""Hostile jobs against the local backend's containment, with real processes.

Each test runs under the strongest isolation this machine offers (the default backend)
and, where the guard differs, under the monitor alone (cgroups off): that is the only
guard on machines without writable cgroups, so it is tested wherever the tests run.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from slicebox.backends.base import Breached, Exited
from slicebox.backends.local import LocalBackend
from slicebox.store import Store

from .helpers import CORES, composition, job_argv, started_job, wait_for

SMALL_GIB = 0.125  # 128 MiB: room for Python, not for what the hostile job asks


def _leftovers(job_id: str) -> list[psutil.Process]:
    """Live processes of the job, found by its id in their argv or their environment."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if any(job_id in arg for arg in proc.cmdline()) or \
                    proc.environ().get("SLICEBOX_JOB_ID") == job_id:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _job_tree(job_id: str) -> list[psutil.Process]:
    return [p for p in _leftovers(job_id) if "launch.py" not in " ".join(p.cmdline())]


def _wait_line(log: Path, marker: str, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.exists() and marker in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise TimeoutError(f"no {marker!r} in {log}:\n{log.read_text(errors='replace')}")


def _wait_tree(job_id: str, count: int, timeout: float = 10.0) -> list[psutil.Process]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        tree = _job_tree(job_id)
        if len(tree) >= count:
            return tree
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id}: fewer than {count} processes")


def _no_leftovers(job_id: str) -> None:
    end = time.monotonic() + 5
    while _leftovers(job_id) and time.monotonic() < end:
        time.sleep(0.05)
    assert _leftovers(job_id) == []


@pytest.fixture(params=["strongest", "monitor"])
def contained(request: pytest.FixtureRequest, state: Path) -> LocalBackend:
    if request.param == "strongest":
        return LocalBackend(state)
    return LocalBackend(state, cgroup="off")


def test_a_job_that_escapes_its_group_and_cores_leaves_nothing_after_stop(
        store: Store, contained: LocalBackend, tmp_path: Path):
    out = tmp_path / "escape.json"
    job, comp = started_job(store, lambda j: composition(j, cores=CORES[-1:]),
                            job_argv("hostile.py", "escape", str(out)),
                            checkpoint={"grace_seconds": 1})
    started = contained.launch(job, comp)
    _wait_line(Path(started.log_path), "READY")
    tree = _wait_tree(job.id, 3)  # itself, the child in its own group, the daemon
    events = []
    end = time.monotonic() + 5
    while time.monotonic() < end:  # within a round or two every thread is on its cores
        events += contained.poll()
        wide = [p for p in tree if p.is_running() and set(p.cpu_affinity()) - set(comp.cores)]
        if not wide:
            break
        time.sleep(0.05)
    assert not wide
    breaches = [e for e in events if isinstance(e, Breached)]
    if not contained.isolation.cpuset_parent:  # the monitor put it back, and said so
        assert breaches and breaches[0].limit == "cores" and breaches[0].action == "reverted"
        assert f"cores {comp.cores[0]}" == breaches[0].allowed
    else:  # the kernel's cpuset never let it widen
        assert json.loads(out.read_text())["affinity"] == list(comp.cores)
    contained.stop(store.job(job.id))
    exited, _ = wait_for(contained, job.id)
    assert exited.stopped
    _no_leftovers(job.id)


@pytest.mark.parametrize("mode, marker", [("shm", "WROTE"), ("map", "MAPPED")])
def test_memory_through_shm_or_a_shared_mapping_stops_the_job(
        store: Store, contained: LocalBackend, mode: str, marker: str):
    job, comp = started_job(store, lambda j: composition(j, memory_gib=SMALL_GIB),
                            job_argv("hostile.py", mode, "256"))
    if mode == "shm" and not contained.isolation.namespaces \
            and contained.isolation.memory_parent is None:
        pytest.skip("an unmapped file in a shared /dev/shm is nobody's without cgroups or "
                    "a private /dev/shm")
    contained.launch(job, comp)
    exited, events = wait_for(contained, job.id)
    assert exited.exit_code != 0
    assert "memory limit of 0.12 GiB" in (exited.error or ""), exited
    breaches = [e for e in events if isinstance(e, Breached)]
    if contained.isolation.memory_parent is None:  # the monitor found it
        assert breaches and breaches[0].limit == "memory" and breaches[0].action == "killed"
    _no_leftovers(job.id)


def test_a_job_cannot_open_the_store_or_another_jobs_log(store: Store, state: Path):
    backend = LocalBackend(state)
    if not backend.isolation.namespaces:
        pytest.skip("no private mount namespace here: " + "; ".join(backend.isolation.notes))
    other, comp = started_job(store, composition, ["sleep", "30"])
    other_log = Path(backend.launch(other, comp).log_path)
    db = state / "slicebox.db"
    assert db.exists() and other_log.exists()
    spy, comp = started_job(store, composition,
                            job_argv("hostile.py", "snoop", str(db), str(other_log)))
    spy_log = Path(backend.launch(spy, comp).log_path)
    exited, _ = wait_for(backend, spy.id)
    assert exited.exit_code == 0, spy_log.read_text()
    line = next(x for x in spy_log.read_text().splitlines() if x.startswith("SNOOP "))
    seen = json.loads(line.removeprefix("SNOOP "))
    assert seen[str(db)] != "opened" and seen[str(other_log)] != "opened"
    assert seen["log_folder"] in ([], "FileNotFoundError")  # its stdout's folder: hidden
    # Only the mount point of its own checkpoint folder (<state>/checkpoints/<its id>).
    assert seen["state_folder"] in ([], ["checkpoints"])
    assert seen["cgroup_escape"] != "moved"
    assert len(seen["processes"]) <= 3  # its init, itself: not the controller, not others
    backend.stop(store.job(other.id))
    wait_for(backend, other.id)


def test_kill_9_of_the_launcher_leaves_nothing_running(store: Store, contained: LocalBackend,
                                                       tmp_path: Path):
    out = tmp_path / "escape.json"
    job, comp = started_job(store, composition, job_argv("hostile.py", "escape", str(out)))
    started = contained.launch(job, comp)
    _wait_line(Path(started.log_path), "READY")
    _wait_tree(job.id, 3)
    contained.poll()  # a round of the controller sees the job's tree
    os.kill(started.pid, signal.SIGKILL)
    exited, _ = wait_for(contained, job.id)
    assert isinstance(exited, Exited) and exited.exit_code == -signal.SIGKILL
    assert "launcher" in (exited.error or "") and "memory" not in (exited.error or "")
    _no_leftovers(job.id)
    groups = [g for g in contained.isolation.cgroups_for(job.id, job.attempt) if g]
    end = time.monotonic() + 5
    while any(g.exists() for g in groups) and time.monotonic() < end:
        contained.poll()  # the backend removes what the dead launcher could not
        time.sleep(0.05)
    assert not any(g.exists() for g in groups)


def test_a_job_sees_its_own_staged_copy_in_dev_shm_and_no_other(store: Store, state: Path):
    backend = LocalBackend(state)
    if not backend.isolation.namespaces:
        pytest.skip("no private /dev/shm here: " + "; ".join(backend.isolation.notes))
    cache = Path("/dev/shm/slicebox-cache")
    mine, theirs = cache / f"h5-test-{os.getpid()}-mine", cache / f"h5-test-{os.getpid()}-theirs"
    try:
        for folder in (mine, theirs):
            folder.mkdir(parents=True)
            (folder / "train.bin").write_bytes(b"x")
        spy, comp = started_job(store, lambda j: composition(j, data=str(mine)),
                                job_argv("hostile.py", "snoop", str(mine / "train.bin"),
                                         str(theirs / "train.bin")))
        log = Path(backend.launch(spy, comp).log_path)
        exited, _ = wait_for(backend, spy.id)
        assert exited.exit_code == 0, log.read_text()
        line = next(x for x in log.read_text().splitlines() if x.startswith("SNOOP "))
        seen = json.loads(line.removeprefix("SNOOP "))
        assert seen[str(mine / "train.bin")] == "opened"
        assert seen[str(theirs / "train.bin")] == "FileNotFoundError"
    finally:
        for folder in (mine, theirs):
            (folder / "train.bin").unlink(missing_ok=True)
            folder.rmdir()


def test_the_launcher_ignores_the_environment_it_hands_to_the_job(store: Store, state: Path,
                                                                  tmp_path: Path):
    """A PYTHONPATH with a poisoned ``json`` module (what the launcher imports) reaches the
    job, as declared, but never the launcher."""
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "json.py").write_text("raise SystemExit(99)\n")
    (evil / "argparse.py").write_text("raise SystemExit(98)\n")
    backend = LocalBackend(state, base_env={"PATH": os.environ["PATH"],
                                            "PYTHONPATH": str(evil)})
    job, comp = started_job(store, composition, [
        "python3", "-c", "import os; print('JOB-SEES', os.environ['PYTHONPATH'])"])
    started = backend.launch(job, comp)
    exited, _ = wait_for(backend, job.id)
    log = Path(started.log_path).read_text()
    assert exited.exit_code == 0, log
    assert f"JOB-SEES {evil}" in log
