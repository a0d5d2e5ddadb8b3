"""The dashboard in a real browser (Debian's ``chromium``, headless) against a real
controller and service (one process, ``serve_with_controller.py``) with a job running on
the local backend: the rendered page names the job in its node's box and in the job
table, and a screenshot is taken (``SLICEBOX_UPDATE_SCREENSHOT=1`` copies it to
``docs/dashboard.png``, the one the docs show).

Without the ``chromium`` program this is skipped with the reason, except where ``CI`` or
``SLICEBOX_REQUIRE_CHROMIUM`` is set: there it fails (CI installs the package)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from slicebox.client import Client
from slicebox.service.server import running
from slicebox.store import Store

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[1] / "docs"
# Jobs are pinned to their cores, so the pool's cores must be this machine's: up to four
# of them, in two NUMA groups. The GPU is only declared (the jobs on it just sleep).
CORES = sorted(os.sched_getaffinity(0))[:4]
HALF = max(1, len(CORES) // 2)
POOL = f"""name: demo
nodes:
  - name: here
    memory_gib: 16
    cores: {{0: "{','.join(map(str, CORES[:HALF]))}", 1: "{','.join(map(str, CORES[HALF:]))}"}}
    gpus:
      - {{kind: L4, count: 1, numa: 0}}
    volumes:
      - {{name: scratch, path: /tmp, tier: ssd, capacity_gib: 100, read_mbps: 2000,
         write_mbps: 1500}}
"""
# Reports progress as a training job would (slicebox.report's line), for two minutes.
TRAINER = """
import json, sys, time
for step in range(1, 600):
    print(':::SLICEBOX ' + json.dumps({'time': time.time(), 'samples': step * 256,
                                        'quality': round(1 - 1 / (step + 1), 4)}), flush=True)
    time.sleep(0.2)
"""
_BROWSER_TIMEOUT_S = 120
SLICEBOX = [sys.executable, "-c", "from slicebox.cli import app; app(prog_name='slicebox')"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
         "source", "track", "wbr"}


def _required() -> bool:
    return any(os.environ.get(name, "") not in ("", "0", "false")
               for name in ("CI", "SLICEBOX_REQUIRE_CHROMIUM"))


@pytest.fixture(scope="module")
def chromium() -> str:
    program = shutil.which("chromium")
    if program is None:
        message = "Chromium is not installed (Debian's `chromium` package)"
        if _required():
            pytest.fail(f"Chromium is required here (CI / SLICEBOX_REQUIRE_CHROMIUM): {message}")
        pytest.skip(message)
    return program


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def all_text(self) -> str:
        """Text and title attributes (what a hover shows) of this element and below."""
        own = [*self.text, self.attrs.get("title", "")]
        return " ".join(own + [c.all_text() for c in self.children])

    def find(self, predicate) -> Iterator[Element]:
        if predicate(self):
            yield self
        for child in self.children:
            yield from child.find(predicate)


class _Tree(HTMLParser):
    """The DOM Chromium dumps, as a tree (enough of HTML for a serialised DOM)."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text.append(data)


def _has_class(name: str):
    return lambda e: name in e.attrs.get("class", "").split()


