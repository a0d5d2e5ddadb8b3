"""The job table links each job to its MLflow run when the service knows the MLflow UI's
address (`slicebox up --serve --mlflow-ui URL`, SLICEBOX_MLFLOW_UI, or ``mlflow_ui`` in
config.toml: option > environment > file). The link is the UI's own route for a run by id,
``<ui>/#/runs/<run id>`` (MLflow's UI finds the run's experiment and redirects to
``#/experiments/<experiment>/runs/<run id>``). Without the address the name stays text,
its hover saying how to get links. The address is checked (http or https, no user,
password, query or fragment) before anything starts.

The page itself is checked in a real browser (Debian's ``chromium``, driven by Playwright);
skipped without them, except where ``CI`` or ``SLICEBOX_REQUIRE_CHROMIUM`` is set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from typer.testing import CliRunner

from slicebox.cli import app as cli
from slicebox.cli import config
from slicebox.errors import InputError
from slicebox.pool.model import Pool
from slicebox.service import create_app
from slicebox.service.server import PID_FILE, Service, running, serve
from slicebox.spec import parse_spec
from slicebox.store import Store
from tests.service.conftest import Tokens

UI = "http://mlflow.example:5000/ml"
# Not an id MLflow makes (those are hex), so that the test sees it percent-encoded.
RUN_ID = "run/1?x#y"
SLICEBOX = [sys.executable, "-c", "from slicebox.cli import app; app(prog_name='slicebox')"]
BAD_URLS = ["javascript:alert(1)", "ftp://mlflow.example", "http://", "mlflow.example:5000",
            "http://me:secret@mlflow.example", "http://mlflow.example/?next=x",
            "http://mlflow.example/#/runs", "http://mlflow.example:port",
            "http://mlflow .example", "http://mlflow.example\n/x", ""]


def _required() -> bool:
    return any(os.environ.get(name, "") not in ("", "0", "false")
               for name in ("CI", "SLICEBOX_REQUIRE_CHROMIUM"))


def _missing(message: str) -> None:
    if _required():
        pytest.fail(f"required here (CI / SLICEBOX_REQUIRE_CHROMIUM): {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    program = shutil.which("chromium")
    if program is None:
        _missing("Chromium is not installed (Debian's `chromium` package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install -e .[dev])")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=program, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def linked(store: Store, pool: Pool, state: Path) -> Iterator[Service]:
    """A service that knows the MLflow UI's address (given with a trailing slash)."""
    running_service = serve(create_app(store, pool, poll_seconds=0.05, mlflow_ui=UI + "/"),
                            port=0, state_dir=state)
    try:
        yield running_service
    finally:
        running_service.stop()


def _queued(store: Store, name: str, run_id: str | None = None) -> str:
    """A queued job; with ``run_id``, one whose MLflow run the controller has recorded."""
    job_id = store.submit(parse_spec({"name": name, "command": ["python", "-V"]}))
    if run_id is not None:
        store.set_mlflow_run(job_id, run_id)
    return job_id


def _name_cell(browser: Any, url: str, token: str, job_id: str) -> dict[str, Any]:
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(f"{url}/#token={token}")
        cell = f'#jobs tr[data-job="{job_id}"] td:nth-child(2)'
        page.wait_for_selector(cell, timeout=30_000)
        seen = page.eval_on_selector(cell, """(td) => {
            const a = td.querySelector("a"), span = td.querySelector("span");
            return { text: td.textContent, links: td.querySelectorAll("a").length,
                     href: a && a.getAttribute("href"), rel: a && a.getAttribute("rel"),
                     target: a && a.getAttribute("target"),
                     title: (a || span || td).getAttribute("title") }; }""")
    finally:
        page.close()
    assert not problems, problems
    return seen


def test_the_job_name_links_to_its_mlflow_run(browser: Any, linked: Service, store: Store,
                                              tokens: Tokens) -> None:
    job_id = _queued(store, "trainer", RUN_ID)
    untracked = _queued(store, "not-yet")
    assert httpx.get(f"{linked.url}/v1/health", timeout=10).json()["mlflow_ui"] == UI
    seen = _name_cell(browser, linked.url, tokens.admin, job_id)
    assert seen["href"] == f"{UI}/#/runs/{quote(RUN_ID, safe='')}"
    assert seen["href"] == f"{UI}/#/runs/run%2F1%3Fx%23y"  # the id cannot leave the fragment
    assert seen["text"] == "trainer" and seen["target"] == "_blank"
    assert set(seen["rel"].split()) >= {"noopener", "noreferrer"}
    assert seen["title"] == f"MLflow run {RUN_ID}"
    # A job without a run yet (it has not started): its name, no link.
    other = _name_cell(browser, linked.url, tokens.admin, untracked)
    assert (other["text"], other["links"]) == ("not-yet", 0)


