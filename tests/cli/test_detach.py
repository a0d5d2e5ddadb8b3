"""`slicebox up --detach` as a user runs it: it returns once its service answers; a job
submitted through `slicebox.Client` from this (another) process runs on the real local
backend; `slicebox down` stops it, and a job still running then carries on and is adopted
by the next `up`. A second `up --detach` is refused; a child that dies shows its log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from slicebox.client import Client
from slicebox.service.server import PID_FILE, running
from slicebox.store import Store

SLICEBOX = [sys.executable, "-c", "from slicebox.cli import app; app(prog_name='slicebox')"]
POOL = "name: here\nnodes:\n  - {name: here, memory_gib: 2, cores: {0: \"0\"}}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(state: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SLICEBOX, "--state", str(state), *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def up_detached(state: Path, pool: Path, port: int) -> dict:
    done = cli(state, "up", "--detach", "--json", "--pool", str(pool), "--port", str(port),
               "--no-mlflow", "--interval", "0.2")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture()
def state(tmp_path: Path):
    state = tmp_path / "state"
    yield state
    # Whatever happened, leave no detached `up` behind.
    info = running(state)
    if info is not None:
        psutil.Process(info.pid).kill()


@pytest.mark.slow  # two `up`s and two jobs: ~30 s idle, more on a loaded machine
def test_detached_up_serves_runs_a_client_job_and_down_stops_it(state: Path,
                                                                tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    pool.write_text(POOL)
    port = free_port()
    started = up_detached(state, pool, port)
    # Returned once it answers: no waiting here.
    assert started["url"] == f"http://127.0.0.1:{port}"
    assert httpx.get(f"{started['url']}/v1/health", timeout=5).status_code == 200
    # In a session of its own: the terminal's Ctrl-C and hangup do not reach it.
    assert os.getsid(started["pid"]) == started["pid"]
    assert (state / "up.log").exists()

    # A second one for the same state directory is refused, clearly; the first goes on.
    again = cli(state, "up", "--detach", "--pool", str(pool), "--port", str(free_port()),
                "--no-mlflow")
    assert again.returncode == 1
    assert "already runs" in again.stderr and str(started["pid"]) in again.stderr
    # A foreground `up --serve` meets the controller lease before it serves anything.
    other_port = free_port()
    foreground = cli(state, "up", "--serve", "--pool", str(pool), "--port", str(other_port),
                     "--no-mlflow")
    assert foreground.returncode == 1 and "holds this store" in foreground.stderr
    assert "service on" not in foreground.stderr
    still = running(state)
    assert still is not None and still.pid == started["pid"]

    store = Store.open(state)
    _, token = store.create_token("team-a", "submit")
    store.close()
    flag = tmp_path / "go"
    (tmp_path / "hello.yaml").write_text(
        "name: hello\ncommand: [python, -c, \"print('hello from the job')\"]\n")
    # Waits for a file, so it is still running when the service stops.
    (tmp_path / "waits.yaml").write_text(
        "name: waits\ncommand: [python, -c, \"import os, time\\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.1)\\nprint('went')\"]\n")
    with Client(started["url"], token) as client:
        hello = client.submit(tmp_path / "hello.yaml", cwd=tmp_path)
        done = client.wait(hello["id"], timeout=120, poll_seconds=0.2)
        assert (done["state"], done["exit_code"], done["team"]) == ("succeeded", 0, "team-a")
        assert client.logs(hello["id"]).__next__().startswith("--- slicebox: attempt 1")
        waits = client.submit(tmp_path / "waits.yaml", cwd=tmp_path)
        deadline = time.monotonic() + 120
        while client.job(waits["id"])["state"] != "running":
            assert time.monotonic() < deadline, "the second job never started"
            time.sleep(0.2)

    down = cli(state, "down", "--json")
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["stopped"] == started["pid"]
    assert not (state / PID_FILE).exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{started['url']}/v1/health", timeout=2)
    # The running job was left running: the next `up` adopts it and sees it through.
    store = Store.open(state)
    assert store.job(waits["id"]).state.value == "running"
    store.close()
    flag.touch()
    restarted = up_detached(state, pool, port)
    with Client(restarted["url"], token) as client:
        done = client.wait(waits["id"], timeout=120, poll_seconds=0.2)
        assert (done["state"], done["exit_code"]) == ("succeeded", 0)
    assert cli(state, "down").returncode == 0
    assert running(state) is None


def test_a_child_that_dies_shows_its_log_and_exits_1(state: Path, tmp_path: Path) -> None:
    done = cli(state, "up", "--detach", "--pool", str(tmp_path / "missing.yaml"),
               "--port", str(free_port()), "--no-mlflow")
    assert done.returncode == 1
    assert "exited (code 2) before it served" in done.stderr
    assert "missing.yaml: cannot read the file" in done.stderr  # the child's own error
    assert running(state) is None and not (state / PID_FILE).exists()
