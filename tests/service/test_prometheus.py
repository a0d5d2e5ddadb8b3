"""A real Prometheus server (Debian's ``prometheus`` package) scrapes ``/metrics`` on
127.0.0.1 with a read token, and its own query API returns the number of running jobs.

Without the ``prometheus`` program this is skipped with the reason, except where ``CI`` or
``SLICEBOX_REQUIRE_PROMETHEUS`` is set: there it fails (CI installs the package)."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slicebox.store import Store
from tests.service.conftest import Tokens, job_file, run_it

_START_TIMEOUT_S = 60.0


def _required() -> bool:
    return any(os.environ.get(name, "") not in ("", "0", "false")
               for name in ("CI", "SLICEBOX_REQUIRE_PROMETHEUS"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # in the child before exec: no server outlives the tests
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture()
def prometheus(service, tokens: Tokens, tmp_path: Path) -> Iterator[str]:
    program = shutil.which("prometheus")
    if program is None:
        message = "Prometheus is not installed (Debian's `prometheus` package)"
        if _required():
            pytest.fail(f"Prometheus is required here (CI / SLICEBOX_REQUIRE_PROMETHEUS): "
                        f"{message}")
        pytest.skip(message)
    token_file = tmp_path / "token"
    token_file.write_text(tokens.a_read)
    token_file.chmod(0o600)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: slicebox\n"
        "    scrape_interval: 1s\n"
        f"    authorization: {{type: Bearer, credentials_file: {token_file}}}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{service.port}']}}]\n")
    port = _free_port()
    process = subprocess.Popen(
        [program, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        assert process.stderr is not None
        process.stderr.close()


def query(url: str, promql: str) -> list[dict]:
    try:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    except httpx.HTTPError:
        return []  # not up yet
    if answer.status_code != 200:
        return []
    return list(answer.json()["data"]["result"])


def test_prometheus_scrapes_the_number_of_running_jobs(prometheus: str, store: Store,
                                                       tokens: Tokens, client_for,
                                                       tmp_path: Path):
    a = client_for(tokens.a_submit)
    ids = [a.submit(job_file(tmp_path, f"job{i}"), cwd=tmp_path)["id"] for i in range(3)]
    run_it(store, ids[0], tmp_path / "logs" / "0.log", cores=(0,))
    run_it(store, ids[1], tmp_path / "logs" / "1.log", cores=(1,))
    promql = 'sum(slicebox_jobs{state="running"})'
    deadline = time.monotonic() + _START_TIMEOUT_S
    result: list[dict] = []
    while time.monotonic() < deadline:
        result = query(prometheus, promql)
        if result and float(result[0]["value"][1]) == 2:
            break
        time.sleep(0.5)
    assert result and float(result[0]["value"][1]) == 2, result
    (target,) = query(prometheus, 'up{job="slicebox"}')
    assert target["value"][1] == "1"  # scraped with the token, not refused