def test_without_the_address_the_name_says_how_to_link_it(browser: Any, service: Service,
                                                          store: Store, tokens: Tokens
                                                          ) -> None:
    job_id = _queued(store, "trainer", RUN_ID)
    assert httpx.get(f"{service.url}/v1/health", timeout=10).json()["mlflow_ui"] is None
    seen = _name_cell(browser, service.url, tokens.admin, job_id)
    assert (seen["text"], seen["links"]) == ("trainer", 0)
    assert RUN_ID in seen["title"] and "--mlflow-ui" in seen["title"]


@pytest.mark.parametrize("url", BAD_URLS)
def test_the_service_refuses_an_address_it_could_not_link_to(store: Store, pool: Pool,
                                                             url: str) -> None:
    with pytest.raises(InputError, match="^mlflow_ui: "):
        create_app(store, pool, mlflow_ui=url)


@pytest.mark.parametrize(("given", "kept"), [
    ("https://mlflow.example", "https://mlflow.example"),
    ("  HTTP://[::1]:5000/  ", "http://[::1]:5000"),
    ("http://10.0.0.5:5000/mlflow/", "http://10.0.0.5:5000/mlflow")])
def test_the_address_is_kept_without_its_trailing_slash(store: Store, pool: Pool,
                                                        given: str, kept: str) -> None:
    with serve(create_app(store, pool, mlflow_ui=given), port=0) as answering:
        assert httpx.get(f"{answering.url}/v1/health", timeout=10).json()["mlflow_ui"] == kept


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("SLICEBOX_MLFLOW_UI", raising=False)
    return tmp_path


def _config_file(text: str) -> Path:
    path = config.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_option_beats_environment_beats_config_file(home: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.mlflow_ui() == config.Setting(None, "default")
    _config_file('mlflow_ui = "http://from-file:5000/"\n')
    assert config.mlflow_ui() == config.Setting("http://from-file:5000", "config file")
    monkeypatch.setenv("SLICEBOX_MLFLOW_UI", "http://from-env:5000")
    assert config.mlflow_ui() == config.Setting("http://from-env:5000",
                                                "environment (SLICEBOX_MLFLOW_UI)")
    assert config.mlflow_ui("https://given") == config.Setting("https://given", "option")
    shown = CliRunner().invoke(cli, ["config", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["mlflow_ui"] == {
        "value": "http://from-env:5000", "source": "environment (SLICEBOX_MLFLOW_UI)"}


def test_a_bad_address_is_named_by_where_it_came_from(home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config_file('mlflow_ui = "javascript:alert(1)"\n')
    with pytest.raises(config.ConfigError, match=f"^{path}: mlflow_ui: .*http"):
        config.mlflow_ui()
    monkeypatch.setenv("SLICEBOX_MLFLOW_UI", "ftp://x")
    with pytest.raises(config.ConfigError, match="^SLICEBOX_MLFLOW_UI: "):
        config.mlflow_ui()
    with pytest.raises(config.ConfigError, match="^--mlflow-ui: .*password"):
        config.mlflow_ui("http://me:pw@x")


def test_up_refuses_a_bad_address_before_starting_anything(home: Path,
                                                           tmp_path: Path) -> None:
    state = tmp_path / "state"
    refused = CliRunner().invoke(cli, ["--state", str(state), "up", "--serve", "--mlflow-ui",
                                       "javascript:alert(1)"])
    assert refused.exit_code == 2, refused.output
    assert "--mlflow-ui: 'javascript:alert(1)' is not an http(s) URL" in refused.output
    alone = CliRunner().invoke(cli, ["--state", str(state), "up", "--mlflow-ui", UI])
    assert alone.exit_code == 2 and "only with --serve" in alone.output, alone.output
    assert not (state / PID_FILE).exists() and not (state / "slicebox.db").exists()


def test_up_detach_hands_the_address_to_the_dashboard(home: Path, tmp_path: Path) -> None:
    """As a user runs it: the option wins over the environment, and the detached child
    serves what the parent checked."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = tmp_path / "state"
    env = {**os.environ, "HOME": str(home), "SLICEBOX_MLFLOW_UI": "http://from-env:5000"}
    up = subprocess.run([*SLICEBOX, "--state", str(state), "up", "--detach", "--no-mlflow",
                         "--port", str(port), "--mlflow-ui", UI + "/"], env=env,
                        capture_output=True, text=True, timeout=180, check=False)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        info = running(state)
        assert info is not None
        assert httpx.get(f"{info.url}/v1/health", timeout=10).json()["mlflow_ui"] == UI
    finally:
        down = subprocess.run([*SLICEBOX, "--state", str(state), "down"], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert down.returncode == 0, down.stderr
