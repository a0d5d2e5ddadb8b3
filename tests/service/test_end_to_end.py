"""A job submitted through ``slicebox.Client`` from another process runs: the service and
a real controller (local backend) serve one state directory; ``stop_running`` (what
``slicebox down`` calls) stops them and the pid file goes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from slicebox.client import Client
from slicebox.service.server import PID_FILE, running, stop_running
from slicebox.store import Store

HERE = Path(__file__).resolve().parent
POOL = "name: here\nnodes:\n  - {name: here, memory_gib: 2, cores: {0: \"0\"}}\n"


@pytest.fixture()
def served(tmp_path: Path):
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "pool.yaml").write_text(POOL)
    Store.open(state).close()  # the store exists before either process opens it
    process = subprocess.Popen([sys.executable, str(HERE / "serve_with_controller.py"),
                                str(state), str(tmp_path / "pool.yaml")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while running(state) is None:
            assert process.poll() is None, process.communicate()[0].decode()
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.1)
        yield state, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)
        assert process.stdout is not None
        process.stdout.close()


def test_a_job_submitted_through_the_client_runs_and_down_stops_the_service(
        served, tmp_path: Path):
    state, process = served
    store = Store.open(state)
    try:
        _, token = store.create_token("team-a", "submit")
    finally:
        store.close()
    info = running(state)
    assert info is not None and info.pid == process.pid
    (tmp_path / "job.yaml").write_text(
        "name: hello\ncommand: [python, -c, \"print('hello from the job')\"]\n")
    with Client(info.url, token) as client:
        job = client.submit(tmp_path / "job.yaml", cwd=tmp_path)
        done = client.wait(job["id"], timeout=120, poll_seconds=0.2)
        assert (done["state"], done["exit_code"], done["team"]) == ("succeeded", 0, "team-a")
        assert done["parts"] and done["parts"][0]["cores"] == [0]
        header, *output = client.logs(job["id"])
        assert header.startswith("--- slicebox: attempt 1") and output == ["hello from the job"]
    stopped = stop_running(state, timeout=60)
    assert stopped is not None and stopped.pid == process.pid
    assert process.wait(30) == 0
    assert not (state / PID_FILE).exists()
