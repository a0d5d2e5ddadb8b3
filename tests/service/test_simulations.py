"""/v1/simulations on a real server: a bundled trace and an uploaded one run in worker
processes and leave the report `slicebox simulate` writes; bad requests are refused naming
the field; the queue is bounded (429); a run past its time limit is stopped; a team sees
only its own simulations; a restarted service still lists finished ones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slicebox.client import Busy, Client, Forbidden, NotFound, Rejected
from slicebox.pool.files import load_pool
from slicebox.service import create_app
from slicebox.service.server import Service, serve
from slicebox.service.simulations import SimulationRecord, Simulations
from slicebox.sim import report
from slicebox.sim.api import simulate
from slicebox.sim.traces import trace_path
from slicebox.store import Store

from .conftest import TWO_CORES

SMALL = "gavel/small_test.trace"


def _serve(store: Store, state: Path, **options: object) -> Service:
    (state.parent / "pool.yaml").write_text(TWO_CORES)
    app = create_app(store, load_pool(state.parent / "pool.yaml"), state_dir=state,
                     **options)  # type: ignore[arg-type]
    return serve(app, port=0, state_dir=state)


@pytest.fixture()
def two_workers(store: Store, state: Path) -> Iterator[Service]:
    running = _serve(store, state, simulation_workers=2)
    try:
        yield running
    finally:
        running.stop()


def test_a_bundled_and_an_uploaded_trace_run_and_report_as_simulate_does(
        two_workers: Service, store: Store, tokens, state: Path) -> None:
    with Client(two_workers.url, tokens.a_submit) as client:
        assert SMALL in client.traces()
        bundled = client.simulate(SMALL, pool="gavel-48", policy="fifo")
        assert bundled["state"] in ("queued", "running") and bundled["team"] == "team-a"
        text = trace_path("pollux-workloads/philly-workload-1.csv").read_text()
        uploaded = client.simulate(trace_text=text, trace_format="pollux", pool="sia-64",
                                   policy="fifo")
        done = client.wait_simulation(bundled["id"], timeout=180, poll_seconds=0.5)
        up_done = client.wait_simulation(uploaded["id"], timeout=180, poll_seconds=0.5)
    assert done["state"] == "succeeded", done["error"]
    assert up_done["state"] == "succeeded", up_done["error"]
    assert up_done["trace"] == "uploaded (pollux)"
    # The same numbers `slicebox simulate` reports for the same run (a fresh one here).
    local = report.summary(simulate(trace_path(SMALL), "gavel-48", "fifo"))
    timing = {"avg_decision_ms", "max_decision_ms"}  # how long the policy took, this time
    assert {k: v for k, v in done["report"]["metrics"].items() if k not in timing} == \
        {k: v for k, v in local["metrics"].items() if k not in timing}
    assert done["report"]["metrics"]["avg_jct"] > 0
    assert done["report"]["trace"] == SMALL  # not a path on the service's machine
    assert done["progress"]["finished_jobs"] == done["progress"]["total_jobs"] == 20
    assert done["report_markdown"].startswith("# fifo on small_test.trace")
    folder = state / "simulations" / done["id"] / "report"
    assert {"summary.json", "summary.md", "jobs.csv"} <= {p.name for p in folder.iterdir()}


def test_requests_are_checked_and_teams_see_their_own(service: Service, store: Store,
                                                     tokens, state: Path) -> None:
    with Client(service.url, tokens.a_submit) as client:
        for fields, field in (({"policy": "os.system"}, "policy"),
                              ({"pool": "/etc/passwd"}, "pool"),
                              ({"pool": "philly-999999"}, "pool"),
                              ({"trace": "../../../etc/passwd"}, "trace"),
                              ({"trace": "alibaba-gpu-2023/openb_node_list_all_node.csv"},
                               "trace")):
            asked = {"trace": SMALL, "pool": "gavel-48", **fields}
            with pytest.raises(Rejected) as refused:
                client.simulate(**asked)  # type: ignore[arg-type]
            assert refused.value.status == 422 and refused.value.field == field
        with pytest.raises(Rejected, match="either trace"):
            client.simulate(SMALL, trace_text="x", trace_format="gavel", pool="gavel-48")
        with pytest.raises(Rejected, match="trace_format"):
            client.simulate(trace_text="x", pool="gavel-48")
    raw = httpx.post(f"{service.url}/v1/simulations", json={"trace": SMALL, "pool": 48},
                     headers={"Authorization": f"Bearer {tokens.a_submit}"})
    assert raw.status_code == 422
    assert httpx.post(f"{service.url}/v1/simulations",
                      json={"trace": SMALL, "pool": "gavel-48"}).status_code == 401
    with Client(service.url, tokens.a_read) as reader, pytest.raises(Forbidden):
        reader.simulate(SMALL, pool="gavel-48")
    # A bad uploaded trace fails with the reader's reason, naming the line.
    with Client(service.url, tokens.a_submit) as client:
        bad = client.simulate(trace_text="not a gavel trace\n", trace_format="gavel",
                              pool="gavel-48")
        ended = client.wait_simulation(bad["id"], timeout=120, poll_seconds=0.3)
        assert ended["state"] == "failed" and ended["error"].startswith("bad trace:")
        assert ":1:" in ended["error"] and ended["report"] is None
        assert [s["id"] for s in client.simulations()] == [bad["id"]]
    with Client(service.url, tokens.b_submit) as other:
        assert other.simulations() == []
        with pytest.raises(NotFound):
            other.simulation(bad["id"])
    with Client(service.url, tokens.admin) as admin:
        assert [s["id"] for s in admin.simulations()] == [bad["id"]]


def test_the_queue_is_bounded(store: Store, tokens, state: Path) -> None:
    # No worker: what is queued stays queued, so the limit is met exactly.
    running = _serve(store, state, simulation_workers=0, simulation_queue=2)
    try:
        with Client(running.url, tokens.a_submit) as client:
            first = client.simulate(SMALL, pool="gavel-48", policy="fifo")
            client.simulate(SMALL, pool="gavel-48", policy="fifo")
            with pytest.raises(Busy) as busy:
                client.simulate(SMALL, pool="gavel-48", policy="fifo")
            assert busy.value.status == 429 and "at most 2" in busy.value.detail
            assert client.simulation(first["id"])["state"] == "queued"
    finally:
        running.stop()
    # Stopping the service cancels what waited; a new one lists it so.
    again = Simulations(state / "simulations")
    assert {r.state for r in again.all()} == {"cancelled"}


def test_a_run_past_its_time_limit_is_stopped(store: Store, tokens, state: Path) -> None:
    running = _serve(store, state, simulation_time_limit_s=0.2)
    try:
        with Client(running.url, tokens.a_submit) as client:
            sim = client.simulate(SMALL, pool="gavel-48", policy="fifo")
            ended = client.wait_simulation(sim["id"], timeout=60, poll_seconds=0.2)
        assert ended["state"] == "failed" and "0.2 s limit" in ended["error"]
    finally:
        running.stop()


def test_a_restarted_service_keeps_finished_ones_and_fails_unfinished(tmp_path: Path) -> None:
    root = tmp_path / "simulations"
    first = Simulations(root, workers=0)
    now = time.time()
    for sim_id in ("sim-00000001", "sim-00000002"):
        first.submit(SimulationRecord(sim_id, "t", "queued", SMALL, "gavel-48", "fifo", None,
                                      now), {"trace_file": "x", "pool": "gavel-48"})
    with first._lock:  # as a worker leaves a finished one
        first._set(SimulationRecord("sim-00000001", "t", "succeeded", SMALL, "gavel-48",
                                    "fifo", None, now, now, now))
    # The first service died without closing: the second finds what it left.
    second = Simulations(root)
    states = {r.id: (r.state, r.error) for r in second.all()}
    assert states == {"sim-00000001": ("succeeded", None),
                      "sim-00000002": ("failed", "the service stopped before it finished")}
