"""The dashboard is served by the service itself: the page and its assets need no token
(there is nothing secret in them), every API call the page makes does; and
``GET /v1/history`` (its Gantt chart) keeps each attempt of a job, per team."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from slicebox.client import Client
from slicebox.service.dashboard import STATIC
from slicebox.service.server import Service
from slicebox.store import Store
from tests.service.conftest import Tokens, job_file, run_it


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        url = named.get("src") if tag == "script" else (
            named.get("href") if tag == "link" else None)
        if url:
            self.urls.append(url)


def _page_api_paths() -> list[str]:
    """The API paths the page's script asks for (read from the script, so a call added to
    it is covered here too)."""
    script = (STATIC / "dashboard.js").read_text()
    paths = sorted({m.split("?")[0] for m in re.findall(r'api\("(/v1/[^"]+)"', script)})
    assert paths, "the script calls no API?"
    # A path the script completes with an id ("/v1/simulations/" + id) is checked with a
    # real id (test_dashboard_simulations.py); here, the fixed ones.
    assert [p for p in paths if p.endswith("/")] == ["/v1/simulations/"]
    return [p for p in paths if not p.endswith("/")]


@pytest.mark.parametrize("path", ["/", "/dashboard/"])
def test_the_page_and_its_assets_are_served_without_a_token(service: Service, path: str):
    page = httpx.get(service.url + path, timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    parser = _Assets()
    parser.feed(page.text)
    kinds = {}
    for url in parser.urls:
        asset = httpx.get(service.url + url, timeout=10)
        assert asset.status_code == 200, url
        assert asset.headers["x-content-type-options"] == "nosniff"
        kinds[url.rsplit(".", 1)[-1]] = asset.headers["content-type"].split(";")[0]
    assert kinds == {"css": "text/css", "js": "text/javascript"}


def test_every_api_call_the_page_makes_needs_a_token(service: Service, tokens: Tokens):
    paths = _page_api_paths()
    assert set(paths) == {"/v1/pool", "/v1/jobs", "/v1/services", "/v1/history",
                          "/v1/simulations", "/v1/simulations/choices", "/v1/health"}
    # The one open route (the MLflow UI's address, for the job table's links).
    assert httpx.get(service.url + "/v1/health", timeout=10).json()["mlflow_ui"] is None
    for path in set(paths) - {"/v1/health"}:
        refused = httpx.get(service.url + path, timeout=10)
        assert refused.status_code == 401, path
        answered = httpx.get(service.url + path, timeout=10,
                             headers={"Authorization": f"Bearer {tokens.a_read}"})
        assert answered.status_code == 200, (path, answered.text)


def test_the_page_never_puts_the_token_in_a_url():
    script = (STATIC / "dashboard.js").read_text()
    assert "Authorization: \"Bearer \" + token()" in script
    assert "sessionStorage" in script and "localStorage" not in script
    assert "innerHTML" not in script  # job names are anyone's input: text only


def test_unknown_paths_are_still_problems_not_the_page(service: Service):
    answer = httpx.get(service.url + "/v1/nothing-here", timeout=10)
    assert answer.status_code == 404


def test_history_keeps_every_attempt_and_hides_other_teams_jobs(
        service: Service, store: Store, tokens: Tokens, tmp_path: Path):
    with Client(service.url, tokens.a_submit) as client:
        job_id = client.submit(job_file(tmp_path, "trainer"), cwd=tmp_path)["id"]
    run_it(store, job_id, tmp_path / "logs" / "1.log", cores=(0,))
    store.requeue(job_id, "preempted for a test")
    time.sleep(0.05)
    between = time.time()
    time.sleep(0.05)
    run_it(store, job_id, tmp_path / "logs" / "2.log", cores=(1,))

    def history(token: str, **params: float) -> list[dict]:
        answer = httpx.get(service.url + "/v1/history", params=params, timeout=10,
                           headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    own = history(tokens.a_read)
    assert [(a["attempt"], a["cores"], a["ended_at"] is None) for a in own] == [
        (1, {"here": [0]}, False), (2, {"here": [1]}, True)]
    assert own[0]["holder"] == {"team": "team-a", "job_id": job_id, "job_name": "trainer"}
    assert own[0]["ended_at"] < between < own[1]["started_at"]
    # Only what still held something at `since`: the first attempt had ended.
    assert [a["attempt"] for a in history(tokens.a_read, since=between)] == [2]
    # Another team sees that the cores were held, and by which team, not by which job.
    theirs = history(tokens.b_submit)
    assert [a["holder"] for a in theirs] == [{"team": "team-a", "job_id": None,
                                              "job_name": None}] * 2
    assert [a["holder"]["job_id"] for a in history(tokens.admin)] == [job_id, job_id]


@pytest.mark.parametrize("since", ["-1", "soon", "1e12"])
def test_history_refuses_a_bad_since(service: Service, tokens: Tokens, since: str):
    answer = httpx.get(service.url + "/v1/history", params={"since": since}, timeout=10,
                       headers={"Authorization": f"Bearer {tokens.a_read}"})
    assert answer.status_code == 422
    assert "since" in answer.text
