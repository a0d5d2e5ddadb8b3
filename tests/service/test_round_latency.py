"""Scheduling-round latency in /metrics: the controller times each round of ``run`` (as
``slicebox up --serve`` runs it) and the service's scrape shows them as a histogram."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from slicebox import policies
from slicebox.backends.memory import MemoryBackend
from slicebox.controller import Controller
from slicebox.placement.placer import Placer
from slicebox.service import create_app
from slicebox.service.metrics import RoundLatency
from slicebox.service.server import serve
from slicebox.spec import parse_spec
from slicebox.store import Store
from tests.sim.helpers import pool


def _samples(text: str, name: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == name:
            for sample in family.samples:
                key = sample.name + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items()))
                out[key] = sample.value
    return out


def test_each_round_of_the_controller_is_in_the_histogram(tmp_path: Path) -> None:
    the_pool = pool(nodes=1, gpus=2)
    store = Store.open(tmp_path / "state")
    token = store.create_token("team-a", "read")[1]
    rounds = RoundLatency()
    controller = Controller(store, the_pool, policies.get("fifo"), Placer(the_pool),
                            MemoryBackend(), tmp_path / "state", interval=0.01)
    store.submit(parse_spec({"name": "one", "command": ["true"], "resources": {"gpus": 1}}))
    seen: list[float] = []

    def on_round(_report: object) -> None:
        seen.append(controller.last_round_seconds)
        rounds.observe(controller.last_round_seconds)

    controller.run(max_rounds=5, on_round=on_round)
    service = serve(create_app(store, the_pool, rounds=rounds), port=0)
    try:
        text = httpx.get(f"{service.url}/metrics", timeout=10,
                         headers={"Authorization": f"Bearer {token}"}).text
    finally:
        service.stop()
        store.close()
    got = _samples(text, "slicebox_scheduling_round_seconds")
    assert len(seen) == 5 and all(s > 0 for s in seen)
    assert got["slicebox_scheduling_round_seconds_count"] == 5
    assert abs(got["slicebox_scheduling_round_seconds_sum"] - sum(seen)) < 1e-9
    # Buckets are cumulative and end with every round.
    inf = got["slicebox_scheduling_round_seconds_bucket,le=+Inf"]
    assert inf == 5
    ten_ms = got["slicebox_scheduling_round_seconds_bucket,le=0.01"]
    assert ten_ms == sum(1 for s in seen if s <= 0.01)


def test_without_a_controller_there_is_no_round_series(service, tokens) -> None:
    text = httpx.get(f"{service.url}/metrics", timeout=10,
                     headers={"Authorization": f"Bearer {tokens.a_read}"}).text
    assert "slicebox_scheduling_round_seconds" not in text
    assert "slicebox_jobs" in text
