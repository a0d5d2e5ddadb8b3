"""``GET /metrics``: Prometheus's text format, read back with prometheus_client's parser."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from slicebox.store import Store
from tests.service.conftest import Tokens, job_file, run_it


def scrape(url: str, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text)
            for s in family.samples}


def test_metrics_count_jobs_rates_and_the_pool_per_team(store: Store, tokens: Tokens,
                                                        client_for, service, tmp_path: Path):
    a = client_for(tokens.a_submit)
    running = a.submit(job_file(tmp_path, "runner"), cwd=tmp_path)["id"]
    a.submit(job_file(tmp_path, "waiter"), cwd=tmp_path)
    client_for(tokens.b_submit).submit(job_file(tmp_path, "theirs"), cwd=tmp_path)
    run_it(store, running, tmp_path / "logs" / "r.log", cores=(1,))
    store.record_progress(running, 100.0, samples=0)
    store.record_progress(running, 110.0, samples=500)  # 50 samples/s

    mine = scrape(service.url, tokens.a_read)
    assert mine[("slicebox_jobs", (("state", "running"), ("team", "team-a")))] == 1
    assert mine[("slicebox_jobs", (("state", "queued"), ("team", "team-a")))] == 1
    assert mine[("slicebox_jobs", (("state", "failed"), ("team", "team-a")))] == 0
    assert not any(labels and ("team", "team-b") in labels for _, labels in mine)  # not ours
    assert mine[("slicebox_job_samples_per_second",
                 (("job_id", running), ("name", "runner"), ("team", "team-a")))] == 50.0
    assert mine[("slicebox_job_wait_seconds_count", (("team", "team-a"),))] == 1
    assert ("slicebox_oldest_waiting_seconds", (("team", "team-a"),)) in mine
    assert mine[("slicebox_cores", (("use", "held"),))] == 1
    assert mine[("slicebox_cores", (("use", "total"),))] == 2
    assert mine[("slicebox_memory_gib", (("use", "held"),))] == 1.0

    every = scrape(service.url, tokens.admin)
    assert every[("slicebox_jobs", (("state", "queued"), ("team", "team-b")))] == 1
    assert httpx.get(f"{service.url}/metrics").status_code == 401
