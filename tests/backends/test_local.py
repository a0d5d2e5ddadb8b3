"""The local backend with real processes: composition enforced, stops, exits, adoption."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil
import pytest

from slicebox.backends import procs
from slicebox.backends.base import Progress
from slicebox.backends.env import GIB
from slicebox.backends.local import LocalBackend
from slicebox.store import Store

from .helpers import CORES, composition, job_argv, started_job, wait_for


def _introspection(log: Path) -> dict:
    for line in log.read_text().splitlines():
        if line.startswith("INTROSPECT "):
            return json.loads(line.removeprefix("INTROSPECT "))
    raise AssertionError(f"no INTROSPECT line in {log}:\n{log.read_text()}")


def test_job_sees_exactly_its_composition(store: Store, backend: LocalBackend, tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.bin").write_bytes(b"x")
    job, comp = started_job(store, lambda j: composition(
        j, gpu_uuid="GPU-5e1f0c3a-0000-4000-8000-000000000001", data=str(data)),
        job_argv("introspect.py"))
    started = backend.launch(job, comp)
    exited, _ = wait_for(backend, job.id)
    assert exited.exit_code == 0
    seen = _introspection(Path(started.log_path))
    assert seen["job_id"] == job.id
    assert seen["affinity"] == list(comp.cores)
    assert seen["cuda_visible_devices"] == comp.slices[0].uuid
    assert seen["data"] == comp.data_path and seen["data_files"] == ["train.bin"]
    assert seen["omp_num_threads"] == str(len(comp.cores))
    limit = int(comp.memory_gib * GIB)
    mechanism = seen["mechanism"]
    if mechanism.startswith(("cgroup2:", "cgroup1:")):
        assert seen["cgroup_memory_max"] == limit and seen["rlimit_data"] is None
    else:  # the data-segment cap: an address-space cap would stop CUDA (and torch)
        assert mechanism == "rlimit-data" and seen["rlimit_data"] == limit
        assert seen["rlimit_as"] is None


def test_cpu_only_job_sees_no_gpu(store: Store, backend: LocalBackend):
    job, comp = started_job(store, lambda j: composition(j, cores=CORES, memory_gib=2),
                            job_argv("introspect.py", "a b", "$HOME;x"))
    started = backend.launch(job, comp)
    wait_for(backend, job.id)
    seen = _introspection(Path(started.log_path))
    assert seen["cuda_visible_devices"] == ""  # empty, not unset: no GPU at all
    assert seen["affinity"] == list(CORES)
    assert seen["argv"] == ["a b", "$HOME;x"]  # no shell ever saw them
    if not seen["mechanism"].startswith(("cgroup2:", "cgroup1:")):
        assert seen["rlimit_data"] == 2 * GIB


def test_missing_program_is_a_clear_failure(store: Store, backend: LocalBackend):
    job, comp = started_job(store, composition, ["/nonexistent/train"])
    backend.launch(job, comp)
    exited, _ = wait_for(backend, job.id)
    assert exited.exit_code == 127
    assert "cannot run '/nonexistent/train'" in (exited.error or "")


def test_graceful_stop_sends_the_checkpoint_signal(store: Store, backend: LocalBackend,
                                                   tmp_path: Path):
    job, comp = started_job(store, composition, job_argv("sleeper.py", "30", str(tmp_path)),
                            checkpoint={"signal": "SIGTERM", "grace_seconds": 10})
    backend.launch(job, comp)
    _wait_progress(backend, job.id)
    began = time.monotonic()
    backend.stop(job)
    exited, _ = wait_for(backend, job.id)
    assert (exited.exit_code, exited.stopped, exited.killed) == (0, True, False)
    assert (tmp_path / f"{job.id}.checkpoint").read_text() == "checkpointed"
    assert time.monotonic() - began < 5


def test_stop_escalates_to_sigkill_after_the_grace_period(store: Store, backend: LocalBackend,
                                                          tmp_path: Path):
    job, comp = started_job(store, composition,
                            job_argv("sleeper.py", "30", str(tmp_path), "--ignore-term"),
                            checkpoint={"grace_seconds": 0.5})
    started = backend.launch(job, comp)
    _wait_progress(backend, job.id)
    backend.stop(job)
    exited, _ = wait_for(backend, job.id)
    assert exited.killed and exited.exit_code == -signal.SIGKILL
    assert not psutil.pid_exists(started.pid) or psutil.Process(started.pid).status() == "zombie"


def test_progress_lines_become_progress_events(store: Store, backend: LocalBackend,
                                               tmp_path: Path):
    job, comp = started_job(store, composition, job_argv("sleeper.py", "0.5", str(tmp_path)))
    backend.launch(job, comp)
    _, events = wait_for(backend, job.id)
    samples = [e.samples for e in events if isinstance(e, Progress) and e.samples]
    assert samples and samples == sorted(samples) and samples[0] == 100


def test_a_new_backend_adopts_a_running_job_and_learns_its_exit_code(
        store: Store, backend: LocalBackend, state: Path, tmp_path: Path):
    job, comp = started_job(store, composition, [
        "python3", "-c", "import time, sys; time.sleep(1.5); sys.exit(7)"])
    started = backend.launch(job, comp)
    store.set_process(job.id, started.pid, started.start_time, started.log_path,
                      started.log_offset)
    fresh = LocalBackend(state)  # as after a restart: not the job's parent
    adopted = fresh.adopt(store.job(job.id))
    assert adopted is not None and adopted.pid == started.pid
    exited, _ = wait_for(fresh, job.id)
    assert exited.exit_code == 7
    wait_for(backend, job.id)  # reap our own child


def test_a_reused_pid_is_not_adopted(store: Store, backend: LocalBackend):
    job, comp = started_job(store, composition, ["sleep", "30"])
    started = backend.launch(job, comp)
    # Same pid, different start time: a different process.
    store.set_process(job.id, started.pid, started.start_time - 100, started.log_path)
    assert LocalBackend(backend.state_dir).adopt(store.job(job.id)) is None
    # ...and what was left of the job is gone, so a new attempt cannot run beside it.
    exited, _ = wait_for(backend, job.id)
    assert exited.exit_code is not None and exited.exit_code < 0


def test_processes_the_job_left_behind_are_killed(store: Store, backend: LocalBackend,
                                                  tmp_path: Path):
    pidfile = tmp_path / "child.pid"
    code = ("import subprocess, sys; p = subprocess.Popen(['sleep', '60']); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid))")
    job, comp = started_job(store, composition, ["python3", "-c", code])
    backend.launch(job, comp)
    exited, _ = wait_for(backend, job.id)
    assert exited.exit_code == 0 and pidfile.read_text().isdigit()
    # The pid it wrote may be one of its own pid namespace: look for the job's id instead.
    assert procs.job_processes(job.id) == []


def test_cgroup_protocol_against_a_directory(store: Store, state: Path, tmp_path: Path):
    """Where cgroup v2 is writable, the launcher makes the job's cgroup with its cap and puts
    the job in it; a plain folder stands in for cgroupfs here (the files are the API)."""
    root = tmp_path / "cgroup"
    root.mkdir()
    backend = LocalBackend(state, cgroup=root)
    job, comp = started_job(store, composition, ["true"])
    backend.launch(job, comp)
    exited, _ = wait_for(backend, job.id)
    group = root / f"{job.id}-1"
    assert (group / "memory.max").read_text() == str(int(1.5 * GIB))
    assert exited.exit_code == 0 and (group / "cgroup.procs").read_text().isdigit()


def _wait_progress(backend: LocalBackend, job_id: str) -> None:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if any(isinstance(e, Progress) and e.job_id == job_id for e in backend.poll()):
            return
        time.sleep(0.05)
    raise TimeoutError("no progress reported")


def test_a_process_started_but_never_recorded_is_found_and_adopted(
        store: Store, backend: LocalBackend):
    """The controller died between starting the process and writing its pid."""
    job, comp = started_job(store, composition, ["sleep", "30"])
    started = backend.launch(job, comp)
    adopted = LocalBackend(backend.state_dir).adopt(store.job(job.id))  # pid is None here
    assert adopted is not None and adopted.pid == started.pid
    backend.stop(job)
    wait_for(backend, job.id)


def test_backends_by_name(state: Path):
    from slicebox import backends

    assert isinstance(backends.get("local", state_dir=state), LocalBackend)
    with pytest.raises(LookupError, match="valid: local"):
        backends.get("k8s")


def test_a_core_this_machine_lacks_is_a_clear_failure(store: Store, backend: LocalBackend):
    job, comp = started_job(store, lambda j: composition(j, cores=(4095,)), ["true"])
    backend.launch(job, comp)
    exited, _ = wait_for(backend, job.id)
    assert exited.exit_code == 126 and "cannot pin the job to cores 4095" in (exited.error or "")


def test_the_memory_limit_holds(store: Store, backend: LocalBackend):
    """Asking for more than the composition's memory fails the job (MemoryError under the
    rlimit, the OOM killer under a cgroup); within it, the same job runs."""
    grab = "import sys; b = bytearray(int(sys.argv[1]) << 20); print('got it')"
    over, comp = started_job(store, lambda j: composition(j, memory_gib=0.25),
                             ["python3", "-c", grab, "512"])
    backend.launch(over, comp)
    exited, _ = wait_for(backend, over.id)
    assert exited.exit_code != 0
    under, comp = started_job(store, lambda j: composition(j, memory_gib=0.25),
                              ["python3", "-c", grab, "64"])
    backend.launch(under, comp)
    exited, _ = wait_for(backend, under.id)
    assert exited.exit_code == 0


def test_apply_starts_and_stops_what_a_plan_says(store: Store, backend: LocalBackend):
    from slicebox.backends.base import Started
    from slicebox.pool.composition import Plan

    job, comp = started_job(store, composition, ["sleep", "30"],
                            checkpoint={"grace_seconds": 0})
    [started] = backend.apply(Plan(start=(comp,)), {job.id: job})
    assert isinstance(started, Started) and started.job_id == job.id
    backend.apply(Plan(stop=(job.id,)), {job.id: job})
    exited, _ = wait_for(backend, job.id)
    assert exited.killed and exited.exit_code == -signal.SIGKILL
