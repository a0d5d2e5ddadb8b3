"""The dashboard's simulation viewer.

In a real browser (Debian's ``chromium``, driven by Playwright): the page offers the traces,
pool presets and policies the API lists, starts a simulation of the smallest bundled trace
with a submit token, follows it, and shows its report: the metrics table ``slicebox
simulate`` prints for the same run, and its plots (fetched with the token and drawn as
images, inside the page's strict CSP). A read token's page is refused, the scope named.
Skipped without Chromium or Playwright, except where ``CI`` or ``SLICEBOX_REQUIRE_CHROMIUM``
is set: there it fails.

Without a browser: the plot route serves a visible, succeeded simulation's plots by name
from a fixed set, and nothing else of its folder (no other name, no link followed)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slicebox import policies
from slicebox.client import Client
from slicebox.controller.actions import RoundReport
from slicebox.controller.dependencies import DependencyGate
from slicebox.service import create_app
from slicebox.service.server import Service, serve
from slicebox.service.sim_routes import PLOTS, bundled_traces
from slicebox.sim import report
from slicebox.sim.api import simulate
from slicebox.sim.traces import trace_path, traces_dir
from slicebox.store import Store
from tests.service.conftest import Tokens, job_file

TIMING_ROWS = {"decisions", "simulated in"}  # how long this run took, not what it found


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


def _smallest_trace() -> str:
    root = traces_dir()
    return min(bundled_traces(root), key=lambda name: (root / name).stat().st_size)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_page_starts_a_simulation_and_shows_its_report(
        browser: Any, service: Service, store: Store, tokens: Tokens, state: Path,
        tmp_path: Path) -> None:
    trace = _smallest_trace()
    # A job that waits for another (the controller's dependency gate gives its reason).
    with Client(service.url, tokens.a_submit) as client:
        train = client.submit(job_file(tmp_path, "train"), cwd=tmp_path)["id"]
        evaluate = client.submit(job_file(tmp_path, "evaluate", f"after: [{train}]\n"),
                                 cwd=tmp_path)["id"]
    DependencyGate(store).hold_back(store.jobs(), RoundReport(time.time()))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []  # a CSP violation, a script error, a failed request
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and
            not m.text.startswith("Failed to load resource") else None)  # those: below
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400
            and not r.url.endswith("/favicon.ico") else None)  # the page has no icon
    page.goto(f"{service.url}/#token={tokens.a_submit}")
    page.wait_for_selector("#sim-policy option", state="attached", timeout=30_000)

    def values(selector: str) -> list[str]:
        return page.eval_on_selector_all(selector, "os => os.map((o) => o.value)")

    assert values("#sim-policy option") == policies.names()
    assert trace in values("#sim-trace option")
    assert "gavel-48" in values("#sim-pool option")
    page.select_option("#sim-trace", trace)
    assert page.input_value("#sim-pool") == "gavel-48"  # the pool its trace was made for
    page.select_option("#sim-policy", "fifo")
    page.click("#simulate button[type=submit]")

    # Followed until done, then the report with its three plots, decoded as images.
    page.wait_for_function(
        """(n) => { const imgs = [...document.querySelectorAll("#sim-report img")];
                    return imgs.length === n
                           && imgs.every((i) => i.complete && i.naturalWidth); }""",
        arg=len(PLOTS), timeout=150_000)
    box = page.locator("#sim-report")
    sim_id = box.get_attribute("data-sim")
    assert box.get_attribute("data-state") == "succeeded"
    shown = page.eval_on_selector_all("#sim-report table.metrics tbody tr",
                                      "rs => rs.map((r) => [...r.cells].map((c) => c.textContent))")
    local = simulate(trace_path(trace), "gavel-48", "fifo")  # the same run, here
    assert [r for r in shown if r[0] not in TIMING_ROWS] == \
        [list(r) for r in report.summary_rows(local) if r[0] not in TIMING_ROWS]
    assert [r[0] for r in shown if r[0] == "jobs finished"] == ["jobs finished"]
    assert page.text_content("#sim-report h3").startswith(f"{sim_id}: fifo on ")
    drawn = page.eval_on_selector_all("#sim-report img", "is => is.map((i) => "
                                      "[i.dataset.plot, i.naturalWidth, i.naturalHeight])")
    folder = state / "simulations" / sim_id / "report"
    assert sorted(drawn) == sorted([name, *_png_size((folder / name).read_bytes())]
                                   for name in PLOTS)
    # The list has it: succeeded, every job of the trace finished.
    row = page.locator(f"#simulations tr[data-sim='{sim_id}']")
    total = local.metrics.jobs
    assert "succeeded" in row.text_content()
    assert f"{total} of {total} jobs" in row.text_content()
    # The waiting job's reason names its dependency; hovering it names the job and state.
    reason = page.locator(f"tr[data-job='{evaluate}'] td.reason")
    assert reason.text_content() == f"after {train}"
    assert reason.get_attribute("title") == f"waits for: after {train} (train, queued)"
    assert problems == []
    page.close()

    # A read token's page: the form is refused with the scope named; nothing is queued.
    page = browser.new_page()
    page.goto(f"{service.url}/#token={tokens.a_read}")
    page.wait_for_selector(f"#simulations tr[data-sim='{sim_id}']", timeout=30_000)
    page.click("#simulate button[type=submit]")
    page.wait_for_function("() => document.getElementById('sim-error').textContent !== ''",
                           timeout=30_000)
    assert "needs the submit scope" in page.text_content("#sim-error")
    assert page.locator("#simulations tbody tr").count() == 1
    page.close()


# ---- the plot route, without a browser ---------------------------------------------------

SIM = "sim-0000abcd"
OTHER = "sim-0000beef"  # still running: no plots yet


@pytest.fixture()
def finished(store: Store, state: Path, tmp_path: Path) -> Iterator[Service]:
    """A service whose state already holds a finished simulation of team-a's (as a
    restarted service finds one) and a running one."""
    now = time.time()
    for sim_id, sim_state in ((SIM, "succeeded"), (OTHER, "running")):
        folder = state / "simulations" / sim_id
        (folder / "report").mkdir(parents=True)
        (folder / "status.json").write_text(json.dumps({
            "id": sim_id, "team": "team-a", "state": sim_state,
            "trace": "gavel/small_test.trace", "pool": "gavel-48", "policy": "fifo",
            "round_seconds": None, "submitted_at": now, "started_at": now,
            "finished_at": now}))
    report.write(simulate(trace_path(_smallest_trace()), "gavel-48", "fifo"),
                 state / "simulations" / SIM / "report")
    shutil.copyfile(state / "simulations" / SIM / "report" / "queue.png",
                    state / "simulations" / OTHER / "report" / "queue.png")
    from slicebox.pool.files import load_pool

    from .conftest import TWO_CORES

    (tmp_path / "pool.yaml").write_text(TWO_CORES)
    running = serve(create_app(store, load_pool(tmp_path / "pool.yaml"), state_dir=state),
                    port=0, state_dir=state)
    try:
        yield running
    finally:
        running.stop()


def test_the_plot_route_serves_only_named_plots_of_a_visible_simulation(
        finished: Service, tokens: Tokens, state: Path) -> None:
    def get(path: str, token: str | None = tokens.a_read) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(finished.url + path, headers=headers, timeout=10)

    one = get(f"/v1/simulations/{SIM}").json()
    assert one["state"] == "succeeded" and one["plots"] == list(PLOTS)
    report_dir = state / "simulations" / SIM / "report"
    for name in PLOTS:
        answer = get(f"/v1/simulations/{SIM}/plots/{name}")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "image/png"
        assert answer.content == (report_dir / name).read_bytes()
    assert get(f"/v1/simulations/{SIM}/plots/queue.png", token=None).status_code == 401
    # Another team's simulation is as good as missing.
    assert get(f"/v1/simulations/{SIM}/plots/queue.png", tokens.b_submit).status_code == 404
    # Only the plots' names: not the report's other files, nor a way out of the folder.
    for name in ("summary.json", "jobs.csv", "..%2Fstatus.json", "%2Fetc%2Fpasswd"):
        assert get(f"/v1/simulations/{SIM}/plots/{name}").status_code in (404, 422), name
    # A simulation not finished has none, even where a file of that name is.
    assert get(f"/v1/simulations/{OTHER}").json()["plots"] == []
    assert get(f"/v1/simulations/{OTHER}/plots/queue.png").status_code == 404
    # A plot replaced by a link (to the store, say) is not followed.
    (report_dir / "queue.png").unlink()
    (report_dir / "queue.png").symlink_to(state / "slicebox.db")
    assert get(f"/v1/simulations/{SIM}/plots/queue.png").status_code == 404
    assert get(f"/v1/simulations/{SIM}").json()["plots"] == ["jct_cdf.png", "utilisation.png"]


def test_the_choices_are_what_a_request_may_name(finished: Service, tokens: Tokens) -> None:
    answer = httpx.get(finished.url + "/v1/simulations/choices", timeout=10,
                       headers={"Authorization": f"Bearer {tokens.a_read}"})
    assert answer.status_code == 200
    choices = answer.json()
    assert choices["traces"] == bundled_traces(traces_dir())
    assert choices["policies"] == policies.names()
    assert {"sia-64", "gavel-48", "alibaba-gpu-2023", "philly-2000"} <= set(choices["pools"])
    assert httpx.get(finished.url + "/v1/simulations/choices", timeout=10).status_code == 401
