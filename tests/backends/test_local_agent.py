"""What a node agent (the Ray backend) needs of the local backend: extra variables for a
gang rank, and checkpoint folders on storage every node mounts."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import pytest

from slicebox.backends.base import LaunchError, Progress
from slicebox.backends.local import LocalBackend
from slicebox.store import Store

from .helpers import composition, job_argv, started_job, wait_for

# Prints the variables a gang rank reads, as one JSON line.
SHOW_ENV = ("import json, os; print('ENV ' + json.dumps({k: os.environ.get(k) for k in "
            "('MASTER_ADDR', 'RANK', 'WORLD_SIZE', 'SLICEBOX_WORLD_SIZE', 'SLICEBOX_RANK', "
            "'SLICEBOX_JOB_ID', 'CUDA_VISIBLE_DEVICES')}))")

# Leaves a file in its checkpoint folder (reading the one an earlier attempt left), and
# says what it sees of the folder that holds every job's checkpoint folder.
CHECKPOINTER = r"""
import json, os, sys
from pathlib import Path
mine = Path(os.environ["SLICEBOX_CHECKPOINT_PATH"])
before = (mine / "step").read_text() if (mine / "step").exists() else None
(mine / "step").write_text(os.environ["SLICEBOX_ATTEMPT"])
seen = {"mine": str(mine), "before": before}
for name, path in (("root", mine.parent), ("other", Path(sys.argv[1]))):
    try:
        seen[name] = sorted(os.listdir(path))
    except OSError as exc:
        seen[name] = type(exc).__name__
print("SEEN " + json.dumps(seen), flush=True)
"""


def _line(log: Path, prefix: str) -> dict:
    for line in log.read_text().splitlines():
        if line.startswith(prefix):
            return json.loads(line.removeprefix(prefix))
    raise AssertionError(f"no {prefix!r} line in {log}:\n{log.read_text()}")


# ---- extra_env ----------------------------------------------------------------------------

def test_extra_env_reaches_the_job_and_wins_over_the_spec(store: Store, backend: LocalBackend):
    job, comp = started_job(store, composition, [sys.executable, "-c", SHOW_ENV],
                            env={"MASTER_ADDR": "from-the-spec"})
    rank = {"MASTER_ADDR": "10.0.0.7", "RANK": "1", "WORLD_SIZE": "2",
            "SLICEBOX_WORLD_SIZE": "2", "SLICEBOX_RANK": "1"}  # the gang's, not the node's
    started = backend.launch(job, comp, extra_env=rank)
    exited, _ = wait_for(backend, job.id)
    assert exited.exit_code == 0
    seen = _line(Path(started.log_path), "ENV ")
    assert seen == {**rank, "SLICEBOX_JOB_ID": job.id, "CUDA_VISIBLE_DEVICES": ""}


@pytest.mark.parametrize(("name", "value", "says"), [
    ("SLICEBOX_JOB_ID", "someone-else", "SLICEBOX_JOB_ID"),
    ("SLICEBOX_CHECKPOINT_PATH", "/tmp/x", "SLICEBOX_CHECKPOINT_PATH"),
    ("SLICEBOX_CPUS", "64", "SLICEBOX_CPUS"),
    ("CUDA_VISIBLE_DEVICES", "0,1,2,3", "CUDA_VISIBLE_DEVICES"),
    ("A=B", "1", "'A=B'"),
    ("", "1", "''"),
    ("RANK", "0\x00LD_PRELOAD=/evil.so", "'RANK'"),
])
def test_extra_env_may_not_change_what_the_job_was_given(
        store: Store, backend: LocalBackend, name: str, value: str, says: str):
    job, comp = started_job(store, composition, ["true"])
    with pytest.raises(LaunchError, match=f"variable {says}"):
        backend.launch(job, comp, extra_env={"RANK": "0", name: value})
    assert backend.running() == set()  # refused before anything started
    assert not (backend.logs_dir / f"{job.id}.log").exists()


# ---- checkpoint_root ---------------------------------------------------------------------

@pytest.mark.parametrize("where", ["outside", "holds-state", "inside-state"])
def test_checkpoints_go_under_the_root_and_only_the_jobs_own_folder_is_open(
        store: Store, state: Path, tmp_path: Path, where: str):
    root = {"outside": tmp_path / "shared" / "checkpoints", "holds-state": tmp_path,
            "inside-state": state / "shared-checkpoints"}[where]
    backend = LocalBackend(state, checkpoint_root=root)
    (root / "someone-else").mkdir(parents=True)  # another job's checkpoints
    job, comp = started_job(store, composition,
                            [sys.executable, "-c", CHECKPOINTER, str(root / "someone-else")])
    assert backend.checkpoint_dir(job) == root / job.id  # where the controller reads it
    started = backend.launch(job, comp)
    exited, _ = wait_for(backend, job.id)
    log = Path(started.log_path)
    assert exited.exit_code == 0, log.read_text()
    seen = _line(log, "SEEN ")
    assert seen["mine"] == str(root / job.id)
    assert (root / job.id / "step").read_text() == "1"  # written where every node looks
    assert not (state / "checkpoints" / job.id).exists()
    if backend.isolation.namespaces:
        # As with the state directory: its own folder (its mount point) and no other.
        assert seen["root"] == [job.id]
        assert seen["other"] == "FileNotFoundError"


def test_a_job_resumed_on_another_node_finds_its_checkpoint(store: Store, tmp_path: Path):
    shared = tmp_path / "shared"
    first = LocalBackend(tmp_path / "node-a", node="local", checkpoint_root=shared)
    second = LocalBackend(tmp_path / "node-b", node="local", checkpoint_root=shared)
    job, comp = started_job(store, composition, [sys.executable, "-c", CHECKPOINTER, "/"])
    first.launch(job, comp)
    assert wait_for(first, job.id)[0].exit_code == 0
    again = dataclasses.replace(job, attempt=job.attempt + 1)
    log = Path(second.launch(again, comp).log_path)
    assert wait_for(second, job.id)[0].exit_code == 0, log.read_text()
    seen = _line(log, "SEEN ")
    assert seen["before"] == str(job.attempt)  # what the first node's attempt saved
    assert (shared / job.id / "step").read_text() == str(again.attempt)


# ---- a new controller, the same agent -------------------------------------------------------

def test_an_agent_re_adopts_what_it_runs_and_rereads_what_was_never_recorded(
        store: Store, backend: LocalBackend, tmp_path: Path):
    """A node agent outlives its controller: asked by the next one, it goes on watching
    the same process, from the offset the store has (the dead controller recorded none
    of the progress the agent had read), and reports its exit once."""
    job, comp = started_job(store, composition, job_argv("sleeper.py", "1.5", str(tmp_path)))
    started = backend.launch(job, comp)
    store.set_process(job.id, started.pid, started.start_time, started.log_path)
    end = time.monotonic() + 20
    while not any(isinstance(e, Progress) for e in backend.poll()):  # read, then lost
        assert time.monotonic() < end
        time.sleep(0.05)
    adopted = backend.adopt(store.job(job.id))
    assert adopted is not None
    assert (adopted.pid, adopted.start_time) == (started.pid, started.start_time)
    assert adopted.log_offset == started.log_offset
    exited, events = wait_for(backend, job.id)
    assert exited.exit_code == 0
    samples = [e.samples for e in events if isinstance(e, Progress) and e.samples]
    assert samples[0] == 100  # read again from the start of the attempt
    assert backend.running() == set() and backend.poll() == []
