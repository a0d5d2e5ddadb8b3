"""`slicebox up --serve` serves the API beside its controller; `slicebox down` stops both
(as a user runs them: two processes, a real port)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SLICEBOX = [sys.executable, "-c", "from slicebox.cli import app; app(prog_name='slicebox')"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_up_serve_answers_and_down_stops_it(tmp_path: Path) -> None:
    port = free_port()
    up = subprocess.Popen([*SLICEBOX, "--state", str(tmp_path), "up", "--serve", "--port",
                           str(port), "--no-mlflow", "--interval", "0.2"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
                break
            except httpx.TransportError:
                assert up.poll() is None, up.communicate()[1]
                assert time.monotonic() < deadline, "the service never answered"
                time.sleep(0.3)
        assert health.status_code == 200
        # Without a token nothing but health answers.
        assert httpx.get(f"http://127.0.0.1:{port}/v1/jobs", timeout=5).status_code == 401
        down = subprocess.run([*SLICEBOX, "--state", str(tmp_path), "down", "--json"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert down.returncode == 0, down.stderr
        assert json.loads(down.stdout)["stopped"] == up.pid
        assert up.wait(timeout=30) == 0
        again = subprocess.run([*SLICEBOX, "--state", str(tmp_path), "down"],
                               capture_output=True, text=True, timeout=60, check=False)
        assert again.returncode == 0 and "nothing running" in again.stdout
    finally:
        if up.poll() is None:
            up.kill()