@pytest.fixture()
def live(tmp_path: Path) -> Iterator[tuple[str, str, str, str]]:
    """(url, read token, running job's id, its name) of a controller + service process."""
    if len(CORES) < 2:
        pytest.skip("the demo pool needs two cores this process may run on")
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "pool.yaml").write_text(POOL)
    store = Store.open(state)
    try:
        _, submit_token = store.create_token("vision", "submit")
        _, read_token = store.create_token("vision", "read")
    finally:
        store.close()
    # As a user starts it: `slicebox up --detach` (controller + service in the background).
    detached = subprocess.run([*SLICEBOX, "--state", str(state), "up", "--detach", "--pool",
                               str(tmp_path / "pool.yaml"), "--port", str(_free_port()),
                               "--no-mlflow", "--interval", "0.5"],
                              capture_output=True, text=True, timeout=180, check=False)
    assert detached.returncode == 0, detached.stdout + detached.stderr
    info = running(state)
    assert info is not None, "up --detach returned but no service runs"
    try:
        (tmp_path / "trainer.py").write_text(TRAINER)
        with Client(info.url, submit_token) as client:
            job = client.submit({"name": "resnet-sweep-3", "command": [
                sys.executable, str(tmp_path / "trainer.py")],
                "resources": {"cpus": 1, "memory_gib": 3}}, cwd=str(tmp_path))
            for share, name in ((0.5, "tiny-gpt-finetune"), (0.25, "digits-cnn")):
                client.submit({"name": name, "command": ["sleep", "300"], "resources": {
                    "gpus": 1, "fraction": share, "gpu_memory_gib": 6, "cpus": 1,
                    "memory_gib": 2}}, cwd=str(tmp_path))
            client.submit({"name": "waits-for-cores", "command": ["sleep", "1"],
                           "resources": {"cpus": len(CORES), "memory_gib": 1}},
                          cwd=str(tmp_path))
            deadline = time.monotonic() + 60
            while (seen := client.job(job["id"]))["samples"] is None:
                assert seen["state"] in ("queued", "staging", "running"), seen
                assert time.monotonic() < deadline, f"no progress reported: {seen}"
                time.sleep(0.2)
        yield info.url, read_token, job["id"], job["name"]
    finally:
        down = subprocess.run([*SLICEBOX, "--state", str(state), "down"], capture_output=True,
                              text=True, timeout=120, check=False)
        assert down.returncode == 0, down.stderr
        # Jobs outlive `down` (the next `up` adopts them); this test's must not.
        from slicebox.backends import procs

        store = Store.open(state)
        try:
            for job_record in store.jobs():
                procs.kill_job_processes(job_record.id)
        finally:
            store.close()


def _chromium(program: str, profile: Path, url: str, *extra: str) -> str:
    argv = [program, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={profile}",
            "--virtual-time-budget=8000", *extra, url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_BROWSER_TIMEOUT_S,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_page_shows_the_running_job_in_its_node_and_the_job_table(
        chromium: str, live: tuple[str, str, str, str], tmp_path: Path):
    url, token, job_id, name = live
    dom = _chromium(chromium, tmp_path / "profile", f"{url}/#token={token}", "--dump-dom")
    tree = _Tree()
    tree.feed(dom)
    nodes = list(tree.root.find(_has_class("node")))
    assert [n.attrs["data-node"] for n in nodes] == ["here"], dom[-2000:]
    in_node = [e for e in nodes[0].find(lambda e: e.attrs.get("data-job") == job_id)]
    assert in_node, "the running job holds nothing drawn in its node's box"
    assert name in nodes[0].all_text()
    # Its core is drawn held, named on hover.
    held = [c for c in nodes[0].find(_has_class("held")) if name in c.attrs.get("title", "")]
    assert len(held) == 1
    rows = [r for r in tree.root.find(lambda e: e.tag == "tr")
            if r.attrs.get("data-job") == job_id]
    assert len(rows) == 1
    row_text = rows[0].all_text()
    assert name in row_text and "running" in row_text and job_id in row_text
    # The Gantt chart has the attempt (an SVG group for the job).
    assert any(e.tag == "g" and e.attrs.get("data-job") == job_id
               for e in tree.root.find(lambda e: True))
    # Utilisation over time: both series rise above zero (a GPU share and cores are held).
    paths = {e.attrs["data-series"]: e.attrs["d"] for e in tree.root.find(
        lambda e: e.tag == "path" and "data-series" in e.attrs)}
    assert set(paths) == {"gpus", "cores"}
    for d in paths.values():
        zero = float(d.split()[1])  # "M<x> <y of 0%>" starts each step line
        assert min(float(v) for v in re.findall(r"V([\d.]+)", d)) < zero, d
    # The token went into sessionStorage, not the page: no sign of it in the DOM.
    assert token not in dom


def test_a_screenshot_of_the_dashboard(chromium: str, live: tuple[str, str, str, str],
                                       tmp_path: Path):
    url, token, _, _ = live
    shot = tmp_path / "dashboard.png"
    _chromium(chromium, tmp_path / "profile", f"{url}/#token={token}",
              f"--screenshot={shot}", "--window-size=1400,900", "--hide-scrollbars")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1400, 900)
    assert len(data) < 300_000
    if os.environ.get("SLICEBOX_UPDATE_SCREENSHOT", "") not in ("", "0", "false"):
        shutil.copyfile(shot, DOCS / "dashboard.png")
